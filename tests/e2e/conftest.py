"""Fixtures of the end-to-end suite: a real Airflow deployment, the emulator it talks to, Chromium.

Session-scoped, started on first use and shut down at the end of the session (also when a test
fails): one emulator (in a thread of the test process), one production-shaped Airflow deployment
(api-server, scheduler, dag-processor, triggerer and two Celery workers as subprocesses;
CeleryExecutor, PostgreSQL as metadata database and result backend, Redis as broker; all on
loopback), one headless Debian Chromium driven by Playwright.

Connections of the deployment (``AIRFLOW_CONN_*`` of every component):

- ``capillary_default``: the emulator, basic auth (``demo`` / ``demo-password``);
- ``capillary_oauth``: the emulator, OAuth client credentials (``demo-key`` / ``demo-secret``).

Screenshots go to a temporary folder, or to ``docs/screenshots/`` when ``UPDATE_SCREENSHOTS=1``
(so that a normal test run never rewrites tracked files).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment, CeleryStack
from tests.e2e.airflow_deployment.services import PostgresServer, RedisServer
from tests.e2e.airflow_deployment.upload_dag import UploadRun, run_upload_dag

if TYPE_CHECKING:
    from capillary_emulator import CapillaryEmulator
    from playwright.sync_api import Browser, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: Headless flags for Debian's Chromium on a machine whose only network is loopback: without the
#: background-networking ones Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 1000}

#: Deployments started in this session, for the terminal summary and failure reports.
_DEPLOYMENTS: list[AirflowDeployment] = []


@pytest.fixture(scope="session")
def e2e_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapillaryEmulator]:
    """Run one plain-HTTP emulator for the whole session (default demo credentials).

    :param tmp_path_factory: pytest's session temporary directories.
    :return: the running emulator.
    """
    from capillary_emulator import CapillaryEmulator

    with CapillaryEmulator(data_dir=tmp_path_factory.mktemp("e2e-emulator")) as emu:
        yield emu


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Run a throw-away PostgreSQL (Debian's package) on loopback for the session.

    :return: the running server (database ``airflow``).
    """
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Run a throw-away Redis (Debian's package) on loopback for the session: Celery's broker.

    :return: the running server.
    """
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def airflow_deployment(
    tmp_path_factory: pytest.TempPathFactory,
    e2e_emulator: CapillaryEmulator,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
) -> Iterator[AirflowDeployment]:
    """Start a production-shaped Airflow deployment for the session and stop it afterwards.

    CeleryExecutor with two workers (``worker1@capillary-e2e``, ``worker2@capillary-e2e``),
    PostgreSQL as the metadata database and result backend, Redis as the broker. DAG files are
    added by the tests: ``airflow_deployment.add_dag_file(name, source)`` then
    ``airflow_deployment.wait_for_dag(dag_id)``.

    :param tmp_path_factory: pytest's session temporary directories.
    :param e2e_emulator: the emulator the connections point at.
    :param postgres_server: the metadata database.
    :param redis_server: the broker.
    :return: the running, healthy deployment.
    """
    home = tmp_path_factory.mktemp("airflow-home")
    deployment = AirflowDeployment(
        home,
        dags_folder=home / "dags",
        connections={
            "capillary_default": e2e_emulator.connection_uri(auth_type="basic"),
            "capillary_oauth": e2e_emulator.connection_uri(auth_type="oauth"),
        },
        celery=CeleryStack(
            database_url=postgres_server.url("postgresql+psycopg2"),
            result_backend=postgres_server.url("db+postgresql+psycopg2"),
            broker_url=redis_server.url(),
        ),
    )
    _DEPLOYMENTS.append(deployment)
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()
    assert deployment.leftover_pids() == [], "processes of the deployment survived its shutdown"


@pytest.fixture(scope="session")
def upload_run(
    airflow_deployment: AirflowDeployment,
    e2e_emulator: CapillaryEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> UploadRun:
    """Run the suite's upload -> deferrable sensor DAG once through the REST API.

    The emulator's storage answers 404 (as storage does before an object is visible) until the
    sensor has deferred, so its first poke on the worker fails and it waits in the triggerer.

    :param airflow_deployment: the deployment.
    :param e2e_emulator: the emulator behind ``capillary_default``.
    :param tmp_path_factory: pytest's session temporary directories.
    :return: the finished run and what was observed while it ran.
    """
    from capillary_emulator import Fault

    e2e_emulator.push_fault(Fault(status=404, headers={}, match="download", times=None))
    try:
        return run_upload_dag(
            airflow_deployment, tmp_path_factory.mktemp("images"), release=e2e_emulator.state.faults.clear
        )
    finally:
        e2e_emulator.state.faults.clear()


def _screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS", "") in {"1", "true", "yes"}:
        target = REPO_ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the UI screenshots (``docs/screenshots`` with ``UPDATE_SCREENSHOTS=1``).

    :param tmp_path_factory: pytest's session temporary directories.
    :return: the folder.
    """
    return _screenshot_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Launch Debian's headless Chromium through Playwright (never Playwright's own download).

    Playwright gives every launch a fresh temporary profile (``--user-data-dir``). Module-scoped:
    Playwright's sync API keeps an event loop running in the main thread while it is open, and
    every later ``asyncio.run()`` (the trigger tests) would fail with "cannot be called from a
    running event loop".

    :return: the browser.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-system-deps.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def ui_storage_state(browser: Browser, airflow_deployment: AirflowDeployment) -> dict[str, Any]:
    """Sign in once through Airflow's login page and keep the session cookie for every test.

    :param browser: the browser.
    :param airflow_deployment: the deployment.
    :return: Playwright storage state (cookies) of a signed-in admin.
    """
    context = browser.new_context(base_url=airflow_deployment.base_url, viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto("/")
        page.get_by_label("Username").fill(airflow_deployment.username)
        page.get_by_label("Password").fill(airflow_deployment.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{airflow_deployment.base_url}/", timeout=60_000)
        state: dict[str, Any] = dict(context.storage_state())
    finally:
        context.close()
    assert any(cookie["name"] == "_token" for cookie in state["cookies"]), state
    return state


@pytest.fixture
def ui_page(
    browser: Browser, airflow_deployment: AirflowDeployment, ui_storage_state: dict[str, Any]
) -> Iterator[Page]:
    """A signed-in page of the Airflow UI (relative URLs resolve against the api-server).

    :param browser: the browser.
    :param airflow_deployment: the deployment.
    :param ui_storage_state: the signed-in session.
    :return: a fresh page in a fresh context.
    """
    context = browser.new_context(
        base_url=airflow_deployment.base_url,
        viewport=VIEWPORT,  # type: ignore[arg-type]
        storage_state=ui_storage_state,  # type: ignore[arg-type]
    )
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the tails of the deployment's component logs to a failing e2e test's report."""
    report = yield
    if report.failed and _DEPLOYMENTS and "airflow_deployment" in getattr(item, "fixturenames", ()):
        deployment = _DEPLOYMENTS[-1]
        for name, proc in deployment.processes.items():
            report.sections.append((f"airflow {name} log ({proc.log_path})", proc.tail(20)))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the deployment's start-up and shutdown timings."""
    for deployment in _DEPLOYMENTS:
        timings = ", ".join(f"{key} {value:.1f} s" for key, value in deployment.timings.items())
        terminalreporter.write_line(f"airflow e2e deployment {deployment.home}: {timings}")
    from tests.e2e.test_fanout import FAULT_RESULTS

    for line in FAULT_RESULTS:
        terminalreporter.write_line(f"fan-out fault: {line}")
