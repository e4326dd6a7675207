"""Scale-out on the production-shaped deployment (issue 15): the fan-out example over two workers.

The session's deployment runs the CeleryExecutor with two workers on PostgreSQL and Redis. The
catalogue (200 images) and the chunks' manifests live in a real S3 API (moto's server on
loopback), which every worker reaches through the ``aws_fanout`` connection; the emulator counts
what reaches Capillary. Everything is read back through the REST API or from the emulator.

- Two runs of ``capillary_catalogue_fanout``: 200 uploads over 8 mapped tasks on both workers,
  every version 1; then 0 uploads.
- A worker killed with SIGKILL (its whole session: the worker and its task processes) while its
  upload tasks run: they are retried on the other worker, the run succeeds, every image is in the
  final records, and the extra versions stay within the bound the manifest's checkpoints give.
- PostgreSQL restarted (immediate shutdown, as a crash) while the upload tasks run: the run
  succeeds, and nothing is uploaded twice beyond the same bound.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.airflow_deployment.processes import session_pids
from tests.e2e.airflow_deployment.services import PostgresServer
from tests.operators.images import png_bytes
from tests.s3 import MotoS3Server, S3Bucket

if TYPE_CHECKING:
    from capillary_emulator import CapillaryEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
FANOUT_EXAMPLE = REPO_ROOT / "dags_examples" / "capillary_catalogue_fanout.py"
AWS_CONN = "aws_fanout"
IMAGES = 200
CHUNKS = 8
POOL_SLOTS = 4
WORKERS = ["worker1@capillary-e2e", "worker2@capillary-e2e"]
#: What the fault tests observed, printed in the session's terminal summary (tests/e2e/conftest.py).
FAULT_RESULTS: list[str] = []
#: The copies checkpoint their manifests every 5 uploads: a killed task re-uploads at most that many.
CHECKPOINT_EVERY = 5


def fanout_dag(dag_id: str, *, catalogue: str, manifests: str, payloads: Path) -> str:
    """The example DAG's source with its settings written in (the deployment's env is shared).

    :param dag_id: the copy's DAG id.
    :param catalogue: the catalogue's object-storage prefix.
    :param manifests: the manifests' object-storage prefix.
    :param payloads: where the publish task writes.
    :return: the source.
    """
    source = FANOUT_EXAMPLE.read_text()
    replacements = {
        'dag_id="capillary_catalogue_fanout"': f'dag_id="{dag_id}"',
        # Only the test's runs: a daily schedule would start a run as soon as the DAG is parsed.
        'schedule="@daily"': "schedule=None",
        'os.environ.get("CAPILLARY_CATALOGUE", str(Path(__file__).parent / "data" / "rewards"))': repr(
            catalogue
        ),
        'os.environ.get("CAPILLARY_MANIFESTS", "/tmp/capillary-manifests/fanout")': repr(manifests),
        'os.environ.get("CAPILLARY_PAYLOAD_DIR", "/tmp/capillary-reward-catalogue")': repr(str(payloads)),
        # The emulator has no limit here; keep the per-task limiter from slowing the test down.
        'float(os.environ.get("CAPILLARY_KEY_RATE_LIMIT", "100"))': "6000.0",
        "retry_delay=pendulum.duration(seconds=10)": "retry_delay=pendulum.duration(seconds=2)",
        "manifest_checkpoint_uploads=25,": f"manifest_checkpoint_uploads={CHECKPOINT_EVERY},",
    }
    for old, new in replacements.items():
        assert source.count(old) == 1, f"the example no longer contains {old!r}"
        source = source.replace(old, new)
    return source


@dataclass
class FanoutRun:
    """One finished DAG run and what the emulator and the REST API saw of it."""

    dag_id: str
    run_id: str
    state: str
    uploads: Counter[str]
    chunk_tis: list[dict[str, Any]]
    records: list[dict[str, Any]]
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fanout:
    """The fan-out setting of this module: the deployment, the catalogue and the DAG copies."""

    deployment: AirflowDeployment
    emulator: CapillaryEmulator
    bucket: S3Bucket
    payloads: Path

    def add_catalogue(self, prefix: str, seed: int) -> list[str]:
        """Store ``IMAGES`` distinct PNGs below a prefix of the bucket.

        :param prefix: the key prefix (``catalogue-a/``).
        :param seed: makes this catalogue's bytes differ from the others'.
        :return: the image names.
        """
        names = [f"{prefix.strip('/')}-reward-{i:03d}.png" for i in range(IMAGES)]
        for i, name in enumerate(names):
            self.bucket.put(f"{prefix}{name}", png_bytes(width=1 + i % 7, height=1, seed=seed * 1000 + i))
        return names

    def add_dag(self, dag_id: str, prefix: str) -> None:
        """Add a copy of the example over one catalogue prefix, with manifests of its own.

        :param dag_id: the copy's DAG id.
        :param prefix: the catalogue's key prefix.
        """
        source = fanout_dag(
            dag_id,
            catalogue=self.bucket.uri(prefix, AWS_CONN),
            manifests=self.bucket.uri(f"manifests/{dag_id}/", AWS_CONN),
            payloads=self.payloads,
        )
        self.deployment.add_dag_file(f"{dag_id}.py", source)
        self.deployment.wait_for_dag(dag_id, file_name=f"{dag_id}.py", timeout=120)

    def uploads_of(self, names: list[str]) -> Counter[str]:
        """Count the emulator's stored versions of each of these names.

        :param names: the image names.
        :return: name -> uploads the emulator stored.
        """
        wanted = set(names)
        return Counter(f["name"] for f in self.emulator.stored_files() if f["name"] in wanted)

    def run(
        self,
        dag_id: str,
        names: list[str],
        *,
        during: Callable[[AirflowDeployment, str], dict[str, Any]] | None = None,
    ) -> FanoutRun:
        """Trigger a run, optionally act while it runs, wait for its end and collect what it did.

        :param dag_id: the DAG.
        :param names: the catalogue's names (for the upload counts).
        :param during: called with the deployment and the run id once the run is triggered; what it
            returns lands in :attr:`FanoutRun.notes`.
        :return: the finished run.
        """
        client = self.deployment.client
        run_id = client.trigger_dag_run(dag_id)["dag_run_id"]
        notes = during(self.deployment, run_id) if during is not None else {}
        final = client.wait_for_dag_run(dag_id, run_id, timeout=600)
        tis = client.task_instances(dag_id, run_id)
        chunk_tis = sorted(
            (ti for ti in tis if ti["task_id"] == "upload_chunk"), key=lambda ti: ti["map_index"]
        )
        failed = [ti for ti in tis if ti["state"] not in ("success", "skipped") and ti["try_number"]]
        if final["state"] != "success" or failed:
            logs = [
                f"--- {ti['task_id']}[{ti['map_index']}] ---\n"
                + client.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], map_index=ti["map_index"])[
                    -4000:
                ]
                for ti in failed
            ]
            pytest.fail(f"{dag_id} run {run_id} ended {final['state']}; failed tasks:\n" + "\n".join(logs))
        records = client.xcom(dag_id, run_id, "verify_catalogue", "return_value")
        return FanoutRun(dag_id, run_id, final["state"], self.uploads_of(names), chunk_tis, records, notes)


@pytest.fixture(scope="module")
def fanout(
    airflow_deployment: AirflowDeployment,
    e2e_emulator: CapillaryEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fanout]:
    """The catalogue on a moto S3 server, its connection and the uploads pool, in the deployment.

    :param airflow_deployment: the production-shaped deployment.
    :param e2e_emulator: the emulator behind ``capillary_default``.
    :param tmp_path_factory: pytest's temporary directories.
    :return: the :class:`Fanout` setting.
    """
    with MotoS3Server() as s3:
        client = airflow_deployment.client
        connection = s3.connection()
        client.request(
            "POST",
            "/connections",
            json={
                "connection_id": AWS_CONN,
                "conn_type": connection["conn_type"],
                "login": connection["login"],
                "password": connection["password"],
                "extra": json.dumps(connection["extra"]),
            },
            expect=(201,),
        )
        client.request(
            "POST",
            "/pools",
            json={"name": "capillary_uploads", "slots": POOL_SLOTS, "description": "one API key"},
            expect=(201,),
        )
        yield Fanout(
            airflow_deployment, e2e_emulator, s3.create_bucket("fanout"), tmp_path_factory.mktemp("fp")
        )


def _chunk_sizes(run: FanoutRun, deployment: AirflowDeployment) -> list[int]:
    plan = deployment.client.xcom(run.dag_id, run.run_id, "plan_chunks", "return_value")
    return [len(chunk["source"]) for chunk in plan]


def test_fanout_spreads_over_both_workers_and_the_second_run_uploads_nothing(fanout: Fanout) -> None:
    """200 images in 8 chunks: both workers upload, 200 uploads of version 1, then 0 uploads."""
    names = fanout.add_catalogue("catalogue-a/", seed=1)
    fanout.add_dag("fanout_e2e", "catalogue-a/")

    first = fanout.run("fanout_e2e", names)
    assert first.state == "success"
    assert sum(_chunk_sizes(first, fanout.deployment)) == IMAGES
    assert len(first.chunk_tis) == CHUNKS
    assert {ti["state"] for ti in first.chunk_tis} == {"success"}
    assert sorted({ti["hostname"] for ti in first.chunk_tis}) == WORKERS
    assert {ti["pool"] for ti in first.chunk_tis} == {"capillary_uploads"}
    assert first.uploads == Counter(dict.fromkeys(names, 1))
    assert sorted(r["name"] for r in first.records) == names
    assert {r["version"] for r in first.records} == {1}
    assert {r["action"] for r in first.records} == {"new"}
    # Every chunk's manifest is on the shared storage.
    manifests = fanout.bucket.keys("manifests/fanout_e2e/")
    assert len(manifests) == CHUNKS

    second = fanout.run("fanout_e2e", names)
    assert second.state == "success"
    assert second.uploads == first.uploads  # nothing new reached Capillary
    assert sorted(r["name"] for r in second.records) == names
    assert {r["action"] for r in second.records} == {"unchanged"}
    assert {r["file_handle"] for r in second.records} == {r["file_handle"] for r in first.records}


def _kill_worker_mid_batch(
    fanout: Fanout, victim: str, names: list[str]
) -> Callable[[AirflowDeployment, str], dict[str, Any]]:
    """While the run uploads: wait until ``victim`` runs upload tasks and Capillary has some of
    the catalogue, then SIGKILL the worker's whole session (the worker and its task processes)."""

    def during(deployment: AirflowDeployment, run_id: str) -> dict[str, Any]:
        component = f"celery-{victim.split('@', 1)[0]}"
        deadline = time.monotonic() + 300
        while True:
            tis = deployment.client.task_instances("fanout_kill", run_id)
            running = [
                ti for ti in tis if ti["task_id"] == "upload_chunk" and ti["state"] == "running"
                and ti["hostname"] == victim
            ]  # fmt: skip
            if running and fanout.uploads_of(names).total() >= 10:
                break
            assert time.monotonic() < deadline, "the victim worker never ran an upload task"
            time.sleep(0.3)
        proc = deployment.processes[component]
        pids = session_pids({proc.pid}) if proc.pid is not None else []
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return {"killed_pids": len(pids), "running_on_victim": [ti["map_index"] for ti in running]}

    return during


