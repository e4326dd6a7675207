"""``make demo``: run the reward-catalogue refresh end to end and print what reached Capillary.

Stages (one progress line each; Airflow's own output goes to a log file whose path is printed):

1. start the local emulator of Capillary's file service on a free loopback port, unless
   ``CAPILLARY_CONN`` holds a connection URI of a real cluster;
2. initialise a throw-away ``AIRFLOW_HOME`` (SQLite) under ``.demo/``;
3. run ``capillary_reward_catalogue_refresh`` with ``airflow dags test``;
4. print a table (file, version, handle, size, verified) and the path of the payload file;
5. stop the emulator.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
DAG_ID = "capillary_reward_catalogue_refresh"
AIRFLOW = Path(sys.executable).with_name("airflow")


def stage(message: str) -> None:
    """Print one progress line."""
    print(f"==> {message}", flush=True)


def start_emulator(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m capillary_emulator`` on a free loopback port.

    :return: the process and its base URL (the first line it prints).
    """
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "capillary_emulator", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http"):
        process.kill()
        raise SystemExit(f"the emulator did not start; see {log_path}")
    return process, base_url


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a process started by this script, politely then firmly."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def airflow(args: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run an ``airflow`` command with its output appended to ``log_path``."""
    with log_path.open("a") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n")
        log.flush()
        result = subprocess.run(
            [str(AIRFLOW), *args], env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(
            f"`airflow {args[0]} {args[1]}` failed (exit {result.returncode}); "
            f"last lines of {log_path}:\n{tail}"
        )


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the uploaded files as an aligned text table."""
    columns = [
        ("file", "name"),
        ("version", "version"),
        ("handle", "file_handle"),
        ("size", "file_size"),
        ("verified", "verified"),
    ]
    cells = [[str(row.get(key, "")) for _, key in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _) in enumerate(columns)]
    print("  ".join(title.ljust(w) for (title, _), w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(value.ljust(w) for value, w in zip(c, widths, strict=True)))


def main() -> int:
    """Run the demo; return the process exit code."""
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    airflow_log = DEMO_DIR / "airflow.log"
    payload_dir = DEMO_DIR / "payloads"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO_DIR / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "CAPILLARY_PAYLOAD_DIR": str(payload_dir),
    }
    emulator = None
    try:
        if os.environ.get("CAPILLARY_CONN"):
            stage("using the Capillary cluster of CAPILLARY_CONN (no emulator)")
            env["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = os.environ["CAPILLARY_CONN"]
        else:
            emulator, base_url = start_emulator(DEMO_DIR / "emulator-data", DEMO_DIR / "emulator.log")
            stage(f"emulator of Capillary's file service listening on {base_url}")
            from capillary_emulator import DEFAULT_PASSWORD, DEFAULT_USER, connection_uri

            env["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = connection_uri(base_url, DEFAULT_USER, DEFAULT_PASSWORD)
        stage(f"initialising a throw-away Airflow home (SQLite); Airflow's output goes to {airflow_log}")
        airflow(["db", "migrate"], env, airflow_log)
        stage(f"running {DAG_ID} with `airflow dags test`")
        started = time.monotonic()
        airflow(["dags", "test", DAG_ID], env, airflow_log)
        stage(f"DAG run succeeded in {time.monotonic() - started:.1f}s")
        payloads = sorted(payload_dir.glob("*.json"))
        if not payloads:
            raise SystemExit(f"the DAG succeeded but wrote no payload into {payload_dir}")
        payload = json.loads(payloads[-1].read_text())
        print()
        print_table(payload["rewards"])
        print()
        print(f"reward-catalogue payload: {payloads[-1]}")
        print(f"Airflow log:              {airflow_log}")
        return 0
    finally:
        if emulator is not None:
            stop(emulator)
            stage("emulator stopped")


if __name__ == "__main__":
    sys.exit(main())
