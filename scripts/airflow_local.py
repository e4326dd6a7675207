"""``make airflow``: the example DAGs in a real, local Airflow UI, in one command.

Starts, all on loopback and free ports:

1. the emulator of Capillary's file service (in this process, data in ``<home>/emulator``);
2. a local Airflow, as ``airflow standalone`` would: api-server (the UI), scheduler,
   dag-processor and triggerer, LocalExecutor on SQLite, in a throw-away ``<home>/airflow``
   (emptied on every start), with the connection ``capillary_default`` pointing at the emulator
   (basic auth) and ``dags_examples/`` as its DAGs folder;

then prints the URL and the login (SimpleAuthManager, user ``admin`` and a password generated for
this run) and waits. Ctrl-C (or SIGTERM) stops everything it started: SIGTERM to each Airflow
component's process group, SIGKILL to whatever is left in their sessions after a grace period,
then the emulator. A component that exits on its own stops the rest too (exit status 1).

DAGs are paused at creation, as Airflow's default is, except the examples that never start on
their own (no schedule, or scheduled on the reward-images asset). ``capillary_reward_catalogue_refresh``
is ``@daily``: trigger it in the UI with "Unpause" checked.

The deployment is the end-to-end suite's (``tests/e2e/airflow_deployment``), so the UI a newcomer
sees is the one the UI tests check.

Usage: ``python scripts/airflow_local.py [--home DIR] [--port N]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the deployment lives in the test tree
    sys.path.insert(0, str(ROOT))

from capillary_emulator import CapillaryEmulator  # noqa: E402

from tests.e2e.airflow_deployment import AirflowDeployment, DeploymentError  # noqa: E402

DAGS = ROOT / "dags_examples"
DEFAULT_HOME = ROOT / ".airflow-demo"
#: The example DAGs, by file; every one must parse before the UI is announced.
EXAMPLE_DAGS: dict[str, str] = {
    "capillary_reward_catalogue_refresh": "capillary_reward_catalogue_refresh.py",
    "capillary_upload_mapped": "capillary_upload_mapped.py",
    "capillary_hook_taskflow": "capillary_hook_taskflow.py",
    "capillary_publish_on_asset": "capillary_publish_on_asset.py",
}
#: Unpaused at start: they run only when triggered or when the catalogue refresh updates the asset.
UNPAUSED = ("capillary_upload_mapped", "capillary_hook_taskflow", "capillary_publish_on_asset")
#: Seconds each component gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 20.0


def stage(message: str) -> None:
    """Print one progress line.

    :param message: the line.
    """
    print(f"==> {message}", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into the same clean stop as Ctrl-C."""
    raise KeyboardInterrupt


def banner(deployment: AirflowDeployment, emulator: CapillaryEmulator, home: Path) -> str:
    """Return what the user needs to use the running deployment.

    :param deployment: the running deployment.
    :param emulator: the running emulator.
    :param home: the launcher's home folder.
    :return: the text.
    """
    return "\n".join(
        [
            "",
            f"    Airflow UI:   {deployment.base_url}",
            f"    login:        {deployment.username} / {deployment.password}",
            f"    connection:   capillary_default -> the emulator at {emulator.base_url} (basic auth)",
            f"    DAGs:         {', '.join(EXAMPLE_DAGS)} (from {DAGS})",
            "    try:          trigger capillary_reward_catalogue_refresh with 'Unpause' checked, then",
            "                  open its run: the grid, the upload's XCom (file handles), the payload task",
            f"    logs:         {deployment.home}/<component>.log, task logs in {deployment.logs_folder}",
            f"    payloads:     {home / 'payloads'}",
            "",
            "Press Ctrl-C to stop everything.",
        ]
    )


def watch(deployment: AirflowDeployment) -> None:
    """Wait until a component exits (Ctrl-C raises out of the wait).

    :param deployment: the running deployment.
    :raises DeploymentError: naming the component that exited, with its log tail.
    """
    while True:
        deployment.check_alive()
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    """Start everything, wait for Ctrl-C or a failure, stop everything.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    :return: 0 after a stop by Ctrl-C or SIGTERM, 1 when something failed.
    """
    parser = argparse.ArgumentParser(
        prog="python scripts/airflow_local.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--home", type=Path, default=DEFAULT_HOME, help="throw-away folder (default: .airflow-demo/)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="api-server port on 127.0.0.1 (default: a free one)"
    )
    args = parser.parse_args(argv)
    home: Path = args.home.resolve()
    # The deployment's warnings (a component that needed SIGKILL) reach the terminal.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    # Ctrl-C raises KeyboardInterrupt even when the launcher inherited SIGINT ignored (a shell's
    # background job); SIGTERM takes the same path.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    status = 0
    emulator = CapillaryEmulator(data_dir=home / "emulator")
    deployment: AirflowDeployment | None = None
    try:
        emulator.start()
        stage(f"emulator of Capillary's file service listening on {emulator.base_url}")
        deployment = AirflowDeployment(
            home / "airflow",
            dags_folder=DAGS,
            connections={"capillary_default": emulator.connection_uri(auth_type="basic")},
            config={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"},
            env={"CAPILLARY_PAYLOAD_DIR": str(home / "payloads")},
        )
        if args.port:
            deployment.port = args.port
        stage(
            f"starting Airflow (api-server, scheduler, dag-processor, triggerer) in {deployment.home}; "
            "this takes a minute"
        )
        deployment.start()
        for dag_id, file_name in EXAMPLE_DAGS.items():
            deployment.wait_for_dag(dag_id, file_name=file_name, timeout=120)
        for dag_id in UNPAUSED:
            deployment.client.unpause(dag_id)
        stage(f"Airflow is ready ({deployment.timings.get('start_total', 0.0):.0f} s)")
        print(banner(deployment, emulator, home), flush=True)
        watch(deployment)
    except KeyboardInterrupt:
        print(flush=True)
        stage("interrupted (Ctrl-C or SIGTERM): stopping everything")
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # Nothing interrupts the shutdown: it is bounded by STOP_GRACE, then SIGKILL.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if deployment is not None:
            stage(f"stopping Airflow (up to {STOP_GRACE:.0f} s)")
            deployment.stop(grace=STOP_GRACE)
            leftovers = deployment.leftover_pids()
            if leftovers:
                print(f"error: processes survived the stop: {leftovers}", file=sys.stderr, flush=True)
                status = 1
        emulator.stop()
        stage("stopped: Airflow and the emulator")
    return status


if __name__ == "__main__":
    sys.exit(main())
