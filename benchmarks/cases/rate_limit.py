"""Case 7 (issue 14 §2): finishing a catalogue at the service's rate limit, without failing files.

The emulator admits ``rate`` uploads per second per API key (a token bucket) and answers 429 with
``Retry-After`` beyond it, as Capillary documents. Measured side by side in the same run, each in a
fresh client process: (a) the provider as it was before the rate limiter, at :data:`BEFORE_REVISION`,
with its defaults; (b) the current provider with its defaults and no limit configured (adaptive);
(c) the current provider with ``rate_limit_per_minute`` set to the service's limit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BASIC_USER,
    CaseResult,
    Table,
    Verdict,
    emulator,
    fmt_num,
    provider_at,
    run_child,
    summarize,
    upload_statuses,
    write_images,
)

NUMBER = 7
TITLE = "Rate limits: a catalogue at the service's limit, without failing files"
#: The last revision before the hook's rate limiter (issue 14): "today's behaviour".
BEFORE_REVISION = "f97807a5de607c210ea2fed94732d1e30d64c8c6"
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "scenarios": [{"images": 60, "rate": 2.0}, {"images": 300, "rate": 20.0}],
        "image_bytes": 20_000,
        "variants": ["before", "adaptive", "configured"],
        "repeats": 1,
    },
    "quick": {
        "scenarios": [{"images": 30, "rate": 2.0}, {"images": 150, "rate": 20.0}],
        "image_bytes": 20_000,
        "variants": ["before", "adaptive", "configured"],
        "repeats": 1,
    },
    # make test: the current provider only (the former one needs a child process), in this process;
    # twice the emulator's burst of 20, so that a client not pacing itself meets 429s.
    "tiny": {
        "scenarios": [{"images": 40, "rate": 20.0}],
        "image_bytes": 5_000,
        "variants": ["adaptive", "configured"],
        "repeats": 1,
        "inline": True,
    },
}
#: Targets of the issue, for the current provider.
TARGET_LIMIT_SHARE = 0.9
TARGET_429_SHARE = 0.10
#: Time budget of one run: BUDGET_FACTOR times the batch at the limit, at least MIN_BUDGET seconds.
BUDGET_FACTOR = 4.0
MIN_BUDGET = 60.0
VARIANTS = {
    "before": "(a) before the rate limiter, defaults",
    "adaptive": "(b) defaults, no limit configured",
    "configured": "(c) `rate_limit_per_minute` = the limit",
}


def scenario_label(images: int, rate: float) -> str:
    """Return the label of a scenario.

    :param images: files in the batch.
    :param rate: the service's limit, uploads per second.
    :return: e.g. ``60 images at 2/s``.
    """
    return f"{images} images at {rate:g}/s"


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``scenarios`` (``images``, ``rate``), ``image_bytes``, ``variants``, ``repeats``.
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when a run fails otherwise than by failed files.
    """
    started = time.perf_counter()
    inline, repeats = bool(size.get("inline")), int(size["repeats"])
    runs: list[dict[str, Any]] = []
    with emulator(workdir / "emulator") as emu:
        for scenario in size["scenarios"]:
            images, rate = int(scenario["images"]), float(scenario["rate"])
            folder = workdir / f"images-{images}"
            paths = [str(p) for p in write_images(folder, images, int(size["image_bytes"]))]
            for _ in range(repeats):
                for variant in size["variants"]:
                    extras: dict[str, Any] = {}
                    if variant == "configured":
                        extras["rate_limit_per_minute"] = rate * 60
                    env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic", **extras)}
                    emu.configure(rate_limit=rate)  # also refills the bucket left by the last run
                    emu.reset()
                    params: dict[str, Any] = {
                        "source": str(folder),
                        "paths": paths,
                        "workers": None,
                        "basic": list(BASIC_USER),
                    }
                    if not inline:
                        params["budget"] = max(MIN_BUDGET, BUDGET_FACTOR * images / rate)
                    result = run_child(
                        "batch",
                        params,
                        env=env,
                        inline=inline,
                        provider=provider_at(BEFORE_REVISION) if variant == "before" else None,
                    )
                    statuses = upload_statuses(emu)
                    if result.get("timed_out"):  # what finished within the budget; the rest did not
                        result["uploaded"] = statuses.get("200", 0)
                        result["failed"] = images - result["uploaded"]
                    runs.append(
                        {
                            "scenario": scenario_label(images, rate),
                            "images": images,
                            "rate": rate,
                            "variant": variant,
                            "seconds": result["elapsed"],
                            "uploaded": result["uploaded"],
                            "failed": result["failed"],
                            "failure": result["failure"],
                            "timed_out": bool(result.get("timed_out")),
                            "answers_429": statuses.get("429", 0),
                            "statuses": statuses,
                            "cpu": result["cpu"],
                        }
                    )
            emu.configure(rate_limit=None)

    table = Table(
        [
            "Batch",
            "Client",
            "Run (s)",
            "Files uploaded",
            "Files failed",
            "Files/s",
            "% of the limit",
            "Answers 429",
            "429s per file",
        ]
    )
    for item in runs:
        rate_done = item["uploaded"] / item["seconds"] if item["seconds"] > 0 else 0.0
        table.add(
            item["scenario"],
            VARIANTS[item["variant"]],
            f"{item['seconds']:.1f}" + (" (stopped at its time budget)" if item["timed_out"] else ""),
            item["uploaded"],
            item["failed"],
            fmt_num(rate_done),
            f"{rate_done / item['rate']:.0%}",
            item["answers_429"],
            f"{item['answers_429'] / item['images']:.0%}",
        )
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            "The emulator admits `rate` uploads per second per API key (a token bucket holding "
            "`max(1, rate)` requests) and answers 429 with `Retry-After` beyond it. "
            "`UploadImageOperator` with its default settings (max_workers included) uploads the folder "
            "over a Basic connection, in a fresh client process per run: (a) the provider at "
            f"`{BEFORE_REVISION[:7]}`, the last revision before the rate limiter, exported with "
            "`git archive`; (b) the current provider, no limit configured (it adapts to the 429s); "
            "(c) the current provider with the connection extra `rate_limit_per_minute` set to the "
            "limit. Files failed: those in the operator's `CapillaryBatchError` after their retries. "
            "Answers 429: from the emulator's request log. Files/s: uploaded files over the run's "
            "wall time, against the limit (the bucket's initial burst lets a batch slightly exceed "
            f"it). Rounds: {repeats}."
        ),
        params=dict(size),
        tables=[table],
        verdicts=_verdicts(runs),
        notes=[
            f"{VARIANTS[item['variant']]}, {item['scenario']}: first failure: {item['failure']}"
            for item in runs
            if item["failure"]
        ],
        data={"runs": runs, "before_revision": BEFORE_REVISION},
        seconds=time.perf_counter() - started,
    )


