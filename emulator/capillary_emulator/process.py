"""The emulator as a child process (``python -m capillary_emulator``): kill -9 tests, demos.

:class:`EmulatorProcess` starts the CLI, reads its base URL from the first stdout line (and the CA
path from the second with ``tls=True``), and talks to it through the ``/_emulator`` endpoints with
its control token (generated here, passed to the child in ``CAPILLARY_EMULATOR_CONTROL_TOKEN``,
never on the command line). :meth:`EmulatorProcess.restart` starts it again on the same port, data
directory and token, so clients keep their base URL across a crash.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from capillary_emulator.connection import CONTROL_TOKEN_ENV, EmulatorHandle
from capillary_emulator.defaults import DEFAULT_OAUTH_CLIENTS, DEFAULT_USERS
from capillary_emulator.faults import Fault
from capillary_emulator.state import new_control_token


class EmulatorProcess(EmulatorHandle):
    """Run the emulator CLI as a subprocess.

    :param data_dir: the data directory (kept across restarts; required so that it can be reused).
    :param host: address to listen on.
    :param port: port, 0 for any free one (a restart reuses the port first chosen).
    :param tls: pass ``--tls``.
    :param users: basic users, passed as ``--user``; ``None`` for the CLI defaults.
    :param oauth_clients: OAuth clients, passed as ``--oauth-client``; ``None`` for the defaults.
    :param args: more CLI arguments, e.g. ``["--latency-ms", "20"]``.
    :param startup_timeout: seconds to wait for the base URL line.
    :param env: environment of the child (default: this one).
    :param control_token: the control token; ``None`` to generate one (:attr:`control_token`).
    :param python: the interpreter that runs the CLI (default: this one), e.g. a fresh venv's.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        users: dict[str, str] | None = None,
        oauth_clients: dict[str, str] | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
        control_token: str | None = None,
        python: str | Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host, self.port, self.tls = host, port, tls
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.oauth_clients = dict(DEFAULT_OAUTH_CLIENTS if oauth_clients is None else oauth_clients)
        self._custom_credentials = users is not None or oauth_clients is not None
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.env = env
        self.control_token = control_token or new_control_token()
        self.python = str(python) if python is not None else sys.executable
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.ca_cert_path: str | None = None
        self.stderr_path = self.data_dir / "emulator-stderr.log"
        self._stderr: IO[str] | None = None

    def command(self) -> list[str]:
        """Return the command line of the child."""
        cmd = [
            self.python,
            "-m",
            "capillary_emulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        cmd += ["--data-dir", str(self.data_dir)]
        if self.tls:
            cmd.append("--tls")
        if self._custom_credentials:
            cmd += [item for name, pw in self.users.items() for item in ("--user", f"{name}:{pw}")]
            cmd += [
                item for key, sec in self.oauth_clients.items() for item in ("--oauth-client", f"{key}:{sec}")
            ]
        return cmd + self.args

    def start(self) -> EmulatorProcess:
        """Start the child and wait for its base URL.

        :return: ``self``.
        :raises RuntimeError: when it exits or prints nothing in time (its stderr is in the message).
        """
        if self.running:
            raise RuntimeError("the emulator process is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "a")  # noqa: SIM115 - closed in _reap
        env = dict(os.environ if self.env is None else self.env, PYTHONUNBUFFERED="1")
        env[CONTROL_TOKEN_ENV] = self.control_token
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None

        def pump() -> None:  # drains stdout until the child exits, then closes it
            with stdout:
                for line in stdout:
                    lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, name="capillary-emulator-stdout", daemon=True).start()
        try:
            first = lines.get(timeout=self.startup_timeout)
            second = lines.get(timeout=self.startup_timeout) if self.tls and first else None
        except queue.Empty:
            first = second = None
        if not first or not first.startswith(("http://", "https://")):
            self.kill()
            tail = self.stderr_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the emulator process did not start (first line {first!r}); stderr:\n{tail}")
        self.base_url = first
        self.ca_cert_path = second
        self.port = urlsplit(first).port or self.port
        return self

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return None if self.process is None else self.process.pid

    def _reap(self, timeout: float) -> int | None:
        code = None
        if self.process is not None:
            code = self.process.wait(timeout=timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return code

    def kill(self) -> int | None:
        """Kill the child with SIGKILL (no clean-up: the crash case).

        :return: its exit code.
        """
        if self.running and self.process is not None:
            self.process.send_signal(signal.SIGKILL)
        return self._reap(timeout=10)

    def terminate(self, timeout: float = 10.0) -> int | None:
        """Stop the child with SIGTERM and wait.

        :param timeout: seconds to wait.
        :return: its exit code (0 after a clean shutdown).
        """
        if self.running and self.process is not None:
            self.process.send_signal(signal.SIGTERM)
        return self._reap(timeout=timeout)

    stop = terminate

    def restart(self) -> EmulatorProcess:
        """Start the child again on the same port and data directory (after :meth:`kill` or :meth:`stop`).

        :return: ``self``.
        """
        if self.running:
            self.terminate()
        return self.start()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.terminate()

    # -- control endpoints -------------------------------------------------------------------------
    def control(self, method: str, path: str, payload: Any = None) -> Any:
        """Call a ``/_emulator`` endpoint.

        :param method: HTTP method.
        :param path: path under ``/_emulator``, e.g. ``files``.
        :param payload: JSON body.
        :return: the decoded JSON answer.
        :raises urllib.error.HTTPError: for an error answer (its body says why).
        """
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_emulator/{path}",
            data=data,
            method=method,
            headers=self.control_headers(),
        )
        context = ssl.create_default_context(cafile=self.ca_cert_path) if self.ca_cert_path else None
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return json.loads(response.read())

    def push_faults(self, faults: Sequence[Fault]) -> None:
        """Queue scripted faults.

        :param faults: the faults.
        """
        self.control("POST", "faults", [fault.to_dict() for fault in faults])

    def push_fault(self, fault: Fault) -> None:
        """Queue one scripted fault.

        :param fault: the fault.
        """
        self.push_faults([fault])

    def stored_files(self) -> list[dict[str, Any]]:
        """Return every stored version."""
        files: list[dict[str, Any]] = self.control("GET", "files")
        return files

    def requests(self) -> list[dict[str, Any]]:
        """Return the request log."""
        entries: list[dict[str, Any]] = self.control("GET", "requests")
        return entries

    def token_requests(self) -> list[dict[str, Any]]:
        """Return the token request log."""
        entries: list[dict[str, Any]] = self.control("GET", "tokens")
        return entries

    def stats(self) -> dict[str, Any]:
        """Return the emulator's counters (see ``EmulatorState.stats``)."""
        stats: dict[str, Any] = self.control("GET", "stats")
        return stats

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change runtime settings.

        :param changes: new values.
        :return: the settings now in force (without secrets).
        """
        settings: dict[str, Any] = self.control("POST", "settings", changes)
        return settings

    def reset(self) -> None:
        """Delete stored files and forget faults and logs."""
        self.control("POST", "reset", {})

    def credential_pools(self) -> tuple[dict[str, str], dict[str, str]]:
        """Return the basic users and the OAuth clients (name to secret)."""
        return self.users, self.oauth_clients