def test_a_worker_killed_mid_batch_loses_nothing(fanout: Fanout) -> None:
    """SIGKILL of a worker while its uploads run: retried on the other worker, nothing missing."""
    names = fanout.add_catalogue("catalogue-b/", seed=2)
    fanout.add_dag("fanout_kill", "catalogue-b/")
    fanout.emulator.configure(latency=1.0)  # a chunk takes seconds: the kill lands mid-batch
    try:
        run = fanout.run("fanout_kill", names, during=_kill_worker_mid_batch(fanout, WORKERS[0], names))
    finally:
        fanout.emulator.configure(latency=0.0)
        fanout.deployment.restart_component("celery-worker1")
    assert run.notes["killed_pids"] >= 2  # the worker and at least one task process
    assert run.state == "success"
    assert sorted(r["name"] for r in run.records) == names  # no image missing
    retried = [ti for ti in run.chunk_tis if ti["map_index"] in run.notes["running_on_victim"]]
    assert retried
    assert all(ti["try_number"] >= 2 for ti in retried)
    assert {ti["hostname"] for ti in retried} == {WORKERS[1]}
    # Extra versions: at most what was in flight in the killed tasks plus what they uploaded
    # after their last checkpoint (4 threads and one checkpoint interval per killed task).
    extra = sum(run.uploads.values()) - IMAGES
    FAULT_RESULTS.append(
        f"worker kill: {run.notes['killed_pids']} processes killed, chunks {run.notes['running_on_victim']} "
        f"retried on {sorted({ti['hostname'] for ti in retried})}, run {run.state}, "
        f"{sum(run.uploads.values())} uploads for {IMAGES} images ({extra} extra versions)"
    )
    assert min(run.uploads.values()) == 1
    assert 0 <= extra <= len(retried) * (4 + CHECKPOINT_EVERY), run.uploads


