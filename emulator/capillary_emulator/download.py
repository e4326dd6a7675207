"""``GET``/``HEAD /_s3/{bucket}/{key}``: the emulated S3 pre-signed download of stored files."""

from __future__ import annotations

import asyncio
import re
from email.utils import format_datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from capillary_emulator.faults import Fault
from capillary_emulator.responses import abort_connection, begin, fault_response, finish, reason
from capillary_emulator.signing import s3_error_xml
from capillary_emulator.state import EmulatorState
from capillary_emulator.store import StoredFile

S3_PREFIX = "/_s3"
CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
#: Digits of a range position that are converted; a longer number is past the end of any object.
_MAX_DIGITS = 18


def _position(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return 10**_MAX_DIGITS if len(significant) > _MAX_DIGITS else int(significant)


class RangeNotSatisfiable(ValueError):
    """The ``Range`` header asks for bytes the object does not have."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Interpret a ``Range`` header (single range only, as S3 does).

    :param header: the header value, or ``None``.
    :param size: the object's size.
    :return: ``(first, last)`` inclusive, or ``None`` to serve the whole object (no header, several
        ranges, or a syntactically invalid one: RFC 9110 says to ignore those).
    :raises RangeNotSatisfiable: when the range starts past the end, or asks for a zero-length suffix.
    """
    match = _RANGE.fullmatch((header or "").strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else size - 1
    if first >= size:
        raise RangeNotSatisfiable(header)
    if last < first:
        return None
    return first, min(last, size - 1)


def presigned_path(bucket: str, s3_token: str) -> str:
    """Return the (decoded) path serving an object.

    :param bucket: bucket name.
    :param s3_token: object key.
    :return: ``/_s3/{bucket}/{s3_token}``.
    """
    return f"{S3_PREFIX}/{bucket}/{s3_token}"


def secure_file_path(state: EmulatorState, base_url: str, stored: StoredFile) -> str:
    """Return a fresh pre-signed URL for a stored version.

    :param state: the emulator state (signer and settings).
    :param base_url: the emulator's base URL as the client reached it.
    :param stored: the version.
    :return: the ``secureFilePath``.
    """
    path = presigned_path(stored.bucket, stored.s3_token)
    query = state.signer.sign(path, expires=state.settings.url_expiry)
    return f"{base_url.rstrip('/')}{quote(path)}?{query}"


class FileBodyResponse(Response):
    """Stream bytes ``first..last`` of a file; optionally drop the connection halfway (faults).

    :param stored: the version to serve.
    :param status: 200 or 206.
    :param headers: response headers (with ``Content-Length``).
    :param span: ``(first, last)`` inclusive, or ``None`` for an empty body.
    :param send_body: ``False`` for HEAD.
    :param cut: drop the connection after half of the bytes (``reset``/``truncate`` faults).
    """

    def __init__(
        self,
        stored: StoredFile,
        *,
        status: int,
        headers: dict[str, str],
        span: tuple[int, int] | None,
        send_body: bool,
        cut: bool = False,
    ) -> None:
        super().__init__(b"", status_code=status, headers=headers)
        self.stored, self.span, self.send_body, self.cut = stored, span, send_body, cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers and the bytes.

        :param scope: ASGI scope.
        :param receive: ASGI receive.
        :param send: ASGI send.
        """
        # Opened before the answer starts: running out of descriptors is then a 503, not a torn body.
        handle = open(self.stored.path, "rb") if self.send_body and self.span is not None else None  # noqa: SIM115
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if handle is not None and self.span is not None:
                first, last = self.span
                remaining = last - first + 1
                if self.cut:
                    remaining //= 2
                handle.seek(first)
                while remaining > 0:
                    block = handle.read(min(CHUNK, remaining))
                    if not block:
                        break
                    remaining -= len(block)
                    await send({"type": "http.response.body", "body": block, "more_body": True})
        finally:
            if handle is not None:
                handle.close()
        if self.cut:
            await asyncio.sleep(0.05)  # let the partial body reach the client first
            await abort_connection(scope)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _xml(status: int, code: str, message: str, **details: str) -> Response:
    return Response(s3_error_xml(code, message, **details), status_code=status, media_type="application/xml")


async def download(request: Request) -> Response:
    """Serve a stored version through its pre-signed URL (GET or HEAD, with ``Range``).

    :param request: the request.
    :return: 200/206 with the bytes, 403 (expired or bad signature), 404, or 416.
    """
    state, entry, fault = await begin(request, "download")
    return finish(state, entry, _download(request, state, fault))


def _download(request: Request, state: EmulatorState, fault: Fault | None) -> Response:
    if fault is not None and fault.action == "respond":
        code = reason(fault.status).replace(" ", "")
        return fault_response(fault, s3_error_xml(code, reason(fault.status)), "application/xml")
    path = request.scope["path"]
    error = state.signer.check(path, request.query_params)
    if error is not None:
        code, message = error
        return _xml(403, code, message)
    _, bucket, key = path[len(S3_PREFIX) :].split("/", 2) if path.count("/") >= 3 else ("", "", "")
    stored = state.store.find(bucket, key)
    if stored is None or not stored.path.exists():
        return _xml(404, "NoSuchKey", "The specified key does not exist.", Key=key)
    headers = {
        "Content-Type": stored.content_type,
        "Accept-Ranges": "bytes",
        "ETag": f'"{stored.sha256[:32]}"',
        "Last-Modified": format_datetime(stored.last_modified, usegmt=True),
    }
    try:
        span = parse_range(request.headers.get("range"), stored.size)
    except RangeNotSatisfiable:
        response = _xml(416, "InvalidRange", "The requested range is not satisfiable")
        response.headers["Content-Range"] = f"bytes */{stored.size}"
        return response
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{stored.size}"
    elif stored.size:
        span = (0, stored.size - 1)
    headers["Content-Length"] = str(0 if span is None else span[1] - span[0] + 1)
    cut = fault is not None and fault.action in ("reset", "truncate")
    send_body = request.method != "HEAD"
    return FileBodyResponse(stored, status=status, headers=headers, span=span, send_body=send_body, cut=cut)
