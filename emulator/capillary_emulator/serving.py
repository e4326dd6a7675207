"""Connection-level serving on top of uvicorn's public API: limits, timeouts and the transport.

uvicorn takes an HTTP protocol *class* (``uvicorn.Config(http=...)``) and calls it with keyword
arguments it owns. :func:`tapped_protocol` returns a plain :class:`asyncio.Protocol` that builds
uvicorn's own ``auto`` protocol (httptools, else h11) with those arguments, untouched, and forwards
every ``asyncio.Protocol`` call to it. Nothing of uvicorn is subclassed or reached into; the tap
only sees what asyncio hands any protocol, and does:

- TCP_NODELAY on every connection (with Nagle's algorithm on, each request after the first on a
  kept-alive connection waited ~40 ms for the client's delayed ACK);
- the connection cap, ``max_connections``: one more is answered ``503`` with ``Retry-After: 1``
  and closed at once, and the listening ``backlog`` (asyncio accepts that many connections per
  loop iteration) is the cap too, so connections alone never exhaust the file descriptors.
  uvicorn's own ``limit_concurrency`` answers 503 too, but keeps every connection open;
- the header deadline, ``header_timeout``: a connection has that long, from its opening or from
  its previous answer, to deliver a complete request head (408, or a plain close when idle), so a
  client trickling header bytes cannot hold a connection; it also closes idle keep-alive
  connections;
- the head size bound, ``max_header_bytes`` (431): httptools itself has none;
- the transport of each connection, for the RST of ``reset`` faults.

:class:`ConnectionGuard`, the ASGI wrapper around the application, finds the connection of each
request by its client address (``scope["client"]``, the peer of the transport), tells the tap when
a request runs, puts its transport into ``scope["extensions"]``, and bounds every wait for the
next piece of a request body to ``body_timeout`` (:class:`BodyTimeout`, answered 408).

Running out of file descriptors anyway is reported in one line per interval (``resources``).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from capillary_emulator.responses import TRANSPORT_KEY

__all__ = ["BodyTimeout", "ConnectionGuard", "ConnectionRegistry", "tapped_protocol"]

_ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
_Address = tuple[str, int]


class BodyTimeout(Exception):
    """The client sent no piece of the request body for ``body_timeout`` seconds."""


def _peer(value: Any) -> _Address | None:
    if isinstance(value, (tuple, list)) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


class ConnectionRegistry:
    """The open connections of one server, by client address, and the limits they obey.

    :param max_connections: open connections served at once.
    :param header_timeout: seconds to deliver a complete request head (see the module).
    :param max_header_bytes: largest request head.
    """

    def __init__(self, *, max_connections: int, header_timeout: float, max_header_bytes: int) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self._taps: dict[_Address, ConnectionTap] = {}
        self.refused = 0

    def __len__(self) -> int:
        return len(self._taps)

    def add(self, address: _Address, tap: ConnectionTap) -> bool:
        """Register a new connection.

        :param address: its peer address.
        :param tap: its tap.
        :return: ``False`` when the cap is reached (the connection must be refused).
        """
        if len(self._taps) >= self.max_connections:
            self.refused += 1
            return False
        self._taps[address] = tap
        return True

    def remove(self, address: _Address, tap: ConnectionTap) -> None:
        """Forget a closed connection.

        :param address: its peer address.
        :param tap: its tap.
        """
        if self._taps.get(address) is tap:
            del self._taps[address]

    def transports(self) -> list[asyncio.Transport]:
        """Return the transports of the open connections (a snapshot)."""
        return [tap.transport for tap in list(self._taps.values()) if tap.transport is not None]

    def find(self, client: Any) -> ConnectionTap | None:
        """Return the tap of the connection a request came on.

        :param client: the request's ``scope["client"]``.
        :return: the tap, or ``None``.
        """
        address = _peer(client)
        return None if address is None else self._taps.get(address)


def _raw_answer(status: str, message: str, extra: str = "") -> bytes:
    code = int(status.split(" ", 1)[0])
    body = f'{{"code": {code}, "status": "false", "message": "{message}"}}'.encode()
    head = (
        f"HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_SERVICE_UNAVAILABLE = _raw_answer(
    "503 Service Unavailable", "Too many open connections", "Retry-After: 1\r\n"
)
_REQUEST_TIMEOUT = _raw_answer("408 Request Timeout", "The request head took too long")
_HEADERS_TOO_LARGE = _raw_answer("431 Request Header Fields Too Large", "The request head is too large")


class ConnectionTap(asyncio.Protocol):
    """Forwards one connection to uvicorn's HTTP protocol and enforces the connection limits.

    :param inner: uvicorn's protocol for this connection.
    :param registry: the server's connections.
    """

    def __init__(self, inner: asyncio.Protocol, registry: ConnectionRegistry) -> None:
        self._inner = inner
        self._registry = registry
        self.transport: asyncio.Transport | None = None
        self._address: _Address | None = None
        self._serving = False
        self._in_request = False
        self._head_bytes = 0
        self._head_tail: bytes | None = b""  # the last bytes of the head so far; None once complete
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the connection, or answer 503 and close it when the cap is reached.

        :param transport: the connection's transport.
        """
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._address = _peer(transport.get_extra_info("peername"))
        if self._address is None or not self._registry.add(self._address, self):
            transport.write(_SERVICE_UNAVAILABLE)
            transport.close()
            return
        self._serving = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._await_head()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Count the bytes of a request head, then hand them to uvicorn.

        :param data: bytes received.
        """
        if not self._serving or self.transport is None or self.transport.is_closing():
            return
        if not self._in_request and self._head_tail is not None:
            window = self._head_tail + data
            end = window.find(b"\r\n\r\n")
            if end >= 0:
                self._head_bytes += end + 4 - len(self._head_tail)
                self._head_tail = None
            else:
                self._head_bytes += len(data)
                self._head_tail = window[-3:]
            if self._head_bytes > self._registry.max_header_bytes:
                self._refuse(_HEADERS_TOO_LARGE)
                return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Forward the end of the client's stream.

        :return: uvicorn's answer (whether to keep the transport half-open).
        """
        return self._inner.eof_received() if self._serving else None

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and tell uvicorn.

        :param exc: why it was lost, ``None`` for a clean close.
        """
        self._cancel_timer()
        if self._address is not None:
            self._registry.remove(self._address, self)
        if self._serving:
            self._serving = False
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Forward flow control."""
        if self._serving:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Forward flow control."""
        if self._serving:
            self._inner.resume_writing()

    # -- requests (told by ConnectionGuard) ----------------------------------------------------------
    def request_started(self) -> None:
        """A complete head arrived and its request runs: no header deadline meanwhile."""
        self._in_request = True
        self._cancel_timer()

    def request_finished(self) -> None:
        """The request was answered: the next head must come within the header deadline."""
        self._in_request = False
        if self._serving:
            self._await_head()

    # -- internals -----------------------------------------------------------------------------------
    def _await_head(self) -> None:
        self._head_bytes = 0
        self._head_tail = b""
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._registry.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._in_request or not self._serving:
            return
        self._refuse(_REQUEST_TIMEOUT if self._head_bytes else b"")

    def _refuse(self, answer: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if answer:
            transport.write(answer)
        transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def tapped_protocol(registry: ConnectionRegistry) -> type[asyncio.Protocol]:
    """Return a protocol class for ``uvicorn.Config(http=...)`` whose connections obey ``registry``.

    :param registry: the server's connections and limits.
    :return: the class; uvicorn calls it with its own keyword arguments, passed on untouched to
        uvicorn's ``auto`` HTTP protocol.
    """
    inner_class: Callable[..., asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS["auto"])

    class Tapped(ConnectionTap):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(inner_class(*args, **kwargs), registry)

    return Tapped


class ConnectionGuard:
    """ASGI wrapper: ties each request to its connection's tap and bounds body reads.

    :param app: the application.
    :param registry: the server's connections.
    :param body_timeout: seconds to wait for each piece of a request body.
    """

    def __init__(self, app: _ASGIApp, registry: ConnectionRegistry, body_timeout: float) -> None:
        self.app = app
        self.registry = registry
        self.body_timeout = body_timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run one request.

        :param scope: ASGI scope.
        :param receive: ASGI receive.
        :param send: ASGI send.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tap = self.registry.find(scope.get("client"))
        if tap is not None:
            tap.request_started()
            scope.setdefault("extensions", {})[TRANSPORT_KEY] = tap.transport
        body_done = False
        timeout = self.body_timeout

        async def bounded_receive() -> Any:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await _within(receive(), timeout)
            except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
                raise BodyTimeout(f"Request Timeout: no request body for {timeout:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        try:
            await self.app(scope, bounded_receive, send)
        finally:
            if tap is not None:
                tap.request_finished()


async def _within(awaitable: Awaitable[Any], seconds: float) -> Any:
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10
