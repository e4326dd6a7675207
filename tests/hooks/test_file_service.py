"""CapillaryFileHook at the HTTP boundary: exact requests, retries, answer checks, errors, secrets."""

from __future__ import annotations

import hashlib
import inspect
import re
import threading
import tracemalloc
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
from airflow.sdk import Connection

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryConfigError,
    CapillaryIntegrityError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks._session import USER_AGENT
from airflow_capillary.hooks.file_service import CapillaryFileHook, PreparedUpload
from tests.hooks.conftest import PASSWORD, SECRET
from tests.hooks.recorder import BASE, JPEG, PNG, Recorder, Reply, Sent, echo_upload, file_part, upload_answer

URL = f"{BASE}/api_gateway/file-service/rewards/test.png"
TOKEN_URL = f"{BASE}/v3/oauth/token/generate"
WHAT = "uploading 'test.png' to namespace 'rewards' (connection 'capillary_default')"
WHAT_RE = re.escape(WHAT)


def token_reply(token: str, ttl: int = 300) -> Reply:
    return Reply(json_body={"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": None})


def oauth_echo(sent: Sent) -> Reply:
    """Token endpoint plus echoing upload endpoint."""
    if sent.url == TOKEN_URL:
        return token_reply("jwt-" + str(sent.body_size))
    return echo_upload(sent)


# -- the request on the wire --------------------------------------------------------------------


def test_upload_sends_the_documented_multipart_request(make_hook, tmp_path: Path):
    image = tmp_path / "test.png"
    image.write_bytes(PNG)
    hook, rec = make_hook()
    result = hook.upload_file(image)
    [sent] = rec.sent
    assert sent.method == "POST"
    assert sent.url == URL
    boundary = sent.headers["Content-Type"].removeprefix("multipart/form-data; boundary=")
    expected_body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="test.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert sent.body == expected_body
    assert sent.headers == {
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "gzip, deflate",
        "Accept": "application/json",
        "Connection": "keep-alive",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(expected_body)),
        # till.user : md5("s3cr3t-Passw0rd")
        "Authorization": "Basic "
        + __import__("base64")
        .b64encode(b"till.user:" + hashlib.md5(PASSWORD.encode()).hexdigest().encode())
        .decode(),
    }
    assert f"airflow-provider-capillary/0.1.0 requests/{requests.__version__}" == USER_AGENT
    assert sent.timeout == (60.0, 60.0)
    assert sent.verify is True
    assert result.file_size == 51
    assert result.sent_size == 51
    assert result.sha256 == hashlib.sha256(PNG).hexdigest()
    assert result.last_modified == datetime(2024, 5, 8, 3, 40, 59, tzinfo=timezone.utc)


def test_raw_encoding_sends_the_bytes_with_the_image_type(make_hook):
    hook, rec = make_hook(upload_encoding="raw")
    hook.upload_file(JPEG, file_name="photo.jpg")
    [sent] = rec.sent
    assert sent.body == JPEG
    assert sent.headers["Content-Type"] == "image/jpeg"
    assert sent.headers["Content-Length"] == str(len(JPEG))
    assert sent.url == f"{BASE}/api_gateway/file-service/rewards/photo.jpg"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("gift card.png", "gift%20card.png"),
        ("crème brûlée €.png", "cr%C3%A8me%20br%C3%BBl%C3%A9e%20%E2%82%AC.png"),
        ("a+b&c#d?.png", "a%2Bb%26c%23d%3F.png"),
        ("100%.png", "100%25.png"),
    ],
    ids=["space", "non-ascii", "reserved", "percent"],
)
def test_file_names_are_percent_encoded_in_the_url(make_hook, name, path):
    hook, rec = make_hook()
    hook.upload_file(PNG, file_name=name, namespace="loyalty")
    assert rec.sent[0].url == f"{BASE}/api_gateway/file-service/loyalty/{path}"
    head, _ = file_part(rec.sent[0])
    assert f'filename="{name}"'.encode() in head


