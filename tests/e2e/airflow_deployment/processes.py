"""Subprocess plumbing for the end-to-end deployment: free ports, process groups, clean shutdown.

Every component the deployment starts leads its own session (``start_new_session=True``). SIGTERM
goes to its process group, so that the component shuts down what it spawned (uvicorn workers,
LocalExecutor workers, the triggerer's runner, the DAG parsing processes); whatever is still in
the session after a grace period (supervised task processes move to groups of their own, but not
to other sessions) gets SIGKILL. Components get SIGTERM when the test process dies (``prctl``
``PR_SET_PDEATHSIG``), and carry a marker variable in their environment, which
:func:`kill_marked_processes` uses as a last sweep (children that rewrite their process title with
``setproctitle`` lose it, hence the sessions).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: Name of the environment variable that marks every process of one deployment.
MARKER_VARIABLE = "CAPILLARY_E2E_DEPLOYMENT"
#: prctl(2) option: signal sent to this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the test process dies.

    Without this, a test run killed with SIGKILL (a CI timeout, a developer's kill -9) would leave
    a whole Airflow deployment running, since each component leads its own session.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the session sweep still applies
        pass


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    :return: the port number (the socket used to find it is closed again).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """One long-running command in its own process group, with its output in a log file.

    :param name: short name used in messages (``"scheduler"``).
    :param argv: the command line.
    :param log_path: file that receives stdout and stderr (appended to).
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the started command, or None before :meth:`start`."""
        return self.popen.pid if self.popen is not None else None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        """Start the command in a new session (so its pid is also its process group id).

        :param env: the complete environment of the process.
        :param cwd: working directory.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.info("started %s (pid %d), log %s", self.name, self.popen.pid, self.log_path)

    def returncode(self) -> int | None:
        """Exit status if the process has ended, else None (also None before :meth:`start`)."""
        return self.popen.poll() if self.popen is not None else None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process group (no error if it is already gone).

        :param signum: the signal number.
        """
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def close_log(self) -> None:
        """Close the parent's handle on the log file."""
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def tail(self, lines: int = 40) -> str:
        """Return the last lines of the log file (for failure messages).

        :param lines: how many lines.
        :return: the text, or a note when there is no log yet.
        """
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log file {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])


def session_pids(sessions: set[int]) -> list[int]:
    """Return the live processes (zombies excluded) that belong to any of ``sessions``.

    Airflow's task and parsing processes move to process groups of their own (``setpgid``), so a
    signal to a component's group misses them; they stay in the component's session, though.

    :param sessions: session ids (the pids of the session leaders).
    :return: matching pids, excluding this process.
    """
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) in sessions:
            found.append(int(entry.name))
    return found


def stop_processes(processes: Iterable[ManagedProcess], *, grace: float = 20.0) -> dict[str, int | None]:
    """Stop processes and everything in their sessions: SIGTERM, wait up to ``grace``, then SIGKILL.

    SIGTERM goes to each process group (the component shuts its children down itself); whatever
    is still alive in the components' sessions after ``grace`` seconds gets SIGKILL. All
    processes are signalled at once, so the total wait is bounded by ``grace`` (plus a short
    wait after SIGKILL), not by the number of processes.

    :param processes: the processes to stop (not started ones are skipped).
    :param grace: seconds to wait for a clean exit after SIGTERM.
    :return: exit status by process name (None when it had to be killed and still did not report).
    """
    started = [proc for proc in processes if proc.popen is not None]
    sessions = {proc.popen.pid for proc in started if proc.popen is not None}
    for proc in started:
        proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in started:
        assert proc.popen is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    # A leader may have exited while its children linger: wait for the sessions to empty too.
    while time.monotonic() < deadline and session_pids(sessions):
        time.sleep(0.1)
    results: dict[str, int | None] = {}
    for proc in started:
        assert proc.popen is not None
        if proc.popen.poll() is None:
            log.warning("%s did not stop within %.0f s after SIGTERM: SIGKILL", proc.name, grace)
            proc.signal_group(signal.SIGKILL)
    leftovers = session_pids(sessions)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        log.warning(
            "SIGKILL to %d process(es) left in the sessions after %.0f s: %s",
            len(leftovers),
            grace,
            leftovers,
        )
    for proc in started:
        assert proc.popen is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)
        results[proc.name] = proc.popen.poll()
        proc.close_log()
    return results


def marked_pids(marker: str) -> list[int]:
    """Return the pids of live processes whose environment has ``MARKER_VARIABLE=marker``.

    :param marker: the deployment's marker value.
    :return: matching pids, excluding this process.
    """
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "State:\tZ" in status:
            continue  # a zombie is already dead; its parent reaps it
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked_processes(marker: str) -> list[int]:
    """SIGKILL every process that still carries the deployment's marker.

    :param marker: the deployment's marker value.
    :return: the pids that were found (and killed).
    """
    pids = marked_pids(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log.warning("killed %d leftover process(es) of deployment %s: %s", len(pids), marker, pids)
    return pids
