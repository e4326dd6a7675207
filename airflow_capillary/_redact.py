"""Redaction of credentials in text that may reach a log line, an exception or the UI.

Two layers protect secrets:

* :func:`register_secret` hands a value to Airflow's secrets masker, which replaces it
  wherever it appears in task logs and rendered fields;
* :func:`redact_text` / :func:`redact_url` rewrite text *before* it is put into an
  exception or a log call, so that no secret depends on the masker being configured
  (``dags test`` prints to the console unmasked, and exceptions travel beyond logs).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"

#: Query parameters of a pre-signed URL that are credentials (the rest, e.g. the date, are not).
SENSITIVE_QUERY_PARAMS = frozenset(
    {
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-credential",
        "signature",
        "awsaccesskeyid",
        "token",
        "access_token",
    }
)

_SENSITIVE_PARAM_RE = re.compile(
    r"(?i)((?:X-Amz-Security-Token|X-Amz-Signature|X-Amz-Credential|Signature|AWSAccessKeyId"
    r"|access_?token|accessToken|secret|password)\"?\s*[=:]\s*\"?)([^&\s\"',}]+)"
)
_AUTH_HEADER_RE = re.compile(
    r"(?i)((?:Authorization|X-CAP-API-OAUTH-TOKEN)\"?\s*[:=]\s*\"?)(?:Basic |Bearer )?[^\s\"',}]+"
)
_JWT_RE = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")

#: Query parameters of a pre-signed URL that carry the signing *session* (shared by every URL
#: signed with the same credentials): masking them makes any URL that leaks through unusable,
#: while the masker gains a few patterns per session, not one per URL.
SESSION_CREDENTIAL_PARAMS = frozenset({"x-amz-security-token", "x-amz-credential", "awsaccesskeyid"})

#: Longest response body kept on an exception.
MAX_BODY_CHARS = 500


def register_secret(value: str | None) -> None:
    """Register ``value`` with Airflow's secrets masker, if it is a non-trivial string.

    :param value: the secret; ``None`` and very short strings are ignored (masking ``"a"``
        everywhere would make logs unreadable without protecting anything).
    """
    if not value or len(value) < 4:
        return
    from airflow.sdk.log import mask_secret

    mask_secret(value)


_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_url_credentials(url: object) -> None:
    """Register the session credentials of a pre-signed URL with Airflow's secrets masker.

    Only :data:`SESSION_CREDENTIAL_PARAMS` are registered, each decoded and as it appears
    percent-encoded in the URL, once per process: Airflow's masker rebuilds one regex of every
    secret on each new one and runs it over every log line, so registering every URL (or its
    per-URL signature) would make a catalogue of thousands of images quadratic. The provider's
    own log lines and exceptions never hold a URL unredacted (:func:`redact_url`).

    :param url: the URL; anything that is not a string is ignored.
    """
    if not isinstance(url, str):
        return
    for part in urlsplit(url).query.split("&"):
        key, _, raw = part.partition("=")
        if unquote_plus(key).lower() not in SESSION_CREDENTIAL_PARAMS:
            continue
        for value in (unquote_plus(raw), raw):
            with _registered_lock:
                if value in _registered:
                    continue
                _registered.add(value)
            register_secret(value)


def redact_url(url: str) -> str:
    """Return ``url`` with the values of credential query parameters replaced by ``***``.

    :param url: any URL, typically a ``secureFilePath``.
    :return: the same URL, safe to log.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.query:
        return url
    query = [
        (key, MASK if key.lower() in SENSITIVE_QUERY_PARAMS else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def redact_records(records: Any) -> Any:
    """Return upload records (one dict, or a list of them) with every ``secure_file_path`` redacted.

    For what Airflow stores or logs on its own (rendered fields, trigger events). Anything else
    (e.g. the lazy sequence of a mapped task's outputs) is returned as it is.

    :param records: a record, a list of records, or anything else.
    :return: copies with redacted URLs, or ``records`` unchanged.
    """
    if isinstance(records, dict):
        url = records.get("secure_file_path")
        return {**records, "secure_file_path": redact_url(url)} if isinstance(url, str) else records
    if isinstance(records, list | tuple):
        return [redact_records(r) for r in records]
    return records


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with credentials replaced by ``***``.

    Masks the given ``secrets`` wherever they occur, credential query parameters and
    ``key=value`` / ``"key": "value"`` pairs with a credential-like key, authorization
    headers and anything shaped like a JWT.

    :param text: the text, e.g. a response body or an exception message.
    :param secrets: exact values to mask as well (password, its MD5, tokens, ...).
    :return: the redacted text.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _AUTH_HEADER_RE.sub(lambda m: m.group(1) + MASK, text)
    text = _SENSITIVE_PARAM_RE.sub(lambda m: m.group(1) + MASK, text)
    return _JWT_RE.sub(MASK, text)


def redact_body(body: str | bytes | None, secrets: Iterable[str | None] = ()) -> str | None:
    """Redact and truncate a response body for an exception attribute.

    :param body: the raw body; bytes are decoded as UTF-8 with replacement.
    :param secrets: exact values to mask as well.
    :return: at most :data:`MAX_BODY_CHARS` characters of redacted text, or ``None``.
    """
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body[: MAX_BODY_CHARS * 4].decode("utf-8", errors="replace")
    redacted = redact_text(body, secrets)
    if len(redacted) > MAX_BODY_CHARS:
        return redacted[:MAX_BODY_CHARS] + "...(truncated)"
    return redacted