def test_static_headers_verify_proxies_and_file_field_are_applied(make_hook, tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    hook, rec = make_hook(
        headers={"X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"},
        verify=str(ca),
        proxies={"https": "http://127.0.0.1:3128"},
        file_field="image",
        timeout=[2, 20],
    )
    hook.upload_file(PNG, file_name="test.png")
    [sent] = rec.sent
    assert sent.headers["X-CAP-API-ATTRIBUTION-ENTITY-TYPE"] == "TILL"
    assert sent.verify == str(ca)
    assert sent.proxies["https"] == "http://127.0.0.1:3128"
    assert sent.timeout == (2.0, 20.0)
    assert b'name="image"; filename="test.png"' in file_part(sent)[0]


def test_placeholder_is_a_post_without_a_body(make_hook):
    hook, rec = make_hook([Reply(json_body=upload_answer("later.png", 0))])
    result = hook.create_placeholder("later.png")
    [sent] = rec.sent
    assert (sent.method, sent.url, sent.body) == (
        "POST",
        f"{BASE}/api_gateway/file-service/rewards/later.png",
        None,
    )
    assert sent.headers["Content-Length"] == "0"
    assert "Content-Type" not in sent.headers
    assert (result.file_size, result.sent_size, result.sha256) == (0, 0, hashlib.sha256(b"").hexdigest())


def test_empty_file_when_allowed_is_sent_with_content_length_zero(make_hook):
    hook, rec = make_hook(
        [Reply(json_body=upload_answer("e.png", 0))], upload_encoding="raw", hook_kwargs={"allow_empty": True}
    )
    hook.upload_file(b"", file_name="e.png")
    assert rec.sent[0].headers["Content-Length"] == "0"
    assert "Transfer-Encoding" not in rec.sent[0].headers


def test_oauth_upload_carries_the_token_header_only(make_hook):
    hook, rec = make_hook(recorder=Recorder(default=oauth_echo), auth_type="oauth", password=SECRET)
    hook.upload_file(PNG, file_name="test.png")
    token_call, upload = rec.sent
    assert (token_call.method, token_call.url) == ("POST", TOKEN_URL)
    assert token_call.body == b'{"key": "till.user", "secret": "client-Secret-42"}'
    assert token_call.headers["Content-Type"] == "application/json"
    assert "Authorization" not in token_call.headers
    assert upload.headers["X-CAP-API-OAUTH-TOKEN"] == "jwt-50"  # the token body is 50 bytes
    assert "Authorization" not in upload.headers


def test_oauth_custom_token_url_and_header(make_hook):
    token_url = "http://127.0.0.1:9/oauth"
    rec = Recorder([token_reply("tok-1")])
    hook, rec = make_hook(recorder=rec, auth_type="oauth", oauth_url=token_url, oauth_access_header="X-Token")
    hook.upload_file(PNG, file_name="test.png")
    assert rec.sent[0].url == token_url
    assert rec.sent[1].headers["X-Token"] == "tok-1"


def test_one_token_for_500_uploads_over_8_threads(make_hook):
    hook, rec = make_hook(recorder=Recorder(default=oauth_echo, keep_bodies=True), auth_type="oauth")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        for i in range(n):
            try:
                hook.upload_file(PNG, file_name=f"img-{threading.get_ident()}-{i}.png")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(63 if t < 4 else 62,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(rec.to("/v3/oauth/token/generate")) == 1
    assert len(rec.to(".png")) == 500


def test_hook_memory_stays_flat_for_a_64_mb_upload(make_hook, tmp_path: Path):
    size = 64 * 1024 * 1024
    path = tmp_path / "big.png"
    with open(path, "wb") as handle:
        handle.write(PNG[:8])
        handle.truncate(size)
    rec = Recorder(
        default=lambda sent: Reply(json_body=upload_answer("big.png", sent.body_size)), keep_bodies=False
    )
    hook, rec = make_hook(recorder=rec, upload_encoding="raw")
    hook.prepare_upload(PNG, file_name="warm.png")  # import and resolve everything first
    tracemalloc.start()
    try:
        result = hook.upload_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rec.sent[0].body_size == size
    assert rec.sent[0].largest_read <= 64 * 1024
    assert result.sent_size == size
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"


# -- retries ------------------------------------------------------------------------------------


def test_retry_resends_the_whole_body(make_hook, tmp_path: Path):
    image = tmp_path / "test.png"
    image.write_bytes(PNG)
    with open(image, "rb") as handle:
        hook, rec = make_hook([requests.ConnectionError("reset"), Reply(503), echo_upload])
        result = hook.upload_file(handle)
    assert len(rec.sent) == 3
    assert [file_part(s)[1] for s in rec.sent] == [PNG, PNG, PNG]
    assert len({s.headers["Content-Type"] for s in rec.sent}) == 3  # fresh boundary per attempt
    assert result.sent_size == 51
    assert len(hook.sleeps) == 2


def test_retry_log_lines(make_hook):
    script = [
        Reply(502, {"message": "busy"}, headers={"Retry-After": "3"}),
        requests.ConnectionError("reset"),
    ]
    hook, _ = make_hook([*script, echo_upload])
    hook.upload_file(PNG, file_name="test.png")
    assert hook.lines[:2] == [
        f"attempt 1 of 6 failed: {WHAT}: HTTP 502, Capillary said: busy, retrying in 3.0s",
        f"attempt 2 of 6 failed: {WHAT}: ConnectionError: reset, retrying in {hook.sleeps[1]:.1f}s",
    ]
    assert hook.lines[2].startswith("uploaded test.png to namespace rewards as version 1 (51 bytes, sha256 ")


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("4", 4.0), ("0", 0.0), ("100000", 120.0)],
    ids=["seconds", "zero", "capped"],
)
def test_retry_after_seconds(make_hook, retry_after, expected):
    hook, _ = make_hook([Reply(502, headers={"Retry-After": retry_after}), echo_upload])
    hook.upload_file(PNG, file_name="test.png")
    assert hook.sleeps == [expected]


