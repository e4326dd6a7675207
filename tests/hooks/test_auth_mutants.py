"""Kills mutmut survivors in airflow_capillary/hooks/_auth.py: the Basic header and the OAuth token fetch."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from airflow_capillary._redact import redact_body
from airflow_capillary.exceptions import CapillaryAuthError
from airflow_capillary.hooks._answer import Answer
from airflow_capillary.hooks._auth import CapillaryBasicAuth, CapillaryOAuth, proxy_secrets
from airflow_capillary.hooks._retry import ServiceFailure
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hooks.conftest import PASSWORD
from tests.hooks.recorder import BASE, PNG, Recorder, Reply

TOKEN_URL = "https://svc.example/v3/oauth/token/generate"
SECRET = "client-Secret-77"
MakeHook = Callable[..., tuple[CapillaryFileHook, Recorder]]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """The token endpoint: answers from a list, records the requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, payload: dict[str, str]) -> Answer:
        self.requests.append((url, payload))
        return self.answers.pop(0)


def token_answer(token: Any = "tok-AAAA1111", ttl: Any = 300, status: int = 200, **extra: Any) -> Answer:
    body = {"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": None, **extra}
    return Answer(status, {}, json.dumps(body).encode())


def oauth(*answers: Answer, clock: Clock | None = None) -> tuple[CapillaryOAuth, Endpoint, Clock]:
    endpoint = Endpoint(*answers)
    clock = clock or Clock()
    auth = CapillaryOAuth(
        key="the-key", secret=SECRET, token_url=TOKEN_URL, token_header="X-Tok", post=endpoint, clock=clock
    )
    return auth, endpoint, clock


def refused(auth: CapillaryOAuth) -> CapillaryAuthError:
    with pytest.raises(CapillaryAuthError) as info:
        auth.fetch()
    return info.value


def test_basic_header_is_user_and_md5_in_base64() -> None:
    digest = hashlib.md5(b"p\xc3\xa4ss").hexdigest()
    auth = CapillaryBasicAuth("till", "päss")
    token = base64.b64encode(f"till:{digest}".encode()).decode()
    assert auth.secrets() == ("päss", digest, token, f"Basic {token}")
    md5 = CapillaryBasicAuth("till", digest.upper(), password_is_md5=True)
    assert md5.secrets()[1:] == (digest, token, f"Basic {token}")


def test_fetch_posts_the_credentials_and_schedules_the_refresh() -> None:
    auth, endpoint, _ = oauth(token_answer(ttl=100))
    token = auth.fetch()
    assert endpoint.requests == [(TOKEN_URL, {"key": "the-key", "secret": SECRET})]
    assert (token.value, token.refresh_at) == ("tok-AAAA1111", 100.0 + 100 - 25)
    assert auth.secrets() == (SECRET, "tok-AAAA1111")


def test_the_refresh_margin_is_capped_by_the_setting() -> None:
    endpoint = Endpoint(token_answer(ttl=1000))
    auth = CapillaryOAuth(
        key="k", secret=SECRET, token_url=TOKEN_URL, token_header="X-Tok", post=endpoint, refresh_margin=7.0,
        clock=lambda: 0.0,
    )  # fmt: skip
    assert auth.fetch().refresh_at == 993.0


@pytest.mark.parametrize(
    ("ttl", "lifetime"),
    [(1, 1.0), (0.5, 0.5), ("30", 30.0), (" 30 ", 30.0), (0, 60.0), (-5, 60.0), (True, 60.0), ("x", 60.0),
     ("٣", 60.0), (None, 60.0)],
)  # fmt: skip
def test_the_tokens_lifetime(ttl: Any, lifetime: float) -> None:
    auth, _, _ = oauth(token_answer(ttl=ttl), clock=Clock())
    token = auth.fetch()
    margin = min(30.0, max(lifetime / 4, min(2.0, lifetime / 2)))
    assert token.refresh_at == 100.0 + lifetime - margin


def test_only_the_last_four_tokens_are_kept_as_secrets() -> None:
    auth, _, _ = oauth(*(token_answer(f"tok-{n}-ABCDEFGH") for n in range(6)))
    for _ in range(6):
        auth.fetch()
    assert auth.secrets() == (SECRET, *(f"tok-{n}-ABCDEFGH" for n in range(2, 6)))


def test_a_cached_token_is_reused_until_its_refresh_time() -> None:
    auth, endpoint, clock = oauth(token_answer("first-ABCD1234", ttl=100), token_answer("second-ABCD1234"))
    assert auth.token() == "first-ABCD1234"
    clock.now = 174.9
    assert auth.for_request().token == "first-ABCD1234"
    clock.now = 175.0
    assert auth.token() == "second-ABCD1234"
    assert len(endpoint.requests) == 2
    auth.invalidate("first-ABCD1234")
    assert auth.token() == "second-ABCD1234"
    auth.invalidate("second-ABCD1234")
    with pytest.raises(IndexError):  # nothing more scripted: a fetch was attempted
        auth.token()


def test_a_redirect_is_refused_without_its_body() -> None:
    auth, _, _ = oauth(Answer(302, {"Location": "https://evil.example/x"}, b"secret page", url=TOKEN_URL))
    err = refused(auth)
    assert (err.message, err.status_code, err.body) == (
        f"OAuth token endpoint {TOKEN_URL} answered HTTP 302, a redirect to https://evil.example: "
        "not followed, the client secret is sent to the token URL only",
        302,
        None,
    )


