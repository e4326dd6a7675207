"""Kills mutmut survivors in airflow_capillary/hooks/_answer.py: reading, judging and describing answers."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from urllib3.response import HTTPResponse

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryIntegrityError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks._answer import (
    Answer,
    capillary_message,
    check_upload_answer,
    failure,
    given_up,
    probe_failure,
    probe_verdict,
    said,
)
from airflow_capillary.hooks._retry import ServiceFailure
from airflow_capillary.verification.storage import OriginPolicy

SECRET = "hunter2-Secret"
URL = "https://svc.example/api_gateway/file-service/rewards/a.png"


def answer(status: int = 200, body: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, headers or {}, raw, url=kw.pop("url", URL), **kw)


class Counting(io.BytesIO):
    """A body that remembers how many bytes were read from it and closes at its end."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        if not data:
            self.close()  # at its end, as a socket's file closes
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        self.taken += n
        if not n:
            self.close()
        return n


def response(body: bytes, *, url: str | None = URL, status: int = 200) -> tuple[requests.Response, Counting]:
    raw = Counting(body)
    resp = requests.Response()
    resp.status_code = status
    resp.headers = requests.structures.CaseInsensitiveDict({"X-Seen": "1"})
    resp.raw = HTTPResponse(body=raw, headers={}, status=status, preload_content=False, decode_content=False)
    resp.url = url  # type: ignore[assignment]
    return resp, raw


# -- Answer.read --------------------------------------------------------------------------------


def test_read_keeps_a_body_of_exactly_the_limit_as_complete() -> None:
    resp, _ = response(b"0123456789", status=201)
    got = Answer.read(resp, 10)
    assert (got.status_code, got.body, got.complete, got.url, dict(got.headers)) == (
        201,
        b"0123456789",
        True,
        URL,
        {"X-Seen": "1"},
    )


def test_read_stops_one_chunk_past_the_limit() -> None:
    resp, raw = response(b"x" * 300_000)
    got = Answer.read(resp, 10)
    assert (got.body, got.complete) == (b"x" * 10, False)
    assert raw.taken == 64 * 1024  # one chunk read, the rest never


def test_read_joins_chunks_and_reads_nothing_at_limit_zero() -> None:
    body = bytes(range(256)) * 600  # 153600 bytes: three chunks
    resp, _ = response(body)
    assert Answer.read(resp, len(body)).body == body
    resp, raw = response(b"abc")
    got = Answer.read(resp, 0)
    assert (got.body, got.complete, raw.taken) == (b"", True, 0)
    resp, _ = response(b"a")
    assert (Answer.read(resp, 1).body, Answer.read(response(b"ab")[0], 1).complete) == (b"a", False)


def test_read_without_a_url_says_empty() -> None:
    resp, _ = response(b"{}", url=None)
    assert Answer.read(resp).url == ""


def test_json_of_an_incomplete_body_is_not_json() -> None:
    assert answer(body={"a": 1}).json() == {"a": 1}
    assert answer(body={"a": 1}, complete=False).json() is not answer(body={"a": 1}).json()
    assert answer(body={"a": 1}, complete=False).json() == answer(body=b"{").json()


def test_redacted_body_masks_the_secrets() -> None:
    assert answer(body=b"pw " + SECRET.encode()).redacted_body([SECRET]) == "pw ***"


def test_redirect_origin() -> None:
    assert answer(302, b"", {"Location": "https://other.example:8443/x?sig=1"}).redirect_origin() == (
        "https://other.example:8443"
    )
    assert answer(302, b"", {"Location": "/relative"}).redirect_origin() == "https://svc.example"
    assert answer(302, b"", {}).redirect_origin() is None
    assert answer(302, b"", {"Location": "http://[::1"}).redirect_origin() == "an unreadable URL"


# -- messages -----------------------------------------------------------------------------------


def test_capillary_message_joins_the_errors_with_their_codes() -> None:
    body = {
        "errors": [
            {"message": "bad key", "code": 7},
            {"message": "no code"},
            {"code": 9},
            "not a dict",
            {"message": "", "code": 1},
        ],
        "message": "ignored",
    }
    assert capillary_message(body) == "bad key (code 7); no code"
    assert capillary_message({"errors": [{"message": "zero", "code": 0}]}) == "zero (code 0)"
    assert capillary_message({"errors": [], "message": "top"}) == "top"
    assert capillary_message({"errors": "x", "message": 5}) == ""
    assert capillary_message(["not", "a", "dict"]) == ""
    assert capillary_message({"message": "token eyJa.eyJb.sig"}) == "token ***"


