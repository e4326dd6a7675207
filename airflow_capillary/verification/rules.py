"""What one answer of the storage means (no I/O).

Given what a file must look like (:class:`~airflow_capillary.verification.records.ExpectedFile`)
and the answer of its ``secure_file_path`` (status, headers and, with ``check="sha256"``, the size
and digest of the body), :class:`AnswerJudge` decides: keep waiting, done, or fail with which
error. The rounds of :mod:`airflow_capillary.verification.rounds` (the
sensor's poke, the trigger's loop) feed it, so the rules live once.

Size mode asks for one byte (``Range: bytes=0-0``, see :mod:`~airflow_capillary.verification.rounds`):
the storage answers 206 with ``Content-Range: bytes 0-0/<total>`` (one byte of body), 200 with the
whole body if it ignores ranges (only the headers are read), or 416 with ``Content-Range: bytes */0``
for an empty object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from airflow_capillary._redact import SENSITIVE_QUERY_PARAMS, redact_text
from airflow_capillary.verification.records import ExpectedFile, one_line

__all__ = [
    "ERROR_BODY_LIMIT",
    "WAIT_STATUSES",
    "AnswerJudge",
    "Decision",
    "Verdict",
    "content_range_total",
    "url_secrets",
]

#: What a verdict concluded about one file: keep waiting, done, or fail.
Decision = Literal["wait", "done", "fail"]
#: Statuses that mean "not there yet / try later"; all but 404 count as consecutive failures.
WAIT_STATUSES = frozenset({404, 408, 425, 429})
#: Statuses whose body is read (at most this many bytes) to explain a failure.
ERROR_BODY_LIMIT = 2048
EXPIRED_HINT = "the secure URL lives one hour: re-run the upload task to get a fresh one"
REUPLOAD_HINT = "upload it again (re-run the upload task)"
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:\d+-\d+|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)
_XML_FIELD_RE = re.compile(r"<(Code|Message)>([^<]{0,200})</\1>")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The decision about one answer.

    :param decision: wait, done or fail.
    :param message: why, naming the file (safe to log: no URL).
    :param kind: for ``fail``, a key of :data:`~airflow_capillary.verification.rounds.ERROR_KINDS`.
    :param status_code: the HTTP status, if there was an answer.
    :param retry_after: seconds the storage asked to wait (capped), if it said so.
    :param transient: for ``wait``, whether it counts as a failure (connection error, 429, 5xx).
    """

    decision: Decision
    message: str = ""
    kind: str | None = None
    status_code: int | None = None
    retry_after: float | None = None
    transient: bool = False


def content_range_total(value: str | None) -> int | None:
    """Total size from ``Content-Range`` (``bytes 0-0/1234`` or ``bytes */1234``).

    :param value: the header value.
    :return: the total, or ``None`` when absent, unknown (``*``) or malformed.
    """
    match = _CONTENT_RANGE_RE.match(value or "")
    if not match or match.group(1) == "*":
        return None
    return int(match.group(1))


