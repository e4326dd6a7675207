"""Case 4: OAuth token reuse across the operator's threads, with a long and a short token lifetime.

The operator uploads a batch with 8 workers over an OAuth connection. The emulator's token log
counts the token requests; its request log tells whether any upload was answered 401 (sent with
an expired or unknown token).
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

from airflow_capillary.hooks._auth import refresh_margin
from benchmarks.harness import (
    CaseResult,
    Table,
    Verdict,
    emulator,
    finished_uploads,
    run_child,
    upload_statuses,
    write_images,
)

NUMBER = 4
TITLE = "OAuth: token requests for a batch across 8 threads"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"uploads": 500, "workers": 8, "latency": 0.05, "short_ttl": 2, "short_latency": 0.1},
    "quick": {"uploads": 200, "workers": 8, "latency": 0.05, "short_ttl": 2, "short_latency": 0.1},
    "tiny": {
        "uploads": 8,
        "workers": 2,
        "latency": 0.0,
        "short_ttl": None,
        "short_latency": 0.0,
        "inline": True,
    },
}
LONG_TTL = 300
#: Time budget of one run: BUDGET_FACTOR times what the batch needs at 85% of its latency-bound
#: limit, at least MIN_BUDGET seconds.
BUDGET_FACTOR = 5.0
MIN_BUDGET = 30.0
#: The hook's cap on how early it refreshes a token (see ``refresh_margin``).
REFRESH_MARGIN = 30.0


def expected_tokens(seconds: float, ttl: float) -> int:
    """Return how many tokens a run of ``seconds`` needs when each is refreshed early by the hook's margin.

    :param seconds: duration of the uploads.
    :param ttl: token lifetime.
    :return: the number of token lifetimes (windows) the run spans.
    """
    usable = ttl - refresh_margin(ttl, REFRESH_MARGIN)
    return max(1, math.ceil(seconds / usable))


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``uploads``, ``workers``, ``latency``, ``short_ttl`` (``None``: skip), ``short_latency``.
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when an upload is missing on the emulator's side.
    """
    started = time.perf_counter()
    count, workers = int(size["uploads"]), int(size["workers"])
    folder = workdir / "images"
    paths = [str(p) for p in write_images(folder, count, 20_000)]
    runs: list[dict[str, Any]] = []
    settings = [(LONG_TTL, float(size["latency"]))]
    if size.get("short_ttl"):
        settings.append((int(size["short_ttl"]), float(size["short_latency"])))
    with emulator(workdir / "emulator", token_ttl=LONG_TTL, latency=float(size["latency"])) as emu:
        env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("oauth")}
        for ttl, latency in settings:
            emu.configure(token_ttl=ttl, latency=latency)
            emu.reset()
            params = {"method": "operator", "workers": workers, "paths": paths, "source": str(folder)}
            if not size.get("inline"):
                params["budget"] = max(MIN_BUDGET, BUDGET_FACTOR * count * latency / (0.85 * workers))
            result = run_child("throughput", params, env=env, inline=bool(size.get("inline")))
            statuses = upload_statuses(emu)
            tokens = [entry for entry in emu.token_requests() if entry.get("accepted")]
            # 401s are what this case counts; a complete run must still have every upload answered 200.
            done = finished_uploads(result, {"200": statuses.get("200", 0)}, count, f"TTL {ttl} s")
            times = sorted(float(entry["time"]) for entry in tokens)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            runs.append(
                {
                    "ttl": ttl,
                    "latency": latency,
                    "seconds": result["elapsed"],
                    "tokens": len(tokens),
                    "expected": expected_tokens(result["elapsed"], ttl),
                    "unauthorized": statuses.get("401", 0),
                    "statuses": statuses,
                    "finished": done,
                    "timed_out": bool(result.get("timed_out")),
                    "min_gap": min(gaps) if gaps else None,
                }
            )

    table = Table(
        [
            "Token TTL",
            "Latency",
            "Uploads",
            "Threads",
            "Run (s)",
            "Token windows spanned",
            "Token requests",
            "Uploads answered 401",
            "Shortest gap between tokens (s)",
        ]
    )
    for item in runs:
        table.add(
            f"{item['ttl']} s",
            f"{item['latency'] * 1000:g} ms",
            f"{item['finished']} of {count} (stopped at its time budget)" if item["timed_out"] else count,
            workers,
            f"{item['seconds']:.1f}",
            item["expected"],
            item["tokens"],
            item["unauthorized"],
            "n/a" if item["min_gap"] is None else f"{item['min_gap']:.2f}",
        )
    verdicts = [_verdict(runs[0], count, workers, exact=True)]
    if len(runs) > 1:
        verdicts.append(_verdict(runs[1], count, workers, exact=False))
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            f"`UploadImageOperator` (max_workers={workers}) uploads {count} images of about 20 KB over an "
            "OAuth connection, in a fresh client process. The emulator's token log gives the accepted "
            "token requests; its request log the uploads answered 401 (an expired or unknown token). "
            "Token windows spanned = ceil(run time / (TTL - the hook's refresh margin)), the margin being "
            f"min({REFRESH_MARGIN:g} s, max(TTL/4, min(2 s, TTL/2))). Latency is injected so that the "
            "short-TTL run spans "
            "several lifetimes."
        ),
        params=dict(size),
        tables=[table],
        verdicts=verdicts,
        data={"runs": runs},
        seconds=time.perf_counter() - started,
    )


def _verdict(item: dict[str, Any], count: int, workers: int, *, exact: bool) -> Verdict:
    """Judge one run: exactly one token (``exact``), or at most one per window; never a 401.

    A run stopped at its time budget proves the target only for what it finished: it is then
    ``not measured`` unless it already failed.
    """
    partial = f" (only {item['finished']} of {count} uploads finished within the time budget)"
    if exact:
        target = f"{count} uploads over {workers} threads, {LONG_TTL} s TTL: exactly 1 token request"
        ok = item["tokens"] == 1 and item["unauthorized"] == 0
        detail = f"{item['tokens']} token request(s), {item['unauthorized']} upload(s) answered 401"
    else:
        target = "TTL shorter than the run: one token per TTL window, no upload sent with an expired token"
        ok = item["unauthorized"] == 0 and 1 <= item["tokens"] <= item["expected"] + 1
        detail = (
            f"{item['tokens']} token requests for a {item['seconds']:.1f} s run spanning "
            f"{item['expected']} windows of {item['ttl']} s (refreshed "
            f"{refresh_margin(item['ttl'], REFRESH_MARGIN):g} s early); "
            f"{item['unauthorized']} upload(s) answered 401"
        )
    if item["timed_out"]:
        return Verdict(target, False if not ok else None, detail + partial)
    return Verdict(target, ok, detail)
