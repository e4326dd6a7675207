"""Kills mutmut survivors of sensors/file_service.py: its log lines, intervals, deferral and events."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import jinja2
import pytest

from airflow_capillary.exceptions import CapillaryError
from airflow_capillary.sensors import file_service
from airflow_capillary.sensors.file_service import AirflowSensorTimeout, CapillaryFileSensor
from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from tests.verification.records import PNG, make_record, without_url
from tests.verification.storage import Storage

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import TaskDeferred  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[attr-defined,no-redef,unused-ignore]

from airflow.sdk import BaseSensorOperator

LOGGER = "capillary.test.sensor"
OK_206 = {"Content-Range": f"bytes 0-0/{len(PNG)}", "Content-Type": "image/png"}
CONN = {
    "conn_type": "capillary",
    "host": "https://eucrm.cc.capillarytech.com",
    "login": "till.user",
    "password": "till-password",
}


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(CONN))
    monkeypatch.setenv("AIRFLOW_CONN_STORAGE_CONN", json.dumps(CONN))


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Storage:
    return Storage(monkeypatch)


@pytest.fixture
def log(mocker: Any, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The sensor's log (structlog in the task SDK), routed to a stdlib logger caplog sees."""
    mocker.patch.object(CapillaryFileSensor, "log", new=logging.getLogger(LOGGER))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_the_log_of_a_verification_that_waits_then_succeeds(
    storage: Storage, log: pytest.LogCaptureFixture
) -> None:
    names = [f"f{i}.png" for i in range(6)]
    for name in names:
        storage.script(name, httpx.Response(404), httpx.Response(206, headers=OK_206))
    records = [make_record(name) for name in names]
    sensor = CapillaryFileSensor(task_id="verify", files=records, poke_interval=0, max_workers=1)
    # poke() prepares by itself when execute() did not.
    assert sensor.poke({}).is_done is False
    done = sensor.poke({})
    assert done.is_done is True
    assert done.xcom_value == without_url(records)
    waits = "; ".join(
        f"'f{i}.png' (namespace rewards): the storage answered HTTP 404; waiting" for i in range(5)
    )
    assert lines(log) == [
        "verifying 6 file(s) with the size check (connection capillary_default); 0 unchanged, passed through",
        f"6 of 6 file(s) not verified yet: {waits}",
        "all 6 file(s) are served intact",
    ]


def test_the_prepare_line_names_the_check_and_connection(
    storage: Storage, log: pytest.LogCaptureFixture
) -> None:
    storage.script("hero.png", httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG))
    sensor = CapillaryFileSensor(
        task_id="verify",
        files=make_record(),
        check="sha256",
        capillary_conn_id="storage_conn",
        poke_interval=0,
    )
    assert sensor.execute({}) == without_url(make_record())
    assert lines(log)[0] == (
        "verifying 1 file(s) with the sha256 check (connection storage_conn); 0 unchanged, passed through"
    )


def test_the_next_poke_interval_is_the_base_sensors_without_retry_after(
    storage: Storage, log: pytest.LogCaptureFixture
) -> None:
    sensor = CapillaryFileSensor(
        task_id="verify", files=make_record(), poke_interval=60, timeout=100_000, exponential_backoff=True
    )

    def base() -> float:
        return BaseSensorOperator._get_next_poke_interval(sensor, 1234.5, lambda: 10.0, 5)

    # Before any poke (no state yet) and after a poke that got no Retry-After.
    assert sensor._get_next_poke_interval(1234.5, lambda: 10.0, 5) == base()
    storage.script("hero.png", httpx.Response(404))
    sensor.poke({})
    assert sensor._get_next_poke_interval(1234.5, lambda: 10.0, 5) == base()


def test_a_retry_after_equal_to_the_interval_is_not_logged(
    storage: Storage, log: pytest.LogCaptureFixture
) -> None:
    storage.script("hero.png", httpx.Response(503, headers={"Retry-After": "45"}), repeat_last=True)
    sensor = CapillaryFileSensor(task_id="verify", files=make_record(), poke_interval=45, timeout=100)
    sensor.poke({})
    log.clear()
    assert sensor._get_next_poke_interval(0.0, lambda: 10.0, 1) == 45
    assert lines(log) == []
    sensor.poke_interval = 5
    assert sensor._get_next_poke_interval(0.0, lambda: 10.0, 1) == 45.0
    assert lines(log) == ["the storage asked to wait 45.0 s (Retry-After)"]


def test_the_deferral_hands_over_every_setting(storage: Storage, mocker: Any) -> None:
    mocker.patch.object(file_service.time, "time", return_value=1_000.0)
    storage.script("hero.png", httpx.Response(404))
    record = make_record()
    sensor = CapillaryFileSensor(
        task_id="verify",
        files=[record],
        deferrable=True,
        capillary_conn_id="storage_conn",
        check="sha256",
        poke_interval=7,
        timeout=300,
        max_consecutive_failures=3,
        max_workers=2,
    )
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    trigger = info.value.trigger
    assert isinstance(trigger, CapillaryFileTrigger)
    assert trigger.serialize()[1] == {
        "records": [record],
        "deadline": 1_300.0,
        "check": "sha256",
        "conn_id": "storage_conn",
        "poll_interval": 7.0,
        "max_consecutive_failures": 3,
        "verified": [],
        "max_workers": 2,
        "not_before": 1_007.0,
    }


def test_a_timeout_event_without_a_message(log: pytest.LogCaptureFixture) -> None:
    sensor = CapillaryFileSensor(task_id="verify", files=[])
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor.execute_complete({}, {"status": "timeout"})
    assert str(info.value) == "Sensor has timed out: "


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"status": "error", "kind": "nope", "message": "x"},
            "unexpected error event from CapillaryFileTrigger: "
            "{'status': 'error', 'kind': 'nope', 'message': 'x'}",
        ),
        (
            {"status": "success", "verified": "2"},
            "unexpected success event from CapillaryFileTrigger: {'status': 'success', 'verified': '2'}",
        ),
    ],
    ids=["error", "success"],
)
def test_a_malformed_event_is_quoted(event: dict[str, Any], message: str) -> None:
    with pytest.raises(CapillaryError) as info:
        CapillaryFileSensor(task_id="verify", files=[]).execute_complete({}, event)
    assert str(info.value) == message


def test_execute_complete_logs_the_count(log: pytest.LogCaptureFixture) -> None:
    records = [make_record("a.png"), make_record("b.png")]
    sensor = CapillaryFileSensor(task_id="verify", files=records)
    assert sensor.execute_complete({}, {"status": "success", "verified": 2}) == without_url(records)
    assert lines(log) == ["all 2 file(s) are served intact"]


def test_rendering_uses_the_jinja_environment_it_is_given(storage: Storage) -> None:
    env = jinja2.Environment()
    env.filters["shout"] = str.upper
    record = make_record()
    sensor = CapillaryFileSensor(task_id="verify", files=[{**record, "namespace": "{{ 'rewards' | shout }}"}])
    sensor.render_template_fields({}, env)
    assert sensor.files[0]["namespace"] == "REWARDS"