def test_retry_after_http_date(make_hook):
    """The date is read against the hook's clock (injected: no race with the wall clock)."""
    now = datetime(2024, 5, 8, 3, 40, 59, tzinfo=timezone.utc)
    when = format_datetime(now + timedelta(seconds=30), usegmt=True)
    hook, _ = make_hook([Reply(502, headers={"Retry-After": when}), echo_upload])
    hook._now = lambda: now
    hook.upload_file(PNG, file_name="test.png")
    assert hook.sleeps == [30.0]


def test_retry_after_cap_is_configurable(make_hook):
    hook, _ = make_hook(
        [Reply(502, headers={"Retry-After": "600"}), echo_upload], hook_kwargs={"retry_after_max": 5}
    )
    hook.upload_file(PNG, file_name="test.png")
    assert hook.sleeps == [5.0]


def test_backoff_without_retry_after_grows(make_hook):
    hook, _ = make_hook(
        [Reply(502)] * 4 + [echo_upload], hook_kwargs={"retry_min_wait": 1, "retry_max_wait": 5}
    )
    hook.upload_file(PNG, file_name="test.png")
    assert [int(s) for s in hook.sleeps] == [1, 2, 4, 5]


def test_gives_up_after_max_retries(make_hook):
    answer = {"message": "overloaded", "secureFilePath": "https://x/?X-Amz-Signature=abcdef123"}
    hook, rec = make_hook([Reply(503, answer)] * 3, hook_kwargs={"max_retries": 2})
    with pytest.raises(
        CapillaryServiceUnavailableError,
        match=f"^{WHAT_RE}: HTTP 503, Capillary said: overloaded \\(after 3 attempts\\)$",
    ) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 3
    err = info.value
    assert (err.status_code, err.conn_id, err.file_name, err.namespace) == (
        503,
        "capillary_default",
        "test.png",
        "rewards",
    )
    assert "abcdef123" not in (err.body or "")
    assert "overloaded" in (err.body or "")


