"""Restarts (issue 7, item 5): kill -9 the emulator in the middle of a batch, restart it, finish.

The operator uploads a catalogue in a thread through an emulator child process (a little latency
so that uploads are in flight when it dies). Once some files are stored the process gets
SIGKILL, stays down for a moment, and is started again on the same data directory and the same
port. The uploads from the ``HOLD_FROM``-th on are held until the kill, so the batch is still
running when the emulator dies, however the machine schedules the threads. The batch must
complete through the hook's retries (connection refused and reset are retried); every version
stored before the crash must be intact afterwards: same index entry, same bytes on disk, served
by its pre-signed URL.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from capillary_emulator import EmulatorProcess

from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.reliability.conftest import retry_reasons, run_operator, unique_pngs

pytestmark = pytest.mark.integration

FILES = 40
#: Stored files at which the emulator is killed, and how long it stays down.
KILL_AFTER = 12
#: Uploads from this one on (counted as the operator calls the hook) start only after the kill.
HOLD_FROM = 20
#: Time is the behaviour here: the emulator stays down for a while, so that retries meet refused
#: connections before the restart.
DOWN_FOR = 1.0
#: Generous bounds that only end a broken run (a hang) with a failure, never a healthy one.
WAIT = 120.0
#: Retries that outlast the down time plus a restart on a loaded machine (~25 s of attempts).
RETRIES: dict[str, Any] = {
    "max_retries": 50,
    "retry_min_wait": 0.1,
    "retry_max_wait": 0.5,
    "retry_after_max": 0.5,
}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_kill_9_mid_batch_then_restart_on_the_same_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook_log: pytest.LogCaptureFixture
) -> None:
    images = unique_pngs(tmp_path / "catalogue", FILES)
    killed = threading.Event()
    calls = itertools.count()
    upload = CapillaryFileHook.upload

    def held_upload(self: CapillaryFileHook, *args: Any, **kwargs: Any) -> Any:
        if next(calls) >= HOLD_FROM and not killed.wait(WAIT):
            raise AssertionError("the emulator was never killed")
        return upload(self, *args, **kwargs)

    monkeypatch.setattr(CapillaryFileHook, "upload", held_upload)
    emu = EmulatorProcess(tmp_path / "emulator", args=["--latency-ms", "100"]).start()
    try:
        port = emu.port
        monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", emu.connection_uri(timeout="[2, 5]"))
        outcome: dict[str, Any] = {}

        def run_batch() -> None:
            try:
                op = UploadImageOperator(
                    task_id="restart",
                    source=str(tmp_path / "catalogue"),
                    max_workers=4,
                    progress_interval=0,
                    **RETRIES,
                )
                outcome["result"], outcome["pushed"] = run_operator(op)
            except BaseException as exc:
                outcome["error"] = exc

        batch = threading.Thread(target=run_batch, name="batch")
        batch.start()
        wait_until(lambda: len(emu.stored_files()) >= KILL_AFTER, WAIT, f"{KILL_AFTER} stored files")
        before = emu.stored_files()
        emu.kill()  # SIGKILL: no clean shutdown, uploads in flight are cut
        assert not emu.running
        killed.set()  # the held uploads now meet a dead emulator
        time.sleep(DOWN_FOR)
        emu.restart()
        assert emu.port == port  # same port: the connection (and the batch's hook) keeps working
        batch.join(timeout=WAIT)
        assert not batch.is_alive(), "the batch did not finish after the restart"
        assert "error" not in outcome, repr(outcome.get("error"))
        after = emu.stored_files()
        result = outcome["result"]

        # The versions stored before the crash are intact: same index entry, same bytes.
        by_key = {(f["name"], f["version"]): f for f in after}
        for stored in before:
            assert by_key[(stored["name"], stored["version"])] == stored
            data = Path(stored["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == stored["sha256"]
            assert data == images[stored["name"]]
        # The batch completed: every file uploaded, each record matches its stored version and is served.
        assert [r["name"] for r in result] == sorted(images)
        for record in result:
            stored = by_key[(record["name"], record["version"])]
            assert (record["file_handle"], record["sha256"]) == (stored["file_handle"], stored["sha256"])
            assert stored["sha256"] == hashlib.sha256(images[record["name"]]).hexdigest()
        for record in result[:: max(1, FILES // 8)]:  # a sample, served by the restarted process
            response = requests.get(record["secure_file_path"], timeout=10)
            assert (response.status_code, response.content) == (200, images[record["name"]])
    finally:
        emu.kill()
    reasons = retry_reasons(hook_log)
    print(
        f"\nrestart: {len(before)} versions stored before kill -9, {len(after)} after the batch "
        f"({len(after) - FILES} duplicates from answers lost in the crash); "
        f"{len(reasons)} retries while the emulator was down or restarting"
    )
    assert reasons, "no upload was retried: the kill did not hit the batch"
    assert any("ConnectionError" in reason for reason in reasons)
