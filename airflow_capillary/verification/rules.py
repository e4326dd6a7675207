"""What an upload record promises, and what one answer of the storage means (no I/O).

Given an upload record and the answer of its ``secure_file_path`` (status, headers and, with
``check="sha256"``, the size and digest of the body), :class:`AnswerJudge` decides: keep waiting,
done, or fail with which error. The rounds of :mod:`airflow_capillary.verification.rounds` (the
sensor's poke, the trigger's loop) feed it, so the rules live once.

Size mode sends ``GET`` with ``Range: bytes=0-0`` rather than ``HEAD``: an S3 pre-signed URL is
signed for one method, and Capillary's ``secureFilePath`` is signed for ``GET`` (real S3 refuses
``HEAD`` on it with 403). The storage answers 206 with ``Content-Range: bytes 0-0/<total>`` (one
byte of body), 200 with the whole body if it ignores ranges (only the headers are read), or 416
with ``Content-Range: bytes */0`` for an empty object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from airflow_capillary._redact import redact_text
from airflow_capillary.exceptions import CapillaryIntegrityError, CapillaryInvalidInputError
from airflow_capillary.hooks._retry import parse_retry_after
from airflow_capillary.models import UploadedFile

__all__ = [
    "CHECKS",
    "ERROR_BODY_LIMIT",
    "WAIT_STATUSES",
    "AnswerJudge",
    "Check",
    "Decision",
    "ExpectedFile",
    "Verdict",
    "content_range_total",
    "expected_files",
    "flatten_files",
    "judge_transport_error",
    "request_headers",
]

#: What the sensor checks: ``"size"`` (size and type from the headers) or ``"sha256"`` (the body).
Check = Literal["size", "sha256"]
CHECKS: tuple[str, ...] = ("size", "sha256")
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
class ExpectedFile:
    """What one served file must look like.

    :param index: position of the record among the records to verify.
    :param name: file name in Capillary.
    :param namespace: Capillary namespace.
    :param size: expected size in bytes (bytes sent, else Capillary's ``fileSize``).
    :param content_type: expected media type (empty: not checked).
    :param sha256: hex sha256 of the uploaded bytes (empty: unknown).
    :param url: the pre-signed ``secure_file_path`` (a credential: never log it unredacted).
    """

    index: int
    name: str
    namespace: str
    size: int
    content_type: str
    sha256: str
    url: str = dataclasses.field(repr=False)

    @property
    def label(self) -> str:
        """``'name' (namespace ns)``, for messages."""
        return f"{self.name!r} (namespace {self.namespace})"


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


def flatten_files(files: Any) -> tuple[list[Mapping[str, Any]], bool]:
    """Flatten the sensor's ``files`` into a list of records.

    Accepts one record, a list of records, or the lazy sequence a mapped upload task returns
    (whose items are records or lists of records).

    :param files: the rendered ``files`` argument.
    :return: the records in input order, and whether the input was a single record.
    :raises CapillaryInvalidInputError: not records (e.g. a string from non-native templating).
    """
    if isinstance(files, Mapping):
        return [files], True
    if isinstance(files, (str, bytes)):
        raise CapillaryInvalidInputError(
            "files rendered to a string, not upload records: pass the upload task's output "
            "(e.g. upload.output) or set render_template_as_native_obj=True on the DAG"
        )
    records: list[Mapping[str, Any]] = []
    _flatten_into(files, records, "files")
    return records, False


def _flatten_into(value: Any, out: list[Mapping[str, Any]], where: str) -> None:
    if isinstance(value, Mapping):
        out.append(value)
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        for position, item in enumerate(value):
            _flatten_into(item, out, f"{where}[{position}]")
    else:
        raise CapillaryInvalidInputError(
            f"{where} is a {type(value).__name__}, not an upload record (a dict from UploadImageOperator)"
        )


def expected_files(records: Sequence[Mapping[str, Any]], check: str) -> list[ExpectedFile]:
    """Check every record before any request, and say what each served file must look like.

    :param records: the flattened records.
    :param check: ``"size"`` or ``"sha256"``.
    :return: one :class:`ExpectedFile` per record, in order.
    :raises CapillaryInvalidInputError: an unknown check, an empty input, a record that is not an
        upload record, has no secure URL, or (sha256 check) no sha256.
    """
    if check not in CHECKS:
        raise CapillaryInvalidInputError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
    if not records:
        raise CapillaryInvalidInputError("files is empty: there is nothing to verify")
    result = []
    for index, record in enumerate(records):
        try:
            uploaded = UploadedFile.from_dict(record)
        except (CapillaryIntegrityError, TypeError) as exc:
            raise CapillaryInvalidInputError(f"files[{index}] is not an upload record: {exc}") from exc
        where = f"files[{index}] ({uploaded.name!r}, namespace {uploaded.namespace})"
        url = uploaded.secure_file_path
        if not url:
            raise CapillaryInvalidInputError(
                f"{where} has no secure_file_path: upload with include_secure_url=True "
                "(the default of UploadImageOperator) so that the sensor can fetch the file",
                file_name=uploaded.name,
                namespace=uploaded.namespace,
            )
        if not url.lower().startswith(("https://", "http://")):
            raise CapillaryInvalidInputError(
                f"{where} has a secure_file_path that is not an http(s) URL", file_name=uploaded.name
            )
        if check == "sha256" and not re.fullmatch(r"[0-9a-fA-F]{64}", uploaded.sha256 or ""):
            raise CapillaryInvalidInputError(
                f"{where} has no sha256 of the uploaded bytes: use check='size', or upload with "
                "this provider (it records the sha256 of what it sends)",
                file_name=uploaded.name,
                namespace=uploaded.namespace,
            )
        result.append(
            ExpectedFile(
                index=index,
                name=uploaded.name,
                namespace=uploaded.namespace,
                size=uploaded.sent_size or uploaded.file_size,
                content_type=uploaded.content_type,
                sha256=uploaded.sha256.lower(),
                url=url,
            )
        )
    return result


def request_headers(check: str) -> dict[str, str]:
    """Headers of the verification ``GET``: a one-byte range in size mode, none in sha256 mode.

    :param check: ``"size"`` or ``"sha256"``.
    :return: the headers (never any Capillary credential: the URL carries its own signature).
    """
    return {"Range": "bytes=0-0"} if check == "size" else {}


def content_range_total(value: str | None) -> int | None:
    """Total size from ``Content-Range`` (``bytes 0-0/1234`` or ``bytes */1234``).

    :param value: the header value.
    :return: the total, or ``None`` when absent, unknown (``*``) or malformed.
    """
    match = _CONTENT_RANGE_RE.match(value or "")
    if not match or match.group(1) == "*":
        return None
    return int(match.group(1))


def judge_transport_error(expected: ExpectedFile, exc: BaseException) -> Verdict:
    """Decide after a request raised instead of answering.

    :param expected: the file.
    :param exc: the exception (an ``httpx`` error, usually).
    :return: wait (transient) for timeouts, network and protocol errors; fail for anything else
        (an unsupported scheme, an invalid URL).
    """
    import httpx

    text = redact_text(f"{type(exc).__name__}: {exc}", [expected.url])
    transient = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
    if isinstance(exc, transient):
        return Verdict("wait", f"{expected.label}: {text}; waiting", transient=True)
    return Verdict("fail", f"{expected.label}: the request failed: {text}", kind="rejected")


class AnswerJudge:
    """Sans-I/O judge of one streamed answer: every rule about status, headers and body.

    Call :meth:`on_headers`; if it returns ``None``, :meth:`feed` body chunks while it returns true,
    then call :meth:`finish`.

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
            self._error_body += chunk
            return len(self._error_body) < ERROR_BODY_LIMIT
        self._digest.update(chunk)
        self._size += len(chunk)
        return True

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
                f"{where}: the storage refused its secure URL (HTTP 403{_s3_error(body)}); {EXPIRED_HINT}",
                kind="expired",
                status_code=status,
            )
        if status == 416 and self.check == "size":
            return _check_size(expected, content_range_total(headers.get("Content-Range")) or 0, status)
        if status not in (200, 206):
            return Verdict(
                "fail",
                f"{where}: the storage answered HTTP {status}{_s3_error(body)} instead of the file",
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

    def _judge_body(self, size: int, sha256: str) -> Verdict:
        expected = self.expected
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


def _s3_error(body: bytes | None) -> str:
    if not body:
        return ""
    fields = dict(_XML_FIELD_RE.findall(body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")))
    text = ": ".join(v for v in (fields.get("Code"), fields.get("Message")) if v)
    return f" {redact_text(text)}" if text else ""