def test_connection_errors_give_up_with_cannot_reach(make_hook):
    hook, rec = make_hook(
        [requests.exceptions.ReadTimeout("read timed out")] * 2, hook_kwargs={"max_retries": 1}
    )
    with pytest.raises(
        CapillaryServiceUnavailableError,
        match=f"^{WHAT_RE}: cannot reach 127.0.0.1:8443 \\(after 2 attempts\\): ReadTimeout: read timed out$",
    ):
        hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 2


def test_tls_failure_is_not_retried(make_hook):
    hook, rec = make_hook([requests.exceptions.SSLError("certificate verify failed")])
    with pytest.raises(
        CapillaryServiceUnavailableError, match=r"cannot reach 127.0.0.1:8443: SSLError: certificate"
    ):
        hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 1


@pytest.mark.parametrize(("retry_on_500", "sent"), [(False, 1), (True, 2)], ids=["default", "opted-in"])
def test_500_is_retried_only_when_configured(make_hook, retry_on_500, sent):
    hook, rec = make_hook(
        [Reply(500, {"message": "boom"}), echo_upload], hook_kwargs={"retry_on_500": retry_on_500}
    )
    if retry_on_500:
        hook.upload_file(PNG, file_name="test.png")
    else:
        with pytest.raises(
            CapillaryServiceUnavailableError, match=f"^{WHAT_RE}: HTTP 500, Capillary said: boom$"
        ):
            hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == sent


@pytest.mark.parametrize("status", [400, 404, 405, 409, 413, 415, 422])
def test_other_4xx_are_rejected_without_retry(make_hook, status):
    hook, rec = make_hook([Reply(status, {"errors": [{"code": 9, "message": "nope"}]})])
    with pytest.raises(
        CapillaryRequestRejectedError, match=f"^{WHAT_RE}: HTTP {status}, Capillary said: nope \\(code 9\\)$"
    ) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert (info.value.status_code, info.value.file_name) == (status, "test.png")
    assert len(rec.sent) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_basic_auth_refusal_is_not_retried(make_hook, status):
    hook, rec = make_hook([Reply(status, text="denied")])
    with pytest.raises(CapillaryAuthError, match=f"^{WHAT_RE}: HTTP {status}$") as info:
        hook.upload_file(PNG, file_name="test.png")
    assert (info.value.status_code, info.value.body) == (status, "denied")
    assert len(rec.sent) == 1


def test_oauth_401_refreshes_the_token_once(make_hook):
    rec = Recorder([token_reply("old"), Reply(401), token_reply("new"), echo_upload])
    hook, rec = make_hook(recorder=rec, auth_type="oauth")
    hook.upload_file(PNG, file_name="test.png")
    assert [s.url for s in rec.sent] == [TOKEN_URL, URL, TOKEN_URL, URL]
    assert [rec.sent[1].headers["X-CAP-API-OAUTH-TOKEN"], rec.sent[3].headers["X-CAP-API-OAUTH-TOKEN"]] == [
        "old",
        "new",
    ]
    assert file_part(rec.sent[3])[1] == PNG


def test_oauth_second_401_is_an_auth_error(make_hook):
    rec = Recorder([token_reply("old"), Reply(401), token_reply("new"), Reply(401, {"message": "expired"})])
    hook, rec = make_hook(recorder=rec, auth_type="oauth", password=SECRET)
    with pytest.raises(CapillaryAuthError, match=f"^{WHAT_RE}: HTTP 401, Capillary said: expired$"):
        hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 4


def test_oauth_token_endpoint_overload_is_retried(make_hook):
    rec = Recorder([Reply(503, headers={"Retry-After": "2"}), token_reply("t"), echo_upload])
    hook, rec = make_hook(recorder=rec, auth_type="oauth")
    hook.upload_file(PNG, file_name="test.png")
    assert hook.sleeps == [2.0]
    assert [s.url for s in rec.sent] == [TOKEN_URL, TOKEN_URL, URL]