def test_postgres_restarted_mid_run(fanout: Fanout, postgres_server: PostgresServer) -> None:
    """The metadata database crashes and comes back while the uploads run: the run completes.

    Airflow's scheduler exits when it cannot reach its database; in production a process
    supervisor (systemd, Kubernetes) starts it again, and so does this test.
    """
    names = fanout.add_catalogue("catalogue-c/", seed=3)
    fanout.add_dag("fanout_pg", "catalogue-c/")
    fanout.emulator.configure(latency=0.5)  # the uploads span seconds: the restart lands among them

    def during(deployment: AirflowDeployment, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 300
        while fanout.uploads_of(names).total() < 20:
            assert time.monotonic() < deadline, "no upload started"
            time.sleep(0.2)
        postgres_server.restart(mode="immediate")
        return {"uploaded_before_restart": fanout.uploads_of(names).total()}

    try:
        with fanout.deployment.supervised() as restarted:
            run = fanout.run("fanout_pg", names, during=during)
    finally:
        fanout.emulator.configure(latency=0.0)
    run.notes["restarted"] = list(restarted)
    assert run.state == "success"
    assert sorted(r["name"] for r in run.records) == names
    extra = sum(run.uploads.values()) - IMAGES
    tries = sorted(ti["try_number"] for ti in run.chunk_tis)
    FAULT_RESULTS.append(
        f"PostgreSQL crash after {run.notes['uploaded_before_restart']} uploads: run {run.state}, "
        f"components restarted {run.notes['restarted']}, "
        f"chunk tries {tries}, {sum(run.uploads.values())} uploads for {IMAGES} images "
        f"({extra} extra versions)"
    )
    assert 0 <= extra <= CHUNKS * (4 + CHECKPOINT_EVERY), run.uploads
