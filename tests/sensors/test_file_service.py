"""CapillaryFileSensor: arguments, pokes, the same XCom in both modes, deferral, execute_complete."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from airflow_capillary import _redact
from airflow_capillary.exceptions import (
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
)
from airflow_capillary.sensors import file_service
from airflow_capillary.sensors.file_service import AirflowSensorTimeout, CapillaryFileSensor
from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from airflow_capillary.verification.storage import ClientSettings, OriginPolicy
from tests.verification.records import PNG, SECURITY_TOKEN, SIGNATURE, make_record, unchanged, without_url
from tests.verification.storage import Storage

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import (  # type: ignore[attr-defined,unused-ignore]
        AirflowRescheduleException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[attr-defined,no-redef,unused-ignore]
        AirflowRescheduleException,
        TaskDeferred,
    )

SIZE = len(PNG)
OK_206 = {"Content-Range": f"bytes 0-0/{SIZE}", "Content-Type": "image/png"}
EXPIRED_XML = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
CONN: dict[str, Any] = {
    "conn_type": "capillary",
    "host": "https://eucrm.cc.capillarytech.com",
    "login": "till.user",
    "password": "till-password",
    "extra": {"timeout": [4, 20]},
}


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(CONN))


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Storage:
    return Storage(monkeypatch)


def sensor(files: Any, **kwargs: Any) -> CapillaryFileSensor:
    return CapillaryFileSensor(task_id="verify", files=files, poke_interval=0, **kwargs)


def test_template_fields_and_defaults():
    s = CapillaryFileSensor(task_id="verify", files=[])
    assert s.template_fields == ("files", "capillary_conn_id")
    assert (s.capillary_conn_id, s.check, s.poke_interval, s.timeout) == (
        "capillary_default",
        "size",
        30,
        3600,
    )
    assert (s.max_consecutive_failures, s.max_workers) == (10, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"check": "md5"}, r"^check must be one of size, sha256, not 'md5'$"),
        (
            {"max_consecutive_failures": 0},
            r"^max_consecutive_failures must be an integer >= 1 or None, not 0$",
        ),
        ({"max_consecutive_failures": True}, r"^max_consecutive_failures must be an integer >= 1 or None"),
        ({"max_workers": 0}, r"^max_workers must be an integer >= 1, not 0$"),
        ({"verify": "sha256"}, r"^CapillaryFileSensor: verify was renamed check$"),
        ({"max_concurrency": 4}, r"^CapillaryFileSensor: max_concurrency was renamed max_workers$"),
    ],
    ids=["check", "failures-zero", "failures-bool", "workers", "old-verify", "old-max-concurrency"],
)
def test_bad_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(CapillaryConfigError, match=message):
        CapillaryFileSensor(task_id="verify", files=[], **kwargs)


def test_client_settings_come_from_the_connection_without_credentials():
    assert sensor([]).client_settings == ClientSettings(
        OriginPolicy("https://eucrm.cc.capillarytech.com"),
        verify=True,
        timeout=(4.0, 20.0),
        proxies={},
        retry_after_max=120.0,
    )


def test_pokes_recheck_only_pending_files_and_send_no_capillary_credentials(storage):
    a, b = make_record("a.png"), make_record("b.png")
    storage.script("a.png", httpx.Response(206, headers=OK_206))
    storage.script("b.png", httpx.Response(404), httpx.Response(206, headers=OK_206))
    s = sensor([a, b])
    s._prepare()
    first = s.poke({})
    assert (first.is_done, first.xcom_value) == (False, None)
    second = s.poke({})
    assert (second.is_done, second.xcom_value) == (True, without_url([a, b]))
    assert sorted(r.url.path for r in storage.requests) == [
        "/rewards/100606/a.png",
        "/rewards/100606/b.png",
        "/rewards/100606/b.png",
    ]
    for request in storage.requests:
        assert request.method == "GET"
        assert str(request.url) in (a["secure_file_path"], b["secure_file_path"])
        assert request.headers["Range"] == "bytes=0-0"
        assert "Authorization" not in request.headers


def test_execute_single_record_returns_one_record(storage):
    record = make_record()
    storage.script("hero.png", httpx.Response(503), httpx.Response(206, headers=OK_206))
    assert sensor(record).execute({}) == without_url(record)


def test_execute_mapped_output_returns_flat_list_in_sha256_mode(storage):
    a, b, c = make_record("a.png"), make_record("b.png"), make_record("c.png")
    for name in ("a.png", "b.png", "c.png"):
        storage.script(name, httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG))
    assert sensor([[a, b], [c]], check="sha256").execute({}) == without_url([a, b, c])
    assert all("Range" not in r.headers for r in storage.requests)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            httpx.Response(403, content=EXPIRED_XML),
            CapillarySecureUrlExpiredError,
            r"^'hero.png' \(namespace rewards\): the storage refused its secure URL \(HTTP 403 "
            r"AccessDenied: Request has expired\); the secure URL lives one hour: re-run the upload task "
            r"to get a fresh one$",
        ),
        (
            httpx.Response(206, headers={**OK_206, "Content-Range": "bytes 0-0/0"}),
            CapillaryVerificationError,
            rf"^'hero.png' \(namespace rewards\) is served with 0 bytes, but its upload record says {SIZE} "
            r"bytes \(Capillary stored a placeholder or a truncated file\); upload it again",
        ),
        (
            httpx.Response(405),
            CapillaryRequestRejectedError,
            r"^'hero.png' \(namespace rewards\): the storage answered HTTP 405 instead of the file$",
        ),
    ],
    ids=["expired", "placeholder", "rejected"],
)
def test_execute_fails_at_once(storage, answer, error, message):
    storage.script("hero.png", answer)
    with pytest.raises(error, match=message) as info:
        sensor(make_record()).execute({})
    assert (info.value.conn_id, info.value.file_name, info.value.namespace) == (
        "capillary_default",
        "hero.png",
        "rewards",
    )
    assert len(storage.requests) == 1


def test_execute_gives_up_after_consecutive_failures(storage):
    storage.script("hero.png", httpx.ConnectError("refused"), repeat_last=True)
    with pytest.raises(CapillaryServiceUnavailableError, match=r"giving up after 2 consecutive failures"):
        sensor(make_record(), max_consecutive_failures=2).execute({})
    assert len(storage.requests) == 2


def test_record_without_secure_url_fails_before_any_request(storage):
    with pytest.raises(CapillaryInvalidInputError, match=r"include_secure_url=True"):
        sensor([make_record(url=None)]).execute({})
    assert storage.requests == []


def test_retry_after_lengthens_the_next_poke_within_the_timeout(storage):
    storage.script("hero.png", httpx.Response(503, headers={"Retry-After": "45"}), repeat_last=True)
    s = CapillaryFileSensor(task_id="verify", files=make_record(), poke_interval=5, timeout=100)
    s._prepare()
    s.poke({})
    assert s._get_next_poke_interval(0.0, lambda: 10.0, 1) == 45.0
    assert s._get_next_poke_interval(0.0, lambda: 80.0, 1) == 20.0
    storage.script("hero.png", httpx.Response(404), repeat_last=True)
    s.poke({})
    assert s._get_next_poke_interval(0.0, lambda: 10.0, 1) == 5


def test_reschedule_mode_frees_the_worker_slot_between_pokes(storage, mocker):
    storage.script("hero.png", httpx.Response(404))
    ti = mocker.Mock(**{"get_first_reschedule_date.return_value": None})
    s = CapillaryFileSensor(task_id="verify", files=make_record(), mode="reschedule", poke_interval=60)
    with pytest.raises(AirflowRescheduleException) as info:
        s.execute({"ti": ti})
    assert 55 < (info.value.reschedule_date - datetime.now(timezone.utc)).total_seconds() <= 60
    assert len(storage.requests) == 1


def _patch_registration(mocker):
    """Count what reaches the masker, starting from an empty per-process registry."""
    mocker.patch.object(_redact, "_registered", set())
    return mocker.patch.object(_redact, "register_secret")


def test_session_credentials_of_secure_urls_are_masked(storage, mocker):
    register = _patch_registration(mocker)
    sensor([make_record("a.png"), make_record("b.png")])._prepare()
    assert register.call_args_list == [
        mocker.call(SECURITY_TOKEN),
        mocker.call("ASIAEXAMPLE/20240102/eu-west-1/s3/aws4_request"),
        mocker.call("ASIAEXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request"),
    ]


def test_rendering_masks_session_credentials_before_the_rendered_fields_are_stored(storage, mocker):
    register = _patch_registration(mocker)
    a, b = make_record("a.png"), make_record("b.png")
    s = sensor([a, b])
    s.render_template_fields({})
    # What Airflow stores as the rendered field: the records, their URLs redacted...
    assert s.files == [
        {**a, "secure_file_path": _redact.redact_url(a["secure_file_path"])},
        {**b, "secure_file_path": _redact.redact_url(b["secure_file_path"])},
    ]
    assert "X-Amz-Signature=***" in s.files[0]["secure_file_path"]
    assert register.call_args_list == [
        mocker.call(SECURITY_TOKEN),
        mocker.call("ASIAEXAMPLE/20240102/eu-west-1/s3/aws4_request"),
        mocker.call("ASIAEXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request"),
    ]
    storage.script("a.png", httpx.Response(206, headers=OK_206))
    storage.script("b.png", httpx.Response(206, headers=OK_206))
    # ...while the checks use the real URLs (the XCom drops them unless include_secure_url).
    assert s.execute({}) == without_url([a, b])


def test_deferrable_returns_without_deferring_when_the_first_poke_succeeds(storage):
    record = make_record()
    storage.script("hero.png", httpx.Response(206, headers=OK_206))
    assert sensor(record, deferrable=True).execute({}) == without_url(record)


def test_deferrable_pokes_once_then_defers_with_the_pending_state(storage, mocker):
    mocker.patch.object(file_service.time, "time", return_value=1_000.0)
    a, b = make_record("a.png"), make_record("b.png")
    storage.script("a.png", httpx.Response(206, headers=OK_206))
    storage.script("b.png", httpx.Response(404))
    s = CapillaryFileSensor(
        task_id="verify", files=[a, b], deferrable=True, poke_interval=9, timeout=600, check="size"
    )
    with pytest.raises(TaskDeferred) as info:
        s.execute({})
    assert len(storage.requests) == 2
    assert info.value.method_name == "execute_complete"
    assert not info.value.kwargs
    trigger = info.value.trigger
    assert isinstance(trigger, CapillaryFileTrigger)
    assert trigger.serialize()[1] == {
        "records": [a, b],
        "deadline": 1_600.0,
        "check": "size",
        "conn_id": "capillary_default",
        "poll_interval": 9.0,
        "max_consecutive_failures": 10,
        "verified": [0],
        "max_workers": 8,
        "not_before": 1_009.0,  # one poke interval after the worker's own check
    }


def test_the_trigger_row_holds_no_proxy_credential_and_its_repr_no_secure_url(monkeypatch):
    proxy = "http://proxy-user:proxy-Pass-42@127.0.0.1:9"  # refuses at once: the first poke waits
    conn = {**CONN, "extra": {**CONN["extra"], "proxies": {"https": proxy}}}
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(conn))
    s = CapillaryFileSensor(task_id="verify", files=[make_record()], deferrable=True, poke_interval=9)
    with pytest.raises(TaskDeferred) as info:
        s.execute({})
    trigger = info.value.trigger
    row = json.dumps(trigger.serialize())  # what Airflow stores in the trigger table
    assert not [secret for secret in ("proxy-Pass-42", "proxy-user", "127.0.0.1:9") if secret in row]
    text = repr(trigger)
    assert text.startswith("<airflow_capillary.triggers.file_service.CapillaryFileTrigger records=[{")
    assert "X-Amz-Signature=***" in text
    assert not [secret for secret in (SIGNATURE, SECURITY_TOKEN, "proxy-Pass-42") if secret in text]


def test_execute_complete_success_keeps_the_input_shape():
    a, b = make_record("a.png"), make_record("b.png")
    assert sensor(a).execute_complete({}, {"status": "success", "verified": 1}) == without_url(a)
    assert sensor([a]).execute_complete({}, {"status": "success", "verified": 1}) == without_url([a])
    assert sensor([[a], b]).execute_complete({}, {"status": "success", "verified": 2}) == without_url([a, b])


def test_execute_complete_returns_its_own_records_and_checks_the_count():
    a, b = make_record("a.png"), make_record("b.png")
    event = {"status": "success", "verified": 2}
    assert sensor([a, b], include_secure_url=True).execute_complete({}, event) == [a, b]
    with pytest.raises(
        CapillaryError, match=r"^success event from CapillaryFileTrigger for 1 record\(s\), the sensor has 2$"
    ):
        sensor([a, b]).execute_complete({}, {"status": "success", "verified": 1})


def test_include_secure_url_keeps_the_urls_in_the_output(storage):
    a, b = make_record("a.png"), make_record("b.png")
    storage.script("a.png", httpx.Response(206, headers=OK_206))
    storage.script("b.png", httpx.Response(206, headers=OK_206))
    assert sensor([a, b], include_secure_url=True).execute({}) == [a, b]
    event = {"status": "success", "verified": 1}
    assert sensor([a], include_secure_url=True).execute_complete({}, event) == [a]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("expired", CapillarySecureUrlExpiredError),
        ("verification", CapillaryVerificationError),
        ("unavailable", CapillaryServiceUnavailableError),
        ("rejected", CapillaryRequestRejectedError),
        ("invalid", CapillaryInvalidInputError),
        ("config", CapillaryConfigError),
        ("internal", CapillaryError),
    ],
)
def test_execute_complete_raises_the_error_of_each_kind(kind, error):
    event = {
        "status": "error",
        "kind": kind,
        "message": "what went wrong",
        "file_name": "a.png",
        "namespace": "rewards",
        "status_code": 403,
    }
    with pytest.raises(error, match=r"^what went wrong$") as info:
        sensor([]).execute_complete({}, event)
    assert type(info.value) is error
    assert (info.value.file_name, info.value.status_code, info.value.conn_id) == (
        "a.png",
        403,
        "capillary_default",
    )


def test_execute_complete_timeout():
    with pytest.raises(AirflowSensorTimeout, match=r"^Sensor has timed out: 1 file\(s\) not verified"):
        sensor([]).execute_complete({}, {"status": "timeout", "message": "1 file(s) not verified"})


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, r"^unexpected event from CapillaryFileTrigger: None$"),
        ("success", r"^unexpected event from CapillaryFileTrigger: 'success'$"),
        ({"status": "done"}, r"^unexpected event from CapillaryFileTrigger: \{'status': 'done'\}$"),
        (
            {"status": "error", "kind": "nope", "message": "x"},
            r"^unexpected error event from CapillaryFileTrigger",
        ),
        ({"status": "error", "kind": "expired"}, r"^unexpected error event from CapillaryFileTrigger"),
        ({"status": "success", "verified": "2"}, r"^unexpected success event from CapillaryFileTrigger"),
        ({"status": "success", "verified": True}, r"^unexpected success event from CapillaryFileTrigger"),
        ({"status": "success", "records": []}, r"^unexpected success event from CapillaryFileTrigger"),
    ],
    ids=[
        "none",
        "string",
        "unknown-status",
        "unknown-kind",
        "no-message",
        "count-not-int",
        "count-bool",
        "no-count",
    ],
)
def test_execute_complete_rejects_unknown_events(event, message):
    with pytest.raises(CapillaryError, match=message) as info:
        sensor([]).execute_complete({}, event)
    assert type(info.value) is CapillaryError


def test_unknown_event_message_never_shows_a_signature():
    event = {"status": "bogus", "records": [make_record()]}
    with pytest.raises(CapillaryError) as info:
        sensor([]).execute_complete({}, event)
    assert SIGNATURE not in str(info.value)
    assert SECURITY_TOKEN not in str(info.value)


def test_unchanged_records_pass_through_in_order_without_a_request(storage):
    new, same, plain = make_record("a.png", action="new"), unchanged("b.png"), make_record("c.png")
    storage.script("a.png", httpx.Response(206, headers=OK_206))
    storage.script("c.png", httpx.Response(404), httpx.Response(206, headers=OK_206))
    assert sensor([new, same, plain]).execute({}) == [without_url(new), same, without_url(plain)]
    assert [r.url.path for r in storage.requests] == [
        "/rewards/100606/a.png",
        "/rewards/100606/c.png",
        "/rewards/100606/c.png",
    ]


@pytest.mark.parametrize("deferrable", [False, True])
def test_only_unchanged_records_return_at_once_without_a_request_or_a_deferral(storage, deferrable):
    records = [unchanged("a.png"), unchanged("b.png")]
    assert sensor(records, deferrable=deferrable).execute({}) == records
    assert sensor(records[0], deferrable=deferrable).execute({}) == records[0]
    assert storage.requests == []


def test_deferring_with_unchanged_records_hands_the_trigger_their_positions(storage, mocker):
    mocker.patch.object(file_service.time, "time", return_value=1_000.0)
    same, new = unchanged("a.png"), make_record("b.png", action="new")
    storage.script("b.png", httpx.Response(404))
    with pytest.raises(TaskDeferred) as info:
        sensor([same, new], deferrable=True).execute({})
    kwargs = info.value.trigger.serialize()[1]
    assert (kwargs["records"], kwargs["verified"]) == ([same, new], [])
    # The trigger verified the one record that needs it; the output keeps both, in order.
    event = {"status": "success", "verified": 1}
    assert sensor([same, new]).execute_complete({}, event) == [same, without_url(new)]
    with pytest.raises(
        CapillaryError, match=r"^success event from CapillaryFileTrigger for 2 record\(s\), the sensor has 1$"
    ):
        sensor([same, new]).execute_complete({}, {"status": "success", "verified": 2})
