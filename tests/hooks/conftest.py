"""Fixtures of the hook tests: connections from ``AIRFLOW_CONN_*`` and a recorded transport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.settings import TASK_SETTINGS as _TASK
from tests.hooks.recorder import BASE, Recorder
from tests.hostile import hostile_server, hostile_servers  # noqa: F401 - fixtures of the hook tests

PASSWORD = "s3cr3t-Passw0rd"
#: The settings a task gives to the hook as arguments (a connection extra of their name is refused).
TASK_SETTINGS = frozenset(s.name for s in _TASK)
SECRET = "client-Secret-42"


def conn_json(*, host: str = BASE, login: str = "till.user", password: str = PASSWORD, **extra: Any) -> str:
    """Return the JSON form of a ``capillary`` connection."""
    conn: dict[str, Any] = {"conn_type": "capillary", "host": host, "login": login, "password": password}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it; records every sleep.

    Given to a hook as ``_clock`` and ``_sleep``: its retry waits and its rate limiter's waits are
    recorded in :attr:`sleeps` instead of slept, and the limiter sees the time they would take.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class LogRecorder:
    """Stands in for the hook's logger: keeps every line formatted (before any masking)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _record(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(msg % args if args else msg)

    debug = info = warning = error = exception = critical = _record


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Define a connection through ``AIRFLOW_CONN_<ID>`` (JSON form unless ``uri`` is given)."""

    def _set(conn_id: str = "capillary_default", *, uri: str | None = None, **kwargs: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri if uri is not None else conn_json(**kwargs))

    return _set


@pytest.fixture
def make_hook(
    set_conn: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[CapillaryFileHook, Recorder]]:
    """Build a hook on a fresh connection with a :class:`Recorder` mounted on its session.

    Task policy (``max_retries=...``, see :data:`airflow_capillary.settings.TASK_SETTINGS`) goes to
    the hook as an argument, every other keyword to the connection as an extra. Waits between
    attempts and of the rate limiter are recorded in ``hook.sleeps`` on a :class:`FakeClock`
    instead of slept. CA bundle
    variables of the environment are removed, so that ``verify`` shows the connection's value.
    """
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)

    def _make(
        script: list[Any] | None = None,
        *,
        recorder: Recorder | None = None,
        hook_kwargs: dict[str, Any] | None = None,
        **conn: Any,
    ) -> tuple[CapillaryFileHook, Recorder]:
        task = {name: conn.pop(name) for name in list(conn) if name in TASK_SETTINGS}
        set_conn(**conn)
        hook = CapillaryFileHook(**{**task, **(hook_kwargs or {})})
        rec = recorder or Recorder(script)
        hook.session.mount("https://", rec)
        hook.session.mount("http://", rec)
        log = LogRecorder()
        hook._log = log  # type: ignore[assignment]
        hook.lines = log.lines  # type: ignore[attr-defined]
        clock = FakeClock()
        hook._clock = clock
        hook._sleep = clock.sleep
        hook.sleeps = clock.sleeps  # type: ignore[attr-defined]
        return hook, rec

    return _make
