"""A hostile HTTP server on a real loopback socket, for the security tests (issue 10).

Each :class:`HostileServer` is one origin (``http://127.0.0.1:<port>``, or ``https://`` with
``tls=True``). Every path answers as scripted with :meth:`HostileServer.route`, and every request
that reaches the server is recorded (method, path, query, headers, body), so a test can start two
servers, point the first at the second, and assert that the second received nothing::

    # conftest.py of the test directory (importing them into a test module trips ruff's F811):
    from tests.hostile import hostile_server, hostile_servers  # noqa: F401 - fixtures

    # the test module:
    from tests.hostile import Redirect

    def test_token_redirect_is_refused(hostile_servers):
        service, other = hostile_servers(2)
        service.route("/v3/oauth/token/generate", Redirect(other.url("/steal"), status=307))
        ...
        assert other.requests == []

Behaviours (all answer after the request body has been read):

* :class:`Answer` -- any status, headers and body (``Answer.json(...)`` for a JSON body);
* :class:`Redirect` -- 301/302/303/307/308 to a ``Location``;
* :class:`Trickle` -- a body sent ``chunk`` bytes every ``interval`` seconds (slowloris answer);
* :class:`Huge` -- a body of ``size`` bytes generated lazily (never held in memory), with a
  ``Content-Length`` or chunked;
* :func:`nested_json` -- ``[`` x 200000 (or any depth), the input that makes ``json`` recurse;
* a callable ``(Received) -> behaviour`` -- decide per request (e.g. count attempts);
* a list of behaviours -- answered in order, the last one repeating.

Unrouted paths answer 404 with a small JSON body. Use the fixtures ``hostile_server`` (one server)
and ``hostile_servers`` (a factory: ``hostile_servers(2)`` returns two); import them into the
``conftest.py`` of the test directory (``tests/hooks/conftest.py`` does). Servers stop at the end
of the test; a trickle in progress stops at once then.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = [
    "Answer",
    "Behaviour",
    "HostileServer",
    "Huge",
    "Received",
    "Redirect",
    "Trickle",
    "hostile_server",
    "hostile_servers",
    "nested_json",
    "wait_for",
]

#: Request bodies beyond this many bytes are read but not kept.
MAX_KEPT_BODY = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the server received it.

    :param method: the HTTP method.
    :param path: the path, without the query.
    :param query: the raw query string (``""`` if none).
    :param headers: header name (lower case) -> value (the last one when repeated).
    :param body: the request body (at most :data:`MAX_KEPT_BODY` bytes kept).
    :param body_size: the full size of the body read.
    :param received_at: ``time.monotonic()`` when the request had been read (for pacing tests).
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    body_size: int
    received_at: float = 0.0

    @property
    def target(self) -> str:
        """The request target as sent: path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclasses.dataclass(frozen=True)
