"""``make airflow`` (``scripts/airflow_local.py``): the example DAGs in a real Airflow UI, one command.

The launcher runs as a newcomer runs it: a process of its own (its own process group, as a
terminal's foreground job is), whose output gives the URL and the login. Headless Debian Chromium
then signs in with that login, triggers ``capillary_reward_catalogue_refresh`` from the DAG page's
Trigger form, and, once the REST API reports the run successful, checks the upload task's XComs in
the UI and takes the screenshots for the README (``docs/screenshots/`` with
``UPDATE_SCREENSHOTS=1``). Last, SIGINT to the launcher's process group (what Ctrl-C sends)
stops every process it started: the Airflow components, their children, and the emulator's port.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import pytest

from tests.e2e.airflow_deployment import AirflowApiClient
from tests.e2e.conftest import VIEWPORT
from tests.e2e.test_example_dags import SAMPLES

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = REPO_ROOT / "scripts" / "airflow_local.py"
DAG_ID = "capillary_reward_catalogue_refresh"
READY_LINE = "Press Ctrl-C to stop everything."
#: Generous: the launcher migrates a database and starts four Airflow components on a shared,
#: loaded 2-core machine (about 25 s when idle).
STARTUP_TIMEOUT = 300.0


@dataclass
class Launcher:
    """The running launcher and what it printed."""

    process: subprocess.Popen[str]
    home: Path
    output: queue.Queue[str | None]  # stdout lines as the pump reads them; None at EOF
    lines: list[str] = field(default_factory=list)
    startup_seconds: float = 0.0

    def value(self, label: str) -> str:
        """Return the value printed after ``label:`` in the launcher's banner.

        :param label: e.g. ``"Airflow UI"``.
        :return: the stripped value.
        """
        (line,) = [line for line in self.lines if line.strip().startswith(f"{label}:")]
        return line.split(":", 1)[1].strip()

    @property
    def base_url(self) -> str:
        """The UI's URL."""
        return self.value("Airflow UI")

    @property
    def login(self) -> tuple[str, str]:
        """Username and password."""
        username, password = self.value("login").split(" / ")
        return username, password

    @property
    def emulator_url(self) -> str:
        """The emulator's base URL, from the connection line."""
        match = re.search(r"the emulator at (\S+)", self.value("connection"))
        assert match, self.lines
        return match.group(1)


def _pump(stream: Iterator[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Start ``scripts/airflow_local.py`` (what ``make airflow`` runs) and wait for its banner.

    :param tmp_path_factory: pytest's temporary folders.
    :return: the running launcher (stopped at the end of the module if a test has not).
    """
    home = tmp_path_factory.mktemp("make-airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--home", str(home / "home")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    running = Launcher(process, home / "home", lines)
    deadline = started + STARTUP_TIMEOUT
    try:
        while READY_LINE not in running.lines:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the launcher exited before it was ready:\n" + "\n".join(running.lines)
            running.lines.append(line)
        running.startup_seconds = time.monotonic() - started
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _drain(launcher: Launcher, timeout: float) -> None:
    """Collect the launcher's remaining output until it closes stdout."""
    deadline = time.monotonic() + timeout
    while True:
        line = launcher.output.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            return
        launcher.lines.append(line)


def _descendants(root: int) -> dict[int, str]:
    """Return every live process below ``root`` (by parent pid), with its command line.

    :param root: the ancestor's pid.
    :return: pid -> command line.
    """
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
            commands[int(entry.name)] = cmdline.strip()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = commands[pid]
                frontier.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2 :].split()[0] != "Z"


def _accepts(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname or "", parts.port or 80)) == 0


def _sign_in(browser: Browser, launcher: Launcher) -> Page:
    """Sign in through Airflow's login page with the login the launcher printed.

    :param browser: the browser.
    :param launcher: the running launcher.
    :return: a signed-in page.
    """
    context = browser.new_context(base_url=launcher.base_url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    page = context.new_page()
    username, password = launcher.login
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{launcher.base_url}/", timeout=60_000)
    return page


def test_launcher_prints_a_loopback_url_and_a_login(launcher: Launcher) -> None:
    username, password = launcher.login
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", launcher.base_url)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", launcher.emulator_url)
    assert username == "admin"
    assert len(password) >= 16
    assert launcher.value("connection").startswith("capillary_default -> the emulator at ")


