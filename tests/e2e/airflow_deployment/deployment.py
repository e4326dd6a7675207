"""A real, throw-away Airflow 3 deployment for end-to-end tests.

``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` run as subprocesses of the
current interpreter's Airflow in a temporary ``AIRFLOW_HOME``, on a free loopback port: either with
the LocalExecutor against one SQLite database (the default), or production-shaped with a
:class:`CeleryStack`: the CeleryExecutor, PostgreSQL as the metadata database and Celery's result
backend, Redis as the broker, and ``airflow celery worker`` processes with distinct hostnames.
Everything is configured through ``AIRFLOW__*`` variables (no ``airflow.cfg`` edits), so nothing
leaks from or into the test process: the inherited ``AIRFLOW_*`` variables are dropped first.

Typical use::

    with AirflowDeployment(home, dags_folder=dags, connections={"capillary_default": uri}) as airflow:
        run = airflow.client.trigger_dag_run("my_dag")
        airflow.client.wait_for_dag_run("my_dag", run["dag_run_id"])
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tests.e2e.airflow_deployment.client import AirflowApiClient
from tests.e2e.airflow_deployment.processes import (
    MARKER_VARIABLE,
    ManagedProcess,
    free_loopback_port,
    kill_marked_processes,
    marked_pids,
    session_pids,
    stop_processes,
)

log = logging.getLogger(__name__)

#: The long-running components, in start order.
COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")

#: Extra command-line arguments per component. The log servers are skipped: they would listen on
#: fixed ports on every interface, and the api-server reads the task logs from the shared folder.
_COMPONENT_ARGS: dict[str, tuple[str, ...]] = {
    "api-server": ("--workers", "1"),
    "scheduler": ("--skip-serve-logs",),
    "dag-processor": (),
    "triggerer": ("--skip-serve-logs",),
}


@dataclass(frozen=True)
class CeleryStack:
    """The production-shaped variant of a deployment: CeleryExecutor on PostgreSQL and Redis.

    :param database_url: SQLAlchemy URL of the metadata database (PostgreSQL).
    :param result_backend: Celery's result backend (``db+postgresql://...``).
    :param broker_url: Celery's broker (``redis://...``).
    :param workers: the workers' Celery hostnames, one ``airflow celery worker`` each.
    :param concurrency: task slots per worker.
    :param failover_seconds: how soon the scheduler gives up on a task a dead worker held: a
        running task that stopped heartbeating (``task_instance_heartbeat_timeout``), and a task
        the worker took from the broker but never started (``task_queued_timeout``; the broker
        would redeliver it only after its visibility timeout, a day by default). Airflow's
        defaults are 5 and 10 minutes.
    """

    database_url: str
    result_backend: str
    broker_url: str
    workers: tuple[str, ...] = ("worker1@capillary-e2e", "worker2@capillary-e2e")
    concurrency: int = 4
    failover_seconds: int = 60

    def component(self, hostname: str) -> str:
        """Return the deployment's component name of one worker (``celery-worker1``).

        :param hostname: the worker's Celery hostname.
        :return: the name used for its process and log file.
        """
        return f"celery-{hostname.split('@', 1)[0]}"


#: The ``[core] hostname_callable`` of the Celery workers: their Celery hostname, not the machine's.
_HOSTNAME_MODULE = '''"""Hostname of a Celery worker of the e2e deployment (the workers share a machine)."""

import os
import socket


def worker_hostname() -> str:
    """Return the worker's Celery hostname (CAPILLARY_E2E_WORKER), else the machine's name."""
    return os.environ.get("CAPILLARY_E2E_WORKER") or socket.getfqdn()
'''


class DeploymentError(RuntimeError):
    """The deployment did not start or did not become healthy (message includes the log tails)."""


class AirflowDeployment:
    """Start, probe and stop a complete Airflow deployment on loopback.

    :param home: the ``AIRFLOW_HOME`` to use (created; should be empty and throw-away).
    :param dags_folder: folder of DAG files (default ``home / "dags"``, created empty).
    :param connections: connection id -> URI or JSON, exported as ``AIRFLOW_CONN_<ID>``.
    :param config: extra ``AIRFLOW__SECTION__KEY`` -> value settings (override the defaults).
    :param env: extra environment variables for every component.
    :param username: the SimpleAuthManager admin user.
    :param python: interpreter whose ``airflow`` runs (default: the current one).
    :param celery: run production-shaped (CeleryExecutor, PostgreSQL, Redis, workers) instead of
        LocalExecutor on SQLite.
    """

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path | None = None,
        connections: Mapping[str, str] | None = None,
        config: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        username: str = "admin",
        python: str = sys.executable,
        celery: CeleryStack | None = None,
    ) -> None:
        self.home = home
        self.celery = celery
        self.dags_folder = dags_folder if dags_folder is not None else home / "dags"
        self.connections = dict(connections or {})
        self.username = username
        self.password = secrets.token_urlsafe(12)
        self.python = python
        self.port = free_loopback_port()
        self.marker = uuid.uuid4().hex
        self.processes: dict[str, ManagedProcess] = {}
        self.timings: dict[str, float] = {}
        self._extra_config = dict(config or {})
        self._extra_env = dict(env or {})
        self._client: AirflowApiClient | None = None
        # Generated once: every component and every CLI call must share the same keys.
        self._fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self._api_secret_key = secrets.token_urlsafe(24)
        self._jwt_secret = secrets.token_urlsafe(24)

    # -- configuration ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """URL of the api-server (REST API and UI), e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs_folder(self) -> Path:
        """Airflow's ``base_log_folder`` (task logs live below ``dag_id=.../run_id=.../``)."""
        return self.home / "logs"

    @property
    def client(self) -> AirflowApiClient:
        """REST client authenticated as the admin user."""
        if self._client is None:
            self._client = AirflowApiClient(self.base_url, self.username, self.password)
        return self._client

    def config(self) -> dict[str, str]:
        """Return the ``AIRFLOW__*`` settings every component gets.

        :return: variable name -> value.
        """
        settings = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": self._api_secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_folder),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        }
        if self.celery is not None:
            settings.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CORE__PARALLELISM": str(self.celery.concurrency * len(self.celery.workers)),
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.celery.database_url,
                    "AIRFLOW__CELERY__BROKER_URL": self.celery.broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": self.celery.result_backend,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery.concurrency),
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.celery.failover_seconds),
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(self.celery.failover_seconds),
                    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
                }
            )
        settings.update(self._extra_config)
        return settings

    def component_commands(self, components: Sequence[str]) -> dict[str, tuple[list[str], dict[str, str]]]:
        """Return the command line and extra environment of every long-running process, in order.

        :param components: the Airflow components to start (api-server, scheduler, ...).
        :return: process name -> (argv, extra environment); with :attr:`celery`, one worker per
            Celery hostname follows. Each worker's task instances report its Celery hostname as
            their ``hostname`` (``[core] hostname_callable``), so a test can tell the workers apart
            on one machine.
        """
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            name: ([self.python, "-m", "airflow", name, *_COMPONENT_ARGS.get(name, ())], {})
            for name in components
        }
        if self.celery is not None:
            site = self.home / "e2e-site"
            site.mkdir(parents=True, exist_ok=True)
            (site / "capillary_e2e_hostname.py").write_text(_HOSTNAME_MODULE)
            for hostname in self.celery.workers:
                argv = [
                    self.python, "-m", "airflow", "celery", "worker", "--celery-hostname", hostname,
                    "--concurrency", str(self.celery.concurrency), "--skip-serve-logs", "--without-mingle",
                    "--without-gossip",
                ]  # fmt: skip
                commands[self.celery.component(hostname)] = (
                    argv,
                    {
                        "PYTHONPATH": str(site),
                        "CAPILLARY_E2E_WORKER": hostname,
                        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "capillary_e2e_hostname.worker_hostname",
                    },
                )
        return commands

    def environment(self) -> dict[str, str]:
        """Return the complete environment of every Airflow process of this deployment.

        Inherited ``AIRFLOW_*`` variables (the test process's own throw-away home, unit-test mode,
        connections) are dropped; only this deployment's settings and connections remain.
        ``PYTHONDONTWRITEBYTECODE`` is dropped too, so that bytecode is compiled once, not per process.

        :return: the environment.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        # Let Python cache the bytecode it compiles (in the venv's __pycache__ folders, as it does by
        # default): with PYTHONDONTWRITEBYTECODE set and a venv installed without compiled bytecode,
        # each of the deployment's processes would compile all of Airflow again (~8 s of CPU each).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                MARKER_VARIABLE: self.marker,
            }
        )
        env.update(self.config())
        for conn_id, value in self.connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
        env.update(self._extra_env)
        return env

    # -- life cycle ---------------------------------------------------------------------------------

    def airflow(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command with the deployment's environment.

        :param args: the command's arguments (``"providers", "get", ...``).
        :param timeout: seconds before it is killed.
        :param check: raise when it exits non-zero.
        :return: the completed process (stdout and stderr as text).
        :raises DeploymentError: when ``check`` and the command failed.
        """
        result = subprocess.run(
            [self.python, "-m", "airflow", *args],
            env=self.environment(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DeploymentError(
                f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result

    def celery_ping(self, *, timeout: float = 10.0) -> list[str]:
        """Ask the broker which Celery workers answer a ping (production-shaped deployments only).

        :param timeout: seconds the workers get to answer.
        :return: the sorted hostnames of the workers that answered.
        :raises DeploymentError: when the ping command fails.
        """
        script = (
            "import json; from airflow.providers.celery.executors.celery_executor import app; "
            f"print(json.dumps(sorted(k for r in app.control.ping(timeout={timeout}) for k in r)))"
        )
        result = subprocess.run(
            [self.python, "-c", script],
            env=self.environment(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            check=False,
        )
        if result.returncode != 0:
            raise DeploymentError(f"celery ping exited {result.returncode}:\n{result.stderr[-3000:]}")
        answered: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
        return answered

    def prepare(self) -> None:
        """Create the home, DAGs folder and password file, and migrate the database."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.logs_folder.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}))
        started = time.monotonic()
        result = self.airflow("db", "migrate", timeout=300)
        (self.home / "db-migrate.log").write_text(result.stdout + result.stderr)
        self.timings["db_migrate"] = time.monotonic() - started

    def start(self, *, timeout: float = 180.0, components: Sequence[str] = COMPONENTS) -> None:
        """Prepare, start the components and wait until the deployment reports healthy.

        On any failure everything started so far is stopped again before the error propagates.

        :param timeout: seconds to wait for health (after the database migration).
        :param components: which components to start.
        :raises DeploymentError: when a component exits or health is not reached in time.
        """
        started = time.monotonic()
        try:
            self.prepare()
            env = self.environment()
            for name, (argv, extra_env) in self.component_commands(components).items():
                self.start_process(name, argv, {**env, **extra_env})
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["start_total"] = time.monotonic() - started
        log.info("Airflow deployment at %s ready; timings %s", self.base_url, self.timings)

    def restart_component(self, name: str) -> None:
        """Start a process of the deployment again (after a test killed it), as it first started.

        :param name: the process's name (``celery-worker1``).
        """
        argv, extra_env = self.component_commands(list(COMPONENTS))[name]
        self.start_process(name, argv, {**self.environment(), **extra_env})

    @contextlib.contextmanager
    def supervised(self, *, interval: float = 0.5) -> Iterator[list[str]]:
        """Restart any component that exits while the block runs, as systemd's ``Restart=always``
        or a Kubernetes deployment would in production.

        :param interval: seconds between checks.
        :return: (as the context value) the names of the components restarted, in order.
        """
        restarted: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval):
                for name, proc in list(self.processes.items()):
                    if proc.returncode() is not None:
                        log.warning("%s exited with %s; restarting it", name, proc.returncode())
                        proc.close_log()
                        restarted.append(name)
                        self.restart_component(name)

        watcher = threading.Thread(target=watch, name="deployment-supervisor", daemon=True)
        watcher.start()
        try:
            yield restarted
        finally:
            stop.set()
            watcher.join()

    def start_process(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Start (or start again) one long-running process of the deployment.

        :param name: its name (``scheduler``, ``celery-worker1``); its log is ``home/<name>.log``.
        :param argv: the command line.
        :param env: its environment (default: :meth:`environment`).
        """
        proc = ManagedProcess(name, argv, self.home / f"{name}.log")
        self.processes[name] = proc
        proc.start(env if env is not None else self.environment(), cwd=self.home)

    def check_alive(self) -> None:
        """Raise when a component has exited.

        :raises DeploymentError: naming the component, its exit status and its log tail.
        """
        for proc in self.processes.values():
            code = proc.returncode()
            if code is not None:
                raise DeploymentError(
                    f"{proc.name} exited with status {code}; last lines of {proc.log_path}:\n{proc.tail()}"
                )

    def wait_healthy(self, *, timeout: float = 180.0) -> dict[str, Any]:
        """Poll ``/api/v2/monitor/health`` until every started component reports healthy.

        :param timeout: wall-clock deadline in seconds.
        :return: the last health document.
        :raises DeploymentError: when a component exits or the deadline passes.
        """
        wanted = {"metadatabase"} | {
            name.replace("-", "_") for name in self.processes if name in COMPONENTS and name != "api-server"
        }
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        health: dict[str, Any] = {}
        while True:
            self.check_alive()
            try:
                health = self.client.health()
            except requests.RequestException:
                health = {}
            else:
                if "api_up" not in self.timings:
                    self.timings["api_up"] = time.monotonic() - started
            if health and all(health.get(name, {}).get("status") == "healthy" for name in wanted):
                self.timings["healthy"] = time.monotonic() - started
                return health
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name} ---\n{p.tail(15)}" for p in self.processes.values())
                raise DeploymentError(f"not healthy after {timeout:.0f} s: {health}\n{tails}")
            time.sleep(0.5)

    def stop(self, *, grace: float = 20.0) -> dict[str, int | None]:
        """Stop every component (SIGTERM, wait, SIGKILL, by process group) and sweep leftovers.

        Safe to call more than once and after a failed start.

        :param grace: seconds each group gets to exit after SIGTERM.
        :return: exit status per component.
        """
        started = time.monotonic()
        results = stop_processes(self.processes.values(), grace=grace)
        leftovers = kill_marked_processes(self.marker)
        if leftovers:
            results["leftovers_killed"] = len(leftovers)
        if self._client is not None:
            self._client.session.close()
        self.timings["stop"] = time.monotonic() - started
        return results

    def leftover_pids(self) -> list[int]:
        """Return pids of processes of this deployment that are still alive (empty after stop).

        :return: the pids (found by session and by the environment marker).
        """
        sessions = {proc.pid for proc in self.processes.values() if proc.pid is not None}
        return sorted(set(session_pids(sessions)) | set(marked_pids(self.marker)))

    def __enter__(self) -> AirflowDeployment:
        """Start the deployment.

        :return: the running deployment.
        """
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the deployment, also when the block failed."""
        self.stop()

    # -- helpers for tests --------------------------------------------------------------------------

    def component_log(self, name: str) -> str:
        """Return the whole console log of a component.

        :param name: ``"api-server"``, ``"scheduler"``, ``"dag-processor"`` or ``"triggerer"``.
        :return: the text.
        """
        return (self.home / f"{name}.log").read_text(errors="replace")

    def add_dag_file(self, name: str, source: str) -> Path:
        """Write a DAG file into the DAGs folder (atomically, so it is never parsed half-written).

        :param name: file name, e.g. ``"e2e_upload.py"``.
        :param source: the Python source.
        :return: the file's path.
        """
        path = self.dags_folder / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(source)
        tmp.replace(path)
        return path

    def wait_for_dag(
        self, dag_id: str, *, timeout: float = 60.0, file_name: str | None = None
    ) -> dict[str, Any]:
        """Wait until the dag-processor has parsed a DAG and the API knows it.

        :param dag_id: the DAG id.
        :param timeout: wall-clock deadline in seconds.
        :param file_name: the DAG's file name: its import error, if any, fails the wait at once.
        :return: the DAG's API document.
        :raises DeploymentError: on an import error of that file, or when the deadline passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            dag = self.client.dag(dag_id)
            if dag is not None:
                return dag
            if file_name is not None:
                for error in self.client.import_errors():
                    if str(error.get("filename", "")).endswith(file_name):
                        raise DeploymentError(f"{file_name} failed to import:\n{error.get('stack_trace')}")
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"DAG {dag_id} not parsed after {timeout:.0f} s; dag-processor log:\n"
                    f"{self.processes['dag-processor'].tail(30) if 'dag-processor' in self.processes else ''}"
                )
            time.sleep(0.5)

    def task_log_files(self) -> list[Path]:
        """Return every task log file written so far (for scans over all supervised task logs).

        :return: sorted paths below :attr:`logs_folder`.
        """
        return sorted(path for path in self.logs_folder.rglob("*") if path.is_file())
