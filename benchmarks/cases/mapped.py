"""Case 6: one batch task against one mapped task instance per image, through ``airflow dags test``.

A throw-away ``AIRFLOW_HOME`` with SQLite, migrated once; the DAG files are copied from
``benchmarks/dags`` into its DAGs folder. Every run is the wall time of the whole ``airflow dags test``
command, so the fixed cost of the command is measured too, with the EmptyOperator DAG of case 5.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CaseResult,
    Table,
    child_env,
    emulator,
    run_child,
    summarize,
    upload_statuses,
    write_images,
)

NUMBER = 6
TITLE = "Batch task against mapped tasks in real Airflow (`airflow dags test`)"
DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
#: (label, dag_id, file) of the DAGs run, in order.
DAGS = (
    ("one batch task (`UploadImageOperator`, source = the folder)", "bench_upload_batch", "upload_batch.py"),
    (
        "mapped: one task instance per image (`.partial().expand(source=[...])`)",
        "bench_upload_mapped",
        "upload_mapped.py",
    ),
    ("fixed cost: 3 `EmptyOperator`s, no upload", "bench_parse_empty", "parse_empty.py"),
)
DAGS_TEST_TIMEOUT = 420.0
#: The DAG whose run measures the fixed cost of ``airflow dags test``.
FIXED_COST_DAG = "bench_parse_empty"
ALL_DAGS = [dag_id for _, dag_id, _ in DAGS]
SIZES: dict[str, dict[str, Any]] = {
    "full": {"images": 100, "latency": 0.05, "workers": 8, "repeats": 1, "run": ALL_DAGS},
    "quick": {"images": 100, "latency": 0.05, "workers": 8, "repeats": 1, "run": ALL_DAGS},
    # make test: every DAG file is parsed and checked, and the mapped one runs for real with 3
    # images (each `airflow dags test` costs about 10 s of CPU here: the others are left to make bench).
    "tiny": {
        "images": 3,
        "latency": 0.0,
        "workers": 2,
        "repeats": 1,
        "run": ["bench_upload_mapped"],
        "inline": True,
    },
}


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def implausible(case: dict[str, Any]) -> list[str]:
    """Return the impossible figures of a stored result: an upload DAG cannot run faster than no upload.

    Each upload DAG runs the same command as the fixed-cost DAG, plus its uploads: a run at or
    below the fixed cost is noise of the machine (one round of each), not a property of the code.

    :param case: the stored result.
    :return: the problems.
    """
    walls: dict[str, list[float]] = case.get("data", {}).get("walls", {})
    if not walls.get(FIXED_COST_DAG):
        return []
    fixed = summarize(walls[FIXED_COST_DAG]).median
    return [
        f"{dag_id} took {summarize(values).median:.1f} s, not more than the {fixed:.1f} s of {FIXED_COST_DAG}"
        for dag_id, values in walls.items()
        if dag_id != FIXED_COST_DAG and values and summarize(values).median <= fixed
    ]


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` unless the batch, mapped and fixed-cost DAGs all ran.
    """
    walls: dict[str, list[float]] = case.get("data", {}).get("walls", {})
    if not all(walls.get(dag_id) for dag_id in ALL_DAGS):
        return None
    count = case["params"]["images"]
    fixed = summarize(walls[FIXED_COST_DAG]).median
    batch = summarize(walls["bench_upload_batch"]).median - fixed
    mapped = summarize(walls["bench_upload_mapped"]).median - fixed
    work = f"took {batch:.0f} s of work" if batch >= 0.5 else "ran within the fixed cost of the command"
    return (
        f"for {count} images, one batch task {work} against {mapped:.0f} s for {count} mapped tasks "
        "(above the fixed cost of `airflow dags test`): map for per-image retries and visibility, batch "
        "for throughput"
    )


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``images``, ``latency``, ``workers``, ``repeats``, ``run`` (the DAG ids to run).
    :param workdir: scratch directory.
    :return: the result.
    :raises RuntimeError: when a command or a DAG run fails, or an upload is missing.
    """
    started = time.perf_counter()
    count, repeats, workers = int(size["images"]), int(size["repeats"]), int(size["workers"])
    folder = workdir / "images"
    write_images(folder, count, 50_000)
    home, dags = workdir / "airflow-home", workdir / "dags"
    dags.mkdir(parents=True)
    for _, _, file_name in DAGS:
        shutil.copy(DAGS_DIR / file_name, dags / file_name)
    env_extra = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "CAPILLARY_BENCH_IMAGES": str(folder),
        "CAPILLARY_BENCH_WORKERS": str(workers),
    }
    # The DAG files must parse into what the case claims: one task, or one mapped over every image.
    shapes: dict[str, dict[str, Any]] = {}
    for _, dag_id, file_name in DAGS:
        result = run_child(
            "parse_dag", {"path": str(dags / file_name)}, env=env_extra, inline=bool(size.get("inline"))
        )
        if result["errors"] or result["dags"] != 1:
            raise RuntimeError(f"{file_name} does not parse: {result['errors']}")
        shapes[dag_id] = result
    walls: dict[str, list[float]] = {dag_id: [] for _, dag_id, _ in DAGS}
    instances: dict[str, list[tuple[str, int, str]]] = {}
    migrate_seconds = None
    runs = [(dag_id, file_name) for _, dag_id, file_name in DAGS if dag_id in size["run"]]
    if runs:
        with emulator(workdir / "emulator", tls=True, latency=float(size["latency"])) as emu:
            env = child_env({**env_extra, "AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")})
            t0 = time.perf_counter()
            _check_call([_airflow(), "db", "migrate"], env, workdir / "migrate.log")
            migrate_seconds = time.perf_counter() - t0
            for round_index in range(repeats):
                for dag_id, file_name in runs:
                    emu.reset()
                    log = workdir / f"{dag_id}-{round_index}.log"
                    t0 = time.perf_counter()
                    _check_call([_airflow(), "dags", "test", dag_id, "-f", str(dags / file_name)], env, log)
                    walls[dag_id].append(time.perf_counter() - t0)
                    text = log.read_text(errors="replace")
                    if "state=success" not in text:
                        raise RuntimeError(
                            f"{dag_id}: the DAG run did not succeed, see the end of {log}:\n{text[-3000:]}"
                        )
                    expected = {} if dag_id == FIXED_COST_DAG else {"200": count}
                    statuses = upload_statuses(emu)
                    if statuses != expected:
                        raise RuntimeError(f"{dag_id}: expected uploads {expected}, got {statuses}")
                    ran = task_instances(home / "airflow.db", dag_id)
                    wanted = expected_instances(dag_id, count)
                    if ran != wanted:
                        raise RuntimeError(f"{dag_id}: expected task instances {wanted}, the run has {ran}")
                    instances[dag_id] = ran

    table = Table(["DAG", "Task instances", "Wall s (median)", "Spread", "Minus fixed cost", "s per image"])
    fixed = summarize(walls[FIXED_COST_DAG]).median if walls[FIXED_COST_DAG] else None
    for label, dag_id, _ in DAGS:
        planned = len(expected_instances(dag_id, count))
        if not walls[dag_id]:
            table.add(label, planned, "not run", "", "", "")
            continue
        stats = summarize(walls[dag_id])
        net = stats.median - fixed if fixed is not None else None
        per_image = f"{net / count:.3f}" if net is not None and dag_id != FIXED_COST_DAG else ""
        table.add(
            label,
            len(instances[dag_id]),
            f"{stats.median:.1f}",
            stats.spread("{:.1f}"),
            "" if dag_id == FIXED_COST_DAG or net is None else f"{net:.1f}",
            per_image,
        )
    notes = []
    if migrate_seconds is not None:
        notes.append(
            f"`airflow db migrate` of the throw-away SQLite database took {migrate_seconds:.1f} s (once)."
        )
    batch, mapped = walls["bench_upload_batch"], walls["bench_upload_mapped"]
    if batch and mapped and fixed is not None:
        b, m = summarize(batch).median - fixed, summarize(mapped).median - fixed
        notes.append(
            f"Above the fixed cost of the command, {count} mapped task instances took {m:.1f} s "
            f"({m / count:.2f} s per image: each instance is a separate task run, with its own hook, "
            "session, TLS handshake, XCom pushes and state updates) against "
            f"{b:.1f} s for the batch ({workers} workers over one session): "
            f"{m / b:.0f}x."
            if b > 0
            else "The batch task ran within the fixed cost of the command."
        )
    latency_ms = float(size["latency"]) * 1000
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            f"{count} PNG images of about 50 KB, the emulator over HTTPS with {latency_ms:g} ms "
            "latency. `airflow dags test <dag_id> -f <file>` in a throw-away `AIRFLOW_HOME` (SQLite, "
            f"migrated once), wall time of the whole command; the batch task uses max_workers={workers}, the "
            "mapped task max_workers=1 per instance (`dags test` runs the instances one after another, "
            "in one process, as a single-slot worker would). The emulator's log must show every upload "
            "answered 200, the log `state=success`, and the metadata database one successful task "
            "instance per task (per image for the mapped one); the task instances column counts "
            f"them there. Rounds: {repeats}, interleaved."
        ),
        params=dict(size),
        tables=[table],
        notes=notes,
        data={
            "walls": walls,
            "migrate_seconds": migrate_seconds,
            "shapes": shapes,
            "task_instances": {dag_id: [list(row) for row in rows] for dag_id, rows in instances.items()},
        },
        seconds=time.perf_counter() - started,
    )


def expected_instances(dag_id: str, count: int) -> list[tuple[str, int, str]]:
    """Return the task instances a successful run of one of :data:`DAGS` has.

    :param dag_id: the DAG.
    :param count: images in the folder.
    :return: ``(task_id, map_index, state)`` sorted.
    """
    if dag_id == "bench_upload_mapped":
        return [("upload", index, "success") for index in range(count)]
    if dag_id == "bench_upload_batch":
        return [("upload", -1, "success")]
    return sorted((task, -1, "success") for task in ("upload_banner", "upload_catalogue", "verify_catalogue"))


def task_instances(database: Path, dag_id: str) -> list[tuple[str, int, str]]:
    """Return the task instances of the latest run of a DAG, from Airflow's SQLite database.

    :param database: the ``airflow.db`` file.
    :param dag_id: the DAG.
    :return: ``(task_id, map_index, state)`` sorted.
    """
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT ti.task_id, ti.map_index, ti.state FROM task_instance AS ti "
            "WHERE ti.dag_id = ? AND ti.run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (dag_id, dag_id),
        ).fetchall()
    return sorted((str(task), int(index), str(state)) for task, index, state in rows)


def _check_call(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as out:
        completed = subprocess.run(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=DAGS_TEST_TIMEOUT, check=False
        )
    if completed.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[1:3])} failed (exit {completed.returncode}):\n{tail}")
