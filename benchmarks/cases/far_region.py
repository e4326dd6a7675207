"""Case 8 (issue 14 §3): a far region, 32 and 64 workers at 200 ms of latency.

With 200 ms per request, ``w`` workers can upload at most ``w / 0.2`` files per second. Compared in
the same run, round by round: ``UploadImageOperator.execute`` at each ``max_workers``, and a bare
``requests.Session`` shared by as many threads (the control: what this machine and the emulator
allow at that concurrency, with no validation and no record).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.cases.throughput import (
    BUDGET_FACTOR,
    MIN_BUDGET,
    Samples,
    operator_label,
    rates_within_limits,
)
from benchmarks.harness import (
    BASIC_USER,
    CaseResult,
    Table,
    Verdict,
    emulator,
    fmt_num,
    summarize,
    write_images,
)

NUMBER = 8
TITLE = "Far region: 32 and 64 workers at 200 ms latency"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"files": 2000, "image_bytes": 50_000, "latency": 0.2, "workers": [32, 64], "repeats": 2},
    "quick": {"files": 600, "image_bytes": 50_000, "latency": 0.2, "workers": [32, 64], "repeats": 1},
    "tiny": {
        "files": 40,
        "image_bytes": 5_000,
        "latency": 0.0,
        "workers": [32],
        "repeats": 1,
        "inline": True,
    },
}
TARGET_LIMIT_SHARE = 0.9


def control_label(workers: int) -> str:
    """Return the label of the bare pool at ``workers`` threads.

    :param workers: threads.
    :return: the label.
    """
    return f"control: bare `requests.Session` + thread pool, {workers} workers"


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``files``, ``image_bytes``, ``latency``, ``workers``, ``repeats``.
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when an upload is missing or refused on the emulator's side.
    """
    started = time.perf_counter()
    count, latency, repeats = int(size["files"]), float(size["latency"]), int(size["repeats"])
    inline = bool(size.get("inline"))
    folder = workdir / "images"
    paths = [str(p) for p in write_images(folder, count, int(size["image_bytes"]))]
    variants = [
        (label, method, int(w))
        for w in size["workers"]
        for label, method in ((operator_label(int(w)), "operator"), (control_label(int(w)), "session_pool"))
    ]
    samples = Samples([label for label, _, _ in variants])
    with emulator(workdir / "emulator", tls=True, latency=latency) as emu:
        env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")}
        common = {"base_url": emu.base_url, "basic": list(BASIC_USER), "verify": emu.ca_cert_path}
        for _ in range(repeats):
            for label, method, workers in variants:
                params: dict[str, Any] = {
                    **common,
                    "method": method,
                    "workers": workers,
                    "paths": paths,
                    "source": str(folder),
                }
                if not inline and latency > 0:
                    params["budget"] = max(MIN_BUDGET, BUDGET_FACTOR * count * latency / workers)
                samples.measure(emu, label, params, env, count, inline=inline)
    rates, cpu, emulator_cpu, stopped = samples.rates, samples.cpu, samples.emulator_cpu, samples.stopped
    connections = samples.connections

    table = Table(
        [
            "Client",
            "Workers",
            "Files/s (median)",
            "Spread (min-max)",
            "Latency-bound limit",
            "% of limit",
            "Client CPU ms/file",
            "Emulator CPU ms/file",
            "Connections opened",
        ]
    )
    for label, _, workers in variants:
        stats = summarize(rates[label])
        limit = workers / latency if latency > 0 else None
        table.add(
            label,
            workers,
            fmt_num(stats.median) + (" (partial)" if label in stopped else ""),
            stats.spread(),
            fmt_num(limit) if limit else "n/a",
            f"{stats.median / limit:.0%}" if limit else "n/a",
            f"{1000 * summarize(cpu[label]).median:.2f}",
            f"{1000 * summarize(emulator_cpu[label]).median:.2f}",
            f"{summarize(connections[label]).median:g}",
        )
    verdicts = []
    for workers in size["workers"]:
        label = operator_label(int(workers))
        target = (
            f"`UploadImageOperator` at {workers} workers ≥ {TARGET_LIMIT_SHARE:.0%} of the "
            + "latency-bound limit"
        )
        if latency <= 0:
            verdicts.append(Verdict(target, None, "not run at this size (no injected latency)"))
            continue
        limit = int(workers) / latency
        share = summarize(rates[label]).median / limit
        control = summarize(rates[control_label(int(workers))]).median
        verdicts.append(
            Verdict(
                target,
                share >= TARGET_LIMIT_SHARE
                if label not in stopped
                else (False if share < TARGET_LIMIT_SHARE else None),
                f"{fmt_num(summarize(rates[label]).median)} files/s = {share:.1%} of {fmt_num(limit)}; "
                f"the bare pool reached {fmt_num(control)} files/s = {control / limit:.1%} in the same run"
                + (f"; {stopped[label]}" if label in stopped else ""),
            )
        )
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            f"{count} distinct PNG images of about {size['image_bytes'] // 1000} KB each, uploaded over "
            f"HTTPS with {latency * 1000:g} ms added to every request, by a fresh client process per run. "
            "The operator runs `execute()` with its `source` the folder (its validation pass included); "
            "the control is a bare `requests.Session` shared by as many threads (no validation, no "
            "record). The emulator's log must show every upload answered 200. CPU per file: the "
            "client's and the emulator's; both share the machine's cores, so their sum bounds the "
            f"rate a run can reach. Interleaved rounds: {repeats}."
        ),
        params=dict(size),
        tables=[table],
        verdicts=verdicts,
        notes=[f"{label}: {why}." for label, why in stopped.items()],
        data={
            "rates": rates,
            "cpu_per_file": cpu,
            "emulator_cpu_per_file": emulator_cpu,
            "connections": connections,
            "stopped": stopped,
            "limits": {label: (w / latency if latency > 0 else None) for label, _, w in variants},
        },
        seconds=time.perf_counter() - started,
    )


def implausible(case: dict[str, Any]) -> list[str]:
    """Return the impossible figures of a stored result: no client beats its latency-bound limit.

    :param case: the stored result.
    :return: the problems.
    """
    return rates_within_limits(case)


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` without latency.
    """
    params, rates = case.get("params", {}), case.get("data", {}).get("rates", {})
    latency = float(params.get("latency", 0))
    if latency <= 0 or not rates:
        return None
    shares = [
        f"{summarize(rates[operator_label(int(w))]).median / (int(w) / latency):.0%} at {w} workers"
        for w in params.get("workers", [])
        if rates.get(operator_label(int(w)))
    ]
    return (
        f"at {latency * 1000:g} ms of latency the operator reaches {' and '.join(shares)} of the "
        "latency-bound limit (so choose `max_workers` = the files per second you need times the latency "
        "in seconds, while the worker's cores can still carry that many uploads per second)"
    )