def test_said() -> None:
    assert said(answer(body={"message": f"no {SECRET}"}), [SECRET]) == ", Capillary said: no ***"
    assert said(answer(body={"other": 1})) == ""
    assert said(answer(body=b"not json")) == ""


# -- failure ------------------------------------------------------------------------------------


def test_a_rate_limit_is_a_service_failure_with_its_retry_after() -> None:
    got = failure(
        answer(429, {"message": f"slow {SECRET}"}, {"Retry-After": "3"}), conn_id="c", secrets=iter([SECRET])
    )
    assert isinstance(got, ServiceFailure)
    assert (got.message, got.status_code, got.retry_after_header, got.body) == (
        "HTTP 429, Capillary said: slow ***",
        429,
        "3",
        '{"message": "slow ***"}',
    )


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_is_an_auth_error(status: int) -> None:
    got = failure(answer(status, {"message": f"who {SECRET}"}), conn_id="c", secrets=[SECRET])
    assert type(got) is CapillaryAuthError
    assert (got.message, got.status_code, got.body, got.conn_id) == (
        f"HTTP {status}, Capillary said: who ***",
        status,
        '{"message": "who ***"}',
        "c",
    )


@pytest.mark.parametrize("status", [400, 402, 404, 400 - 1])
def test_other_statuses_are_rejections(status: int) -> None:
    got = failure(answer(status, {"message": "no"}, {"Location": "https://x.example/"}), conn_id="c")
    assert type(got) is CapillaryRequestRejectedError
    message = (
        f"HTTP {status}, a redirect to https://x.example: not followed, it leaves the service's origin"
        if status < 400
        else f"HTTP {status}, Capillary said: no"
    )
    assert (got.message, got.status_code, got.body, got.conn_id) == (
        message,
        status,
        '{"message": "no"}',
        "c",
    )


@pytest.mark.parametrize("status", [300, 307])
def test_a_redirect_names_its_origin(status: int) -> None:
    got = failure(answer(status, b"", {"Location": "https://x.example/p?q"}), conn_id="c")
    plain = failure(answer(status, b""), conn_id="c")
    assert isinstance(got, CapillaryRequestRejectedError)
    assert isinstance(plain, CapillaryRequestRejectedError)
    assert (got.message, plain.message) == (
        f"HTTP {status}, a redirect to https://x.example: not followed, it leaves the service's origin",
        f"HTTP {status}",
    )


# -- check_upload_answer ------------------------------------------------------------------------


def check(body: Any, *, sent: int = 51, status: int = 200, placeholder: bool = False, **kw: Any) -> Any:
    return check_upload_answer(
        answer(status, body, **kw),
        expected_size=51,
        sent_size=sent,
        sha256="0" * 64,
        placeholder=placeholder,
        server_timezone="UTC",
        storage=OriginPolicy("https://svc.example"),
        secrets=[SECRET],
    )


def integrity(body: Any, **kw: Any) -> CapillaryIntegrityError:
    with pytest.raises(CapillaryIntegrityError) as info:
        check(body, **kw)
    return info.value


def test_upload_answer_problems_are_exact_and_redacted() -> None:
    bad_status = integrity({"status": "false", "code": 200, "message": f"no {SECRET}"}, status=202)
    assert (bad_status.message, bad_status.status_code, bad_status.body) == (
        "Capillary answered status 'false', Capillary said: no ***",
        202,
        '{"status": "false", "code": 200, "message": "no ***"}',
    )
    bad_code = integrity({"status": "true", "code": 500, "message": f"no {SECRET}"})
    assert bad_code.message == "Capillary answered code 500, Capillary said: no ***"
    assert integrity({"x": 1}, sent=50).message == "Capillary answered after reading 50 of 51 bytes"
    assert integrity(b"[]").message == "the answer is not a JSON object"
    assert integrity(b"nope").message == "HTTP 200 with a body that is not JSON"
    assert integrity({}, complete=False).message == (
        "HTTP 200 with a body larger than 1048576 bytes (not read further)"
    )


# -- given_up -----------------------------------------------------------------------------------

WHAT = "uploading 'a.png'"
IDS = {"conn_id": "c", "file_name": "a.png", "namespace": "ns"}


def ids_of(exc: CapillaryError) -> dict[str, Any]:
    return {"conn_id": exc.conn_id, "file_name": exc.file_name, "namespace": exc.namespace}


