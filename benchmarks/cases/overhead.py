"""Case 2: client CPU per upload of the hook against a bare ``requests.Session`` loop, no latency.

Both clients upload the same small images, one after another over one keep-alive connection, to
the same emulator (plain HTTP on loopback, so that TLS costs, identical for both, do not dilute
the difference). The CPU time is the client process's own (``time.process_time``); the emulator
is another process.
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
    finished_uploads,
    run_child,
    summarize,
    upload_statuses,
    write_images,
)

NUMBER = 2
TITLE = "Client overhead: CPU per upload, hook against a bare requests.Session loop"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"uploads": 300, "warmup": 20, "image_bytes": 50_000, "repeats": 5},
    "quick": {"uploads": 150, "warmup": 10, "image_bytes": 50_000, "repeats": 3},
    # make test: enough uploads that the CPU ratio is stable to within the tiny test's bound.
    "tiny": {"uploads": 40, "warmup": 5, "image_bytes": 5_000, "repeats": 1, "inline": True},
}
TARGET_RATIO = 1.25
#: Time budget of one run (seconds per measured upload, at least MIN_BUDGET).
BUDGET_PER_UPLOAD = 0.2
MIN_BUDGET = 60.0
VARIANTS = (
    ("bare `requests.Session` post loop", "session_loop"),
    ("`CapillaryFileHook.upload_file` loop", "hook_serial"),
)


def implausible(case: dict[str, Any]) -> list[str]:
    """Return the impossible figures of a stored result: CPU per upload must be positive.

    :param case: the stored result.
    :return: the problems.
    """
    return [
        f"{label}: {value:g} s of CPU per upload"
        for label, values in case.get("data", {}).get("cpu_per_upload", {}).items()
        for value in values
        if value <= 0
    ]


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` without a ratio.
    """
    ratio = case.get("data", {}).get("ratio")
    if ratio is None:
        return None
    return f"the hook spends **{ratio:.2f}x** the CPU of a bare `requests.Session` loop per upload"


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``uploads``, ``warmup``, ``image_bytes``, ``repeats``.
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when an upload is missing or refused on the emulator's side.
    """
    started = time.perf_counter()
    count, warmup, repeats = int(size["uploads"]), int(size["warmup"]), int(size["repeats"])
    paths = [str(p) for p in write_images(workdir / "images", count + warmup, int(size["image_bytes"]))]
    cpu: dict[str, list[float]] = {label: [] for label, _ in VARIANTS}
    wall: dict[str, list[float]] = {label: [] for label, _ in VARIANTS}
    connections: dict[str, list[int]] = {label: [] for label, _ in VARIANTS}
    stopped: dict[str, str] = {}
    with emulator(workdir / "emulator") as emu:
        env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")}
        for _ in range(repeats):
            for label, method in VARIANTS:
                if label in stopped:
                    continue
                emu.reset()
                params: dict[str, Any] = {
                    "method": method,
                    "base_url": emu.base_url,
                    "basic": list(BASIC_USER),
                    "warmup": paths[:warmup],
                    "paths": paths[warmup:],
                }
                if not size.get("inline"):
                    params["budget"] = max(MIN_BUDGET, BUDGET_PER_UPLOAD * count)
                result = run_child("throughput", params, env=env, inline=bool(size.get("inline")))
                done = finished_uploads(result, upload_statuses(emu), count + warmup, label) - warmup
                if result.get("timed_out"):
                    stopped[label] = (
                        f"stopped at its time budget of {result['elapsed']:.0f} s with {done} of {count} "
                        "measured, not repeated"
                    )
                cpu[label].append(result["cpu"] / max(done, 1))
                wall[label].append(result["elapsed"] / max(done, 1))
                connections[label].append(int(result["connections"]))

    base_label, hook_label = VARIANTS[0][0], VARIANTS[1][0]
    base = summarize(cpu[base_label]).median
    table = Table(
        [
            "Client",
            "CPU ms/upload (median)",
            "Spread (min-max)",
            "Wall ms/upload (median)",
            "x bare loop",
            "Connections opened",
        ]
    )
    for label, _ in VARIANTS:
        stats = summarize(cpu[label])
        table.add(
            label,
            f"{1000 * stats.median:.3f}",
            stats.spread("{:.3f}", scale=1000),
            f"{1000 * summarize(wall[label]).median:.3f}",
            f"{stats.median / base:.2f}x",
            f"{summarize(connections[label]).median:g}",
        )
    ratio = summarize(cpu[hook_label]).median / base
    paired = [h / b for h, b in zip(cpu[hook_label], cpu[base_label], strict=False)]
    verdict = Verdict(
        f"hook CPU per upload ≤ {TARGET_RATIO:g}x the bare loop",
        ratio <= TARGET_RATIO,
        f"{ratio:.2f}x ({1000 * summarize(cpu[hook_label]).median:.2f} against {1000 * base:.2f} ms; "
        f"per-round ratios {summarize(paired).spread('{:.2f}')})"
        + "".join(f"; {label} {why}" for label, why in stopped.items()),
    )
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            f"{count} uploads of distinct ~{size['image_bytes'] // 1000} KB PNG files per run, after "
            f"{warmup} warm-up uploads (connection opened, lazy imports done), one after another over one "
            "keep-alive connection, plain HTTP on loopback, no injected latency. Each run is a fresh "
            "client process; CPU is `time.process_time()` of that process around the measured uploads "
            "(the emulator is another process). Both loops read the file from disk and check the "
            "answer (HTTP status, `status` field); the hook also validates the name and content, "
            "hashes the body (sha256), parses the record and registers the secure URL with the "
            f"secrets masker. Connections opened: the TCP connections of the whole run, warm-up included "
            f"(counted in urllib3). Interleaved rounds: {repeats}."
        ),
        params=dict(size),
        tables=[table],
        verdicts=[verdict],
        notes=[
            f"{label}: {why}; its CPU per upload is over the uploads finished."
            for label, why in stopped.items()
        ],
        data={
            "cpu_per_upload": cpu,
            "wall_per_upload": wall,
            "connections": connections,
            "ratio": ratio,
            "paired_ratios": paired,
            "stopped": stopped,
        },
        seconds=time.perf_counter() - started,
    )
