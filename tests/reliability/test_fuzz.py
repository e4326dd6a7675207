"""Fuzzing at the hook's boundary (issue 7, item 6): only the provider's documented exceptions escape.

Hypothesis feeds the hook what the outside world controls: file names and namespaces (into
``prepare_upload``), and Capillary's answers (status, headers, body) to uploads and to the OAuth
token endpoint, through a stub transport mounted on the hook's own session, so that the whole
request path runs (retry loop, answer checks, error mapping, redaction). Whatever comes in, the
hook returns a result or raises a :class:`~airflow_capillary.exceptions.CapillaryError`; the pure
pieces (``is_retryable``, ``parse_retry_after``) never raise at all. No sockets: these are unit tests.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

import pytest
import requests
from airflow.sdk import Connection
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter
from urllib3.response import HTTPResponse

from airflow_capillary.exceptions import CapillaryError, CapillaryInvalidInputError
from airflow_capillary.hooks._retry import is_retryable, parse_retry_after
from airflow_capillary.hooks.file_service import CapillaryFileHook, PreparedUpload
from airflow_capillary.models import UploadedFile
from tests.hooks.conftest import FakeClock
from tests.operators.images import png_bytes

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PNG = png_bytes(width=2, height=2)
BASE_URL = "http://capillary.fuzz.invalid"  # never resolved: the stub transport answers everything


@pytest.fixture(autouse=True, scope="module")
def _no_secrets_masker() -> Iterator[None]:
    """Fuzzed answers carry random "secure URLs": keep them out of Airflow's global secrets masker."""
    with mock.patch("airflow.sdk.log.mask_secret"):
        yield


class StubTransport(BaseAdapter):
    """Answers every request of a session with ``answer(request)``; reads the body like a server."""

    def __init__(self, answer: Callable[[requests.PreparedRequest], requests.Response]) -> None:
        super().__init__()
        self.answer = answer

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Consume the body (so the hook knows it was sent in full), then answer."""
        body = request.body
        if body is not None and hasattr(body, "read"):
            while body.read(65536):
                pass
        response = self.answer(request)
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        """Nothing to close."""


def response(status: int, headers: dict[str, str], body: bytes) -> requests.Response:
    """Build a ``requests.Response`` as the transport would: the body unread, behind a urllib3 response."""
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update(headers)
    answer.raw = HTTPResponse(body=io.BytesIO(body), status=status, preload_content=False)
    answer.reason = "fuzzed"
    return answer


def make_hook(auth_type: str = "basic", **extra: Any) -> CapillaryFileHook:
    """A hook on an in-memory connection (no Airflow lookup), retries without waiting."""
    hook = CapillaryFileHook("fuzz", max_retries=1, retry_on_500=True)
    connection = Connection(
        conn_id="fuzz",
        conn_type="capillary",
        host=BASE_URL,
        login="demo-key" if auth_type == "oauth" else "demo",
        password="demo-secret" if auth_type == "oauth" else "demo-password",
        extra=json.dumps({"auth_type": auth_type, **extra}),
    )
    hook.get_connection = lambda conn_id: connection  # type: ignore[method-assign]
    clock = FakeClock()  # retry and rate-limit waits move a fake clock instead of sleeping
    hook._clock, hook._sleep = clock, clock.sleep
    return hook


def mount(hook: CapillaryFileHook, answer: Callable[[requests.PreparedRequest], requests.Response]) -> None:
    hook.session.mount("http://", StubTransport(answer))


# -- strategies ------------------------------------------------------------------------------------

#: Characters that matter to names, paths, headers and JSON, mixed into arbitrary text.
SPECIAL = st.sampled_from([*"/\\.%?#&=:;\"' \t\r\n\x00\x1b\x7f\u2028\u202e\ufeff²٣…€", "..", "%2F"])
TEXT = st.lists(st.one_of(st.text(max_size=8), SPECIAL), max_size=12).map("".join)
JUNK: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
#: Numbers as Capillary might write them: ints, digit strings, and strings that only look like digits.
DIGITS = st.one_of(
    st.sampled_from(
        ["\u00b2", "\u2460", "\u0663", "\uff11\uff12", "007", " 12 ", "1e3", "-1", "", "NaN", "1_000"]
    ),
    st.integers(min_value=-5, max_value=10**20),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=3),
)
LAST_MODIFIED = st.one_of(
    st.just("2026-11-26 20:11:47"),
    st.sampled_from(
        ["2026-02-30 10:00:00", "2026-11-26T20:11:47", "9999-12-31 23:59:59", "0000-00-00 00:00:00"]
    ),
    TEXT,
)


#: A documented answer of the upload endpoint for ``PNG`` (what the fuzzed answers start from).
VALID_FILE: dict[str, Any] = {
    "name": "a.png", "namespace": "rewards", "version": 1, "acl": "PRIVATE", "fileSize": str(len(PNG)),
    "file_handle": "3f0e8a53-1f5e-4c1b-9e89-4c1e4a8e6a11", "content_type": "image/png",
    "s3_token": "rewards/100606/x.png", "latest_version": 1, "last_modified": "2026-11-26 20:11:47",
    "s3_url": "s3://emulator-solutions/rewards/100606/x.png",
}  # fmt: skip
VALID_ANSWER: dict[str, Any] = {
    "code": 200,
    "status": "true",
    "message": "Successfully uploaded file",
    "file": VALID_FILE,
    "secureFilePath": f"{BASE_URL}/_s3/b/x.png?X-Amz-Security-Token=tok&X-Amz-Signature=sig",
}
DELETE = object()


def corrupted(valid: dict[str, Any], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with up to three keys replaced by ``values`` (or deleted), plus maybe a stray key."""

    def apply(changes: dict[str, Any]) -> dict[str, Any]:
        result = dict(valid)
        for key, value in changes.items():
            if value is DELETE:
                result.pop(key, None)
            else:
                result[key] = value
        return result

    keys = st.one_of(st.sampled_from(sorted(valid)), TEXT)
    return st.dictionaries(keys, st.one_of(values, st.just(DELETE)), max_size=3).map(apply)


