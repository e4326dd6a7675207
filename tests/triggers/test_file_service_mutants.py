"""The trigger: its repr (every argument, secure URLs redacted), defaults, first wait, deadline, log lines."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from airflow.triggers.base import TriggerEvent

from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from tests.triggers.clock import START, FakeClock
from tests.verification.records import PNG, SECURITY_TOKEN, SIGNATURE, make_record
from tests.verification.storage import Storage

OK_206 = {"Content-Range": f"bytes 0-0/{len(PNG)}", "Content-Type": "image/png"}
LOGGER = "capillary.test.trigger"
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


@pytest.fixture
def log(mocker: Any, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The trigger's log (structlog), routed to a stdlib logger caplog sees."""
    mocker.patch.object(CapillaryFileTrigger, "log", new=logging.getLogger(LOGGER))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def run(trigger: CapillaryFileTrigger) -> list[TriggerEvent]:
    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def test_defaults() -> None:
    kwargs = CapillaryFileTrigger(records=[], deadline=START).serialize()[1]
    assert (kwargs["check"], kwargs["conn_id"], kwargs["poll_interval"]) == (
        "size",
        "capillary_default",
        30.0,
    )
    assert (kwargs["max_consecutive_failures"], kwargs["max_workers"]) == (10, 8)
    assert CapillaryFileTrigger(records=[], deadline=START, max_workers=1).max_workers == 1
    assert CapillaryFileTrigger(records=[], deadline=START, max_workers=0).max_workers == 1


def test_times_are_stored_as_floats() -> None:
    kwargs = CapillaryFileTrigger(records=[], deadline=1_000, poll_interval=5, not_before=990).serialize()[1]
    assert [(kwargs[k], type(kwargs[k])) for k in ("deadline", "poll_interval", "not_before")] == [
        (1_000.0, float),
        (5.0, float),
        (990.0, float),
    ]


@pytest.mark.parametrize(("offset", "sleeps"), [(0.0, []), (0.5, [0.5])], ids=["now", "half-a-second"])
def test_the_first_check_waits_for_any_positive_delay(
    storage: Storage, clock: FakeClock, log: pytest.LogCaptureFixture, offset: float, sleeps: list[float]
) -> None:
    storage.script("hero.png", httpx.Response(206, headers=OK_206))
    trigger = CapillaryFileTrigger(records=[make_record()], deadline=START + 60, not_before=START + offset)
    assert run(trigger) == [TriggerEvent({"status": "success", "verified": 1})]
    assert clock.sleeps == sleeps
    assert lines(log) == ["all 1 file(s) are served intact"]


def test_a_round_runs_while_any_time_is_left(storage: Storage, clock: FakeClock) -> None:
    storage.script("hero.png", httpx.Response(404), repeat_last=True)
    trigger = CapillaryFileTrigger(records=[make_record()], deadline=START + 10.5, poll_interval=5)
    [event] = run(trigger)
    assert event.payload["status"] == "timeout"
    assert clock.sleeps == [5.0, 5.0, 0.5]
    assert len(storage.requests) == 3  # at 0, 5 and 10 s: half a second was still left


def test_the_timeout_and_waiting_lines_list_ten_names_and_five_answers(
    storage: Storage, clock: FakeClock, log: pytest.LogCaptureFixture
) -> None:
    names = [f"f{i:02d}.png" for i in range(11)]
    for name in names:
        storage.script(name, httpx.Response(404), repeat_last=True)
    trigger = CapillaryFileTrigger(
        records=[make_record(n) for n in names], deadline=START + 2, poll_interval=5
    )
    answers = "; ".join(
        f"'f{i:02d}.png' (namespace rewards): the storage answered HTTP 404; waiting" for i in range(5)
    )
    listed = ", ".join(repr(n) for n in names[:10])
    assert run(trigger) == [
        TriggerEvent(
            {
                "status": "timeout",
                "message": f"11 file(s) not verified before the sensor's timeout: {listed}; "
                f"last answers: {answers}",
            }
        )
    ]
    assert lines(log) == [f"11 of 11 file(s) not verified yet; next check in 2.0 s: {answers}"]


def test_repr_names_the_class_and_every_argument_with_the_secure_url_redacted() -> None:
    record = make_record()
    trigger = CapillaryFileTrigger(
        records=[record],
        deadline=1.0,
        check="size",
        conn_id="cap",
        poll_interval=7,
        max_consecutive_failures=None,
        max_workers=2,
    )
    redacted = {
        **record,
        "secure_file_path": record["secure_file_path"]
        .replace(f"X-Amz-Security-Token={SECURITY_TOKEN}", "X-Amz-Security-Token=***")
        .replace(
            "X-Amz-Credential=ASIAEXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request", "X-Amz-Credential=***"
        )
        .replace(f"X-Amz-Signature={SIGNATURE}", "X-Amz-Signature=***"),
    }

    text = repr(trigger)

    assert text == (
        f"<airflow_capillary.triggers.file_service.CapillaryFileTrigger records={[redacted]!r}, "
        "deadline=1.0, check=size, conn_id=cap, poll_interval=7.0, max_consecutive_failures=None, "
        "verified=[], max_workers=2, not_before=None>"
    )
    assert SECURITY_TOKEN not in text
    assert SIGNATURE not in text
    # The trigger itself keeps the URL it must fetch.
    assert trigger.serialize()[1]["records"] == [record]