class Answer:
    """Answer with a fixed status, headers and body (``Content-Length`` is added).

    :param status: the HTTP status.
    :param body: the body.
    :param headers: further headers.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
        """Answer with ``payload`` as JSON.

        :param payload: anything ``json.dumps`` takes.
        :param status: the HTTP status.
        :param headers: further headers.
        :return: the answer.
        """
        return cls(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
        )


@dataclasses.dataclass(frozen=True)
class Redirect:
    """Redirect to ``location`` (an absolute URL or a path).

    :param location: the ``Location`` header.
    :param status: 301, 302, 303, 307 or 308.
    :param body: the body of the redirect answer.
    """

    location: str
    status: int = 302
    body: bytes = b""


@dataclasses.dataclass(frozen=True)
class Trickle:
    """Send ``total`` body bytes, ``chunk`` at a time, every ``interval`` seconds.

    :param total: body size announced in ``Content-Length`` (and sent, if the client waits).
    :param chunk: bytes per write.
    :param interval: seconds between writes (the first write comes after one interval).
    :param status: the HTTP status.
    :param fill: the byte repeated as the body.
    :param headers: further headers.
    :param whole_answer: trickle the status line and headers too, not only the body.
    """

    total: int
    chunk: int = 1
    interval: float = 0.3
    status: int = 200
    fill: bytes = b" "
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    whole_answer: bool = False


@dataclasses.dataclass(frozen=True)
class Huge:
    """Send a body of ``size`` bytes: ``prefix`` then ``fill`` repeated, generated lazily.

    :param size: total body size in bytes.
    :param chunked: send ``Transfer-Encoding: chunked`` instead of a ``Content-Length``.
    :param status: the HTTP status.
    :param prefix: the first bytes of the body (e.g. ``b'{"message": "'``).
    :param fill: the pattern repeated after the prefix.
    :param headers: further headers.
    """

    size: int
    chunked: bool = False
    status: int = 200
    prefix: bytes = b""
    fill: bytes = b"a"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


Behaviour = Answer | Redirect | Trickle | Huge | Callable[[Received], Any] | Sequence[Any]


def nested_json(depth: int = 200_000, status: int = 200) -> Answer:
    """Answer ``[`` x ``depth`` as JSON: ``json.loads`` raises ``RecursionError`` on it.

    :param depth: how many brackets.
    :param status: the HTTP status.
    :return: the answer.
    """
    return Answer(status, b"[" * depth, {"Content-Type": "application/json"})


_WRITE_BLOCK = 64 * 1024


class HostileServer:
    """A threaded HTTP/1.1 server on ``127.0.0.1`` with scripted paths and a request log.

    :param tls: serve HTTPS with the emulator's throw-away CA (see :attr:`ca_cert`).
    :param tls_dir: where to keep the certificates (required with ``tls``).
    """

    def __init__(self, *, tls: bool = False, tls_dir: Path | None = None) -> None:
        self._routes: dict[str, Behaviour] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.ca_cert: Path | None = None
        self.server = _Server(("127.0.0.1", 0), _handler_class(self))
        if tls:
            from capillary_emulator.tls import ensure_certificates

            if tls_dir is None:
                raise ValueError("HostileServer(tls=True) needs tls_dir")
            files = ensure_certificates(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(files.cert, files.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.ca_cert = files.ca_cert
        self.scheme = "https" if tls else "http"
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- scripting ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``scheme://127.0.0.1:port``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """Return the absolute URL of ``path`` on this server.

        :param path: a path starting with ``/`` (a query may follow).
        :return: the URL.
        """
        return self.origin + path

    def route(self, path: str, behaviour: Behaviour) -> HostileServer:
        """Script how ``path`` (without query) answers from now on.

        :param path: the path.
        :param behaviour: see the module docstring.
        :return: this server (to chain).
        """
        with self._lock:
            self._routes[path] = list(behaviour) if isinstance(behaviour, (list, tuple)) else behaviour
        return self

    # -- what arrived ------------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._received)

    def requests_to(self, path: str) -> list[Received]:
        """Return the requests received for ``path`` (without query).

        :param path: the path.
        :return: the requests, in order.
        """
        return [r for r in self.requests if r.path == path]

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving (trickles in progress end at once) and close the socket."""
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the handler -----------------------------------------------------------------

    def _record(self, received: Received) -> Any:
        with self._lock:
            self._received.append(received)
            behaviour = self._routes.get(received.path)
            if isinstance(behaviour, list):
                behaviour = behaviour.pop(0) if len(behaviour) > 1 else behaviour[0]
        if callable(behaviour) and not isinstance(behaviour, (Answer, Redirect, Trickle, Huge)):
            behaviour = behaviour(received)
        if behaviour is None:
            return Answer.json({"code": 404, "status": "false", "message": "not routed"}, status=404)
        return behaviour


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is the point of these tests: stay quiet."""


def _handler_class(owner: HostileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

        def _handle(self) -> None:
            body, size = self._read_body()
            parts = urlsplit(self.path)
            received = Received(
                method=self.command,
                path=parts.path,
                query=parts.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                body_size=size,
                received_at=time.monotonic(),
            )
            try:
                self._answer(owner._record(received))
            except OSError:  # the client hung up (reset, broken pipe, TLS close, timeout)
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

        def _read_body(self) -> tuple[bytes, int]:
            kept = bytearray()
            size = 0
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                while True:
                    line = self.rfile.readline(65537)
                    length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if length == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    data = self.rfile.read(length)
                    self.rfile.readline(65537)
                    size += len(data)
                    if len(kept) < MAX_KEPT_BODY:
                        kept += data
                return bytes(kept[:MAX_KEPT_BODY]), size
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, _WRITE_BLOCK))
                if not data:
                    break
                left -= len(data)
                size += len(data)
                if len(kept) < MAX_KEPT_BODY:
                    kept += data
            return bytes(kept[:MAX_KEPT_BODY]), size

        def _answer(self, behaviour: Any) -> None:
            if isinstance(behaviour, Redirect):
                self._simple(behaviour.status, behaviour.body, {"Location": behaviour.location})
            elif isinstance(behaviour, Answer):
                self._simple(behaviour.status, behaviour.body, behaviour.headers)
            elif isinstance(behaviour, Trickle):
                self._trickle(behaviour)
            elif isinstance(behaviour, Huge):
                self._huge(behaviour)
            else:
                raise TypeError(f"not a behaviour: {behaviour!r}")

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _simple(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self._head(status, {**headers, "Content-Length": str(len(body))})
            if self.command != "HEAD":
                self.wfile.write(body)

        def _trickle(self, t: Trickle) -> None:
            head = b""
            if t.whole_answer:
                lines = [f"HTTP/1.1 {t.status} Trickling", f"Content-Length: {t.total}"]
                head = (
                    "\r\n".join([*lines, *(f"{k}: {v}" for k, v in t.headers.items())]) + "\r\n\r\n"
                ).encode()
            else:
                self._head(t.status, {**t.headers, "Content-Length": str(t.total)})
                self.wfile.flush()
            answer = head + (t.fill * t.total)[: t.total]
            sent = 0
            while sent < len(answer):
                if owner._stopping.wait(t.interval):
                    self.close_connection = True
                    return
                self.wfile.write(answer[sent : sent + t.chunk])
                self.wfile.flush()
                sent += t.chunk

        def _huge(self, h: Huge) -> None:
            headers = dict(h.headers)
            if h.chunked:
                headers["Transfer-Encoding"] = "chunked"
            else:
                headers["Content-Length"] = str(h.size)
            self._head(h.status, headers)
            block = (h.fill * (_WRITE_BLOCK // len(h.fill) + 1))[:_WRITE_BLOCK]
            left = h.size
            first = h.prefix[: h.size]
            while left > 0 and not owner._stopping.is_set():
                piece = first or block[: min(_WRITE_BLOCK, left)]
                first = b""
                if h.chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
                left -= len(piece)
            if h.chunked and left <= 0:
                self.wfile.write(b"0\r\n\r\n")
            if left > 0:
                self.close_connection = True

    return Handler


@pytest.fixture
def hostile_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., list[HostileServer]]]:
    """Start hostile servers on demand: ``hostile_servers(2)`` -> two origins; ``tls=True`` for HTTPS.

    Every server started is stopped when the test ends.
    """
    started: list[HostileServer] = []

    def start(count: int = 1, *, tls: bool = False) -> list[HostileServer]:
        tls_dir = tmp_path_factory.mktemp("hostile-tls") if tls else None
        servers = [HostileServer(tls=tls, tls_dir=tls_dir) for _ in range(count)]
        started.extend(servers)
        return servers

    yield start
    for server in started:
        server.close()


@pytest.fixture
def hostile_server(hostile_servers: Callable[..., list[HostileServer]]) -> HostileServer:
    """One hostile HTTP server (plain HTTP on ``127.0.0.1``), stopped when the test ends."""
    return hostile_servers(1)[0]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (for server-side events).

    :param predicate: the condition.
    :param timeout: the longest wait (generous: it only bounds a test that would hang).
    :return: whether the condition became true.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
