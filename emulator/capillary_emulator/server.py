"""Running the emulator: uvicorn in a background thread (:class:`CapillaryEmulator`) or the CLI.

``EmulatorProcess`` (a subprocess, for kill -9 tests and demos) lives in ``process`` and is
re-exported here.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from capillary_emulator.app import create_app
from capillary_emulator.connection import ConnectionStrings
from capillary_emulator.faults import DEFAULT_RANDOM_KINDS, Fault
from capillary_emulator.process import EmulatorProcess
from capillary_emulator.responses import TRANSPORT_KEY
from capillary_emulator.state import EmulatorSettings, EmulatorState
from capillary_emulator.tls import ensure_certificates

__all__ = ["CapillaryEmulator", "EmulatorProcess", "build_server"]

_ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _expose_transport(app: _ASGIApp, transport: asyncio.BaseTransport) -> _ASGIApp:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})[TRANSPORT_KEY] = transport
        await app(scope, receive, send)

    return wrapped


def _protocol_class() -> type[asyncio.Protocol]:
    """Return uvicorn's HTTP protocol, extended to put the transport in the ASGI scope."""
    base: type[Any]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard], which Airflow uses
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class TransportExposingProtocol(base):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            inner: _ASGIApp = self.__dict__["app"]
            self.app = _expose_transport(inner, transport)

    return TransportExposingProtocol


