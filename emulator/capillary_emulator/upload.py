"""``POST /api_gateway/file-service/{namespace}/{file name}``: the documented upload endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import mimetypes
import re
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from capillary_emulator.download import secure_file_path
from capillary_emulator.faults import Fault
from capillary_emulator.multipart import MultipartError, MultipartReceiver
from capillary_emulator.responses import (
    BodyTooLarge,
    NoResponse,
    abort_connection,
    begin,
    content_length,
    drain,
    fault_response,
    finish,
    json_response,
    upload_error,
)
from capillary_emulator.state import EmulatorState
from capillary_emulator.store import BodySink, StoredFile

UPLOAD_PREFIX = "/api_gateway/file-service"
#: A namespace, matched whole (``fullmatch``: ``$`` would let a trailing newline through).
NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Characters no header value may carry (control characters but HTAB, and DEL).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_NAME_BYTES = 255
#: Content types that say nothing about the image: the extension decides instead.
GENERIC_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded", "binary/octet-stream"}
EXTRA_TYPES = {
    "webp": "image/webp",
    "avif": "image/avif",
    "heic": "image/heic",
    "heif": "image/heif",
    "jfif": "image/jpeg",
    "ico": "image/x-icon",
    "svg": "image/svg+xml",
}


def validate_namespace(namespace: str) -> str | None:
    """Return why a namespace is refused, or ``None`` when valid.

    :param namespace: the namespace from the path.
    :return: the error message, or ``None``.
    """
    if not NAMESPACE_RE.fullmatch(namespace):
        return f"Invalid namespace {namespace!r}: use 1-128 letters, digits, '.', '-' or '_'"
    return None


def validate_file_name(name: str) -> str | None:
    """Return why a file name is refused, or ``None`` when valid.

    :param name: the decoded file name from the path.
    :return: the error message, or ``None``.
    """
    if not name:
        return "File name is required"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"File name is longer than {MAX_NAME_BYTES} bytes"
    if "/" in name or "\\" in name:
        return "File name must not contain '/' or '\\'"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "File name must not contain control characters"
    if name.startswith(".") or ".." in name:
        return "File name must not start with '.' or contain '..'"
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip() or not ext.isalnum():
        return "File name must have an extension, e.g. test.png"
    return None


def validate_content_type(declared: str | None) -> str | None:
    """Return why a declared ``Content-Type`` is refused, or ``None`` when it may be stored.

    It is sent back on every download of the file: a control character in it would break them all.

    :param declared: the part's or the request's ``Content-Type``.
    :return: the error message, or ``None``.
    """
    if declared and _CONTROL_CHARS.search(declared):
        return f"Invalid Content-Type {declared[:100]!r}: control characters are not allowed"
    return None


def guess_content_type(name: str, declared: str | None) -> str:
    """Return the declared MIME type, or one guessed from the extension when it is generic.

    :param name: the file name.
    :param declared: the part's or the request's ``Content-Type``.
    :return: a MIME type without parameters.
    """
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if media_type not in GENERIC_TYPES and not media_type.startswith("multipart/"):
        return media_type
    ext = name.rsplit(".", 1)[-1].lower()
    return EXTRA_TYPES.get(ext) or mimetypes.guess_type(f"x.{ext}")[0] or "application/octet-stream"


async def receive_body(
    request: Request, state: EmulatorState, entry: dict[str, Any], limit: int | None = None
) -> tuple[BodySink | None, str | None]:
    """Stream the request body to disk.

    :param request: the request.
    :param state: the emulator state.
    :param entry: the request log entry (``body_size``/``body_sha256`` are filled in).
    :param limit: stop after this many bytes (``reset`` faults); ``None`` reads it all.
    :return: the file's bytes (``None`` when no file was sent) and its declared content type.
    :raises BodyTooLarge: over ``max_body_bytes`` (the rest of the body is drained first).
    :raises MultipartError: for a malformed or ambiguous multipart body.
    """
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary") if media_type == b"multipart/form-data" else None
    receiver: MultipartReceiver | None = None
    sink: BodySink | None = None
    max_bytes = state.settings.max_body_bytes
    digest = hashlib.sha256() if boundary else None  # a raw body's hash is its sink's
    try:
        if boundary:
            receiver = MultipartReceiver(boundary, state.store.new_sink)
        else:
            sink = state.store.new_sink()
        async for chunk in request.stream():
            entry["body_size"] += len(chunk)
            if max_bytes is not None and entry["body_size"] > max_bytes:
                raise BodyTooLarge(f"Request body is larger than {max_bytes} bytes")
            if receiver is not None and digest is not None:
                digest.update(chunk)
                receiver.feed(chunk)
            elif sink is not None:
                sink.write(chunk)
            if limit is not None and entry["body_size"] >= limit:
                break
        entry["body_sha256"] = digest.hexdigest() if digest is not None else sink.sha256 if sink else None
        if limit is not None:
            raise ClientDisconnect()
        if receiver is not None:
            receiver.finish()
            part = receiver.choose(state.settings.file_field)
            if part is None or part.sink.size == 0:
                if part is not None:
                    part.sink.discard()
                return None, None if part is None else part.content_type
            return part.sink, part.content_type
    except BaseException as exc:
        if receiver is not None:
            receiver.discard()
        if sink is not None:
            sink.discard()
        if isinstance(exc, (BodyTooLarge, MultipartError)):
            entry["body_size"] += await drain(request)
        raise
    assert sink is not None
    if sink.size == 0:
        sink.discard()
        return None, request.headers.get("content-type")
    return sink, request.headers.get("content-type")


def success_payload(state: EmulatorState, stored: StoredFile, base_url: str) -> dict[str, Any]:
    """Return the documented 200 body for a stored version.

    :param state: the emulator state.
    :param stored: the version.
    :param base_url: the base URL the client used.
    :return: the body, with the documented key order and JSON types.
    """
    return {
        "code": 200,
        "status": "true",
        "message": "Successfully uploaded file",
        "file": {
            "name": stored.name,
            "namespace": stored.namespace,
            "version": stored.version,
            "acl": "PRIVATE",
            "fileSize": str(stored.size),
            "file_handle": stored.file_handle,
            "content_type": stored.content_type,
            "s3_token": stored.s3_token,
            "latest_version": stored.version,
            "last_modified": stored.last_modified.astimezone(state.zone).strftime("%Y-%m-%d %H:%M:%S"),
            "s3_url": f"s3://{stored.bucket}/{stored.s3_token}",
        },
        "secureFilePath": secure_file_path(state, base_url, stored),
    }


def base_url_of(request: Request) -> str:
    """Return the scheme and authority the client used (``Host`` header).

    :param request: the request.
    :return: e.g. ``http://127.0.0.1:41234``.
    """
    return f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"


async def upload(request: Request) -> Response:
    """Handle one upload (see the module documentation of ``faults`` for injected behaviour).

    :param request: the request.
    :return: the documented 200 body, or a JSON error (400, 401, 413, 429, fault statuses).
    """
    state, entry, fault = await begin(request, "upload")
    try:
        response = await _upload(request, state, entry, fault)
    except ClientDisconnect:
        response = NoResponse()
    return finish(state, entry, response)


async def probe(request: Request) -> Response:
    """Answer a ``GET``/``HEAD`` of an upload path: 401 without valid credentials, else 405.

    Capillary documents no read endpoint; a client (the hook's ``test_connection``) can still
    tell refused credentials from accepted ones without uploading anything. Nothing is logged
    or faulted.

    :param request: the request.
    :return: 401 or 405 (``Allow: POST``) with the upload API's error body.
    """
    state: EmulatorState = request.app.state.emulator
    if state.auth.authenticate(request.headers) is None:
        return upload_error(401, "Unauthorized: invalid or missing credentials")
    return upload_error(405, "Method not allowed: upload with POST", {"Allow": "POST"})


async def _upload(
    request: Request, state: EmulatorState, entry: dict[str, Any], fault: Fault | None
) -> Response:
    if fault is not None:
        if not fault.stores and fault.action == "reset":
            length = min(content_length(request) or 0, 1 << 40)
            with contextlib.suppress(ClientDisconnect, BodyTooLarge, MultipartError):
                await receive_body(request, state, entry, limit=max(1, length // 2))
            await abort_connection(request.scope)
            return NoResponse()
        if not fault.stores and fault.action in ("respond", "status_false"):
            entry["body_size"] = await drain(request)
            return await _fault_answer(fault, None, state, request)
    principal = state.auth.authenticate(request.headers)
    if principal is None:
        entry["body_size"] = await drain(request)
        return upload_error(401, "Unauthorized: invalid or missing credentials")
    entry["principal"] = api_key = f"{principal.kind}:{principal.name}"
    retry_after = state.limiter.acquire(api_key)
    if retry_after is not None:
        entry["body_size"] = await drain(request)
        return upload_error(429, "Too many requests", {"Retry-After": str(retry_after)})
    namespace, name = request.path_params["namespace"], request.path_params["file_name"]
    problem = validate_namespace(namespace) or validate_file_name(name)
    max_bytes = state.settings.max_body_bytes
    declared_length = content_length(request)
    if (
        problem is None
        and max_bytes is not None
        and declared_length is not None
        and declared_length > max_bytes
    ):
        entry["body_size"] = await drain(request)
        return upload_error(413, f"Request body is larger than {max_bytes} bytes")
    if problem is not None:
        entry["body_size"] = await drain(request)
        return upload_error(400, problem)
    try:
        sink, declared = await receive_body(request, state, entry)
    except BodyTooLarge as exc:
        return upload_error(413, str(exc))
    except MultipartError as exc:
        return upload_error(400, str(exc))
    problem = validate_content_type(declared)
    if problem is not None:
        if sink is not None:
            sink.discard()
        return upload_error(400, problem)
    if fault is not None and fault.action == "placeholder" and sink is not None:
        sink.discard()
        sink = None
    elif fault is not None and fault.action == "truncate" and sink is not None:
        sink.truncate(sink.size // 2)
    content_type = guess_content_type(name, declared)
    stored = await asyncio.to_thread(
        state.store.commit, sink, namespace=namespace, name=name, content_type=content_type
    )
    entry["file_size"], entry["file_sha256"] = stored.size, stored.sha256
    return (
        await _fault_answer(fault, stored, state, request)
        if fault is not None
        else json_response(200, success_payload(state, stored, base_url_of(request)))
    )


async def _fault_answer(
    fault: Fault, stored: StoredFile | None, state: EmulatorState, request: Request
) -> Response:
    """Answer a faulted upload (after storing it when the fault stores)."""
    if fault.action == "delay":
        await asyncio.sleep(fault.delay)
    if fault.action == "reset":
        await abort_connection(request.scope)
        return NoResponse()
    if fault.action == "respond":
        return fault_response(fault)
    payload: dict[str, Any] = (
        success_payload(state, stored, base_url_of(request))
        if stored is not None
        else {"code": 500, "status": "false", "message": "Failed to upload file", "file": None}
    )
    if fault.action == "status_false":
        payload.update({"code": 500, "status": "false", "message": "Failed to upload file"})
        return json_response(200, payload)
    if fault.action == "malformed_json":
        text = json.dumps(payload)
        return Response(text[: len(text) // 2], status_code=200, media_type="application/json")
    return json_response(200, payload)  # delay, placeholder, truncate: the documented answer
