"""A deadline for one exchange as a whole: connecting, sending the request, receiving the answer.

``requests`` bounds each socket operation only, so a server that sends one byte every 0.3 s
holds a 2 s ``timeout`` for as long as it likes. Here :func:`attempt_deadline` puts every
request made inside it (in this thread) under one :class:`Deadline`; the connections of a
:class:`DeadlineAdapter` bind themselves to it when they send, and one watchdog thread per
process shuts their socket down when it passes. The blocked read or write then fails at once,
and the caller reports the deadline (:meth:`Deadline.error`) instead of what the socket said.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection

__all__ = ["ATTEMPT_MARGIN", "Deadline", "DeadlineAdapter", "attempt_deadline", "attempt_seconds"]

#: Seconds added to the timeout to make the deadline of one exchange.
ATTEMPT_MARGIN = 1.0


def attempt_seconds(timeout: tuple[float, float]) -> float:
    """The deadline of one exchange for a ``(connect, read)`` timeout: the larger plus the margin.

    :param timeout: the connection's timeout pair.
    :return: seconds.
    """
    return max(timeout) + ATTEMPT_MARGIN


class Deadline:
    """The end of one exchange; past it, the sockets the exchange uses are shut down.

    :param seconds: how long the exchange may take from now.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    def bind(self, connection: Any) -> None:
        """Put a connection under this deadline (it is about to carry the exchange).

        :param connection: a urllib3 connection.
        """
        with self._lock:
            connection._capillary_deadline = self
            if connection not in self._connections:
                self._connections.append(connection)
            expired = self.expired
        if expired:
            _abort(connection, self)

    def expire(self) -> None:
        """The deadline passed: shut down every socket still carrying this exchange."""
        with self._lock:
            if self.done:
                return
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _abort(connection, self)

    def finish(self) -> None:
        """The exchange ended: the watchdog leaves its connections alone from now on."""
        with self._lock:
            self.done = True
            self._connections.clear()

    def error(self) -> requests.Timeout:
        """The error that replaces whatever the shut-down socket raised.

        :return: a timeout (retried like any other).
        """
        return requests.Timeout(
            f"no complete answer within {self.seconds:g}s (the timeout plus {ATTEMPT_MARGIN:g}s)"
        )


def _abort(connection: Any, deadline: Deadline) -> None:
    # Only while the connection still carries this exchange: back in the pool, another may own it.
    sock = getattr(connection, "sock", None)
    if sock is None or getattr(connection, "_capillary_deadline", None) is not deadline:
        return
    # socket.socket's own shutdown: SSLSocket.shutdown would also drop the TLS object under the
    # thread reading from it (a ValueError there instead of an OSError).
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process that expires deadlines (a heap, earliest first)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="capillary-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            due: list[Deadline] = []
            with self._cond:
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= time.monotonic()):
                    deadline = heapq.heappop(self._heap)[2]
                    if not deadline.done:
                        due.append(deadline)
                if not due:
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                    continue
            for deadline in due:
                deadline.expire()


_watchdog = _Watchdog()
_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("capillary_deadline", default=None)


def _new_watchdog() -> None:  # the child of a fork has no watchdog thread
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog)


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[Deadline]:
    """Bound every request made inside the block (in this thread) to ``seconds`` in total.

    A request made inside a nested block (the OAuth token fetched while an upload is being
    prepared) is bound by the inner deadline.

    :param seconds: the deadline, from now.
    :return: the deadline; after a failure, ``deadline.expired`` tells whether it was the cause.
    """
    deadline = Deadline(seconds)
    _watchdog.watch(deadline)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
        deadline.finish()


def _bind_current(connection: Any) -> None:
    deadline = _current.get()
    if deadline is not None:
        deadline.bind(connection)


class _DeadlineHTTPConnection(HTTPConnection):
    """A urllib3 connection that puts itself under the current exchange's deadline."""

    def connect(self) -> None:
        super().connect()
        _bind_current(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _bind_current(self)
        super().request(*args, **kwargs)


class _DeadlineHTTPSConnection(_DeadlineHTTPConnection, HTTPSConnection):
    """The TLS twin (``super()`` reaches ``HTTPSConnection`` first)."""


_DEADLINE_CLASSES: dict[type, type] = {
    HTTPConnection: _DeadlineHTTPConnection,
    HTTPSConnection: _DeadlineHTTPSConnection,
}


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose pools open deadline-aware connections (SOCKS pools keep their own)."""

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return _deadline_pool(super().get_connection_with_tls_context(*args, **kwargs))

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # requests < 2.32.2
        return _deadline_pool(super().get_connection(*args, **kwargs))


#: Bytes a connection reads from a streamed body per send (urllib3's default is 16 KiB): a typical
#: reward image then goes out in one or two sends instead of four or more.
SEND_BLOCK_BYTES = 64 * 1024


def _deadline_pool(pool: Any) -> Any:
    pool.ConnectionCls = _DEADLINE_CLASSES.get(pool.ConnectionCls, pool.ConnectionCls)
    if pool.ConnectionCls in _DEADLINE_CLASSES.values():
        pool.conn_kw["blocksize"] = SEND_BLOCK_BYTES
    return pool
