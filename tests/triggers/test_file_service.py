"""CapillaryFileTrigger: serialization, exact events, a sleep on every loop path, deadline, failure bound."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from airflow.triggers.base import TriggerEvent

from airflow_capillary import _redact
from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from airflow_capillary.verification.storage import ClientSettings
from tests.triggers.clock import START
from tests.verification.records import PNG, POLICY, SECURITY_TOKEN, SIGNATURE, make_record, unchanged
from tests.verification.storage import Storage

SIZE = len(PNG)
OK_206 = {"Content-Range": f"bytes 0-0/{SIZE}", "Content-Type": "image/png"}
EXPIRED_XML = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
WHERE = "'hero.png' (namespace rewards)"
CONN: dict[str, Any] = {
    "conn_type": "capillary",
    "host": "https://eucrm.cc.capillarytech.com",
    "login": "till.user",
    "password": "till-password",
    "extra": {"timeout": [4, 20]},
}
SUCCESS = TriggerEvent({"status": "success", "verified": 1})


def set_connection(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = {**CONN, "extra": {**CONN["extra"], **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(conn))


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch)


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Storage:
    return Storage(monkeypatch)


def run(trigger: CapillaryFileTrigger) -> list[TriggerEvent]:
    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def make_trigger(records: list[dict[str, Any]], **kwargs: Any) -> CapillaryFileTrigger:
    params: dict[str, Any] = {"deadline": START + 3600, "poll_interval": 5.0, "max_consecutive_failures": 3}
    return CapillaryFileTrigger(records=records, **{**params, **kwargs})


def test_serialize_round_trip_is_json_safe():
    record = make_record()
    trigger = CapillaryFileTrigger(
        records=[record],
        deadline=START,
        check="sha256",
        conn_id="cap",
        poll_interval=7,
        max_consecutive_failures=None,
        verified=(0,),
        max_workers=2,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_capillary.triggers.file_service.CapillaryFileTrigger"
    assert kwargs == {
        "records": [record],
        "deadline": START,
        "check": "sha256",
        "conn_id": "cap",
        "poll_interval": 7.0,
        "max_consecutive_failures": None,
        "verified": [0],
        "max_workers": 2,
        "not_before": None,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert CapillaryFileTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)


def test_waits_through_404_then_succeeds_with_exact_request(storage, clock):
    record = make_record()
    storage.script("hero.png", httpx.Response(404), httpx.Response(206, headers=OK_206, content=b"\x89"))
    assert run(make_trigger([record])) == [SUCCESS]
    assert clock.sleeps == [5.0]
    request = storage.requests[0]
    assert (request.method, str(request.url)) == ("GET", record["secure_file_path"])
    assert request.headers["Range"] == "bytes=0-0"
    assert "Authorization" not in request.headers
    assert not any(h.lower().startswith("x-cap") for h in request.headers)


@pytest.mark.parametrize(
    ("not_before", "sleeps"),
    [(None, []), (START + 9.0, [9.0]), (START - 1.0, [])],
    ids=["none", "later", "past"],
)
def test_first_check_waits_until_not_before(storage, clock, not_before, sleeps):
    storage.script("hero.png", httpx.Response(206, headers=OK_206, content=b"\x89"))
    assert run(make_trigger([make_record()], not_before=not_before)) == [SUCCESS]
    assert clock.sleeps == sleeps
    assert len(storage.requests) == 1


def test_a_not_before_past_the_deadline_waits_until_the_deadline_and_times_out(storage, clock):
    trigger = make_trigger([make_record()], not_before=START + 10_000.0)
    assert run(trigger) == [
        TriggerEvent(
            {
                "status": "timeout",
                "message": "1 file(s) not verified before the sensor's timeout: 'hero.png'; no check ran "
                "before it",
            }
        )
    ]
    assert clock.sleeps == [trigger.deadline - START]
    assert storage.requests == []  # a check after the deadline could only be a late success


def test_sha256_mode_reads_the_whole_body(storage, clock):
    record = make_record()
    storage.script("hero.png", httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG))
    assert run(make_trigger([record], check="sha256")) == [SUCCESS]
    assert "Range" not in storage.requests[0].headers
    assert clock.sleeps == []


def test_expired_url_is_one_error_event(storage, clock):
    storage.script("hero.png", httpx.Response(403, content=EXPIRED_XML))
    assert run(make_trigger([make_record()])) == [
        TriggerEvent(
            {
                "status": "error",
                "kind": "expired",
                "message": f"{WHERE}: the storage refused its secure URL (HTTP 403 AccessDenied: Request has "
                "expired); the secure URL lives one hour: re-run the upload task to get a fresh one",
                "file_name": "hero.png",
                "namespace": "rewards",
                "status_code": 403,
            }
        )
    ]
    assert clock.sleeps == []


def test_placeholder_is_a_verification_error_event(storage, clock):
    storage.script("hero.png", httpx.Response(416, headers={"Content-Range": "bytes */0"}))
    (event,) = run(make_trigger([make_record()]))
    assert event.payload["kind"] == "verification"
    assert event.payload["message"] == (
        f"{WHERE} is served with 0 bytes, but its upload record says {SIZE} bytes (Capillary stored a "
        "placeholder or a truncated file); upload it again (re-run the upload task)"
    )


@pytest.mark.parametrize(
    "answers",
    [
        [httpx.Response(404)] * 3,
        [httpx.Response(429), httpx.Response(500), httpx.Response(503)],
        [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset")],
        [httpx.Response(404), httpx.ConnectError("refused"), httpx.Response(502)],
    ],
    ids=["404s", "429-5xx", "connection-errors", "mixed"],
)
def test_every_waiting_round_sleeps_once(storage, clock, answers):
    storage.script("hero.png", *answers, httpx.Response(206, headers=OK_206))
    (event,) = run(make_trigger([make_record()], max_consecutive_failures=None))
    assert event.payload["status"] == "success"
    assert len(storage.requests) == 4
    assert clock.sleeps == [5.0, 5.0, 5.0]


def test_retry_after_lengthens_the_wait_up_to_the_cap(storage, clock):
    storage.script(
        "hero.png",
        httpx.Response(503, headers={"Retry-After": "45"}),
        httpx.Response(503, headers={"Retry-After": "500"}),
        httpx.Response(206, headers=OK_206),
    )
    run(make_trigger([make_record()]))
    assert clock.sleeps == [45.0, 120.0]  # 120: the hook's default retry_after_max


def test_deadline_is_wall_clock_and_yields_one_timeout_event(storage, clock):
    storage.script("hero.png", httpx.Response(404), repeat_last=True)
    events = run(make_trigger([make_record()], deadline=START + 12, poll_interval=5))
    assert events == [
        TriggerEvent(
            {
                "status": "timeout",
                "message": "1 file(s) not verified before the sensor's timeout: 'hero.png'; last answers: "
                f"{WHERE}: the storage answered HTTP 404; waiting",
            }
        )
    ]
    assert clock.sleeps == [5.0, 5.0, 2.0]
    assert len(storage.requests) == 3  # at 0, 5 and 10 s; none at the deadline itself


def test_consecutive_failures_are_bounded(storage, clock):
    storage.script("hero.png", httpx.ConnectError("[Errno 111] Connection refused"), repeat_last=True)
    (event,) = run(make_trigger([make_record()], max_consecutive_failures=3))
    assert event.payload == {
        "status": "error",
        "kind": "unavailable",
        "message": f"{WHERE}: ConnectError: [Errno 111] Connection refused; giving up after 3 consecutive "
        "failures: check that the storage is reachable from Airflow (proxy, TLS settings of the connection)",
        "file_name": "hero.png",
        "namespace": "rewards",
        "status_code": None,
    }
    assert len(storage.requests) == 3
    assert clock.sleeps == [5.0, 5.0]


def test_only_unverified_files_are_fetched(storage, clock):
    a, b, c = make_record("a.png"), make_record("b.png"), make_record("c.png")
    storage.script("b.png", httpx.Response(404), httpx.Response(206, headers=OK_206))
    storage.script("c.png", httpx.Response(206, headers=OK_206))
    (event,) = run(make_trigger([a, b, c], verified=[0]))
    assert event.payload == {"status": "success", "verified": 3}
    assert [r.url.path for r in storage.requests] == [
        "/rewards/100606/b.png",
        "/rewards/100606/c.png",
        "/rewards/100606/b.png",
    ]


def test_invalid_records_are_an_error_event_without_requests(storage, clock):
    (event,) = run(make_trigger([make_record(url=None)]))
    assert event.payload["kind"] == "invalid"
    assert "include_secure_url=True" in event.payload["message"]
    assert storage.requests == []


def test_unexpected_exception_is_an_internal_error_event_without_the_url(storage, clock):
    storage.script("hero.png", RuntimeError(f"bug near {make_record()['secure_file_path']}"))
    (event,) = run(make_trigger([make_record()]))
    assert event.payload["status"] == "error"
    assert event.payload["kind"] == "internal"
    assert event.payload["message"].startswith("the trigger failed unexpectedly: RuntimeError: bug near ***")
    assert SIGNATURE not in json.dumps(event.payload)


def test_httpx_request_log_line_is_redacted(storage, clock, caplog):
    storage.script("hero.png", httpx.Response(206, headers=OK_206))
    with caplog.at_level("INFO", logger="httpx"):
        run(make_trigger([make_record()]))
    assert "HTTP Request: GET" in caplog.text
    assert SIGNATURE not in caplog.text
    assert "X-Amz-Signature=***" in caplog.text


def test_a_ca_bundle_missing_in_the_triggerer_is_a_config_error_event(storage, clock, tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    trigger = make_trigger([make_record()])
    # The bundle the worker saw, which the triggerer's machine does not have:
    monkeypatch.setattr(trigger, "_client_settings", lambda: ClientSettings(POLICY, verify=str(bundle)))
    bundle.unlink()
    (event,) = run(trigger)
    assert event.payload["kind"] == "config"
    assert event.payload["message"].endswith(
        "does not exist on this machine (with deferrable=True the triggerer needs it too)"
    )
    assert storage.requests == []


def test_a_bad_connection_in_the_triggerer_is_a_config_error_event(storage, clock, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps({**CONN, "host": ""}))
    (event,) = run(make_trigger([make_record()]))
    assert (event.payload["kind"], event.payload["status"]) == ("config", "error")
    assert event.payload["message"].startswith("connection 'capillary_default': host is empty")
    assert storage.requests == []


def test_run_masks_the_urls_session_credentials_in_the_triggerer_process(storage, clock, mocker):
    mocker.patch.object(_redact, "_registered", set())
    register = mocker.patch.object(_redact, "register_secret")
    record = make_record()
    storage.script("hero.png", httpx.Response(206, headers=OK_206, content=b"\x89"))
    (event,) = run(make_trigger([record]))
    assert mocker.call(SECURITY_TOKEN) in register.call_args_list
    assert SECURITY_TOKEN not in json.dumps(event.payload)
    assert SIGNATURE not in json.dumps(event.payload)


def test_unchanged_records_are_not_fetched_and_the_success_counts_the_others(storage, clock):
    same, new = unchanged("a.png"), make_record("b.png", action="new")
    storage.script("b.png", httpx.Response(206, headers=OK_206))
    assert run(make_trigger([same, new])) == [SUCCESS]
    assert [r.url.path for r in storage.requests] == ["/rewards/100606/b.png"]
