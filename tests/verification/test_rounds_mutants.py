"""Planted bug S4 of issue 11: the body is hashed to its end, in the sensor and in the trigger.

The probe reads a served body in chunks of 256 KiB. Every other test serves a body smaller than
one chunk, so a loop that stopped after its first chunk passed them all. Here the image is
3 MiB and 1 byte (13 chunks, the last one a single byte): its sha256 verifies only if every
chunk is fed to the judge, and a body that differs in its last byte only must fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from typing import Any

import httpx
import pytest
from airflow.triggers.base import TriggerEvent

from airflow_capillary.exceptions import CapillaryVerificationError
from airflow_capillary.sensors.file_service import CapillaryFileSensor
from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from tests.verification.records import make_record
from tests.verification.storage import Storage

#: PNG magic, then 3 MiB of a pattern that differs chunk by chunk, then one last byte.
BIG = b"\x89PNG\r\n\x1a\n" + b"".join(hashlib.sha256(bytes([i])).digest() * 8192 for i in range(12)) + b"!"
CORRUPT = BIG[:-1] + b"?"
MISMATCH = (
    f"'big.png' (namespace rewards) is served with sha256 {hashlib.sha256(CORRUPT).hexdigest()}, but the "
    f"uploaded bytes had sha256 {hashlib.sha256(BIG).hexdigest()}; the stored file is corrupt: upload it "
    "again (re-run the upload task)"
)
CONN = {
    "conn_type": "capillary",
    "host": "https://eucrm.cc.capillarytech.com",
    "login": "till.user",
    "password": "till-password",
}


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(CONN))


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Storage:
    return Storage(monkeypatch)


def served(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "image/png"}, content=body)


def trigger_events(record: dict[str, Any]) -> list[TriggerEvent]:
    trigger = CapillaryFileTrigger(
        records=[record], deadline=time.time() + 3600, check="sha256", max_consecutive_failures=1
    )

    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def test_the_body_is_bigger_than_twelve_chunks() -> None:
    assert len(BIG) == 12 * 256 * 1024 + 9


def test_sensor_verifies_the_sha256_of_a_3_mib_image(storage: Storage) -> None:
    record = make_record("big.png", body=BIG)
    storage.script("big.png", served(BIG))

    sensor = CapillaryFileSensor(task_id="verify", files=record, check="sha256", poke_interval=0)

    assert sensor.execute({}) == {**record, "secure_file_path": None}
    assert len(storage.requests) == 1


def test_sensor_fails_a_3_mib_image_that_differs_in_its_last_byte(storage: Storage) -> None:
    record = make_record("big.png", body=BIG)
    storage.script("big.png", served(CORRUPT))

    sensor = CapillaryFileSensor(task_id="verify", files=record, check="sha256", poke_interval=0)

    with pytest.raises(CapillaryVerificationError, match=f"^{re.escape(MISMATCH)}$"):
        sensor.execute({})


def test_trigger_verifies_the_sha256_of_a_3_mib_image(storage: Storage) -> None:
    storage.script("big.png", served(BIG))

    assert trigger_events(make_record("big.png", body=BIG)) == [
        TriggerEvent({"status": "success", "verified": 1})
    ]


def test_trigger_fails_a_3_mib_image_that_differs_in_its_last_byte(storage: Storage) -> None:
    storage.script("big.png", served(CORRUPT))

    assert trigger_events(make_record("big.png", body=BIG)) == [
        TriggerEvent(
            {
                "status": "error",
                "kind": "verification",
                "message": MISMATCH,
                "file_name": "big.png",
                "namespace": "rewards",
                "status_code": 200,
            }
        )
    ]