def test_an_overloaded_endpoint_is_a_repeatable_service_failure() -> None:
    auth, _, _ = oauth(Answer(503, {"Retry-After": "7"}, f"busy {SECRET}".encode()))
    with pytest.raises(ServiceFailure) as info:
        auth.fetch()
    err = info.value
    assert (err.message, err.status_code, err.retry_after_header, err.body, err.idempotent) == (
        "OAuth token endpoint answered HTTP 503",
        503,
        "7",
        "busy ***",
        True,
    )


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (token_answer(status=201), "HTTP 201, no access token in the answer"),
        (token_answer(""), "HTTP 200, no access token in the answer"),
        (token_answer(5), "HTTP 200, no access token in the answer"),
        (Answer(200, {}, b'{"data": "x"}'), "HTTP 200, no access token in the answer"),
        (Answer(200, {}, b"not json"), "HTTP 200, no access token in the answer"),
        (Answer(200, {}, b"[1]"), "HTTP 200, no access token in the answer"),
        (Answer(401, {}, b'{"errors": [{"code": 1, "message": "bad key"}]}'), "HTTP 401, bad key (code 1)"),
        (Answer(200, {}, b'{"data": {"accessT', complete=False), "HTTP 200, a body larger than 1048576 bytes"
         " (not read further)"),
    ],
)  # fmt: skip
def test_refusals_name_the_key_and_the_problem(answer: Answer, problem: str) -> None:
    auth, _, _ = oauth(answer)
    err = refused(auth)
    assert (err.message, err.status_code, err.body) == (
        f"OAuth token endpoint {TOKEN_URL} refused client key 'the-key': {problem}",
        answer.status_code,
        redact_body(answer.body),
    )


def test_a_refusal_body_is_redacted() -> None:
    auth, _, _ = oauth(Answer(400, {}, f'{{"message": "no", "echo": "{SECRET}"}}'.encode()))
    err = refused(auth)
    assert err.body == '{"message": "no", "echo": "***"}'
    assert err.message == f"OAuth token endpoint {TOKEN_URL} refused client key 'the-key': HTTP 400, no"


def test_proxy_secrets() -> None:
    basic = base64.b64encode(b"u s:p@ss").decode()
    assert proxy_secrets(
        {"https": "http://u%20s:p%40ss@proxy:3128", "http": "http://proxy:3128", "x": "http://[::1"}
    ) == (
        "u s:p@ss",
        "p@ss",
        "p%40ss",
        basic,
    )


def test_the_default_refresh_margin_is_at_most_30_seconds() -> None:
    auth, _, _ = oauth(token_answer(ttl=1000))
    assert auth.fetch().refresh_at == 100.0 + 1000 - 30


HOOK_TOKEN_URL = f"{BASE}/v3/oauth/token/generate"


def hook_token(token: str) -> Reply:
    return Reply(json_body={"data": {"accessToken": token, "ttlSeconds": 300}, "errors": None})


def test_the_token_request_sends_json_whatever_the_static_headers(make_hook: MakeHook) -> None:
    hook, rec = make_hook(
        [hook_token("tok-ABCDEFGH1234")], auth_type="oauth", headers={"Accept": "text/html"}
    )
    hook.upload_file(PNG, file_name="test.png")
    token, upload = rec.sent
    assert (token.method, token.url, token.body) == (
        "POST",
        HOOK_TOKEN_URL,
        json.dumps({"key": "till.user", "secret": PASSWORD}).encode(),
    )
    assert (token.headers["Content-Type"], token.headers["Accept"]) == (
        "application/json",
        "application/json",
    )
    assert "Authorization" not in token.headers
    assert upload.headers["Accept"] == "text/html"


def test_a_rate_limited_token_request_waits_in_the_hooks_limiter(make_hook: MakeHook) -> None:
    script = [Reply(429, headers={"Retry-After": "3"}), hook_token("tok-ABCDEFGH1234")]
    hook, rec = make_hook(script, auth_type="oauth")
    hook.upload_file(PNG, file_name="test.png")
    assert [s.url for s in rec.sent] == [
        HOOK_TOKEN_URL,
        HOOK_TOKEN_URL,
        f"{BASE}/api_gateway/file-service/rewards/test.png",
    ]
    assert hook.rate_limit_stats.rate_limited == 1
    lines: list[str] = hook.lines  # type: ignore[attr-defined]
    assert not [line for line in lines if line.startswith("attempt")]  # the limiter absorbed it: no retry


def test_a_same_origin_redirect_of_the_token_request_is_not_followed(make_hook: MakeHook) -> None:
    hook, rec = make_hook([Reply(307, headers={"Location": "/v3/elsewhere"})], auth_type="oauth")
    assert hook.test_connection() == (
        False,
        f"credentials refused: OAuth token endpoint {HOOK_TOKEN_URL} answered HTTP 307, "
        f"a redirect to {BASE}: not followed, the client secret is sent to the token URL only",
    )
    assert [s.url for s in rec.sent] == [HOOK_TOKEN_URL]
