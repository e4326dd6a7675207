"""Redaction of credentials in text that may reach a log line, an exception or the UI.

Two layers protect secrets:

* :func:`register_secret` hands a value to Airflow's secrets masker, which replaces it
  wherever it appears in task logs and rendered fields;
* :func:`redact_text` / :func:`redact_url` rewrite text *before* it is put into an
  exception or a log call, so that no secret depends on the masker being configured
  (``dags test`` prints to the console unmasked, and exceptions travel beyond logs).

Values taken from an answer (an OAuth token, a secure URL's session credentials) reach the masker
only when they look like credentials (:func:`looks_like_credential`): a hostile answer must not
make the masker hide an ordinary word such as ``rewards`` from every later log line. The HTTP
libraries' own DEBUG lines (urllib3, httpcore, httpx) are redacted too
(:func:`install_log_redaction`, installed on import of this module).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

__all__ = [
    "HTTP_LOGGERS",
    "MASK",
    "MAX_BODY_CHARS",
    "install_log_redaction",
    "looks_like_credential",
    "redact_body",
    "redact_records",
    "redact_text",
    "redact_url",
    "register_answer_secret",
    "register_secret",
    "register_url_credentials",
]

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
#: ``user:password@`` in a URL (a proxy's credentials, say).
_USERINFO_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s@'\"]*@")

#: Query parameters of a pre-signed URL that carry the signing *session* (shared by every URL
#: signed with the same credentials): masking them makes any URL that leaks through unusable,
#: while the masker gains a few patterns per session, not one per URL.
SESSION_CREDENTIAL_PARAMS = frozenset({"x-amz-security-token", "x-amz-credential", "awsaccesskeyid"})

#: Longest response body kept on an exception.
MAX_BODY_CHARS = 500

#: Bytes of a body redacted beyond what is kept, so that a secret cut by the end of the kept
#: part is still recognised whole (and masked) before the cut.
_REDACT_OVERLAP = 4096

#: Shortest value from an answer that may be a credential (an AWS access key id has 20 characters,
#: session tokens and JWTs hundreds).
MIN_CREDENTIAL_CHARS = 16

_CHARACTER_CLASSES = (str.islower, str.isupper, str.isdigit)
#: The same three classes for ASCII text, where each is one character range (a regex search
#: runs in C instead of a Python call per character).
_ASCII_CLASSES = tuple(re.compile(r) for r in ("[a-z]", "[A-Z]", "[0-9]"))
_WHITESPACE_RE = re.compile(r"\s")


def register_secret(value: str | None) -> None:
    """Register a configured secret (password, client secret) with Airflow's secrets masker.

    :param value: the secret; ``None`` and very short strings are ignored (masking ``"a"``
        everywhere would make logs unreadable without protecting anything).
    """
    if not value or len(value) < 4:
        return
    from airflow.sdk.log import mask_secret

    mask_secret(value)


def looks_like_credential(value: str) -> bool:
    """Tell whether a value taken from an answer is shaped like a credential.

    Airflow's masker skips secrets shorter than 5 characters; values that a server chooses need
    more: at least :data:`MIN_CREDENTIAL_CHARS` characters, no white space, and at least two of
    lower case, upper case and digits (``ASIAXKEP2EMBVBC5UMM3``, a base64 token, a JWT), so that
    ``rewards`` or ``password-password`` never reach the masker.

    :param value: the candidate.
    :return: ``True`` to register it.
    """
    if len(value) < MIN_CREDENTIAL_CHARS or not value.isprintable() or _WHITESPACE_RE.search(value):
        return False
    if value.isascii():
        return sum(1 for pattern in _ASCII_CLASSES if pattern.search(value)) >= 2
    return sum(any(test(c) for c in value) for test in _CHARACTER_CLASSES) >= 2


def register_answer_secret(value: object) -> None:
    """Register a credential that an answer carried (an OAuth token), if it looks like one.

    :param value: the value; anything but a credential-shaped string is ignored.
    """
    if isinstance(value, str) and looks_like_credential(value):
        register_secret(value)


_registered: set[str] = set()
_registered_lock = threading.Lock()
#: Raw query values found not to be credentials. With :data:`_registered`, a batch's URLs (which
#: share their session parameters) have each value examined once, not once per upload. Bounded: a
#: hostile answer cannot grow it without limit (past the bound, values are examined each time).
_not_credentials: set[str] = set()
_MAX_NOT_CREDENTIALS = 4096


def register_url_credentials(url: object) -> None:
    """Register the session credentials of a pre-signed URL with Airflow's secrets masker.

    Only :data:`SESSION_CREDENTIAL_PARAMS` that look like credentials
    (:func:`looks_like_credential`) are registered, each decoded and as it appears
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
        if raw in _registered or raw in _not_credentials:
            continue
        if unquote_plus(key).lower() not in SESSION_CREDENTIAL_PARAMS:
            continue
        decoded = unquote_plus(raw)
        if not looks_like_credential(decoded):
            if len(_not_credentials) < _MAX_NOT_CREDENTIALS:
                _not_credentials.add(raw)
            continue
        for value in (decoded, raw):
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
    headers, the ``user:password@`` of URLs and anything shaped like a JWT.

    :param text: the text, e.g. a response body or an exception message.
    :param secrets: exact values to mask as well (password, its MD5, tokens, ...).
    :return: the redacted text.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _AUTH_HEADER_RE.sub(lambda m: m.group(1) + MASK, text)
    text = _SENSITIVE_PARAM_RE.sub(lambda m: m.group(1) + MASK, text)
    text = _USERINFO_RE.sub(lambda m: m.group(1) + MASK + "@", text)
    return _JWT_RE.sub(MASK, text)


