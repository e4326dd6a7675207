"""CapillaryFileSensor and CapillaryFileTrigger against the emulator's signed downloads, over loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.triggers.base import TriggerEvent
from capillary_emulator import CapillaryEmulator, Fault

from airflow_capillary.exceptions import (
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
)
from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.models import UploadedFile
from airflow_capillary.sensors.file_service import CapillaryFileSensor
from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from airflow_capillary.verification.rounds import CHUNK_SIZE
from tests.verification.records import PNG, without_url

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64 + b"\xff\xd9"
#: A 3 MiB image (twelve 256 KiB chunks and a few bytes), each chunk different (issue 11, S4).
BIG = PNG[:8] + b"".join(hashlib.sha256(bytes([i])).digest() * 8192 for i in range(12)) + b"IEND"


def upload(name: str, body: bytes) -> dict[str, Any]:
    """Upload through the hook, as UploadImageOperator does, and return its XCom record."""
    uploaded = CapillaryFileHook().upload_file(body, file_name=name)
    return {**uploaded.to_dict(), "source": f"/data/{name}"}


def upload_placeholder(emu: CapillaryEmulator, name: str, body: bytes) -> dict[str, Any]:
    """Capillary answers 200 but stores a 0-byte placeholder; the record still says what was sent."""
    emu.push_fault(Fault(action="placeholder", match="upload"))
    md5 = hashlib.md5(b"demo-password").hexdigest()
    response = requests.post(
        f"{emu.base_url}/api_gateway/file-service/rewards/{name}",
        files={"file": (name, body, "image/png")},
        headers={"Authorization": "Basic " + base64.b64encode(f"demo:{md5}".encode()).decode()},
        timeout=10,
    )
    response.raise_for_status()
    uploaded = UploadedFile.from_response(
        response.json(),
        server_timezone="Asia/Kolkata",
        sent_size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    return {**uploaded.to_dict(), "file_size": len(body), "source": f"/data/{name}"}


def sensor(files: Any, **kwargs: Any) -> CapillaryFileSensor:
    return CapillaryFileSensor(task_id="verify", files=files, poke_interval=0.05, timeout=30, **kwargs)


def downloads(emu: CapillaryEmulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests() if r["path"].startswith("/_s3/")]


@pytest.mark.parametrize("check", ["size", "sha256"])
def test_served_files_are_verified(capillary_conn, check):
    records = [upload("hero.png", PNG), upload("banner.jpg", JPEG)]
    assert sensor(records, check=check).execute({}) == without_url(records)
    gets = downloads(capillary_conn)
    assert [(r["method"], r["status"]) for r in gets] == [("GET", 206 if check == "size" else 200)] * 2
    for request in gets:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert "authorization" not in headers
        assert (headers.get("range") == "bytes=0-0") is (check == "size")


def test_waits_through_storage_errors_honouring_retry_after(capillary_conn):
    record = upload("hero.png", PNG)
    capillary_conn.push_faults(
        [
            Fault(status=503, headers={"Retry-After": "1"}, match="download"),
            Fault(action="reset", match="download"),
        ]
    )
    started = time.monotonic()
    assert sensor(record, check="sha256").execute({}) == without_url(record)
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in downloads(capillary_conn)][-1] == 200


def test_placeholder_fails_with_a_mismatch(capillary_conn):
    record = upload_placeholder(capillary_conn, "hero.png", PNG)
    with pytest.raises(
        CapillaryVerificationError,
        match=rf"^'hero.png' \(namespace rewards\) is served with 0 bytes, but its upload record says "
        rf"{len(PNG)} bytes \(Capillary stored a placeholder or a truncated file\); upload it again",
    ):
        sensor(record).execute({})
    assert [r["status"] for r in downloads(capillary_conn)] == [416]


def test_expired_url_fails_at_once(capillary_conn):
    capillary_conn.configure(url_expiry=1)
    record = upload("hero.png", PNG)
    time.sleep(1.05)
    with pytest.raises(
        CapillarySecureUrlExpiredError,
        match=r"^'hero.png' \(namespace rewards\): the storage refused its secure URL \(HTTP 403 "
        r"AccessDenied: Request has expired\); the secure URL lives one hour: re-run the upload task",
    ):
        sensor(record).execute({})


def test_tampered_url_fails_as_refused(capillary_conn):
    record = upload("hero.png", PNG)
    record["secure_file_path"] = record["secure_file_path"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(CapillarySecureUrlExpiredError, match=r"HTTP 403 SignatureDoesNotMatch"):
        sensor(record).execute({})


def test_unreachable_storage_is_bounded(capillary_conn):
    record = upload("hero.png", PNG)
    capillary_conn.push_fault(Fault(action="reset", match="download", times=5))
    with pytest.raises(CapillaryServiceUnavailableError, match=r"giving up after 2 consecutive failures"):
        sensor(record, check="sha256", max_consecutive_failures=2).execute({})


@pytest.mark.parametrize("path", ["sensor", "trigger"])
def test_a_multi_megabyte_image_is_hashed_to_its_last_chunk(capillary_conn, path):
    """A body of more than one chunk over a real socket: verified only if every chunk is hashed."""
    assert len(BIG) > 12 * CHUNK_SIZE
    record = upload("big.png", BIG)
    if path == "sensor":
        assert sensor(record, check="sha256").execute({}) == without_url(record)
    else:
        trigger = CapillaryFileTrigger(
            records=[record], deadline=time.time() + 30, check="sha256", poll_interval=0.05
        )
        assert run_trigger(trigger) == [TriggerEvent({"status": "success", "verified": 1})]
    assert [(r["method"], r["status"]) for r in downloads(capillary_conn)] == [("GET", 200)]


def run_trigger(trigger: CapillaryFileTrigger) -> list[TriggerEvent]:
    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


@pytest.mark.parametrize("check", ["size", "sha256"])
def test_trigger_verifies_served_files(capillary_conn, check):
    records = [upload("hero.png", PNG), upload("banner.jpg", JPEG)]
    trigger = CapillaryFileTrigger(
        records=records, deadline=time.time() + 30, check=check, poll_interval=0.05
    )
    assert run_trigger(trigger) == [TriggerEvent({"status": "success", "verified": 2})]


def test_trigger_reports_a_placeholder(capillary_conn):
    record = upload_placeholder(capillary_conn, "hero.png", PNG)
    trigger = CapillaryFileTrigger(records=[record], deadline=time.time() + 30, poll_interval=0.05)
    (event,) = run_trigger(trigger)
    assert (event.payload["status"], event.payload["kind"], event.payload["status_code"]) == (
        "error",
        "verification",
        416,
    )


def test_tls_with_the_connections_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with CapillaryEmulator(data_dir=tmp_path / "emu", tls=True) as emu:
        assert emu.ca_cert_path is not None
        monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", emu.connection_uri(auth_type="basic"))
        record = upload("hero.png", PNG)
        assert record["secure_file_path"].startswith("https://")
        s = sensor(record, check="sha256", deferrable=False)
        assert s.client_settings.verify == str(emu.ca_cert_path)
        assert s.execute({}) == without_url(record)
