"""The request log: what reached the API and the downloads, with every credential redacted.

Each entry is bounded (at most :data:`MAX_HEADERS` headers, values cut at :data:`MAX_VALUE`
characters, path and query cut at :data:`MAX_TEXT`) and so is the log (``request_log_size``
entries, oldest dropped first). Counts by kind and status are kept apart from the entries and are
never dropped (:meth:`RequestLog.counts`).

Redacted before anything is stored, so that neither ``GET /_emulator/requests`` nor the Python API
ever hands out a credential: the value of ``Authorization`` and ``Proxy-Authorization`` (their
scheme is kept: ``"Basic <redacted>"``), of ``X-CAP-API-OAUTH-TOKEN``, cookies, the control token
header, and of every header whose name says it carries a secret (``token``, ``secret``,
``password``, ``api-key``, ``apikey``, ``credential``, ``signature``, ``session``); in the query,
the value of every parameter whose name says so, which covers ``X-Amz-Signature``,
``X-Amz-Security-Token`` and ``X-Amz-Credential`` of pre-signed URLs.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["REDACTED", "RequestLog", "redact_headers", "redact_query"]

REDACTED = "<redacted>"
#: Headers kept per entry, value length, and path/query length (characters).
MAX_HEADERS = 32
MAX_VALUE = 256
MAX_TEXT = 1024
_TRUNCATED = "...<truncated>"
_SECRET_NAME = re.compile(
    r"authorization|token|secret|password|passwd|cookie|api[-_]?key|credential|signature|session",
    re.IGNORECASE,
)
_SCHEME_HEADERS = ("authorization", "proxy-authorization")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + _TRUNCATED


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return the headers as a bounded dict, lower-case names, credentials redacted.

    :param headers: ``(name, value)`` pairs as received.
    :return: at most :data:`MAX_HEADERS` entries (a repeated header keeps its first value).
    """
    kept: dict[str, str] = {}
    for name, value in headers:
        key = _cut(name.lower(), MAX_VALUE)
        if key in kept:
            continue
        if len(kept) >= MAX_HEADERS:
            kept["<dropped>"] = "more headers than the log keeps"
            break
        if key in _SCHEME_HEADERS:
            scheme, _, rest = value.strip().partition(" ")
            kept[key] = f"{_cut(scheme, 32)} {REDACTED}" if rest else REDACTED
        elif _SECRET_NAME.search(key):
            kept[key] = REDACTED
        else:
            kept[key] = _cut(value, MAX_VALUE)
    return kept


def redact_query(query: str) -> str:
    """Return a query string with the values of credential parameters redacted, bounded.

    :param query: the raw query string (without ``?``).
    :return: the re-encoded query.
    """
    if not query:
        return ""
    pairs = parse_qsl(query[: MAX_TEXT * 4], keep_blank_values=True)
    cleaned = [(name, REDACTED if _SECRET_NAME.search(name) else value) for name, value in pairs]
    return _cut(urlencode(cleaned, safe="<>"), MAX_TEXT)


class RequestLog:
    """Thread-safe, bounded log of the API and download requests (control endpoints excluded).

    :param size: entries kept (oldest dropped first).
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._counts: dict[str, dict[str, int]] = {}

    @property
    def size(self) -> int:
        """How many entries are kept."""
        return self._entries.maxlen or 0

    def resize(self, size: int) -> None:
        """Keep ``size`` entries from now on (the newest ones stay).

        :param size: entries kept.
        """
        with self._lock:
            self._entries = deque(self._entries, maxlen=size)

    def start(
        self, *, kind: str, method: str, path: str, query: str, headers: Iterable[tuple[str, str]]
    ) -> dict[str, Any]:
        """Record a request as it arrives; the handler fills in the rest of the returned entry.

        :param kind: ``upload``, ``token`` or ``download``.
        :param method: HTTP method.
        :param path: decoded path.
        :param query: raw query string.
        :param headers: request headers (redacted and bounded here).
        :return: the live entry.
        """
        entry: dict[str, Any] = {
            "kind": kind,
            "method": method,
            "path": _cut(path, MAX_TEXT),
            "query": redact_query(query),
            "headers": redact_headers(headers),
            "time": time.time(),
            "status": None,
            "fault": None,
            "body_size": 0,
            "body_sha256": None,
            "file_size": None,
            "file_sha256": None,
            "principal": None,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def count(self, kind: str, status: int | None) -> None:
        """Count one answered request.

        :param kind: the entry's kind.
        :param status: the HTTP status, ``None`` when the connection was dropped instead.
        """
        label = "none" if status is None else str(status)
        with self._lock:
            by_status = self._counts.setdefault(kind, {})
            by_status[label] = by_status.get(label, 0) + 1

    def entries(self) -> list[dict[str, Any]]:
        """Return copies of the entries, oldest first."""
        with self._lock:
            return [dict(entry, headers=dict(entry["headers"])) for entry in self._entries]

    def counts(self) -> dict[str, dict[str, int]]:
        """Return the answered requests per kind and status (``"none"``: connection dropped)."""
        with self._lock:
            return {kind: dict(sorted(by_status.items())) for kind, by_status in sorted(self._counts.items())}

    def clear(self) -> None:
        """Forget every entry and count."""
        with self._lock:
            self._entries.clear()
            self._counts.clear()