class AnswerJudge:
    """Sans-I/O judge of one streamed answer: every rule about status, headers and body.

    Call :meth:`on_headers`; if it returns ``None``, :meth:`feed` body chunks while it returns true,
    then call :meth:`finish`. At most the expected size plus one byte of a body is taken (enough
    to tell a bigger file), and at most :data:`ERROR_BODY_LIMIT` bytes of an error's.

    :param expected: the file.
    :param check: ``"size"`` or ``"sha256"``.
    :param retry_after_cap: longest ``Retry-After`` honoured, in seconds.
    """

    def __init__(self, expected: ExpectedFile, check: str, retry_after_cap: float) -> None:
        self.expected = expected
        self.check = check
        self.retry_after_cap = retry_after_cap
        self._status = 0
        self._headers: Mapping[str, str] = {}
        self._error_body: bytearray | None = None
        self._digest = hashlib.sha256()
        self._size = 0
        #: The URLs requested for this answer (the secure URL, then each redirect followed).
        self.urls: list[str] = [expected.url]

    def on_headers(self, status: int, headers: Mapping[str, str]) -> Verdict | None:
        """Judge the status and headers.

        :param status: the HTTP status (after redirects).
        :param headers: the response headers (case-insensitive mapping, e.g. httpx's).
        :return: the final verdict, or ``None`` when the body is needed (sha256, a size without a
            length, or the text of a 4xx error).
        """
        self._status, self._headers = status, headers
        if 400 <= status < 500 and status not in WAIT_STATUSES and status != 416:
            self._error_body = bytearray()
            return None
        return self._judge_headers(None)

    def feed(self, chunk: bytes) -> bool:
        """Take one body chunk.

        :param chunk: the bytes.
        :return: whether more of the body is wanted.
        """
        if self._error_body is not None:
            self._error_body += chunk[: ERROR_BODY_LIMIT - len(self._error_body)]
            return len(self._error_body) < ERROR_BODY_LIMIT
        piece = chunk[: self.expected.size + 1 - self._size]
        self._digest.update(piece)
        self._size += len(piece)
        return self._size <= self.expected.size

    def finish(self) -> Verdict:
        """Judge once the wanted part of the body is read.

        :return: the final verdict.
        """
        if self._error_body is not None:
            verdict = self._judge_headers(bytes(self._error_body))
            assert verdict is not None  # an error status never needs more than its error body
            return verdict
        return self._judge_body(self._size, self._digest.hexdigest())

    def _judge_headers(self, body: bytes | None) -> Verdict | None:
        expected, status, headers, where = self.expected, self._status, self._headers, self.expected.label
        if status == 404 or status in WAIT_STATUSES or 500 <= status < 600:
            # The hook's parser, the one of the provider (imported here: requests stays out of a DAG parse).
            from airflow_capillary.hooks._retry import parse_retry_after

            return Verdict(
                "wait",
                f"{where}: the storage answered HTTP {status}; waiting",
                status_code=status,
                retry_after=_capped(parse_retry_after(headers.get("Retry-After")), self.retry_after_cap),
                transient=status != 404,
            )
        if status == 403:
            return Verdict(
                "fail",
                f"{where}: the storage refused its secure URL (HTTP 403{self._storage_error(body)}); "
                f"{EXPIRED_HINT}",
                kind="expired",
                status_code=status,
            )
        if status == 416 and self.check == "size":
            return _check_size(expected, content_range_total(headers.get("Content-Range")) or 0, status)
        if status not in (200, 206):
            return Verdict(
                "fail",
                f"{where}: the storage answered HTTP {status}{self._storage_error(body)} instead of the file",
                kind="rejected" if status >= 300 else "verification",
                status_code=status,
            )
        if status == 206:
            if self.check != "size":
                return _mismatch(where, "a partial answer (HTTP 206) to a request for the whole file", status)
            size = content_range_total(headers.get("Content-Range"))
            if size is None:
                return _mismatch(
                    where, f"a Content-Range of {headers.get('Content-Range')!r} (no total size)", status
                )
        else:
            size = _int_header(headers.get("Content-Length"))
        if size is not None and size != expected.size:
            return _check_size(expected, size, status)
        got_type = _media_type(headers.get("Content-Type"))
        if expected.content_type and got_type != _media_type(expected.content_type):
            return Verdict(
                "fail",
                f"{where} is served as {got_type or 'no content type'}, but its upload record says "
                f"{expected.content_type}; {REUPLOAD_HINT}",
                kind="verification",
                status_code=status,
            )
        if self.check == "sha256" or size is None:
            return None  # the body decides
        return Verdict("done", f"{where}: served with {size} bytes of {got_type}", status_code=status)

    def _storage_error(self, body: bytes | None) -> str:
        """The storage's own ``<Code>: <Message>`` of an error body: one line, bounded, redacted
        (a hostile storage writes it, and it goes into the task's error)."""
        if not body:
            return ""
        fields = dict(_XML_FIELD_RE.findall(body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")))
        text = ": ".join(v for v in (fields.get("Code"), fields.get("Message")) if v)
        return f" {one_line(redact_text(text, url_secrets(self.urls)))}" if text else ""

    def _judge_body(self, size: int, sha256: str) -> Verdict:
        expected = self.expected
        if size > expected.size:  # reading stopped one byte past the expected size
            return _mismatch(
                expected.label,
                f"more than {expected.size} bytes, but its upload record says {expected.size} bytes "
                "(Capillary stored a different file)",
                200,
            )
        if size != expected.size:
            return _check_size(expected, size, 200)
        if self.check == "sha256" and sha256 != expected.sha256:
            return Verdict(
                "fail",
                f"{expected.label} is served with sha256 {sha256}, but the uploaded bytes had "
                f"sha256 {expected.sha256}; the stored file is corrupt: {REUPLOAD_HINT}",
                kind="verification",
                status_code=200,
            )
        detail = f"sha256 {expected.sha256[:12]}..." if self.check == "sha256" else f"{size} bytes"
        return Verdict("done", f"{expected.label}: served intact ({detail})", status_code=200)


def _capped(seconds: float | None, cap: float) -> float | None:
    return None if seconds is None else min(seconds, cap)


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _int_header(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _check_size(expected: ExpectedFile, size: int, status: int) -> Verdict:
    if size == expected.size:
        return Verdict("done", f"{expected.label}: served with {size} bytes", status_code=status)
    cause = "a placeholder or a truncated file" if size < expected.size else "a different file"
    return _mismatch(
        expected.label,
        f"{size} bytes, but its upload record says {expected.size} bytes (Capillary stored {cause})",
        status,
    )


def _mismatch(where: str, got: str, status: int) -> Verdict:
    return Verdict(
        "fail", f"{where} is served with {got}; {REUPLOAD_HINT}", kind="verification", status_code=status
    )


def url_secrets(urls: Sequence[str]) -> list[str]:
    """The URLs and the values of their credential query parameters, to mask in any text.

    :param urls: the URLs of one request (the secure URL and the redirects followed).
    :return: the secrets.
    """
    secrets = list(urls)
    for url in urls:
        secrets += [v for k, v in parse_qsl(urlsplit(url).query) if k.lower() in SENSITIVE_QUERY_PARAMS]
    return secrets
