"""The sensor and the trigger against a hostile storage on real loopback sockets (issue 10, finding 7).

Every case runs through both paths: the sensor's poke (``CapillaryFileSensor.execute``, not
deferrable) and the trigger's loop (``CapillaryFileTrigger.run``). The connection's host is one
hostile server (its origin is the only loopback origin allowed); a second server stands for what
an attacker wants reached (an internal service), and the tests assert it received nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from airflow_capillary.exceptions import CapillaryError
from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.sensors.file_service import AirflowSensorTimeout, CapillaryFileSensor
from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from airflow_capillary.verification import rules
from airflow_capillary.verification.rounds import CHUNK_SIZE, ERROR_KINDS
from tests.hooks.recorder import upload_answer
from tests.hostile import Answer, HostileServer, Huge, Redirect, Trickle
from tests.verification.records import PNG, SECURITY_TOKEN, SIGNATURE, make_record

PATH = "/rewards/100606/hero.png"
QUERY = f"X-Amz-Security-Token={SECURITY_TOKEN}&X-Amz-Signature={SIGNATURE}"
SIZE = len(PNG)
WHERE = "'hero.png' (namespace rewards)"
PNG_ANSWER = Answer(200, PNG, {"Content-Type": "image/png"})
PATHS = ["sensor", "trigger"]


def connect(monkeypatch: pytest.MonkeyPatch, service: HostileServer, **extra: Any) -> None:
    """Make ``service`` the host of ``capillary_default`` (its origin is the connection's own)."""
    conn = {
        "conn_type": "capillary",
        "host": service.origin,
        "login": "till",
        "password": "pw",
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(conn))


def record_at(server: HostileServer, path: str = PATH) -> dict[str, Any]:
    """An upload record whose secure URL points at ``server``."""
    return make_record(url=f"{server.url(path)}?{QUERY}")


def not_allowed(origin: str, service: HostileServer) -> str:
    """The policy's refusal of ``origin`` when the connection's host is ``service``."""
    return (
        f"{origin} is not an allowed storage origin (allowed: {service.origin}, https://*.amazonaws.com; "
        "add hosts with the connection extra storage_hosts)"
    )


async def _events(trigger: CapillaryFileTrigger) -> list[TriggerEvent]:
    return [event async for event in trigger.run()]


def verify(path: str, record: dict[str, Any], check: str = "size", timeout: float = 30.0) -> tuple[str, Any]:
    """Verify ``record`` through the sensor's poke or the trigger; return (outcome, message or value).

    The outcome is ``"success"``, ``"timeout"`` or the name of the error raised (the trigger's error
    event mapped to its exception type), so both paths compare to the same expectation.
    """
    if path == "sensor":
        sensor = CapillaryFileSensor(
            task_id="verify", files=record, check=check, poke_interval=0.05, timeout=timeout
        )
        try:
            return "success", sensor.execute({})
        except AirflowSensorTimeout as exc:
            return "timeout", str(exc)
        except CapillaryError as exc:
            return type(exc).__name__, exc.message
    trigger = CapillaryFileTrigger(
        records=[record], deadline=time.time() + timeout, check=check, poll_interval=0.05
    )
    # The bound only keeps a broken trigger (one that never returns) from hanging the suite.
    (event,) = asyncio.run(asyncio.wait_for(_events(trigger), timeout + 60))
    payload = event.payload
    if payload["status"] == "error":
        return ERROR_KINDS[payload["kind"]].__name__, payload["message"]
    return payload["status"], payload.get("message", payload)


@pytest.mark.parametrize("path", PATHS)
def test_a_secure_url_on_another_origin_is_refused_before_any_request(path, hostile_servers, monkeypatch):
    service, internal = hostile_servers(2)
    connect(monkeypatch, service)
    internal.route(PATH, PNG_ANSWER)
    assert verify(path, record_at(internal)) == (
        "CapillaryInvalidInputError",
        "files[0] ('hero.png', namespace rewards) has a secure_file_path outside the storage origin policy, "
        f"not fetched: {not_allowed(internal.origin, service)}",
    )
    assert (internal.requests, service.requests) == ([], [])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed(path, status, hostile_servers, monkeypatch):
    service, internal = hostile_servers(2)
    connect(monkeypatch, service)
    service.route(PATH, Redirect(f"{internal.url(PATH)}?{QUERY}", status=status))
    internal.route(PATH, PNG_ANSWER)
    assert verify(path, record_at(service)) == (
        "CapillaryRequestRejectedError",
        f"{WHERE}: the storage answered HTTP {status} with a redirect that is not followed: "
        f"{not_allowed(internal.origin, service)}",
    )
    assert (internal.requests, len(service.requests)) == ([], 1)


@pytest.mark.parametrize("path", PATHS)
def test_a_redirect_from_https_to_http_is_never_followed(path, hostile_servers, monkeypatch):
    (service,) = hostile_servers(1, tls=True)
    (plain,) = hostile_servers(1)
    plain_origin = f"http://127.0.0.1:{plain.port}"
    # plain http is an allowed origin here: only the downgrade itself is refused.
    connect(monkeypatch, service, verify=str(service.ca_cert), storage_hosts=[plain_origin])
    service.route(PATH, Redirect(f"{plain.url(PATH)}?{QUERY}"))
    plain.route(PATH, PNG_ANSWER)
    outcome, message = verify(path, record_at(service))
    assert (outcome, message) == (
        "CapillaryRequestRejectedError",
        f"{WHERE}: the storage answered HTTP 302 with a redirect that is not followed: a redirect from https "
        f"to http ({plain_origin}) is never followed",
    )
    assert plain.requests == []


@pytest.mark.parametrize("path", PATHS)
def test_redirects_within_the_policy_are_followed_hop_by_hop(path, hostile_servers, monkeypatch):
    service, storage = hostile_servers(2)
    connect(monkeypatch, service, storage_hosts=[storage.origin])
    service.route(PATH, Redirect(f"/moved?{QUERY}", status=307))  # relative: same origin
    service.route("/moved", Redirect(f"{storage.url('/bucket/hero.png')}?{QUERY}", status=302))
    storage.route("/bucket/hero.png", PNG_ANSWER)
    outcome, _ = verify(path, record_at(service), check="sha256")
    assert outcome == "success"
    assert [r.path for r in service.requests] == [PATH, "/moved"]
    [fetched] = storage.requests
    assert (fetched.method, fetched.query, fetched.headers["accept-encoding"]) == ("GET", QUERY, "identity")
    assert "authorization" not in fetched.headers


@pytest.mark.parametrize("path", PATHS)
def test_a_redirect_loop_ends_after_five_hops(path, hostile_server, monkeypatch):
    connect(monkeypatch, hostile_server)
    hostile_server.route(PATH, Redirect(f"{PATH}?{QUERY}"))
    assert verify(path, record_at(hostile_server)) == (
        "CapillaryRequestRejectedError",
        f"{WHERE}: the storage redirected more than 5 times",
    )
    assert len(hostile_server.requests) == 6


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("check", ["sha256", "size"])
def test_reading_stops_one_byte_past_the_expected_size(path, check, hostile_server, monkeypatch):
    """A chunked 64 MiB answer for a 1 KiB file (in size mode: a storage that ignores the range): at
    most one chunk of it is read, not the whole body."""
    connect(monkeypatch, hostile_server)
    answer = Huge(64 * 1024 * 1024, chunked=True, prefix=PNG, headers={"Content-Type": "image/png"})
    hostile_server.route(PATH, answer)
    fed: list[int] = []
    feed = rules.AnswerJudge.feed

    def counting_feed(judge: rules.AnswerJudge, chunk: bytes) -> bool:
        fed.append(len(chunk))
        return feed(judge, chunk)

    monkeypatch.setattr(rules.AnswerJudge, "feed", counting_feed)
    assert verify(path, record_at(hostile_server), check=check) == (
        "CapillaryVerificationError",
        f"{WHERE} is served with more than {SIZE} bytes, but its upload record says {SIZE} bytes "
        "(Capillary stored a different file); upload it again (re-run the upload task)",
    )
    assert sum(fed) <= CHUNK_SIZE


@pytest.mark.parametrize("path", PATHS)
def test_the_deadline_ends_a_round_in_progress(path, hostile_server, monkeypatch):
    """An answer trickling one byte every 0.2 s (about 3 minutes for the file) under a 2 s timeout.

    Time is the behaviour here: the bound of 30 s is generous (the deadline is 2 s), and far below
    what the trickle takes.
    """
    connect(monkeypatch, hostile_server)
    hostile_server.route(
        PATH, Trickle(total=SIZE, chunk=1, interval=0.2, headers={"Content-Type": "image/png"})
    )
    result: list[tuple[str, Any]] = []
    started = time.monotonic()
    runner = threading.Thread(
        target=lambda: result.append(verify(path, record_at(hostile_server), "sha256", 2.0))
    )
    runner.start()
    runner.join(30)
    elapsed = time.monotonic() - started
    assert not runner.is_alive(), "the verification did not end at its deadline"
    [(outcome, message)] = result
    assert outcome == "timeout"
    if path == "trigger":
        assert message == (
            "1 file(s) not verified before the sensor's timeout: 'hero.png'; last answers: "
            f"{WHERE}: no whole answer before the deadline; waiting"
        )
    else:  # Airflow's own timeout, raised once the cut poke returned
        assert message.startswith("Sensor has timed out; run duration of ")
    assert elapsed < 30


@pytest.mark.parametrize("path", PATHS)
def test_a_secure_url_the_upload_flagged_is_refused_even_where_the_sensors_policy_allows_it(
    path, hostile_servers, monkeypatch
):
    """The hook flags an upload answer whose secureFilePath is outside its connection's policy; a
    sensor on a connection whose storage_hosts would allow that origin still refuses it."""
    service, other = hostile_servers(2)
    service.route(
        "/api_gateway/file-service/rewards/hero.png",
        Answer.json(upload_answer("hero.png", SIZE, secureFilePath=f"{other.url(PATH)}?{QUERY}")),
    )
    other.route(PATH, PNG_ANSWER)
    connect(monkeypatch, service)
    uploaded = CapillaryFileHook(max_retries=0).upload_file(PNG, file_name="hero.png")
    assert uploaded.secure_url_refused == not_allowed(other.origin, service)
    record = {**uploaded.to_dict(), "source": "/data/hero.png"}
    connect(monkeypatch, service, storage_hosts=[other.origin])  # the sensor's connection allows it
    assert verify(path, record) == (
        "CapillaryInvalidInputError",
        "files[0] ('hero.png', namespace rewards) has a secure_file_path outside the storage origin policy, "
        f"not fetched: {not_allowed(other.origin, service)}",
    )
    assert other.requests == []
