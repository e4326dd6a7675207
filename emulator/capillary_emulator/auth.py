"""Authentication as Capillary does it: Basic with MD5 passwords, and OAuth client credentials.

Basic: ``Authorization: Basic base64("{user}:{md5 hex of password}")``. The MD5 is compared
case-insensitively; a plain password in place of the MD5 is refused, as by the real service.

OAuth: ``POST /v3/oauth/token/generate`` with ``{"key", "secret"}`` returns a JWT-shaped access token
(HS256 over ``sub``/``iat``/``exp``/``jti`` with a key derived from the persistent emulator key, so
tokens survive a restart). It is accepted in ``X-CAP-API-OAUTH-TOKEN`` or as
``Authorization: Bearer``; an unknown, tampered or expired token is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capillary_emulator.signing import derive_key

TOKEN_HEADER = "x-cap-api-oauth-token"
#: Token requests remembered (oldest dropped first).
TOKEN_LOG_SIZE = 10_000


def md5_hex(password: str) -> str:
    """Return the MD5 hex digest Capillary expects in place of the password.

    :param password: plain password.
    :return: 32 lowercase hex characters.
    """
    return hashlib.md5(password.encode()).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Principal:
    """Who made a request.

    :param kind: ``basic`` or ``oauth``.
    :param name: the till user name or the OAuth client key.
    """

    kind: str
    name: str


class Authenticator:
    """Check upload credentials and issue OAuth tokens.

    :param key: the emulator's master key.
    :param users: basic users, name to plain password.
    :param oauth_clients: OAuth clients, key to secret.
    :param token_ttl: lifetime of issued tokens in seconds.
    """

    def __init__(
        self, key: bytes, *, users: Mapping[str, str], oauth_clients: Mapping[str, str], token_ttl: int
    ) -> None:
        self._key = derive_key(key, "oauth")
        self.users = {name: md5_hex(password) for name, password in users.items()}
        self.oauth_clients = dict(oauth_clients)
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._token_log: deque[dict[str, Any]] = deque(maxlen=TOKEN_LOG_SIZE)
        self._issued: deque[str] = deque(maxlen=TOKEN_LOG_SIZE)

    # -- OAuth tokens ------------------------------------------------------------------------------
    def verify_client(self, key: str, secret: str) -> bool:
        """Check an OAuth client's credentials (nothing is logged).

        :param key: client key.
        :param secret: client secret.
        :return: whether they are right.
        """
        expected = self.oauth_clients.get(key)
        return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())

    def record_token_request(self, key: str, *, accepted: bool, limited: bool = False) -> None:
        """Log one token request.

        :param key: client key.
        :param accepted: whether a token was issued.
        :param limited: whether it was refused by the rate limit (429).
        """
        with self._lock:
            self._token_log.append(
                {
                    "key": key,
                    "accepted": accepted,
                    "limited": limited,
                    "ttl": self.token_ttl,
                    "time": time.time(),
                }
            )

    def issue_token(self, key: str, secret: str) -> tuple[str, int] | None:
        """Issue an access token for a client.

        :param key: client key.
        :param secret: client secret.
        :return: ``(token, ttl_seconds)``, or ``None`` for bad credentials. Every call is logged.
        """
        accepted = self.verify_client(key, secret)
        ttl = self.token_ttl
        token = None
        if accepted:
            now = int(time.time())
            header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
            claims = {"sub": key, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
            payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
            signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            token = f"{header}.{payload}.{_b64url(signature)}"
            with self._lock:
                self._issued.append(token)
        self.record_token_request(key, accepted=accepted)
        return (token, ttl) if token else None

    def check_token(self, token: str) -> Principal | None:
        """Validate an access token.

        :param token: the token as sent.
        :return: the client, or ``None`` when unknown, tampered or expired.
        """
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _b64url_decode(signature)):
                return None
            claims = json.loads(_b64url_decode(payload))
        except ValueError:  # binascii.Error is one too
            return None
        if not isinstance(claims, dict) or claims.get("sub") not in self.oauth_clients:
            return None
        if not isinstance(claims.get("exp"), int) or time.time() >= claims["exp"]:
            return None
        return Principal("oauth", claims["sub"])

    def token_requests(self) -> list[dict[str, Any]]:
        """Return the log of token requests: ``key``, ``accepted``, ``limited``, ``ttl``, ``time``."""
        with self._lock:
            return [dict(entry) for entry in self._token_log]

    def issued_tokens(self) -> list[str]:
        """Return the access tokens issued (the latest :data:`TOKEN_LOG_SIZE`), oldest first.

        In-process only (a leak scan needs them); no endpoint serves them, and :meth:`reset`
        keeps them, since they stay valid.
        """
        with self._lock:
            return list(self._issued)

    def reset(self) -> None:
        """Forget the token request log."""
        with self._lock:
            self._token_log.clear()

    # -- requests ----------------------------------------------------------------------------------
    def check_basic(self, value: str) -> Principal | None:
        """Validate the credentials of a Basic ``Authorization`` header value.

        :param value: the text after ``Basic``.
        :return: the user, or ``None``.
        """
        try:  # ValueError: non-ASCII text; binascii.Error and UnicodeDecodeError are ValueErrors too
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            return None
        name, sep, digest = decoded.partition(":")
        expected = self.users.get(name)
        # bytes: compare_digest refuses str with non-ASCII characters (TypeError)
        if not sep or expected is None or not hmac.compare_digest(expected.encode(), digest.lower().encode()):
            return None
        return Principal("basic", name)

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        """Authenticate an API request from its headers.

        :param headers: request headers (case-insensitive mapping).
        :return: the principal, or ``None`` when the credentials are missing or wrong.
        """
        token = headers.get(TOKEN_HEADER)
        if token:
            return self.check_token(token.strip())
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            return self.check_basic(value)
        if scheme.lower() == "bearer":
            return self.check_token(value.strip())
        return None