def test_oauth_token_refusal_is_an_auth_error(make_hook):
    reply = Reply(401, {"data": None, "errors": [{"code": 1001, "message": "Invalid client"}]})
    hook, rec = make_hook([reply], auth_type="oauth", password=SECRET)
    with pytest.raises(
        CapillaryAuthError, match=r"refused client key 'till.user': HTTP 401, Invalid client"
    ) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert (info.value.conn_id, info.value.file_name) == ("capillary_default", "test.png")
    assert len(rec.sent) == 1


# -- integrity of the answer ---------------------------------------------------------------------

INTEGRITY = [
    (Reply(text="<html>not json"), "HTTP 200 with a body that is not JSON"),
    (Reply(json_body=["a"]), "the answer is not a JSON object"),
    (
        Reply(json_body=upload_answer(status="false", message="quota")),
        "Capillary answered status 'false', Capillary said: quota",
    ),
    (Reply(json_body=upload_answer(status=None)), "Capillary answered status None"),
    (Reply(json_body=upload_answer(code=500)), "Capillary answered code 500"),
    (Reply(json_body={"code": 200, "status": "true"}), "Capillary's answer has no 'file' object"),
    (
        Reply(json_body=upload_answer(file={"name": "test.png"})),
        "Capillary's answer has no string field 'namespace'",
    ),
    (
        Reply(json_body=upload_answer(size=0)),
        "Capillary stored 0 bytes but 51 were sent \\(it kept a placeholder",
    ),
    (Reply(json_body=upload_answer(size=20)), "Capillary stored 20 bytes but 51 were sent"),
    (Reply(201, text=""), "HTTP 201 with a body that is not JSON"),
]
INTEGRITY_IDS = [
    "malformed-json",
    "not-object",
    "status-false",
    "status-missing",
    "code-500",
    "no-file",
    "missing-field",
    "placeholder-stored",
    "truncated",
]


@pytest.mark.parametrize(("reply", "problem"), INTEGRITY, ids=[*INTEGRITY_IDS, "201-empty"])
def test_integrity_failures_are_re_uploaded(make_hook, reply, problem):
    hook, rec = make_hook([reply, echo_upload])
    result = hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 2
    assert file_part(rec.sent[1])[1] == PNG
    assert result.file_size == 51
    assert re.match(f"^attempt 1 of 6 failed: {WHAT_RE}: {problem}.*, retrying in", hook.lines[0])


@pytest.mark.parametrize(("reply", "problem"), INTEGRITY, ids=[*INTEGRITY_IDS, "201-empty"])
def test_integrity_failures_raise_when_not_retried(make_hook, reply, problem):
    hook, rec = make_hook([reply], hook_kwargs={"retry_integrity_errors": False})
    with pytest.raises(CapillaryIntegrityError, match=f"^{WHAT_RE}: {problem}") as info:
        hook.upload_file(PNG, file_name="test.png")
    assert (info.value.status_code, info.value.namespace) == (reply.status, "rewards")
    assert len(rec.sent) == 1


def test_integrity_failure_after_every_retry(make_hook):
    hook, rec = make_hook([Reply(json_body=upload_answer(size=0))] * 2, hook_kwargs={"max_retries": 1})
    with pytest.raises(
        CapillaryIntegrityError, match=r"stored 0 bytes but 51 were sent .*\(after 2 attempts\)$"
    ):
        hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 2


def test_answer_before_the_body_was_read_is_an_integrity_error(make_hook):
    # A streamed body (larger than one 64 KiB send; a smaller one goes out as bytes, read whole).
    big = PNG + bytes(100_000)

    class EarlyAnswer(Recorder):
        def send(self, request, **kwargs):  # type: ignore[override]
            request.body.read(10)  # the server answered after 10 bytes
            self.sent.append(None)  # type: ignore[arg-type]
            return Reply(json_body=upload_answer()).build(request)

    hook, _ = make_hook(
        recorder=EarlyAnswer(), upload_encoding="raw", hook_kwargs={"retry_integrity_errors": False}
    )
    with pytest.raises(CapillaryIntegrityError, match="Capillary answered after reading 10 of 100051 bytes"):
        hook.upload_file(big, file_name="test.png")