def redact_body(
    body: str | bytes | None, secrets: Iterable[str | None] = (), *, limit: int = MAX_BODY_CHARS
) -> str | None:
    """Redact and truncate a response body for an exception attribute or a message.

    Only a bounded prefix is looked at, whatever the size of the body. Exact secrets are masked
    in the bytes before they are decoded (a secret next to an invalid byte stays whole), and a
    little more than the kept prefix is redacted, so that a secret cut by the end of the prefix
    is masked before the cut.

    :param body: the raw body; bytes are decoded as UTF-8 with replacement.
    :param secrets: exact values to mask as well.
    :param limit: the most characters kept.
    :return: at most ``limit`` characters of redacted text (``...(truncated)`` marks a cut), or
        ``None``.
    """
    if body is None:
        return None
    kept = [s for s in secrets if s and len(s) >= 4]
    window = limit * 4 + _REDACT_OVERLAP
    cut = len(body) > window
    data = body[:window]
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogatepass")
    for secret in kept:
        data = data.replace(secret.encode("utf-8", errors="surrogatepass"), MASK.encode())
    redacted = redact_text(data.decode("utf-8", errors="replace"), kept)
    if len(redacted) > limit or cut:
        return redacted[:limit] + "...(truncated)"
    return redacted


class _RedactRecordFilter(logging.Filter):
    """Redacts the message and arguments of the HTTP libraries' log records (DEBUG included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_text(a) if isinstance(a, str) else _redact_arg(a) for a in record.args)
        return True


def _redact_arg(value: object) -> object:
    # httpx passes its URL objects and urllib3 its byte strings; numbers stay numbers.
    if isinstance(value, (int, float)) or value is None:
        return value
    return redact_text(str(value))


#: The loggers of the HTTP libraries that name URLs or headers (a redirect's ``Location`` with
#: its signature, say): urllib3 logs each request line at DEBUG, httpcore the response headers
#: at DEBUG, httpx each request URL at INFO.
HTTP_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "httpx",
)

_log_filter = _RedactRecordFilter()


def install_log_redaction() -> None:
    """Put the redacting filter on every logger of :data:`HTTP_LOGGERS` (once; idempotent).

    Filters run only for records that pass the logger's level: no cost unless DEBUG is on.
    """
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _log_filter not in logger.filters:
            logger.addFilter(_log_filter)


install_log_redaction()
