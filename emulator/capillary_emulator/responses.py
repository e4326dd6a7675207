"""Request and response helpers shared by the routes, including the reset used by ``reset`` faults.

A real reset needs the TCP transport, which ASGI hides: ``serving`` tracks each connection's
transport and puts it into ``scope["extensions"][TRANSPORT_KEY]``. :func:`abort_connection` sets
``SO_LINGER`` to 0 and aborts it, so the kernel sends an RST and the client sees a connection error
(``requests.exceptions.ConnectionError`` or ``ChunkedEncodingError``), never an HTTP answer.

Bodies that the emulator parses itself (token requests, control calls) are read with a cap
(:func:`read_limited`) and decoded by :func:`parse_json`, which turns any decoding failure, a
``RecursionError`` on deeply nested input included, into a ``ValueError`` (a 400).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from http import HTTPStatus
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from capillary_emulator.faults import Fault
from capillary_emulator.state import EmulatorState

TRANSPORT_KEY = "capillary.transport"
#: Where the live request log entry sits in ``scope["extensions"]`` (for the 408 of a body timeout).
ENTRY_KEY = "capillary.log_entry"
#: Bytes read and thrown away after an over-large body before answering anyway.
DRAIN_LIMIT = 1 << 20


class BodyTooLarge(ValueError):
    """The body exceeds the endpoint's limit."""


def reason(status: int) -> str:
    """Return the HTTP reason phrase of a status.

    :param status: HTTP status.
    :return: e.g. ``"Service Unavailable"``.
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """Return a JSON response with exactly the given payload.

    :param status: HTTP status.
    :param payload: JSON-serialisable payload.
    :param headers: extra headers.
    :return: the response.
    """
    return Response(json.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def upload_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Return the error body of the upload API: ``{"code", "status": "false", "message"}``.

    :param status: HTTP status (also the ``code``).
    :param message: the message.
    :param headers: extra headers.
    :return: the response.
    """
    return json_response(status, {"code": status, "status": "false", "message": message}, headers)


def token_error(status: int, message: str) -> Response:
    """Return the error body of the token API: ``{"data": null, "errors": [{"code", "message"}]}``.

    :param status: HTTP status (also the error ``code``).
    :param message: the message.
    :return: the response.
    """
    return json_response(status, {"data": None, "errors": [{"code": status, "message": message}]})


def fault_response(
    fault: Fault, default_body: str | None = None, media_type: str = "application/json"
) -> Response:
    """Return the answer of a ``respond`` fault.

    :param fault: the fault.
    :param default_body: body when the fault has none.
    :param media_type: content type of a ``str`` body.
    :return: the response.
    """
    body = fault.body
    if isinstance(body, (dict, list)):
        return json_response(fault.status, body, fault.headers)
    text = body if body is not None else default_body
    if text is None:
        text = json.dumps({"code": fault.status, "status": "false", "message": reason(fault.status)})
    return Response(text, status_code=fault.status, headers=fault.headers, media_type=media_type)


class NoResponse(Response):
    """Sends nothing (the connection was aborted)."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Do nothing: the transport is gone.

        :param scope: ASGI scope.
        :param receive: ASGI receive.
        :param send: ASGI send.
        """


async def abort_connection(scope: Scope) -> None:
    """Drop the client's TCP connection with an RST, right now.

    :param scope: the request's ASGI scope (carrying the transport).
    :raises RuntimeError: when the server did not expose the transport.
    """
    transport = scope.get("extensions", {}).get(TRANSPORT_KEY)
    if transport is None:
        raise RuntimeError("the emulator's server did not expose the transport: cannot reset the connection")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    for _ in range(3):  # let the server notice the disconnection before the handler returns
        await asyncio.sleep(0)


async def drain(request: Request, limit: int | None = None) -> int:
    """Read and discard the rest of the request body (so that the client gets to read the answer).

    :param request: the request.
    :param limit: stop after this many bytes (the rest is left to the connection's close).
    :return: bytes discarded.
    """
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if limit is not None and total >= limit:
                break
    except (ClientDisconnect, RuntimeError):  # body already consumed, or client gone
        pass
    return total


#: What a ``Content-Length`` of more than 18 digits counts as (more than any body).
HUGE_LENGTH = 10**18


def content_length(request: Request) -> int | None:
    """Return the declared ``Content-Length``, without ever converting thousands of digits.

    :param request: the request.
    :return: the length (:data:`HUGE_LENGTH` for more than 18 digits), ``None`` when absent or not
        a number.
    """
    text = request.headers.get("content-length", "").strip()
    if not text.isdigit() or not text.isascii():
        return None
    return HUGE_LENGTH if len(text) > 18 else int(text)


async def read_limited(request: Request, limit: int) -> bytes:
    """Read a whole body that must stay small.

    Past ``limit`` the rest is discarded up to :data:`DRAIN_LIMIT` bytes so that the client, done
    sending, reads the answer; a body declared larger than that is not read at all (the
    connection closes after the answer).

    :param request: the request.
    :param limit: the largest body accepted, bytes.
    :return: the body.
    :raises BodyTooLarge: past ``limit``.
    """
    declared = content_length(request)
    if declared is not None and declared > limit:
        if declared <= limit + DRAIN_LIMIT:
            await drain(request)
        raise BodyTooLarge(f"Request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await drain(request, DRAIN_LIMIT)
            raise BodyTooLarge(f"Request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(data: bytes) -> Any:
    """Decode a JSON body.

    :param data: the body (UTF-8).
    :return: the decoded value.
    :raises ValueError: for anything that is not JSON, including input nested too deeply to decode.
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("the JSON body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc.msg} at position {exc.pos}") from None


async def begin(request: Request, kind: str) -> tuple[EmulatorState, dict[str, Any], Fault | None]:
    """Start handling an API or download request: log it, add latency, take its fault if any.

    The fault's ``delay`` is slept here, except for an upload's ``delay`` action (slept after storing).
    The latency is slept on the emulator's clock, the fault's delay in real time.

    :param request: the request.
    :param kind: ``upload``, ``token`` or ``download``.
    :return: the state, the live log entry and the fault (``None`` when none applies).
    """
    state: EmulatorState = request.app.state.emulator
    entry = state.log.start(
        kind=kind,
        method=request.method,
        path=request.scope["path"],
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=request.headers.items(),
    )
    request.scope.setdefault("extensions", {})[ENTRY_KEY] = entry
    if state.settings.latency:
        await state.clock.sleep(state.settings.latency)
    fault = state.faults.take(kind)
    if fault is not None:
        entry["fault"] = fault.kind
        if fault.delay and not (kind == "upload" and fault.action == "delay"):
            await asyncio.sleep(fault.delay)
    return state, entry, fault


def finish(state: EmulatorState, entry: dict[str, Any], response: Response) -> Response:
    """Record the answer's status in the log entry and the counts.

    :param state: the emulator state.
    :param entry: the live log entry.
    :param response: the answer.
    :return: ``response``.
    """
    entry["status"] = None if isinstance(response, NoResponse) else response.status_code
    state.log.count(entry["kind"], entry["status"])
    return response
