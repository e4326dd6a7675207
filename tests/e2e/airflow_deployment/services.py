"""Throw-away PostgreSQL and Redis servers on loopback, for the production-shaped deployment.

Both come from Debian's packages (``postgresql``, ``redis-server``; ``scripts/ensure-system-deps.sh``
installs them when missing) and run as children of the test process, in temporary folders, on free
loopback ports; nothing is installed as a system service and nothing listens beyond 127.0.0.1.

PostgreSQL refuses to run as root, and CI runs as root: then ``initdb``, ``pg_ctl`` and the server
run as the ``postgres`` system user that the Debian package creates (``runuser -u postgres --``),
in a data folder that user owns.

Typical use::

    with PostgresServer() as pg, RedisServer() as redis:
        pg.url("postgresql+psycopg2")   # postgresql+psycopg2://postgres@127.0.0.1:54321/airflow
        redis.url()                     # redis://127.0.0.1:63791/0
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.e2e.airflow_deployment.processes import ManagedProcess, free_loopback_port, stop_processes

log = logging.getLogger(__name__)

__all__ = ["PostgresServer", "RedisServer", "ServiceError", "wait_for_port"]


class ServiceError(RuntimeError):
    """A database or broker server did not start (the message carries its log tail)."""


def wait_for_port(port: int, *, timeout: float, alive: ManagedProcess | None = None) -> None:
    """Wait until something accepts TCP connections on ``127.0.0.1:port``.

    :param port: the port.
    :param timeout: seconds before giving up.
    :param alive: a process whose exit ends the wait early with an error.
    :raises ServiceError: when the deadline passes or ``alive`` exits.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if alive is not None and alive.returncode() is not None:
            raise ServiceError(f"{alive.name} exited with {alive.returncode()}:\n{alive.tail()}")
        if time.monotonic() > deadline:
            raise ServiceError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.2)


def _postgres_bin(name: str) -> str:
    """Return the path of a PostgreSQL server program (``initdb``, ``pg_ctl``) of Debian's package.

    :param name: the program.
    :return: its path in the newest installed major version.
    :raises ServiceError: when PostgreSQL's server is not installed.
    """
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"PostgreSQL's {name} is missing: run scripts/ensure-system-deps.sh")


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, on a free loopback port, trust auth on loopback.

    :param database: database created for the caller.
    """

    def __init__(self, *, database: str = "airflow") -> None:
        self.database = database
        self.port = free_loopback_port()
        self.as_root = os.geteuid() == 0
        # Not below pytest's tmp_path: its parents are 0700 and owned by root, so the postgres user
        # could not reach a data folder there.
        self.base = Path(tempfile.mkdtemp(prefix="capillary-pg-"))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sockets"
        self.log_path = self.base / "postgres.log"
        self.timings: dict[str, float] = {}
        self._running = False

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        """Return the SQLAlchemy URL of the database.

        :param driver: the URL scheme (``postgresql+psycopg2``, or ``db+postgresql+psycopg2`` for Celery's
            result backend).
        :return: the URL (no password: trust authentication on loopback only).
        """
        return f"{driver}://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, timeout: float = 120.0) -> str:
        command = ["runuser", "-u", "postgres", "--", *argv] if self.as_root else list(argv)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise ServiceError(
                f"{' '.join(argv[:2])} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def _chown(self) -> None:
        if not self.as_root:
            return
        entry = pwd.getpwnam("postgres")
        for path in (self.base, *self.base.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        """Initialise the cluster (first start only), start the server and create the database.

        :raises ServiceError: when a step fails.
        """
        started = time.monotonic()
        if not self.data_dir.exists():
            self.data_dir.mkdir(parents=True)
            self.socket_dir.mkdir(parents=True)
            self._chown()
            self._run(
                _postgres_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-sync",
            )  # fmt: skip
            self.timings["initdb"] = time.monotonic() - started
            fresh = True
        else:
            fresh = False
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.socket_dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self._running = True
        if fresh:
            self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                      "-c", f"CREATE DATABASE {self.database}")  # fmt: skip
        self.timings["start"] = time.monotonic() - started
        log.info("PostgreSQL on 127.0.0.1:%d (%s)", self.port, self.data_dir)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (the data folder stays until :meth:`remove`).

        :param mode: ``pg_ctl`` shutdown mode: ``fast`` or ``immediate`` (a crash, as after a kill).
        """
        if self._running:
            with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
                self._run(_postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")
            self._running = False

    def restart(self, *, mode: str = "immediate") -> None:
        """Stop the server abruptly and start it again on the same port and data.

        :param mode: the shutdown mode (``immediate``: no checkpoint, like a crash).
        """
        self.stop(mode=mode)
        self.start()

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        """Start the server.

        :return: the running server.
        """
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server and delete its data."""
        self.remove()


class RedisServer:
    """A Redis server without persistence on a free loopback port (the Celery broker)."""

    def __init__(self) -> None:
        self.port = free_loopback_port()
        self.base = Path(tempfile.mkdtemp(prefix="capillary-redis-"))
        self.process: ManagedProcess | None = None

    def url(self, db: int = 0) -> str:
        """Return the broker URL.

        :param db: the Redis database number.
        :return: ``redis://127.0.0.1:<port>/<db>``.
        """
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections.

        :param timeout: seconds to wait.
        :raises ServiceError: when it does not come up.
        """
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise ServiceError("redis-server is missing: run scripts/ensure-system-deps.sh")
        self.process = ManagedProcess(
            "redis",
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.base), "--protected-mode", "yes",
            ],
            self.base / "redis.log",
        )  # fmt: skip
        self.process.start(dict(os.environ), cwd=self.base)
        wait_for_port(self.port, timeout=timeout, alive=self.process)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is not None:
            stop_processes([self.process], grace=10)
            self.process = None

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        """Start the server.

        :return: the running server.
        """
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server and delete its folder."""
        self.remove()
