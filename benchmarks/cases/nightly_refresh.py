"""Case 9: the nightly refresh of issue 13, a synced catalogue against a full re-upload.

A catalogue of ~50 KB PNG images is uploaded once with a manifest; then 1% of the images are
redrawn, and in the same round the refresh runs twice on those same files: (a) with the manifest
(hash every source, upload only the changed ones) and (b) without one (what the operator did
before issue 13: upload everything again). Both are ``UploadImageOperator.execute`` at 8 workers
against the emulator with 50 ms of latency per request, each in a fresh child process (``python
-m benchmarks.cases.nightly_refresh``; timed around ``execute``). The emulator counts the uploads
of every run. Separately, the hashing speed: :func:`~airflow_capillary.operators._manifest.file_digest`
over every file, one after another in one thread, against ``sha256sum`` over the same files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CHILD_TIMEOUT,
    REPO_ROOT,
    CaseResult,
    Table,
    Verdict,
    child_env,
    emulator,
    fmt_num,
    patched_environ,
    png_bytes,
    summarize,
    upload_statuses,
    write_images,
)

NUMBER = 9
TITLE = "Nightly refresh: a synced catalogue (1% changed) against a full re-upload"
_NIGHTLY = {"image_bytes": 50_000, "changed": 0.01, "latency": 0.05, "workers": 8}
SIZES: dict[str, dict[str, Any]] = {
    "full": {"files": 2000, **_NIGHTLY, "repeats": 3},
    "quick": {"files": 500, **_NIGHTLY, "repeats": 1},
    # make test: one round, no latency, in this process: the code runs, the numbers mean nothing.
    "tiny": {"files": 20, "image_bytes": 5_000, "changed": 0.05, "latency": 0.0, "workers": 4, "repeats": 1,
             "inline": True},
}  # fmt: skip
TARGET_SPEEDUP = 20.0
#: Rounds of the hashing comparison.
HASH_ROUNDS = 3


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` without a speed-up.
    """
    data = case.get("data", {})
    if data.get("speedup") is None:
        return None
    return (
        f"a nightly refresh of {data['files']:,} images with 1% changed takes **{data['speedup']:.0f}x** "
        "less time than uploading them all again"
    )


# --------------------------------------------------------------------------------------------
# The measurements (in a child process, or inline for the tiny size)
# --------------------------------------------------------------------------------------------


def refresh(params: dict[str, Any]) -> dict[str, Any]:
    """Run ``UploadImageOperator.execute`` once over ``source``, with or without ``manifest``.

    :param params: ``source`` (a folder), ``manifest`` (a path or ``None``), ``workers``.
    :return: ``elapsed`` and ``cpu`` (s) of ``execute``, and the count of records by action
        (``uploaded`` without a manifest).
    """
    from unittest import mock

    import airflow.models.connection  # noqa: F401 - what a task process has imported already
    from airflow.sdk.bases.operator import ExecutorSafeguard

    import airflow_capillary.hooks.file_service  # noqa: F401 - ditto, once per worker process
    from airflow_capillary.operators.upload_image import UploadImageOperator

    operator = UploadImageOperator(
        task_id="nightly_refresh",
        source=params["source"],
        manifest=params["manifest"],
        max_workers=int(params["workers"]),
        progress_interval=0,
    )
    context = {"ti": mock.MagicMock(name="ti"), "run_id": "bench", "params": {}}
    guarded = ExecutorSafeguard.test_mode
    ExecutorSafeguard.test_mode = True  # execute() outside a task runner, on purpose
    try:
        started, cpu = time.perf_counter(), time.process_time()
        records = operator.execute(context)  # type: ignore[arg-type]
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        ExecutorSafeguard.test_mode = guarded
    assert isinstance(records, list)
    actions: dict[str, int] = {}
    for record in records:
        action = record.get("action", "uploaded")
        actions[action] = actions.get(action, 0) + 1
    return {"elapsed": elapsed, "cpu": cpu, "actions": actions}


def hashing(params: dict[str, Any]) -> dict[str, Any]:
    """Hash every file with the provider's ``file_digest``, one after another.

    :param params: ``paths``.
    :return: ``elapsed`` (s) and ``bytes``.
    """
    from airflow_capillary.operators._manifest import file_digest

    paths = [Path(p) for p in params["paths"]]
    started = time.perf_counter()
    total = sum(file_digest(path)[1] for path in paths)
    return {"elapsed": time.perf_counter() - started, "bytes": total}