def test_trigger_the_catalogue_refresh_in_the_ui_and_see_its_xcoms(
    browser: Browser, launcher: Launcher, screenshot_dir: Path
) -> None:
    from playwright.sync_api import expect

    page = _sign_in(browser, launcher)
    client = AirflowApiClient(launcher.base_url, *launcher.login)
    try:
        # The refresh is @daily, so paused at creation; the Trigger form unpauses it.
        page.goto(f"/dags/{DAG_ID}")
        page.get_by_role("button", name="Trigger Dag").click()
        dialog = page.get_by_role("dialog")
        assert dialog.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger").is_checked()
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(f"/api/v2/dags/{DAG_ID}/dagRuns")
        ) as answer:
            dialog.get_by_role("button", name="Trigger", exact=True).click()
        assert answer.value.status == 200, answer.value.text()
        triggered = answer.value.json()
        assert (triggered["run_type"], triggered["triggering_user_name"]) == ("manual", "admin")
        run_id = triggered["dag_run_id"]

        run = client.wait_for_dag_run(DAG_ID, run_id, timeout=300, interval=1.0)
        assert run["state"] == "success", run
        payload_path = client.xcom(DAG_ID, run_id, "publish_catalogue")
        rewards = json.loads(Path(payload_path).read_text())["rewards"]
        assert [(r["name"], r["verified"]) for r in rewards] == [(name, True) for name in SAMPLES]
        assert Path(payload_path).parent == launcher.home / "payloads"

        # The upload task's XComs, as the UI lists them.
        page.goto(f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/upload_images")
        page.get_by_role("link", name="Storage", exact=True).click()
        page.get_by_text("XCom", exact=True).click()
        table = page.get_by_role("table")
        table.get_by_text("file_handles", exact=True).wait_for()
        keys = sorted(
            row.inner_text().split("\t", 1)[0].strip() for row in table.get_by_role("row").all()[1:]
        )
        assert keys == ["_link_CapillaryImageLink", "file_handles", "return_value", "uploaded"]
        assert keys == client.xcom_keys(DAG_ID, run_id, "upload_images")
        handles = client.xcom(DAG_ID, run_id, "upload_images", "file_handles")
        assert sorted(handles) == SAMPLES
        page.get_by_role("button", name="Expand all extra JSON").click()
        shown = table.get_by_role("row").filter(has_text="file_handles")
        for name, handle in handles.items():  # every name and handle, in the UI
            expect(shown).to_contain_text(f'"{name}"')
            expect(shown).to_contain_text(handle)
        page.screenshot(path=str(screenshot_dir / "make-airflow-xcom.png"))

        # The grid, once every run (the triggered one, the @daily run its unpausing started, the
        # asset-scheduled publish runs) has finished, so that the picture holds no running state.
        deadline = time.monotonic() + 300
        while True:
            runs = client.get("/dags/~/dagRuns", params={"limit": 100})["dag_runs"]
            if runs and all(r["state"] in ("success", "failed") for r in runs):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(1.0)
        assert [r["state"] for r in runs] == ["success"] * len(runs), runs
        page.goto(f"/dags/{DAG_ID}")
        page.locator(f"a[href='/dags/{DAG_ID}/runs/{run_id}/tasks/publish_catalogue']").wait_for()
        page.get_by_text("Created Asset Events").wait_for()
        page.screenshot(path=str(screenshot_dir / "make-airflow-grid.png"))
    finally:
        page.context.close()
        client.session.close()


def test_ctrl_c_stops_everything_the_launcher_started(launcher: Launcher) -> None:
    started = _descendants(launcher.process.pid)
    commands = " | ".join(started.values())
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert component.replace("-", "_") in commands or component in commands, commands
    assert _accepts(launcher.base_url)
    assert _accepts(launcher.emulator_url)

    os.killpg(launcher.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    status = launcher.process.wait(timeout=90)
    _drain(launcher, timeout=10)

    assert status == 0, launcher.lines[-20:]
    assert "==> interrupted (Ctrl-C or SIGTERM): stopping everything" in launcher.lines
    assert launcher.lines[-1] == "==> stopped: Airflow and the emulator"
    assert [pid for pid in started if _alive(pid)] == [], started
    assert not _accepts(launcher.base_url)
    assert not _accepts(launcher.emulator_url)
