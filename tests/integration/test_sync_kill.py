"""SIGKILL of a real ``airflow tasks test`` mid-batch, then a re-run: nothing uploaded is lost.

A batch of 40 images syncs with a manifest that checkpoints every 5 uploads, at 2 workers, against
the emulator (in a thread of this process, with latency so that the batch takes a few seconds).
When the emulator has stored 17 of them, the task's whole process group is killed with SIGKILL:
no ``on_kill``, no ``finally``. The manifest then holds what the last checkpoint wrote (an atomic
rename: never half a document). The re-run uploads exactly the images the manifest does not hold,
and the duplicate versions (uploads that reached Capillary after the last checkpoint) are counted:
at most ``checkpoint - 1`` recorded but not yet written, plus one in flight per worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from capillary_emulator import CapillaryEmulator

from tests.operators.images import write_images

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
DAG_ID = "sync_kill"
NAMES = [f"reward-{i:02d}.png" for i in range(40)]
CHECKPOINT = 5
WORKERS = 2
#: Stored uploads after which the task is killed (not a multiple of CHECKPOINT).
KILL_AFTER = 17
#: Longest one Airflow command may take (seconds).
COMMAND_TIMEOUT = 240

DAG_SOURCE = f'''
import os

import pendulum
from airflow.sdk import DAG

from airflow_capillary.operators.upload_image import UploadImageOperator

with DAG(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    UploadImageOperator(
        task_id="upload",
        source=os.environ["SYNC_IMAGES"],
        manifest=os.environ["SYNC_MANIFEST"],
        max_workers={WORKERS},
        manifest_checkpoint_uploads={CHECKPOINT},
        manifest_checkpoint_seconds=3600,
        progress_interval=1,
    )
'''


def uploads(emu: CapillaryEmulator) -> list[str]:
    """The file names of the upload requests the emulator received, in order."""
    return [entry["path"].rsplit("/", 1)[-1] for entry in emu.requests() if entry["kind"] == "upload"]


def settled_upload_count(emu: CapillaryEmulator) -> int:
    """The number of upload requests once the killed task's last ones are in and answered.

    Requests the task had sent before SIGKILL can reach the emulator's handler a little later on
    a loaded machine (and those cut off by the kill are never answered): wait until no new one
    came in across three checks half a second apart, so that none is counted as the re-run's.
    """
    counts: list[int] = []
    for _ in range(120):
        counts.append(len(uploads(emu)))
        if len(counts) >= 3 and counts[-3:] == [counts[-1]] * 3:
            return counts[-1]
        time.sleep(0.5)
    raise AssertionError(f"the emulator's upload requests never settled: {counts[-5:]}")


def manifest_names(manifest: Path) -> set[str]:
    return {key.split("/", 1)[1] for key in json.loads(manifest.read_text())["entries"]}


def test_sigkill_mid_batch_then_rerun_uploads_exactly_what_is_missing(tmp_path: Path) -> None:
    images, manifest, dags = tmp_path / "images", tmp_path / "state" / "rewards.json", tmp_path / "dags"
    write_images(images, NAMES)
    dags.mkdir()
    (dags / "sync_kill.py").write_text(DAG_SOURCE)
    with CapillaryEmulator(data_dir=tmp_path / "emulator", latency=0.15) as emu:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_uri(auth_type="basic"),
            "PYTHONPATH": str(REPO_ROOT),
            "SYNC_IMAGES": str(images),
            "SYNC_MANIFEST": str(manifest),
        }
        subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
        command = [str(AIRFLOW), "tasks", "test", DAG_ID, "upload"]
        log = (tmp_path / "killed.log").open("w")
        task = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            while len(emu.stored_files()) < KILL_AFTER:
                assert task.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the batch did not get going"
                time.sleep(0.01)
        finally:
            os.killpg(task.pid, signal.SIGKILL)
            task.wait(30)
            log.close()
        assert task.returncode == -signal.SIGKILL
        recorded = manifest_names(manifest)  # what the last checkpoint wrote before the kill
        assert len(recorded) % CHECKPOINT == 0  # whole checkpoints only: never half a document
        assert KILL_AFTER - CHECKPOINT - WORKERS < len(recorded) < len(NAMES)  # killed mid-batch
        killed_run = settled_upload_count(emu)

        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        again = uploads(emu)[killed_run:]
        stored = Counter(f["name"] for f in emu.stored_files())

    # The re-run uploads exactly what the manifest did not hold, each once.
    assert Counter(again) == Counter(set(NAMES) - recorded)
    # Duplicates: the uploads that reached Capillary after the last checkpoint, counted.
    duplicates = sorted(name for name, versions in stored.items() if versions > 1)
    assert all(stored[name] == 2 for name in duplicates)
    assert len(duplicates) <= CHECKPOINT - 1 + WORKERS, duplicates
    assert set(duplicates) <= set(NAMES) - recorded
    print(
        f"killed after {killed_run} upload requests, manifest held {len(recorded)}, duplicates {duplicates}"
    )
    assert sorted(stored) == NAMES
    assert manifest_names(manifest) == set(NAMES)
    entries = json.loads(manifest.read_text())["entries"]
    assert {entries[f"rewards/{name}"]["version"] for name in duplicates} <= {2}