# -- validation before any request ---------------------------------------------------------------


def invalid(hook: CapillaryFileHook, source, **kwargs) -> str:
    with pytest.raises(CapillaryInvalidInputError) as info:
        hook.upload_file(source, **kwargs)
    return str(info.value)


def test_invalid_inputs_send_nothing_and_name_file_namespace_and_connection(make_hook, tmp_path: Path):
    hook, rec = make_hook(hook_kwargs={"max_file_size": 100})
    ids = "namespace 'rewards', connection 'capillary_default')"
    assert invalid(hook, tmp_path / "missing.png").startswith(
        f"file '{tmp_path}/missing.png' does not exist (file"
    )
    assert invalid(hook, tmp_path) == f"'{tmp_path}' is not a regular file (file None, {ids}"
    assert invalid(hook, PNG) == f"file_name is required to upload <bytes> (file None, {ids}"
    assert invalid(hook, PNG, file_name="../x.png") == (
        f"file name '../x.png' contains a path separator: give a plain file name (file '../x.png', {ids}"
    )
    assert invalid(hook, PNG, file_name="a.jpg") == (
        "content of 'a.jpg' looks like png, but its extension says jpeg "
        f"(set check_content=false to skip this check) (file 'a.jpg', {ids}"
    )
    assert invalid(hook, b"", file_name="a.png") == (
        f"file 'a.png' is empty (set allow_empty=true to upload empty files) (file 'a.png', {ids}"
    )
    assert invalid(hook, PNG * 2, file_name="a.png") == (
        f"file 'a.png' is 102 bytes, larger than max_file_size 100 (file 'a.png', {ids}"
    )
    assert invalid(hook, PNG, file_name="a.png", namespace="a/b").startswith("namespace 'a/b' is not a plain")
    assert invalid(hook, PNG, file_name="a.png", content_type="nonsense").startswith(
        "content type 'nonsense'"
    )
    assert rec.sent == []


def test_check_content_can_be_turned_off(make_hook):
    hook, rec = make_hook(hook_kwargs={"check_content": False})
    hook.upload_file(PNG, file_name="really.jpg")
    assert file_part(rec.sent[0])[0].endswith(b"Content-Type: image/jpeg")


def test_explicit_content_type_wins(make_hook):
    hook, rec = make_hook()
    hook.upload_file(PNG, file_name="test.png", content_type="image/apng")
    assert file_part(rec.sent[0])[0].endswith(b"Content-Type: image/apng")


def test_invalid_error_carries_attributes(make_hook):
    hook, _ = make_hook()
    with pytest.raises(CapillaryInvalidInputError) as info:
        hook.upload_file(b"", file_name="a.png", namespace="loyalty")
    assert (info.value.conn_id, info.value.file_name, info.value.namespace) == (
        "capillary_default",
        "a.png",
        "loyalty",
    )


def test_prepare_upload_is_reusable(make_hook, tmp_path: Path):
    image = tmp_path / "test.png"
    image.write_bytes(PNG)
    hook, rec = make_hook()
    prepared = hook.prepare_upload(image, namespace="loyalty")
    assert prepared == PreparedUpload(
        file_name="test.png",
        namespace="loyalty",
        content_type="image/png",
        size=51,
        source_label=str(image),
        url=f"{BASE}/api_gateway/file-service/loyalty/test.png",
    )
    assert rec.sent == []
    with prepared.opener() as stream:
        assert stream.read() == PNG
    hook.upload(prepared)
    hook.upload(prepared)
    assert [file_part(s)[1] for s in rec.sent] == [PNG, PNG]