MEASUREMENTS = {"refresh": refresh, "hashing": hashing}


def measure(kind: str, params: dict[str, Any], env: dict[str, str], *, inline: bool) -> dict[str, Any]:
    """Run one measurement in a fresh child process (or in this one for the tiny size).

    :param kind: ``refresh`` or ``hashing``.
    :param params: its JSON-safe parameters.
    :param env: extra environment variables (the connection).
    :param inline: run it here (the tiny size of ``make test``: same code, no interpreter start).
    :return: the measurement's result.
    :raises RuntimeError: when the child fails.
    """
    if inline:
        with patched_environ(env):
            result: dict[str, Any] = json.loads(json.dumps(MEASUREMENTS[kind](params)))
        return result
    command = [sys.executable, "-m", "benchmarks.cases.nightly_refresh", kind, json.dumps(params)]
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=child_env(env), capture_output=True, text=True, timeout=CHILD_TIMEOUT
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child {kind} failed (exit {completed.returncode}): {completed.stderr[-3000:]}"
        )
    child: dict[str, Any] = json.loads(lines[-1])
    return child


def sha256sum(paths: list[str]) -> float:
    """Time ``sha256sum`` over the files (one process, one after another).

    :param paths: the files.
    :return: elapsed seconds.
    :raises RuntimeError: without ``sha256sum`` or when it fails.
    """
    program = shutil.which("sha256sum")
    if program is None:
        raise RuntimeError("sha256sum is not installed")
    started = time.perf_counter()
    subprocess.run([program, *paths], check=True, stdout=subprocess.DEVNULL, timeout=CHILD_TIMEOUT)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# The case
# --------------------------------------------------------------------------------------------