def test_given_up_on_a_service_failure() -> None:
    got = given_up(
        ServiceFailure("HTTP 503", status_code=503, body="busy"),
        what=WHAT,
        url=URL,
        attempts=3,
        secrets=(),
        **IDS,
    )
    assert type(got) is CapillaryServiceUnavailableError
    assert (got.message, got.status_code, got.body, ids_of(got)) == (
        f"{WHAT}: HTTP 503 (after 3 attempts)",
        503,
        "busy",
        IDS,
    )


@pytest.mark.parametrize(("attempts", "tries"), [(1, ""), (2, " (after 2 attempts)")])
def test_given_up_keeps_the_type_of_a_provider_error(attempts: int, tries: str) -> None:
    exc = CapillaryAuthError("HTTP 401", status_code=401, body="b", conn_id="other")
    got = given_up(exc, what=WHAT, url=URL, attempts=attempts, secrets=(), **IDS)
    assert type(got) is CapillaryAuthError
    assert (got.message, got.status_code, got.body, ids_of(got)) == (
        f"{WHAT}: HTTP 401{tries}",
        401,
        "b",
        IDS,
    )


def test_given_up_on_a_transport_error_names_the_host_and_masks_secrets() -> None:
    exc = requests.ConnectionError(f"refused by {SECRET}")
    got = given_up(exc, what=WHAT, url=URL, attempts=2, secrets=[SECRET], **IDS)
    assert type(got) is CapillaryServiceUnavailableError
    assert (got.message, got.status_code, got.body, ids_of(got)) == (
        f"{WHAT}: cannot reach svc.example (after 2 attempts): ConnectionError: refused by ***",
        None,
        None,
        IDS,
    )
    first = given_up(exc, what=WHAT, url=URL, attempts=1, secrets=[SECRET], conn_id="c")
    assert (first.message, first.file_name, first.namespace) == (
        f"{WHAT}: cannot reach svc.example: ConnectionError: refused by ***",
        None,
        None,
    )


# -- test_connection's verdicts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ok", "message"),
    [
        (200, True, f"ok: {URL} answered HTTP 200 to basic credentials"),
        (299, True, f"ok: {URL} answered HTTP 299 to basic credentials"),
        (400, True, f"ok: {URL} answered HTTP 400 to basic credentials"),
        (499, True, f"ok: {URL} answered HTTP 499 to basic credentials"),
        (401, False, f"credentials refused: {URL} answered HTTP 401 for basic auth"),
        (403, False, f"credentials refused: {URL} answered HTTP 403 for basic auth"),
        (500, False, f"service unavailable: {URL} answered HTTP 500"),
        (501, False, f"service unavailable: {URL} answered HTTP 501"),
        (300, False, f"inconclusive: {URL} answered a redirect (HTTP 300) before proving the credentials; "
         "set the connection's test_path extra to an authenticated path"),
        (301, False, f"inconclusive: {URL} answered a redirect (HTTP 301) before proving the credentials; "
         "set the connection's test_path extra to an authenticated path"),
        (399, False, f"inconclusive: {URL} answered a redirect (HTTP 399) before proving the credentials; "
         "set the connection's test_path extra to an authenticated path"),
    ],
)  # fmt: skip
def test_probe_verdict_boundaries(status: int, ok: bool, message: str) -> None:
    assert probe_verdict(URL, "basic", status) == (ok, message)


def test_probe_verdict_oauth() -> None:
    assert probe_verdict(URL, "oauth", 404) == (
        True,
        f"ok: token generated, {URL} answered HTTP 404 to oauth credentials",
    )
    assert probe_verdict(URL, "oauth", 403) == (
        False,
        f"credentials refused: {URL} answered HTTP 403 for oauth auth",
    )


def test_probe_failure_for_each_kind_of_error() -> None:
    def redact(text: str) -> str:
        return text.replace(SECRET, "***")

    base = "https://svc.example"
    assert (
        probe_failure(CapillaryConfigError(f"bad {SECRET}"), base, redact)
        == f"invalid configuration: bad {SECRET}"
    )
    assert probe_failure(CapillaryAuthError(f"no {SECRET}"), base, redact) == "credentials refused: no ***"
    assert (
        probe_failure(ServiceFailure("HTTP 503", status_code=503), base, redact)
        == "service unavailable: HTTP 503"
    )
    assert probe_failure(requests.Timeout(f"slow {SECRET}"), base, redact) == f"cannot reach {base}: slow ***"
    assert probe_failure(KeyError(SECRET), base, redact) == "KeyError: '***'"