def test_file_changing_during_upload_is_not_sent_short(make_hook, tmp_path: Path):
    image = tmp_path / "test.png"
    image.write_bytes(PNG)
    hook, _ = make_hook()
    prepared = hook.prepare_upload(image)
    image.write_bytes(PNG[:20])
    with pytest.raises(
        CapillaryInvalidInputError, match="ended after 20 of 51 bytes: it changed while being"
    ):
        hook.upload(prepared)


# -- secrets -------------------------------------------------------------------------------------


def test_secrets_never_reach_messages_or_logs(make_hook, capsys):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    secure = upload_answer()["secureFilePath"]
    script = [
        token_reply(token),
        Reply(503, {"message": f"bad token {token}", "echo": SECRET}),
        Reply(json_body=upload_answer(status="false", message=f"see {secure}")),
        Reply(400, {"message": f"secret={SECRET} url={secure}"}),
    ]
    hook, _ = make_hook(recorder=Recorder(script), auth_type="oauth", password=SECRET)
    with pytest.raises(CapillaryRequestRejectedError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert len(hook.lines) == 2  # two retries logged
    out, err = capsys.readouterr()
    texts = [str(info.value), info.value.body or "", *hook.lines, out, err]
    for text in texts:
        for secret in (SECRET, token, "SECRETSESSIONTOKEN", "86c114267239ef985ff81c32ad0fa1d6"):
            assert secret not in text


def test_basic_secrets_never_reach_messages(make_hook):
    md5 = hashlib.md5(PASSWORD.encode()).hexdigest()
    hook, _ = make_hook([Reply(400, {"message": f"user till.user:{md5} password {PASSWORD}"})])
    with pytest.raises(CapillaryRequestRejectedError) as info:
        hook.upload_file(PNG, file_name="test.png")
    for text in (str(info.value), info.value.body or ""):
        assert md5 not in text
        assert PASSWORD not in text


# -- test_connection -----------------------------------------------------------------------------

PROBE = f"{BASE}/api_gateway/file-service/rewards"


@pytest.mark.parametrize(
    ("script", "ok", "message"),
    [
        ([Reply(404)], True, f"ok: {PROBE} answered HTTP 404 to basic credentials"),
        ([Reply(405)], True, f"ok: {PROBE} answered HTTP 405 to basic credentials"),
        ([Reply(401)], False, f"credentials refused: {PROBE} answered HTTP 401 for basic auth"),
        ([Reply(403)], False, f"credentials refused: {PROBE} answered HTTP 403 for basic auth"),
        ([Reply(503)], False, f"service unavailable: {PROBE} answered HTTP 503"),
        ([requests.ConnectionError("refused")], False, f"cannot reach {BASE}: refused"),
        ([requests.exceptions.ConnectTimeout("slow")], False, f"cannot reach {BASE}: slow"),
        (
            [Reply(307, headers={"Location": "/elsewhere"})],
            False,
            f"inconclusive: {PROBE} answered a redirect (HTTP 307) before proving the credentials; "
            "set the connection's test_path extra to an authenticated path",
        ),
    ],
    ids=["404", "405", "401", "403", "503", "connection-error", "timeout", "redirect"],
)
def test_test_connection_basic(make_hook, script, ok, message):
    hook, rec = make_hook(script)
    assert hook.test_connection() == (ok, message)
    assert [(s.method, s.url) for s in rec.sent] == [("GET", PROBE)]
    assert rec.sent[0].headers["Authorization"].startswith("Basic ")


def test_test_connection_uses_test_path(make_hook):
    hook, _ = make_hook([Reply(200)], test_path="/health")
    assert hook.test_connection() == (True, f"ok: {BASE}/health answered HTTP 200 to basic credentials")


@pytest.mark.parametrize(
    ("script", "ok", "message"),
    [
        (
            [token_reply("t"), Reply(404)],
            True,
            f"ok: token generated, {PROBE} answered HTTP 404 to oauth credentials",
        ),
        (
            [Reply(401, {"errors": [{"code": 1, "message": "bad key"}]})],
            False,
            f"credentials refused: OAuth token endpoint {TOKEN_URL} refused client key 'till.user': "
            "HTTP 401, bad key (code 1)",
        ),
        ([requests.ConnectionError("down")], False, f"cannot reach {BASE}: down"),
        ([Reply(503)], False, "service unavailable: OAuth token endpoint answered HTTP 503"),
    ],
    ids=["ok", "refused", "unreachable", "overloaded"],
)
def test_test_connection_oauth(make_hook, script, ok, message):
    hook, _ = make_hook(script, auth_type="oauth")
    assert hook.test_connection() == (ok, message)


def test_test_connection_reports_configuration_errors(set_conn):
    set_conn(timeout="never")
    ok, message = CapillaryFileHook().test_connection()
    assert not ok
    assert message.startswith(
        "invalid configuration: connection 'capillary_default': timeout must be a number"
    )


def test_test_connection_reports_a_missing_connection():
    """The documented start (``invalid configuration``) and how to define the connection."""
    assert CapillaryFileHook("no_such_conn").test_connection() == (
        False,
        "invalid configuration: connection 'no_such_conn' is not defined (define it in the UI, with "
        "'airflow connections add' or as AIRFLOW_CONN_NO_SUCH_CONN)",
    )


def test_a_missing_connection_is_a_config_error_before_any_request():
    with pytest.raises(CapillaryConfigError, match=r"^connection 'no_such_conn' is not defined ") as info:
        CapillaryFileHook("no_such_conn").upload_file(PNG, file_name="test.png")
    assert info.value.conn_id == "no_such_conn"


# -- lifecycle -----------------------------------------------------------------------------------


def test_no_io_in_init_and_one_session_per_hook(mocker):
    connection = Connection(conn_id="whatever", conn_type="capillary", host=BASE, login="u", password="p")
    get_connection = mocker.patch.object(CapillaryFileHook, "get_connection", return_value=connection)
    hook = CapillaryFileHook("whatever", namespace="x")
    get_connection.assert_not_called()
    assert hook.capillary_conn_id == "whatever"
    barrier = threading.Barrier(8)
    seen: list[tuple[int, int, int]] = []

    def first_use() -> None:
        barrier.wait()  # eight threads reach the lazy construction together
        seen.append((id(hook.session), id(hook.auth), id(hook.config)))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    assert len(set(seen)) == 1  # one session, one auth object, one config
    assert hook.get_conn() is hook.session
    get_connection.assert_called_once_with("whatever")


def test_session_is_shared_and_close_releases_it(make_hook):
    hook, _ = make_hook()
    sessions = set()
    threads = [threading.Thread(target=lambda: sessions.add(id(hook.session))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sessions) == 1
    assert hook.get_conn() is hook.session
    adapter = requests.adapters.HTTPAdapter
    first = hook.session
    hook.close()
    assert hook.session is not first
    assert isinstance(hook.session.get_adapter("https://127.0.0.1"), adapter)


def test_pool_is_sized_to_max_connections(set_conn):
    set_conn()
    adapter = CapillaryFileHook(max_connections=4).session.get_adapter(BASE)
    assert adapter._pool_maxsize == 4  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]


def test_the_hook_keywords_are_the_settings_a_task_gives_with_the_tables_defaults():
    """One keyword per hook setting of the table; task policy defaults to the table's value,
    the settings a connection may also hold to None (the extra, else the table)."""
    from airflow_capillary import settings

    parameters = inspect.signature(CapillaryFileHook.__init__).parameters
    keywords = {n: p.default for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(keywords) == set(settings.HOOK_ARGUMENTS)
    for name, default in keywords.items():
        setting = settings.BY_NAME[name]
        assert default == (setting.default if setting.scope == "task" else None), name


def test_hook_keywords_reach_the_config(set_conn):
    set_conn()
    config = CapillaryFileHook(max_retries=0, retry_on_500=True, max_file_size=7, timeout=3).config
    assert (config.max_retries, config.retry_on_500, config.max_file_size, config.timeout) == (
        0,
        True,
        7,
        (3.0, 3.0),
    )