def _expect(emu: Any, uploads: int, what: str) -> None:
    statuses = upload_statuses(emu)
    if statuses != ({"200": uploads} if uploads else {}):
        raise RuntimeError(f"{what}: expected {uploads} uploads answered 200, the emulator saw {statuses}")


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``files``, ``image_bytes``, ``changed`` (a share), ``latency``, ``workers``, ``repeats``.
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when a run uploads another number of files than it should.
    """
    started = time.perf_counter()
    count, repeats, workers = int(size["files"]), int(size["repeats"]), int(size["workers"])
    changed = max(1, round(count * float(size["changed"])))
    inline = bool(size.get("inline"))
    folder = workdir / "images"
    paths = [str(p) for p in write_images(folder, count, int(size["image_bytes"]))]
    times: dict[str, list[float]] = {"synced": [], "full": [], "first": []}
    cpu: dict[str, list[float]] = {"synced": [], "full": []}
    with emulator(workdir / "emulator", latency=float(size["latency"])) as emu:
        env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")}
        common = {"source": str(folder), "workers": workers}
        for round_number in range(repeats):
            manifest = str(workdir / f"manifest-{round_number}.json")
            emu.reset()
            first = measure("refresh", {**common, "manifest": manifest}, env, inline=inline)
            _expect(emu, count, "first run with an empty manifest")
            times["first"].append(first["elapsed"])
            for index in range(changed):  # redraw 1% of the images, spread over the catalogue
                target = Path(paths[index * count // changed])
                target.write_bytes(png_bytes(10**6 + round_number * count + index, int(size["image_bytes"])))
            emu.reset()
            synced = measure("refresh", {**common, "manifest": manifest}, env, inline=inline)
            _expect(emu, changed, "synced refresh")
            if synced["actions"] != {"changed": changed, "unchanged": count - changed}:
                raise RuntimeError(f"synced refresh: unexpected actions {synced['actions']}")
            emu.reset()
            full = measure("refresh", {**common, "manifest": None}, env, inline=inline)
            _expect(emu, count, "full re-upload")
            for key, result in (("synced", synced), ("full", full)):
                times[key].append(result["elapsed"])
                cpu[key].append(result["cpu"])
    hash_seconds = [
        measure("hashing", {"paths": paths}, {}, inline=inline)["elapsed"] for _ in range(HASH_ROUNDS)
    ]
    sum_seconds = [sha256sum(paths) for _ in range(HASH_ROUNDS)]
    total_bytes = sum(Path(p).stat().st_size for p in paths)
    return _result(size, count, changed, total_bytes, times, cpu, hash_seconds, sum_seconds, started)


def _result(
    size: dict[str, Any],
    count: int,
    changed: int,
    total_bytes: int,
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    hash_seconds: list[float],
    sum_seconds: list[float],
    started: float,
) -> CaseResult:
    synced, full = summarize(times["synced"]), summarize(times["full"])
    speedup = full.median / synced.median
    paired = [f / s for f, s in zip(times["full"], times["synced"], strict=True)]
    table = Table(["Run", "Uploads", "Wall s (median)", "Spread (min-max)", "CPU s (median)", "x synced"])
    table.add(
        f"synced refresh ({changed} changed)", changed, f"{synced.median:.2f}", synced.spread("{:.2f}"),
        f"{summarize(cpu['synced']).median:.2f}", "1x",
    )  # fmt: skip
    table.add(
        "full re-upload (no manifest)", count, f"{full.median:.2f}", full.spread("{:.2f}"),
        f"{summarize(cpu['full']).median:.2f}", f"{speedup:.1f}x",
    )  # fmt: skip
    first = summarize(times["first"])
    table.add("first run (empty manifest)", count, f"{first.median:.2f}", first.spread("{:.2f}"), "", "")
    megabytes = total_bytes / 1e6
    ours, theirs = megabytes / summarize(hash_seconds).median, megabytes / summarize(sum_seconds).median
    hashing_table = Table(
        ["Hashing (one thread, warm page cache)", "MB/s (median)", "Spread (min-max)"],
        title=f"Hashing {count:,} files, {megabytes:.1f} MB, {HASH_ROUNDS} rounds:",
    )
    hashing_table.add(
        "`file_digest` (the provider)",
        fmt_num(ours),
        summarize([megabytes / s for s in hash_seconds]).spread("{:.0f}"),
    )
    hashing_table.add(
        "`sha256sum` (coreutils)",
        fmt_num(theirs),
        summarize([megabytes / s for s in sum_seconds]).spread("{:.0f}"),
    )
    verdict = Verdict(
        f"the synced refresh is at least {TARGET_SPEEDUP:g}x faster than a full re-upload",
        speedup >= TARGET_SPEEDUP,
        f"{speedup:.1f}x ({synced.median:.2f} s against {full.median:.2f} s; per-round ratios "
        f"{summarize(paired).spread('{:.1f}')})",
    )
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            f"{count:,} distinct ~{size['image_bytes'] // 1000} KB PNG files, {size['workers']} workers, "
            f"{1000 * float(size['latency']):g} ms of injected latency per request (plain HTTP on "
            f"loopback). Per round: a first run with an empty manifest uploads everything; {changed} "
            "files spread over the catalogue are redrawn; then, on the same files, the synced refresh "
            "(manifest: every source hashed, the changed ones uploaded) and the full re-upload (no "
            "manifest, the behaviour before issue 13). Each run is `UploadImageOperator.execute` in a "
            "fresh child process, timed around `execute` (validation, hashing, uploads, manifest "
            "writes); the emulator (another process) checks every run's upload count. Hashing: "
            "`file_digest` over every file in one thread against `sha256sum` over the same files, "
            f"after the runs (page cache warm). Rounds: {size['repeats']}."
        ),
        params=dict(size),
        tables=[table, hashing_table],
        verdicts=[verdict],
        notes=[
            f"`file_digest` hashes at {ours / theirs:.0%} of `sha256sum`'s speed ({fmt_num(ours)} "
            f"against {fmt_num(theirs)} MB/s); the operator hashes local files in the task's thread "
            "(object-storage sources in its pool of workers)."
        ],
        data={
            "files": count,
            "changed": changed,
            "seconds": times,
            "cpu": cpu,
            "speedup": speedup,
            "paired_speedups": paired,
            "hash_mb_per_s": ours,
            "sha256sum_mb_per_s": theirs,
            "hash_seconds": hash_seconds,
            "sha256sum_seconds": sum_seconds,
            "bytes": total_bytes,
        },
        seconds=time.perf_counter() - started,
    )


if __name__ == "__main__":
    kind, raw = sys.argv[1:3]
    sys.stdout.write("\n" + json.dumps(MEASUREMENTS[kind](json.loads(raw))) + "\n")