def build_server(
    state: EmulatorState, *, host: str = "127.0.0.1", port: int = 0, tls: bool = False
) -> tuple[uvicorn.Server, socket.socket, str, str | None]:
    """Bind the listening socket and configure uvicorn (nothing runs yet).

    :param state: the emulator state.
    :param host: address to listen on.
    :param port: port (0: any free port).
    :param tls: serve HTTPS with a certificate generated in the data directory.
    :return: the server, its bound socket, the base URL, and the CA path (``None`` without TLS).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP (not 0) so that asyncio sets TCP_NODELAY on each accepted socket; set on the
    # listening socket too. With Nagle on, every request after the first on a kept-alive
    # connection waited ~40 ms (measured by the benchmarks).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue up from now on, even before uvicorn's loop runs
    bound_port = sock.getsockname()[1]
    ca_path = cert = key = None
    if tls:
        files = ensure_certificates(state.data_dir)
        ca_path, cert, key = str(files.ca_cert), str(files.cert), str(files.key)
    config = uvicorn.Config(
        create_app(state),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http=_protocol_class(),
        ssl_certfile=cert,
        ssl_keyfile=key,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    authority = f"[{host}]" if ":" in host else host
    base_url = f"{'https' if tls else 'http'}://{authority}:{bound_port}"
    return uvicorn.Server(config), sock, base_url, ca_path


class CapillaryEmulator(ConnectionStrings):
    """The emulator running in a background thread of this process.

    Use as a context manager (``with CapillaryEmulator() as emu:``) or call :meth:`start` and
    :meth:`stop`. See the ``state``, ``faults`` and ``app`` modules for behaviour.

    :param data_dir: where files, the index and keys persist; ``None`` for a temporary directory
        deleted on stop.
    :param tls: serve HTTPS with a generated CA (:attr:`ca_cert_path`).
    :param users: basic users, name to plain password (default ``demo``/``demo-password``).
    :param oauth_clients: OAuth clients, key to secret (default ``demo-key``/``demo-secret``).
    :param token_ttl: access token lifetime, seconds.
    :param url_expiry: ``secureFilePath`` validity, seconds.
    :param latency: seconds added to each request.
    :param max_body_bytes: largest upload body (413 above), ``None`` for no limit.
    :param timezone: zone of ``last_modified``.
    :param host: address to listen on (loopback).
    :param port: port, 0 for any free one.
    :param rate_limit: uploads per second before 429, ``None`` for no limit.
    :param fault_rate: probability of a random fault per upload (see ``faults``).
    :param fault_seed: seed of random faults.
    :param fault_kinds: random fault kinds.
    :param settings: other :class:`EmulatorSettings` fields (``bucket``, ``org_id``, ...).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        tls: bool = False,
        users: dict[str, str] | None = None,
        oauth_clients: dict[str, str] | None = None,
        token_ttl: int = 300,
        url_expiry: int = 3600,
        latency: float = 0.0,
        max_body_bytes: int | None = None,
        timezone: str = "Asia/Kolkata",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: float | None = None,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        fault_kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS,
        **settings: Any,
    ) -> None:
        if users is not None:
            settings["users"] = dict(users)
        if oauth_clients is not None:
            settings["oauth_clients"] = dict(oauth_clients)
        self.settings = EmulatorSettings(
            token_ttl=token_ttl,
            url_expiry=url_expiry,
            latency=latency,
            max_body_bytes=max_body_bytes,
            timezone=timezone,
            rate_limit=rate_limit,
            fault_rate=fault_rate,
            fault_seed=fault_seed,
            fault_kinds=tuple(fault_kinds),
            **settings,
        )
        self._data_dir = None if data_dir is None else Path(data_dir)
        self.tls = tls
        self.host = host
        self.port = port
        self._state: EmulatorState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.ca_cert_path: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> CapillaryEmulator:
        """Start serving; returns once the server accepts connections.

        :param timeout: seconds to wait for the server.
        :return: ``self``.
        :raises RuntimeError: when already started or the server failed to start in time.
        """
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._state = EmulatorState(self.settings, self._data_dir)
        server, sock, self.base_url, self.ca_cert_path = build_server(
            self._state, host=self.host, port=self.port, tls=self.tls
        )
        self.port = sock.getsockname()[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"capillary-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Capillary emulator did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (open connections are closed) and release the data directory."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._state is not None:
            self._state.close()
        self._server = self._thread = self._state = None

    def __enter__(self) -> CapillaryEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- inspection and control --------------------------------------------------------------------
    @property
    def state(self) -> EmulatorState:
        """The live state (store, logs, faults).

        :raises RuntimeError: when not running.
        """
        if self._state is None:
            raise RuntimeError("the emulator is not running")
        return self._state

    @property
    def data_dir(self) -> Path:
        """The data directory in use."""
        return self.state.data_dir

    def credential_pools(self) -> tuple[dict[str, str], dict[str, str]]:
        """Return the basic users and the OAuth clients (name to secret)."""
        return self.settings.users, self.settings.oauth_clients

    def push_fault(self, fault: Fault) -> None:
        """Queue one scripted fault.

        :param fault: the fault.
        """
        self.state.push_faults([fault])

    def push_faults(self, faults: list[Fault]) -> None:
        """Queue scripted faults, applied in order.

        :param faults: the faults.
        """
        self.state.push_faults(list(faults))

    def pending_faults(self) -> list[Fault]:
        """Return the scripted faults not consumed yet."""
        return self.state.faults.pending()

    def stored_files(self) -> list[dict[str, Any]]:
        """Return every stored version, oldest first (see ``StoredFile.to_dict``)."""
        return [stored.to_dict() for stored in self.state.store.files()]

    def requests(self) -> list[dict[str, Any]]:
        """Return the request log, oldest first (see ``RequestLog.start``)."""
        return self.state.log.entries()

    def token_requests(self) -> list[dict[str, Any]]:
        """Return the token requests (``key``, ``accepted``, ``ttl``, ``time``), oldest first."""
        return self.state.auth.token_requests()

    @property
    def tokens_issued(self) -> int:
        """How many access tokens were issued."""
        return sum(1 for entry in self.token_requests() if entry["accepted"])

    def configure(self, **changes: Any) -> None:
        """Change runtime settings (latency, rate_limit, fault_rate, ...; see ``state.RUNTIME_SETTINGS``).

        :param changes: new values.
        """
        self.state.configure(**changes)
        self.settings = self.state.settings

    def reset(self) -> None:
        """Delete stored files and forget faults and logs."""
        self.state.reset()