FIELD_VALUES = st.one_of(DIGITS, JUNK, LAST_MODIFIED, st.sampled_from(["true", "false", "200", 200, 500]))
FILE_OBJECT = corrupted(VALID_FILE, FIELD_VALUES)
UPLOAD_ANSWER = st.one_of(
    corrupted(VALID_ANSWER, FIELD_VALUES),
    FILE_OBJECT.map(lambda file: {**VALID_ANSWER, "file": file}),
    st.fixed_dictionaries(
        {"errors": st.lists(st.fixed_dictionaries({"code": JUNK, "message": JUNK}), max_size=2)}
    ),
)
STATUS = st.one_of(
    st.sampled_from([200, 201, 204, 301, 307, 400, 401, 403, 404, 413, 429, 500, 502, 503, 504]),
    st.integers(100, 599),
)
RETRY_AFTER = st.one_of(
    st.integers(min_value=-10, max_value=10**12).map(str),
    st.sampled_from(
        ["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "²", "1.5", "inf", ""]
    ),
    TEXT,
)
HEADER_VALUE = TEXT.map(
    lambda t: t.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", "")
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            ["application/json", "text/html", "application/json; charset=latin-1"]
        ),
        "Retry-After": RETRY_AFTER.map(lambda t: t.encode("latin-1", "replace").decode("latin-1")),
        "X-Fuzz": HEADER_VALUE,
    },
)
#: Nesting deep enough to make ``json`` raise ``RecursionError`` (issue 10, finding 2), or not quite.
NESTED = st.sampled_from([200_000, 100_000, 5_000, 999]).flatmap(
    lambda depth: st.sampled_from([b"[" * depth, b'{"a":' * depth, b"[" * depth + b"]" * depth])
)
BODY = st.one_of(
    UPLOAD_ANSWER.map(lambda d: json.dumps(d).encode()),
    JUNK.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=64),
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    NESTED,
)


# -- file names and namespaces ----------------------------------------------------------------------


@FUZZ
@given(file_name=TEXT, namespace=st.one_of(st.none(), TEXT))
def test_file_names_and_namespaces_into_prepare_upload(file_name: str, namespace: str | None) -> None:
    hook = make_hook()
    outcome = _prepare(hook, file_name, namespace)
    if isinstance(outcome, CapillaryInvalidInputError):
        assert (outcome.file_name, outcome.conn_id) == (file_name, "fuzz")
        return
    # Accepted: the URL has exactly two segments after the prefix, which decode back to the inputs.
    prefix = f"{BASE_URL}/api_gateway/file-service/"
    assert outcome.url.startswith(prefix)
    segments = outcome.url[len(prefix) :].split("/")
    assert [unquote(segment) for segment in segments] == [namespace or "rewards", file_name]
    assert (outcome.file_name, outcome.size) == (file_name, len(PNG))
    assert urlsplit(outcome.url).query == ""
    assert urlsplit(outcome.url).fragment == ""


def _prepare(
    hook: CapillaryFileHook, file_name: str, namespace: str | None
) -> PreparedUpload | CapillaryInvalidInputError:
    """Prepare; return the prepared upload or the provider error. Any other exception fails the test."""
    try:
        return hook.prepare_upload(PNG, file_name=file_name, namespace=namespace)
    except CapillaryInvalidInputError as exc:
        return exc


# -- answers of the upload endpoint -----------------------------------------------------------------