def _verdicts(runs: list[dict[str, Any]]) -> list[Verdict]:
    verdicts = []
    for scenario in dict.fromkeys(item["scenario"] for item in runs):
        by_variant: dict[str, list[dict[str, Any]]] = {}
        for item in runs:
            if item["scenario"] == scenario:
                by_variant.setdefault(item["variant"], []).append(item)
        adaptive = by_variant.get("adaptive", [])
        if adaptive:
            failed = max(item["failed"] for item in adaptive)
            shares = [item["uploaded"] / item["seconds"] / item["rate"] for item in adaptive]
            per_file = [item["answers_429"] / item["images"] for item in adaptive]
            verdicts += [
                _judge(adaptive, f"{scenario}, defaults: 0 failed files", failed == 0, f"{failed} failed"),
                _judge(
                    adaptive,
                    f"{scenario}, defaults: ≥ {TARGET_LIMIT_SHARE:.0%} of the limit",
                    min(shares) >= TARGET_LIMIT_SHARE,
                    f"{summarize(shares).median:.0%} of {adaptive[0]['rate']:g}/s (runs: "
                    + ", ".join(f"{s:.0%}" for s in shares)
                    + ")",
                ),
                _judge(
                    adaptive,
                    f"{scenario}, defaults: 429s ≤ {TARGET_429_SHARE:.0%} of the uploads",
                    max(per_file) <= TARGET_429_SHARE,
                    f"{max(item['answers_429'] for item in adaptive)} answers of 429 for "
                    f"{adaptive[0]['images']} files ({max(per_file):.0%})",
                ),
            ]
        configured = by_variant.get("configured", [])
        if configured:
            answers = max(item["answers_429"] for item in configured)
            failed = max(item["failed"] for item in configured)
            verdicts.append(
                _judge(
                    configured,
                    f"{scenario}, `rate_limit_per_minute` = {configured[0]['rate'] * 60:g}: 0 answers of 429",
                    answers == 0 and failed == 0,
                    f"{answers} answers of 429, {failed} failed files",
                )
            )
    return verdicts


def _judge(items: list[dict[str, Any]], target: str, ok: bool, detail: str) -> Verdict:
    """A verdict; a run stopped at its time budget proves a target only when it already failed it."""
    if any(item["timed_out"] for item in items):
        return Verdict(target, False if not ok else None, detail + " (stopped at its time budget)")
    return Verdict(target, ok, detail)


def implausible(case: dict[str, Any]) -> list[str]:
    """Return the impossible figures of a stored result: every file uploaded or failed, once.

    :param case: the stored result.
    :return: the problems.
    """
    return [
        f"{VARIANTS[item['variant']]}, {item['scenario']}: {item['uploaded']} uploaded and {item['failed']} "
        f"failed of {item['images']} files in {item['seconds']:.1f} s"
        for item in case.get("data", {}).get("runs", [])
        if item["seconds"] <= 0 or item["uploaded"] + item["failed"] != item["images"] or item["uploaded"] < 0
    ]


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` for a tiny run or without the adaptive runs.
    """
    if case.get("params", {}).get("inline"):
        return None
    runs = [item for item in case.get("data", {}).get("runs", []) if item["variant"] == "adaptive"]
    if not runs:
        return None
    first = runs[0]
    share = first["uploaded"] / first["seconds"] / first["rate"]
    return (
        f"at a service limit of {first['rate']:g} uploads/s, {first['images']} images finished with "
        f"{first['failed']} failed files, {first['answers_429']} answers of 429 and {share:.0%} of the limit "
        "with the default settings"
    )
