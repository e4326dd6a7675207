"""Basic and OAuth auth objects: exact headers, token caching across threads, refresh, errors."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from airflow_capillary.exceptions import CapillaryAuthError
from airflow_capillary.hooks._answer import Answer
from airflow_capillary.hooks._auth import CapillaryBasicAuth, CapillaryOAuth
from airflow_capillary.hooks._retry import ServiceFailure
from tests.hooks.recorder import Reply

BASIC_HEADER = "Basic dGlsbDo1ZjRkY2MzYjVhYTc2NWQ2MWQ4MzI3ZGViODgyY2Y5OQ=="  # till:md5("password")
TOKEN_URL = "https://127.0.0.1:8443/v3/oauth/token/generate"


def prepared() -> requests.PreparedRequest:
    return requests.Request("POST", "https://127.0.0.1:8443/x").prepare()


def test_basic_header_hashes_the_password(mocker):
    registered = mocker.patch("airflow_capillary.hooks._auth.register_secret")
    auth = CapillaryBasicAuth("till", "password")
    assert auth(prepared()).headers["Authorization"] == BASIC_HEADER
    assert auth.secrets() == (
        "password",
        "5f4dcc3b5aa765d61d8327deb882cf99",
        "dGlsbDo1ZjRkY2MzYjVhYTc2NWQ2MWQ4MzI3ZGViODgyY2Y5OQ==",
        BASIC_HEADER,
    )
    assert [c.args[0] for c in registered.call_args_list] == list(auth.secrets())


@pytest.mark.parametrize("digest", ["5f4dcc3b5aa765d61d8327deb882cf99", "5F4DCC3B5AA765D61D8327DEB882CF99"])
def test_basic_header_with_an_md5_password_sends_it_as_is(digest):
    auth = CapillaryBasicAuth("till", digest, password_is_md5=True)
    assert auth(prepared()).headers["Authorization"] == BASIC_HEADER


class TokenEndpoint:
    """A fake token ``post`` (the hook passes its bounded exchange): records calls, answers replies."""

    def __init__(self, *replies: Reply, delay: float = 0.0) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.delay = delay
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self, url: str, payload: dict[str, str]) -> Answer:
        with self._lock:
            self.calls.append((url, payload))
            self._count += 1
            reply = self.replies.pop(0) if self.replies else token_reply(f"jwt-token-{self._count}")
        time.sleep(self.delay)
        with reply.build(requests.Request("POST", url).prepare()) as response:
            return Answer.read(response)


def token_reply(token: str, ttl: Any = 300) -> Reply:
    return Reply(json_body={"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": None})


def oauth(endpoint: TokenEndpoint, clock: Any = time.monotonic) -> CapillaryOAuth:
    return CapillaryOAuth(
        key="client-key",
        secret="client-secret",
        token_url=TOKEN_URL,
        token_header="X-CAP-API-OAUTH-TOKEN",
        post=endpoint,
        clock=clock,
    )


#: A token shaped like the real ones (a JWT): long, mixed case and digits.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjbGllbnQta2V5In0.Zm9vYmFyLXNpZ25hdHVyZQ"


def test_token_request_is_the_documented_one(mocker):
    masked = mocker.patch("airflow.sdk.log.mask_secret")
    endpoint = TokenEndpoint(token_reply(JWT))
    auth = oauth(endpoint)
    request = auth(prepared())
    assert request.headers["X-CAP-API-OAUTH-TOKEN"] == JWT
    assert "Authorization" not in request.headers
    assert endpoint.calls == [(TOKEN_URL, {"key": "client-key", "secret": "client-secret"})]
    assert [c.args[0] for c in masked.call_args_list] == ["client-secret", JWT]
    assert auth.secrets() == ("client-secret", JWT)


@pytest.mark.parametrize(
    "token", ["rewards", "jwt-token-1", "aaaaaaaaaaaaaaaaaaaa", "has space 1234567890Ab"]
)
def test_a_token_that_does_not_look_like_one_is_not_masked(mocker, token):
    """A hostile token endpoint must not make the masker hide an ordinary word from every log line."""
    masked = mocker.patch("airflow.sdk.log.mask_secret")
    auth = oauth(TokenEndpoint(token_reply(token)))
    assert auth.token() == token
    assert [c.args[0] for c in masked.call_args_list] == ["client-secret"]
    assert auth.secrets() == ("client-secret", token)  # still redacted from the hook's own messages


def test_one_token_for_500_requests_over_8_threads():
    endpoint = TokenEndpoint(delay=0.05)
    auth = oauth(endpoint)
    seen: list[str] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(500 // 8 + 1):
            seen.append(auth(prepared()).headers["X-CAP-API-OAUTH-TOKEN"])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(endpoint.calls) == 1
    assert set(seen) == {"jwt-token-1"}
    assert len(seen) == 8 * (500 // 8 + 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("ttl", "still_cached_at", "refreshed_at"),
    [(300, 269.9, 270.0), (3600, 3569.9, 3570.0), (8, 5.9, 6.0), ("120", 89.9, 90.0)],
    ids=["ttl-300-margin-30", "ttl-3600-margin-30", "ttl-8-margin-quarter", "ttl-as-string"],
)
def test_token_is_refreshed_before_it_expires(ttl, still_cached_at, refreshed_at):
    clock = Clock()
    endpoint = TokenEndpoint(token_reply("first", ttl), token_reply("second", ttl))
    auth = oauth(endpoint, clock)
    assert auth.token() == "first"
    clock.now = 1000.0 + still_cached_at
    assert auth.token() == "first"
    clock.now = 1000.0 + refreshed_at
    assert auth.token() == "second"
    assert len(endpoint.calls) == 2


@pytest.mark.parametrize(
    "ttl", [None, 0, -5, "soon", True], ids=["missing", "zero", "negative", "text", "bool"]
)
def test_unusable_ttl_assumes_sixty_seconds(ttl):
    clock = Clock()
    auth = oauth(TokenEndpoint(token_reply("first", ttl)), clock)
    auth.token()
    clock.now += 44.9  # 60 - min(30, 60/4)
    assert auth.token() == "first"
    clock.now += 0.2
    assert auth.token() == "jwt-token-2"


def test_invalidate_drops_only_the_refused_token():
    auth = oauth(TokenEndpoint())
    assert auth.token() == "jwt-token-1"
    auth.invalidate("some-older-token")
    assert auth.token() == "jwt-token-1"
    auth.invalidate("jwt-token-1")
    assert auth.token() == "jwt-token-2"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(401, {"data": None, "errors": [{"code": 1001, "message": "Invalid key or secret"}]}),
            "HTTP 401, Invalid key or secret \\(code 1001\\)",
        ),
        (
            Reply(200, {"data": None, "errors": [{"code": 1002, "message": "Client disabled"}]}),
            "HTTP 200, Client disabled \\(code 1002\\)",
        ),
        (Reply(200, {"data": {"ttlSeconds": 300}}), "HTTP 200, no access token in the answer"),
        (Reply(200, text="<html>oops</html>"), "HTTP 200, no access token in the answer"),
        (Reply(400, {"message": "bad request"}), "HTTP 400, bad request"),
    ],
    ids=["401-errors", "200-errors", "no-token", "not-json", "400-message"],
)
def test_token_endpoint_refusals(reply, message):
    auth = oauth(TokenEndpoint(reply))
    with pytest.raises(
        CapillaryAuthError,
        match=f"^OAuth token endpoint {TOKEN_URL} refused client key 'client-key': {message}$",
    ) as info:
        auth.token()
    assert info.value.status_code == reply.status
    assert "client-secret" not in str(info.value)


@pytest.mark.parametrize("status", [429, 500, 501, 503])
def test_token_endpoint_failure_is_a_service_failure_safe_to_repeat(status):
    auth = oauth(TokenEndpoint(Reply(status, {"errors": []}, headers={"Retry-After": "4"})))
    with pytest.raises(ServiceFailure, match=f"^OAuth token endpoint answered HTTP {status}$") as info:
        auth.token()
    assert (info.value.status_code, info.value.retry_after(), info.value.idempotent) == (status, 4.0, True)


@pytest.mark.parametrize(
    ("ttl", "margin"),
    [(2, 1.0), (3, 1.5), (5, 2.0), (8, 2.0), (60, 15.0), (300, 30.0), (3600, 30.0)],
    ids=["2s", "3s", "5s", "8s", "1min", "5min", "1h"],
)
def test_refresh_margin_is_a_quarter_at_least_2s_at_most_half_and_30s(ttl, margin):
    from airflow_capillary.hooks._auth import refresh_margin

    assert refresh_margin(ttl) == margin
