"""The hook's HTTP session: pooled, shared by threads, careful with redirects, bounded in time.

* :class:`CapillarySession` follows a redirect only within the origin that answered it (same
  scheme, host and port, or an http -> https upgrade of the same host): a redirect elsewhere is
  returned to the hook unfollowed, which refuses it. Credential headers never leave the origin.
* :func:`attempt_deadline` bounds one exchange as a whole: connecting, sending the request and
  receiving the whole answer. ``requests`` bounds each socket operation only, so a server that
  sends one byte every 0.3 s holds a 2 s ``timeout`` for as long as it likes. A watchdog thread
  shuts the socket down when the deadline passes; the blocked read or write then fails at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection

from airflow_capillary import __version__
from airflow_capillary.hooks._config import CapillaryConnectionConfig

__all__ = [
    "ATTEMPT_MARGIN",
    "CapillarySession",
    "Deadline",
    "attempt_deadline",
    "attempt_seconds",
    "build_session",
    "same_origin",
]

#: ``User-Agent`` sent with every request.
USER_AGENT = f"airflow-provider-capillary/{__version__} requests/{requests.__version__}"

#: Static header names treated as credentials (dropped on a redirect to another origin).
CREDENTIAL_HEADER_RE = re.compile(
    r"(?i)(auth|token|secret|password|api[-_]?key|cookie|session|signature|credential)"
)

#: Seconds added to the timeout to make the deadline of one exchange.
ATTEMPT_MARGIN = 1.0

#: Redirects followed (within the origin) before giving up.
MAX_REDIRECTS = 5

#: Bytes of a redirect's own body read before following it (``requests`` would read all of it).
MAX_REDIRECT_BODY = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CapillarySession(requests.Session):
    """A :class:`requests.Session` that keeps requests and credentials on the service's origin.

    A redirect is followed only when :func:`same_origin` allows it; any other redirect comes
    back to the caller as the 3xx answer. ``requests`` itself only drops ``Authorization`` on a
    redirect to another host; here, in case a same-origin rule ever lets a request leave, every
    header in :attr:`credential_headers`, ``Authorization`` and any header whose name looks like
    a credential (:data:`CREDENTIAL_HEADER_RE`) is removed unless the redirect stays on the origin.

    :param credential_headers: names of further headers that carry credentials.
    """

    def __init__(self, credential_headers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.credential_headers = frozenset(h.lower() for h in (*credential_headers, "Authorization"))
        self.max_redirects = MAX_REDIRECTS

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Return where to follow ``resp``, or ``None``: not a redirect, or not to this origin.

        Before a redirect is followed its body is read here, at most :data:`MAX_REDIRECT_BODY`
        bytes (``requests`` would read it to its end, whatever its size), and its connection closed.

        :param resp: the answer.
        :return: the ``Location`` to follow, or ``None`` to hand the answer back as it is.
        """
        try:
            target = super().get_redirect_target(resp)
            if target is None or not same_origin(resp.url, urljoin(resp.url, target)):
                return None
        except (UnicodeError, ValueError):  # a Location that is not UTF-8, or not a URL
            return None
        if not resp._content_consumed:  # type: ignore[attr-defined]
            resp.raw.read(MAX_REDIRECT_BODY, decode_content=False)
            resp.raw.close()  # the rest of a longer body is never read: the connection goes
            resp._content, resp._content_consumed = b"", True  # type: ignore[attr-defined]
        return target

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: bool | None,
        verify: bool | str | None,
        cert: Any,
    ) -> Any:
        """Let the connection's ``verify`` and ``proxies`` win over the environment.

        Plain ``requests`` lets ``REQUESTS_CA_BUNDLE`` and ``*_PROXY`` variables override what
        was set on the session; here a CA path or ``verify=false`` and the ``proxies`` extra
        from the connection take precedence (the environment still fills what they leave unset).
        """
        if verify is None and self.verify is not True:
            verify = self.verify
        merged_proxies = {**self.proxies, **(proxies or {})}
        return super().merge_environment_settings(url, merged_proxies, stream, verify, cert)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """Drop credential headers when a redirect leaves the origin; never re-add netrc auth.

        :param prepared_request: the redirected request, about to be sent.
        :param response: the redirect response.
        """
        if same_origin(response.request.url or "", prepared_request.url or ""):
            return
        for name in list(prepared_request.headers):
            if name.lower() in self.credential_headers or CREDENTIAL_HEADER_RE.search(name):
                del prepared_request.headers[name]


def same_origin(old_url: str, new_url: str) -> bool:
    """Tell whether a request to ``old_url`` may follow a redirect to ``new_url``.

    :param old_url: the URL that answered with a redirect.
    :param new_url: where the redirect points.
    :return: ``True`` for the same scheme, host and port, or an http -> https upgrade of the
        same host on default ports.
    """
    old, new = urlsplit(old_url), urlsplit(new_url)
    if (old.hostname or "").lower() != (new.hostname or "").lower():
        return False
    old_port = old.port or _DEFAULT_PORTS.get(old.scheme)
    new_port = new.port or _DEFAULT_PORTS.get(new.scheme)
    if old.scheme == new.scheme:
        return old_port == new_port
    return (old.scheme, old_port, new.scheme, new_port) == ("http", 80, "https", 443)


# -- the deadline of one exchange -----------------------------------------------------------------


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


class _DeadlineAdapter(HTTPAdapter):
    """An adapter whose pools open deadline-aware connections (SOCKS pools keep their own)."""

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return _deadline_pool(super().get_connection_with_tls_context(*args, **kwargs))

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # requests < 2.32.2
        return _deadline_pool(super().get_connection(*args, **kwargs))


def _deadline_pool(pool: Any) -> Any:
    pool.ConnectionCls = _DEADLINE_CLASSES.get(pool.ConnectionCls, pool.ConnectionCls)
    return pool


def build_session(config: CapillaryConnectionConfig) -> CapillarySession:
    """Create the session of a hook: pool size, TLS verification, proxies, static headers.

    :param config: the resolved connection.
    :return: the session (no auth attached: the hook passes its auth object per request).
    """
    session = CapillarySession(credential_headers=(config.token_header,))
    adapter = _DeadlineAdapter(
        pool_connections=max(4, config.max_connections),
        pool_maxsize=config.max_connections,
        max_retries=0,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    session.headers.update(config.headers)
    session.verify = config.verify
    session.proxies.update(config.proxies)
    return session
