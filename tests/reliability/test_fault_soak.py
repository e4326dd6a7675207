"""Fault soak (issue 7, item 1): 300 uploads through the operator against 20 % random faults.

The emulator draws a fault for 20 % of the upload requests (503 and 429 with ``Retry-After``,
500, a connection reset mid-upload, a delay beyond the client's read timeout, malformed JSON,
HTTP 200 with ``status`` "false", a placeholder stored instead of the file). The operator
(8 workers, one hook) must end with every file uploaded, XCom records that match the bytes the
emulator stores, and no record pointing at a placeholder. The test prints the retries by cause
(from the emulator's request log and from the hook's retry log lines, which must agree) and the
duplicate versions left by answers lost after the service stored the file.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import pytest
from capillary_emulator import EmulatorProcess
from capillary_emulator.faults import DEFAULT_RANDOM_KINDS, DEFAULT_STORE

from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.reliability.conftest import (
    FAST_RETRIES,
    classify,
    format_table,
    retry_reasons,
    retry_waits,
    run_operator,
    unique_pngs,
)

pytestmark = pytest.mark.integration

FILES = 300
WORKERS = 8
FAULT_RATE = 0.2
#: Read timeout of the client, and the delay of the emulator's "timeout" faults (well beyond it).
#: Not shorter: on a loaded 2-core machine a healthy answer can take a second.
READ_TIMEOUT = 1.0
FAULT_DELAY = 2.0
#: The random fault kind of each fault the emulator logs (a random "timeout" is a "delay" fault).
KIND_OF = {"delay": "timeout"}


def test_fault_soak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook_log: pytest.LogCaptureFixture
) -> None:
    images = unique_pngs(tmp_path / "catalogue", FILES)
    # A child process: the emulator does not share the test's GIL with the 8 upload threads.
    # Its random 503/429 answers carry "Retry-After: 1", honoured but capped by retry_after_max.
    args = ["--fault-rate", str(FAULT_RATE), "--fault-seed", "20261126", "--fault-timeout", str(FAULT_DELAY)]
    with EmulatorProcess(tmp_path / "emulator", args=args) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CAPILLARY_DEFAULT",
            emu.connection_uri(auth_type="basic", timeout=f"[5, {READ_TIMEOUT}]"),
        )
        started = time.monotonic()
        operator = UploadImageOperator(
            task_id="soak",
            source=str(tmp_path / "catalogue"),
            max_workers=WORKERS,
            progress_interval=0,
            retry_on_500=True,
            max_retries=12,  # P(13 faults in a row) = 0.2 ** 13: never
            # The random 429s here are faults, not a limit: a generous configured rate keeps the
            # limiter's slow-down on each 429 (x0.9) far above what the emulator serves.
            rate_limit_per_minute=600_000,
            **FAST_RETRIES,
        )
        result, pushed = run_operator(operator)
        elapsed = time.monotonic() - started
        stored = emu.stored_files()
        log = [entry for entry in emu.requests() if entry["kind"] == "upload"]

    # Every file ends uploaded; the records match what the emulator stores.
    assert [r["name"] for r in result] == sorted(images)
    assert pushed["uploaded"] == result
    assert pushed["file_handles"] == {r["name"]: r["file_handle"] for r in result}
    by_version = {(f["name"], f["version"]): f for f in stored}
    for record in result:
        data = images[record["name"]]
        version = by_version[(record["name"], record["version"])]
        assert version["file_handle"] == record["file_handle"]
        assert version["placeholder"] is False, f"{record['name']} points at a placeholder"
        assert record["file_size"] == record["sent_size"] == version["size"] == len(data)
        assert record["sha256"] == version["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["source"] == str(tmp_path / "catalogue" / record["name"])
        # The record's version is the newest the service holds (any later retry would have replaced it).
        assert record["version"] == max(v for (n, v) in by_version if n == record["name"])

    # Retries by cause, from the emulator's log (faults it injected) and the hook's log lines.
    injected = Counter(KIND_OF.get(e["fault"], e["fault"]) for e in log if e["fault"] is not None)
    retried = Counter(classify(reason) for reason in retry_reasons(hook_log))
    rows = [(kind, injected[kind], retried[kind]) for kind in DEFAULT_RANDOM_KINDS]
    rows.append(("total", sum(injected.values()), sum(retried.values())))
    # Versions that exist only because an answer was lost (or refused) after the service stored the file.
    stored_by = Counter(
        KIND_OF.get(e["fault"], e["fault"]) or "none (client gave up)"
        for e in log
        if e["file_size"] is not None
    )
    stored_by["none (client gave up)"] -= FILES  # one healthy answer per file is the version kept
    extra_versions = len(stored) - FILES
    print()
    print(
        format_table(
            f"fault soak: {FILES} files, {WORKERS} workers, {FAULT_RATE:.0%} random faults, "
            f"{len(log)} upload requests in {elapsed:.1f} s",
            ("cause", "faults injected (emulator log)", "retries (hook log lines; 429/503: paused)"),
            rows,
        )
    )
    print(
        format_table(
            f"duplicate versions: {extra_versions} (stored by the service, the answer lost or refused)",
            ("cause", "extra versions"),
            sorted((kind, n) for kind, n in stored_by.items() if n),
        )
    )

    # Every failed attempt was retried or (a 429, a 503 with Retry-After) paused for and sent again,
    # and nothing else was: one request per file, plus one per retry, plus one per pause.
    paused = injected["429"] + injected["503"]  # each answered by a pause and the same request again
    assert retried["429"] == retried["503"] == 0
    assert len(log) == FILES + sum(retried.values()) + paused
    assert retried["other"] == 0, [r for r in retry_reasons(hook_log) if classify(r) == "other"]
    # Every injected fault made the hook retry for that very cause. A loaded machine may add read
    # timeouts of its own (also on a request the emulator meant to fault), never other causes.
    for kind in DEFAULT_RANDOM_KINDS:
        assert injected[kind] > 0, f"the soak never exercised {kind}: {injected}"
        if kind != "timeout":
            assert retried[kind] <= injected[kind], (kind, retried, injected)
    assert retried["timeout"] >= injected["timeout"], (retried, injected)
    assert sum(retried.values()) + paused >= sum(injected.values())
    # Duplicates: exactly the requests the service stored beyond the one version per file kept.
    stored_requests = [e for e in log if e["file_size"] is not None]
    assert extra_versions == len(stored_requests) - FILES
    storing = {kind for kind, stores in DEFAULT_STORE.items() if stores}
    assert all(e["fault"] in storing for e in stored_requests if e["fault"] is not None)
    # Every retry waited within the connection's caps, the Retry-After: 1 of the 503/429 answers
    # included (capped by retry_after_max): what keeps the soak short, counted rather than timed.
    cap = max(FAST_RETRIES["retry_max_wait"], FAST_RETRIES["retry_after_max"])
    waits = retry_waits(hook_log)
    assert len(waits) == sum(retried.values())
    assert [w for w in waits if w > round(cap, 1)] == []


def test_secrets_masker_does_not_grow_with_uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each upload must not add patterns to Airflow's secrets masker.

    The masker rebuilds one alternation regex of every registered secret on each new one, and
    runs it over every log line: registering each ``secureFilePath`` (or its per-URL signature)
    makes a batch quadratic. Before 99271a4 every upload cost more than the one before, and the
    soak above did not finish in minutes.
    """
    from airflow.sdk.log import _secrets_masker
    from capillary_emulator import CapillaryEmulator

    from airflow_capillary.hooks.file_service import CapillaryFileHook

    images = unique_pngs(tmp_path / "catalogue", 20)
    with CapillaryEmulator(data_dir=tmp_path / "emulator") as emu:
        monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", emu.connection_uri(auth_type="basic"))
        hook = CapillaryFileHook()
        hook.upload_file(tmp_path / "catalogue" / "img-0000.png")  # credentials registered once
        before = len(_secrets_masker().patterns)
        for name in list(images)[1:]:
            hook.upload_file(tmp_path / "catalogue" / name)
        grown = len(_secrets_masker().patterns) - before
    assert grown == 0, f"{len(images) - 1} uploads added {grown} patterns to the secrets masker"