@FUZZ
@given(
    status=st.one_of(st.just(200), st.just(200), STATUS),
    headers=HEADERS,
    body=st.one_of(UPLOAD_ANSWER.map(lambda d: json.dumps(d).encode()), BODY),
    auth_type=st.sampled_from(["basic", "oauth"]),
)
# Strings that str.isdigit() accepts but int() and float() refuse: superscript two, circled one.
@example(200, {}, json.dumps({**VALID_ANSWER, "file": {**VALID_FILE, "version": "\u00b2"}}).encode(), "basic")
@example(
    200, {}, json.dumps({**VALID_ANSWER, "file": {**VALID_FILE, "fileSize": "\u2460"}}).encode(), "basic"
)
@example(503, {"Retry-After": "\u00b2"}, b"{}", "basic")
@example(200, {}, b"[" * 200_000, "basic")
@example(400, {}, b"[" * 200_000, "oauth")
@example(503, {}, b"[" * 200_000, "basic")
def test_upload_answers(status: int, headers: dict[str, str], body: bytes, auth_type: str) -> None:
    hook = make_hook(auth_type)
    token = json.dumps({"data": {"accessToken": "fuzz-token-0123456789", "ttlSeconds": 300}}).encode()

    def answer(request: requests.PreparedRequest) -> requests.Response:
        if (request.url or "").endswith("/v3/oauth/token/generate"):
            return response(200, {"Content-Type": "application/json"}, token)
        return response(status, headers, body)

    mount(hook, answer)
    prepared = hook.prepare_upload(PNG, file_name="a.png")
    outcome = _upload(hook, prepared)
    event(type(outcome).__name__)
    if isinstance(outcome, CapillaryError):
        assert str(outcome).startswith("uploading 'a.png' to namespace 'rewards' (connection 'fuzz')")
    else:
        assert 200 <= status < 300
        assert (outcome.sent_size, outcome.file_size) == (len(PNG), len(PNG))


@FUZZ
@given(status=STATUS, headers=HEADERS, body=BODY)
@example(200, {}, json.dumps({"data": {"accessToken": "fuzz-token-0123", "ttlSeconds": "\u00b2"}}).encode())
@example(429, {"Retry-After": "\u00b2"}, b"{}")
@example(200, {}, b"[" * 200_000)
@example(400, {}, b"[" * 200_000)
def test_token_endpoint_answers(status: int, headers: dict[str, str], body: bytes) -> None:
    hook = make_hook("oauth")
    stored = json.dumps(
        {
            "code": 200,
            "status": "true",
            "message": "ok",
            "file": {
                "name": "a.png", "namespace": "rewards", "version": 1, "latest_version": 1, "acl": "PRIVATE",
                "fileSize": str(len(PNG)), "file_handle": "h", "content_type": "image/png",
                "s3_token": "t", "s3_url": "s3://b/t", "last_modified": "2026-11-26 20:11:47",
            },
        }
    ).encode()  # fmt: skip

    def answer(request: requests.PreparedRequest) -> requests.Response:
        if (request.url or "").endswith("/v3/oauth/token/generate"):
            return response(status, headers, body)
        return response(200, {"Content-Type": "application/json"}, stored)

    mount(hook, answer)
    _upload(hook, hook.prepare_upload(PNG, file_name="a.png"))


def _upload(hook: CapillaryFileHook, prepared: PreparedUpload) -> UploadedFile | CapillaryError:
    """Upload; return the result or the provider error. Any other exception fails the test."""
    try:
        return hook.upload(prepared)
    except CapillaryError as exc:
        return exc


@pytest.mark.parametrize(
    "location", ["\x80", "/moved-\xe9.png"], ids=["lone-continuation-byte", "latin-1-e-acute"]
)
def test_redirect_to_a_location_that_is_not_utf8(location: str) -> None:
    """A 3xx whose ``Location`` is not UTF-8 (as a misconfigured proxy may send it).

    ``requests`` decodes the header as UTF-8 while following the redirect and raises
    ``UnicodeDecodeError``, which escaped the hook until it mapped it (found by ``test_upload_answers``).
    """
    hook = make_hook()
    mount(hook, lambda request: response(307, {"Location": location}, b""))
    outcome = _upload(hook, hook.prepare_upload(PNG, file_name="a.png"))
    assert isinstance(outcome, CapillaryError)


# -- the retry predicate and Retry-After ------------------------------------------------------------


@FUZZ
@given(status=STATUS, retry_on_500=st.booleans(), retry_after=st.one_of(st.none(), RETRY_AFTER))
def test_retry_predicate_and_retry_after(status: int, retry_on_500: bool, retry_after: str | None) -> None:
    answer = response(status, {} if retry_after is None else {"Retry-After": retry_after}, b"")
    # The truth table: 429 and 502-504 always, 500 only when configured, nothing else.
    expected = status in (429, 502, 503, 504) or (status == 500 and retry_on_500)
    assert is_retryable(answer, retry_on_500=retry_on_500) is expected
    seconds = parse_retry_after(answer.headers.get("Retry-After"))
    assert seconds is None or (isinstance(seconds, float) and seconds >= 0 and not math.isnan(seconds))
