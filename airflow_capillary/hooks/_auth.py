"""Authentication of requests to Capillary: Basic (MD5 password) and OAuth client credentials.

Both are :class:`requests.auth.AuthBase` objects shared by every thread of a hook. The Basic
header is computed once. The OAuth token is fetched once, cached behind a lock, refreshed
:attr:`CapillaryOAuth.refresh_margin` seconds before ``ttlSeconds`` runs out, and dropped by
:meth:`CapillaryOAuth.invalidate` after a 401 so that the next request fetches a new one.
The token request never follows a redirect: the client secret goes to the token URL only.
Configured credentials are registered with Airflow's secrets masker as soon as they are known;
a token only when it looks like one (a hostile answer must not mask ordinary words).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests
from requests.auth import AuthBase

from airflow_capillary._redact import register_answer_secret, register_secret
from airflow_capillary.exceptions import CapillaryAuthError
from airflow_capillary.hooks._answer import MAX_ANSWER_BYTES, NOT_JSON, Answer, capillary_message
from airflow_capillary.hooks._retry import ServiceFailure, is_service_failure
from airflow_capillary.hooks._session import exchange

if TYPE_CHECKING:
    from airflow_capillary.hooks._config import CapillaryConnectionConfig
    from airflow_capillary.hooks._rate_limit import RateLimiter

__all__ = [
    "CapillaryAuth",
    "CapillaryBasicAuth",
    "CapillaryOAuth",
    "TokenAuth",
    "TokenPost",
    "build_auth",
    "proxy_secrets",
    "refresh_margin",
]

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}

#: Sends the token request: ``post(token_url, {"key": ..., "secret": ...})`` -> the answer. The
#: hook's own exchange (its session, timeout and deadline, no redirects followed, bounded read).
TokenPost = Callable[[str, dict[str, str]], Answer]


class CapillaryAuth(AuthBase):
    """Base of the Capillary auth objects: knows its secrets, for redaction."""

    def for_request(self) -> AuthBase:
        """The auth of one request, complete before the request is sent (no I/O while it is).

        :return: this object (Basic); OAuth returns its current token (fetched now if needed).
        """
        return self

    def invalidate(self, value: str | None) -> None:
        """Forget a credential the service refused, if it is one that expires (OAuth tokens).

        :param value: the refused credential.
        """

    def secrets(self) -> tuple[str, ...]:
        """Return every credential this object holds (to redact from messages).

        :return: the values.
        """
        return ()


class CapillaryBasicAuth(CapillaryAuth):
    """``Authorization: Basic base64("{username}:{md5 hex of password}")``, computed once.

    :param username: the till username.
    :param password: the plain password, or its MD5 hex digest when ``password_is_md5``.
    :param password_is_md5: ``password`` is already the MD5 hex digest (sent as is).
    """

    def __init__(self, username: str, password: str, *, password_is_md5: bool = False) -> None:
        digest = password.lower() if password_is_md5 else _md5_hex(password)
        token = base64.b64encode(f"{username}:{digest}".encode()).decode("ascii")
        self._header = f"Basic {token}"
        self._secrets = (password, digest, token, self._header)
        for value in self._secrets:
            register_secret(value)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def secrets(self) -> tuple[str, ...]:
        """Return the password, its MD5, the encoded credentials and the header value.

        :return: the values.
        """
        return self._secrets


class TokenAuth(AuthBase):
    """Sends one given OAuth token (see :meth:`CapillaryOAuth.for_request`).

    :param header: the token header.
    :param token: the token.
    """

    def __init__(self, header: str, token: str) -> None:
        self.header = header
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self.token
        return request


@dataclasses.dataclass(frozen=True)
class _Token:
    value: str = dataclasses.field(repr=False)
    refresh_at: float


def refresh_margin(ttl: float, cap: float = 30.0) -> float:
    """Seconds before a token's end at which it is replaced.

    A quarter of the lifetime, at least 2 s (issuers round expiry times down to whole seconds:
    a 2 s token may live only 1 s), never more than half the lifetime nor ``cap``.

    :param ttl: the token's lifetime (``ttlSeconds``).
    :param cap: the hook's ``refresh_margin``.
    :return: the margin in seconds.
    """
    return min(cap, max(ttl / 4, min(2.0, ttl / 2)))


class CapillaryOAuth(CapillaryAuth):
    """OAuth client credentials: ``POST token_url {"key", "secret"}`` -> ``data.accessToken``.

    Thread-safe: concurrent requests share one token; only one thread fetches at a time.

    :param key: the client key.
    :param secret: the client secret.
    :param token_url: the token endpoint (``{host}/v3/oauth/token/generate`` by default).
    :param token_header: the header that carries the token (``X-CAP-API-OAUTH-TOKEN``).
    :param post: sends the token request (see :data:`TokenPost`).
    :param refresh_margin: refresh this many seconds before the token expires (at most a
        quarter of its lifetime).
    :param clock: monotonic clock, for tests.
    """

    #: Lifetime assumed when the token endpoint gives no usable ``ttlSeconds``.
    DEFAULT_TTL = 60.0

    def __init__(
        self,
        *,
        key: str,
        secret: str,
        token_url: str,
        token_header: str,
        post: TokenPost,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self._secret = secret
        self.token_url = token_url
        self.token_header = token_header
        self._post = post
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._seen: list[str] = []
        register_secret(secret)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.token_header] = self.token()
        return request

    def for_request(self) -> TokenAuth:
        """The current token as the auth of one request (fetched now, not while the request is
        being sent: a token request nested in an upload could wait for a rate-limit slot that the
        upload itself holds).

        :return: the token's auth.
        :raises CapillaryAuthError: see :meth:`token`.
        """
        return TokenAuth(self.token_header, self.token())

    def token(self) -> str:
        """Return a valid access token, fetching one if none is cached or it is about to expire.

        :return: the token.
        :raises CapillaryAuthError: the token endpoint refused the credentials or redirected.
        :raises ServiceFailure: the token endpoint answered 429 or 5xx (the hook may retry).
        :raises requests.RequestException: the token endpoint could not be reached.
        """
        cached = self._token
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        with self._lock:
            cached = self._token
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            self._token = self.fetch()
            return self._token.value

    def invalidate(self, value: str | None) -> None:
        """Drop the cached token if it is still ``value`` (the one a 401 answered).

        :param value: the token the refused request carried.
        """
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    def fetch(self) -> _Token:
        """Ask the token endpoint for a new token (no caching; ``token()`` caches).

        :return: the token and the monotonic time at which to refresh it.
        :raises CapillaryAuthError: the endpoint refused the credentials, redirected (never
            followed: the secret would go to the Location's origin), or answered nonsense.
        :raises ServiceFailure: the endpoint answered 429 or 5xx.
        """
        started = self._clock()
        answer = self._post(self.token_url, {"key": self.key, "secret": self._secret})
        status = answer.status_code
        origin = answer.redirect_origin() if 300 <= status < 400 else None
        if origin is not None:  # no body in the message: it is the redirecting server's text
            raise CapillaryAuthError(
                f"OAuth token endpoint {self.token_url} answered HTTP {status}, a redirect to {origin}: "
                "not followed, the client secret is sent to the token URL only",
                status_code=status,
            )
        if is_service_failure(status):
            raise ServiceFailure(
                f"OAuth token endpoint answered HTTP {status}",
                status_code=status,
                retry_after=answer.headers.get("Retry-After"),
                body=answer.redacted_body(self.secrets()),
                idempotent=True,
            )
        body = answer.json()
        data = body.get("data") if isinstance(body, dict) else None
        value = data.get("accessToken") if isinstance(data, dict) else None
        if status != 200 or not isinstance(value, str) or not value:
            if not answer.complete:
                problem = f"a body larger than {MAX_ANSWER_BYTES} bytes (not read further)"
            else:
                problem = (
                    capillary_message(body if body is not NOT_JSON else None)
                    or "no access token in the answer"
                )
            raise CapillaryAuthError(
                f"OAuth token endpoint {self.token_url} refused client key {self.key!r}: "
                f"HTTP {status}, {problem}",
                status_code=status,
                body=answer.redacted_body(self.secrets()),
            )
        register_answer_secret(value)
        self._seen = [*self._seen[-3:], value]
        ttl = _ttl(data) if isinstance(data, dict) else self.DEFAULT_TTL
        return _Token(value=value, refresh_at=started + ttl - refresh_margin(ttl, self.refresh_margin))

    def secrets(self) -> tuple[str, ...]:
        """Return the client secret and the recent tokens.

        :return: the values.
        """
        return (self._secret, *self._seen)


def _md5_hex(password: str) -> str:
    return hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()


def _ttl(data: dict[str, Any]) -> float:
    ttl = data.get("ttlSeconds")
    if isinstance(ttl, str) and ttl.strip().isascii() and ttl.strip().isdigit():
        ttl = int(ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        return CapillaryOAuth.DEFAULT_TTL
    return float(ttl)


def build_auth(
    config: CapillaryConnectionConfig, session: requests.Session, limiter: RateLimiter | None = None
) -> CapillaryAuth:
    """The auth object of a connection: Basic, or OAuth whose token request goes through ``session``.

    :param config: the resolved connection.
    :param session: the hook's session (the token request shares its pool, TLS and proxies).
    :param limiter: the hook's rate limiter (token requests count against the API key's limit).
    :return: the auth object.
    """
    if config.auth_type != "oauth":
        return CapillaryBasicAuth(config.login, config.password, password_is_md5=config.password_is_md5)

    def post_token(url: str, payload: dict[str, str]) -> Answer:
        return exchange(
            session, config.timeout, "POST", url, auth=None, limiter=limiter, follow_redirects=False,
            json=payload, headers=_JSON_HEADERS,
        )  # fmt: skip

    return CapillaryOAuth(
        key=config.login,
        secret=config.password,
        token_url=config.token_url,
        token_header=config.token_header,
        post=post_token,
    )


def proxy_secrets(proxies: Mapping[str, str]) -> tuple[str, ...]:
    """The credentials in proxy URLs, to redact: ``user:password``, the password, their Basic form.

    The passwords are registered with Airflow's secrets masker too.

    :param proxies: the connection's proxies.
    :return: the values.
    """
    found: list[str] = []
    for proxy in proxies.values():
        try:
            parts = urlsplit(proxy)
        except ValueError:
            continue
        if parts.password:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            basic = base64.b64encode(userinfo.encode()).decode()
            found += [userinfo, unquote(parts.password), parts.password, basic]
            register_secret(unquote(parts.password))
    return tuple(found)
