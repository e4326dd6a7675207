"""Running the emulator: uvicorn in a background thread (:class:`CapillaryEmulator`) or the CLI.

``EmulatorProcess`` (a subprocess, for kill -9 tests and demos) lives in ``process`` and is
re-exported here. The connection-level limits and the transport tap are in ``serving``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from capillary_emulator.app import create_app
from capillary_emulator.clock import Clock
from capillary_emulator.connection import EmulatorHandle
from capillary_emulator.faults import DEFAULT_RANDOM_KINDS, Fault
from capillary_emulator.process import EmulatorProcess
from capillary_emulator.resources import EmulatorServer, default_max_connections
from capillary_emulator.serving import ConnectionGuard, ConnectionRegistry, tapped_protocol
from capillary_emulator.state import EmulatorSettings, EmulatorState, new_control_token
from capillary_emulator.tls import ensure_certificates

__all__ = ["CapillaryEmulator", "EmulatorProcess", "build_server"]


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
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue up from now on, even before uvicorn's loop runs
    bound_port = sock.getsockname()[1]
    ca_path = cert = key = None
    if tls:
        files = ensure_certificates(state.data_dir)
        ca_path, cert, key = str(files.ca_cert), str(files.cert), str(files.key)
    settings = state.settings
    max_connections = settings.max_connections or default_max_connections()
    registry = ConnectionRegistry(
        max_connections=max_connections,
        header_timeout=settings.header_timeout,
        max_header_bytes=settings.max_header_bytes,
    )
    state.connections = registry
    config = uvicorn.Config(
        ConnectionGuard(create_app(state), registry, settings.body_timeout),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http=tapped_protocol(registry),
        proxy_headers=False,  # X-Forwarded-* from a loopback client must not rewrite the client or scheme
        ssl_certfile=cert,
        ssl_keyfile=key,
        timeout_keep_alive=max(1, int(settings.header_timeout)),
        timeout_graceful_shutdown=2,
        backlog=min(2048, max_connections),  # also what asyncio accepts per loop iteration
        server_header=False,
    )
    authority = f"[{host}]" if ":" in host else host
    base_url = f"{'https' if tls else 'http'}://{authority}:{bound_port}"
    return EmulatorServer(config), sock, base_url, ca_path


class CapillaryEmulator(EmulatorHandle):
    """The emulator running in a background thread of this process.

    Use as a context manager (``with CapillaryEmulator() as emu:``) or call :meth:`start` and
    :meth:`stop`. See the ``state``, ``faults``, ``ratelimit`` and ``app`` modules for behaviour.
    The Python API reads and changes the state directly; :attr:`control_token` (and
    :meth:`control_headers`) is for raw HTTP calls to the ``/_emulator`` endpoints.

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
    :param rate_limit: requests per API key before 429 with ``Retry-After`` (``ratelimit``): a
        number per second or a text such as ``"2/s"`` or ``"100/min"``; ``None`` for no limit. More
        settings: ``rate_limit_burst``, ``rate_limit_retry_after``.
    :param fault_rate: probability of a random fault per upload (see ``faults``).
    :param fault_seed: seed of random faults.
    :param fault_kinds: random fault kinds.
    :param clock: the clock of the rate limiter and the latency (a
        :class:`~capillary_emulator.clock.ManualClock` in deterministic tests); default: real time.
    :param control_token: the control endpoints' secret; ``None`` to generate one (kept across
        :meth:`stop`/:meth:`start`).
    :param settings: other :class:`EmulatorSettings` fields (``bucket``, ``org_id``,
        ``rate_limit_burst``, ``request_log_size``, ``max_connections``, ``header_timeout``, ...).
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
        rate_limit: float | str | None = None,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        fault_kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS,
        clock: Clock | None = None,
        control_token: str | None = None,
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
        self.clock = clock
        self.control_token = control_token or new_control_token()
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
        self._state = EmulatorState(
            self.settings, self._data_dir, clock=self.clock, control_token=self.control_token
        )
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
        """Return the request log, oldest first, credentials redacted (see ``requestlog``)."""
        return self.state.log.entries()

    def token_requests(self) -> list[dict[str, Any]]:
        """Return the token requests (``key``, ``accepted``, ``limited``, ``ttl``, ``time``), oldest first."""
        return self.state.auth.token_requests()

    def issued_credentials(self) -> dict[str, list[str]]:
        """Return the credentials this emulator handed out, for leak scans (in-process only).

        The request log redacts every credential it receives; a test that searches logs for
        leaked secrets takes them from here instead. No control endpoint serves them.

        :return: ``{"access_tokens": [...], "url_signatures": [...], "url_security_tokens": [...]}``
            (the latest 10,000 of each kind, oldest first; security tokens without repeats).
        """
        signed = self.state.signer.issued()
        return {
            "access_tokens": self.state.auth.issued_tokens(),
            "url_signatures": [signature for signature, _ in signed],
            "url_security_tokens": list(dict.fromkeys(token for _, token in signed)),
        }

    def stats(self) -> dict[str, Any]:
        """Return the counts the bounded request log cannot lose (see ``EmulatorState.stats``).

        :return: ``{"requests": {kind: {status: n}}, "rate_limit": {api key: {"admitted": n,
            "limited": n}}, "rate_limit_settings": {...}}``.
        """
        return self.state.stats()

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
