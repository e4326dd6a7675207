"""Case 3: peak RSS of a client process uploading one large image, hook against ``requests.post(files=...)``.

The baseline of each run is the client's RSS after imports, set-up and one small warm-up upload;
the growth is the peak during the large upload (sampled every 5 ms, and ``ru_maxrss``) minus it.
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
    run_child,
    summarize,
    upload_statuses,
    write_images,
    write_large_png,
)

NUMBER = 3
TITLE = "Memory: peak RSS while uploading a 64 MB and a 512 MB image"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"sizes_mb": [64, 512], "repeats": 2},
    "quick": {"sizes_mb": [64, 512], "repeats": 1},
    # make test: large enough that a hook buffering the body shows (the tiny test allows 8 MB).
    "tiny": {"sizes_mb": [32], "repeats": 1, "inline": True},
}
MB = 1 << 20
TARGET_GROWTH_MB = 32
VARIANTS = (
    ("`requests.post(files=...)`", "requests_post"),
    ("`CapillaryFileHook.upload_file`", "hook_serial"),
)


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` without measurements.
    """
    growth: dict[str, dict[str, list[float]]] = case.get("data", {}).get("growth_mb", {})
    hook_label, baseline_label = VARIANTS[1][0], VARIANTS[0][0]
    if not growth or any(hook_label not in by_client for by_client in growth.values()):
        return None
    worst = max(max(by_client[hook_label]) for by_client in growth.values())
    sizes = " and ".join(growth)
    baseline = " and ".join(
        f"+{_mb(summarize(by_client[baseline_label]).median)}"
        for by_client in growth.values()
        if baseline_label in by_client
    )
    return f"the hook's peak memory grows by at most **{_mb(worst)}** uploading {sizes} files" + (
        f" (`requests.post(files=...)`: {baseline})" if baseline else ""
    )


def _mb(value: float) -> str:
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB"


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``sizes_mb`` (list of file sizes), ``repeats``.
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when an upload is missing or refused on the emulator's side.
    """
    started = time.perf_counter()
    repeats = int(size["repeats"])
    warmup = [str(p) for p in write_images(workdir / "warmup", 1, 50_000, prefix="warmup")]
    growth: dict[str, dict[str, list[float]]] = {}
    baseline: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, dict[str, list[float]]] = {}
    with emulator(workdir / "emulator") as emu:
        env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")}
        for megabytes in size["sizes_mb"]:
            key = f"{megabytes} MB"
            path = write_large_png(workdir / f"large-{megabytes}mb.png", int(megabytes) * MB)
            growth[key], baseline[key], seconds[key] = {}, {}, {}
            for _ in range(repeats):
                for label, method in VARIANTS:
                    emu.reset()
                    params = {
                        "method": method,
                        "base_url": emu.base_url,
                        "basic": list(BASIC_USER),
                        "warmup": warmup,
                        "path": str(path),
                    }
                    result = run_child("memory", params, env=env, inline=bool(size.get("inline")))
                    statuses = upload_statuses(emu)
                    if statuses != {"200": 2}:
                        raise RuntimeError(f"{label} {key}: expected 2 uploads answered 200, got {statuses}")
                    growth[key].setdefault(label, []).append(
                        (result["peak_rss"] - result["baseline_rss"]) / MB
                    )
                    baseline[key].setdefault(label, []).append(result["baseline_rss"] / MB)
                    seconds[key].setdefault(label, []).append(result["elapsed"])
            path.unlink()

    table = Table(
        [
            "File",
            "Client",
            "RSS before (MB)",
            "Peak RSS during upload (MB)",
            "Growth (MB, median)",
            "Growth spread",
            "Upload s",
        ]
    )
    for key in growth:
        for label, _ in VARIANTS:
            grown, base = summarize(growth[key][label]), summarize(baseline[key][label])
            table.add(
                key,
                label,
                f"{base.median:.0f}",
                f"{base.median + grown.median:.0f}",
                f"{grown.median:.1f}",
                grown.spread("{:.1f}"),
                f"{summarize(seconds[key][label]).median:.2f}",
            )
    hook_label = VARIANTS[1][0]
    worst = max(max(growth[key][hook_label]) for key in growth)
    worst_key = max(growth, key=lambda k: max(growth[k][hook_label]))
    verdict = Verdict(
        f"hook's peak RSS grows ≤ {TARGET_GROWTH_MB} MB, whatever the file size",
        worst <= TARGET_GROWTH_MB,
        f"largest growth {worst:.1f} MB (file of {worst_key}, worst of all runs); "
        + "; ".join(f"{k}: {summarize(growth[k][hook_label]).median:.1f} MB" for k in growth),
    )
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            "One file per size: a PNG signature and header followed by random bytes, uploaded to the "
            "emulator (plain HTTP on loopback, no size limit) by a fresh client process per run. "
            "Growth = the peak RSS during the upload (sampled every 5 ms from `/proc/self/statm`, and "
            "`ru_maxrss` when it rose) minus the RSS after imports, set-up and one 50 KB warm-up upload. "
            "`requests.post(files=...)` builds the whole multipart body in "
            f"memory. Rounds per size: {repeats}."
        ),
        params=dict(size),
        tables=[table],
        verdicts=[verdict],
        data={"growth_mb": growth, "baseline_mb": baseline, "seconds": seconds},
        seconds=time.perf_counter() - started,
    )
