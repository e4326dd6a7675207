"""End to end: ``tests/dags/sensor_verify_uploads.py`` run by ``dag.test()`` against the emulator.

Three runs of the DAG (upload -> deferrable CapillaryFileSensor -> publish), each after setting the
emulator up through its control endpoints:

- ``served``: the first two downloads answer 503, so a sensor defers and its trigger (run inline by
  ``dag.test()``) waits; then every file is verified and ``publish`` gets the records;
- ``expired``: secure URLs live one second and the DAG waits two before verifying: every sensor
  fails with the documented "re-run the upload task" message;
- ``placeholder``: the storage serves 0 bytes instead of the images: every sensor fails with the
  size mismatch.

As in ``test_upload_dag.py``, ``dag.test()`` runs in a child process with its own ``AIRFLOW_HOME``,
SQLite database and DAG folder, which reports task states and XComs as JSON; running this module
as a script is that child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e._child_dag import REPO_ROOT, child_dag_env
from tests.verification.records import PNG, without_url

DAG_FILE = REPO_ROOT / "tests" / "dags" / "sensor_verify_uploads.py"
DAG_ID = "capillary_sensor_verify_uploads"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 16 + b"\xff\xd9"
IMAGES = {"hero.png": PNG, "a.png": PNG[:-4] + b"AAAA", "b.png": PNG[:-4] + b"BBBB", "c.jpg": JPEG}
SENSORS = ("verify_catalogue[-1]", "verify_hero[-1]", "verify_each[-1]")
SCENARIOS: dict[str, dict[str, Any]] = {
    "served": {
        "settings": {"url_expiry": 3600},
        "faults": [{"status": 503, "headers": {"Retry-After": "1"}, "match": "download", "times": 4}],
        "settle_seconds": 0,
    },
    "expired": {"settings": {"url_expiry": 1}, "faults": [], "settle_seconds": 2},
    "placeholder": {
        "settings": {"url_expiry": 3600},
        "faults": [
            {
                "status": 200,
                "headers": {"Content-Type": "image/png"},
                "body": "",
                "match": "download",
                "times": 100,
            }
        ],
        "settle_seconds": 0,
    },
}
MARK = "=== scenario {} ==="


def _child(dags_folder: str, folder: str, base_url: str, out: str) -> None:  # pragma: no cover - child
    import importlib.util

    import requests
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.settings import Session as session_factory
    from airflow.utils.db import initdb

    initdb()
    spec = importlib.util.spec_from_file_location(DAG_FILE.stem, Path(dags_folder) / DAG_FILE.name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == DAG_ID)
    report: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        requests.delete(f"{base_url}/_emulator/faults", timeout=10).raise_for_status()
        requests.post(
            f"{base_url}/_emulator/settings", json=scenario["settings"], timeout=10
        ).raise_for_status()
        if scenario["faults"]:
            requests.post(
                f"{base_url}/_emulator/faults", json=scenario["faults"], timeout=10
            ).raise_for_status()
        print(MARK.format(name), flush=True)
        run = dag.test(run_conf={"folder": folder, "settle_seconds": scenario["settle_seconds"]})
        assert session_factory is not None
        with session_factory() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
            xcoms = session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
            rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=DAG_ID, run_id=run.run_id)
            report[name] = {
                "run_state": str(run.state),
                "states": {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in tis},
                "xcoms": {
                    f"{x.task_id}[{x.map_index}].{x.key}": XComModel.deserialize_value(x) for x in xcoms
                },
                "rendered": {f"{r.task_id}[{r.map_index}]": r.rendered_fields for r in rendered},
            }
        sys.stdout.flush()
        sys.stderr.flush()
    Path(out).write_text(json.dumps(report, default=str))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the three scenarios against one emulator; return the report and each scenario's log."""
    from capillary_emulator import CapillaryEmulator

    root = tmp_path_factory.mktemp("sensor-dag")
    images = root / "images"
    images.mkdir()
    for name, body in IMAGES.items():
        (images / name).write_bytes(body)
    out = root / "report.json"
    with CapillaryEmulator(data_dir=root / "emulator") as emu:
        dags, env = child_dag_env(root, DAG_FILE, emu.connection_uri(auth_type="basic"))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.e2e.test_sensor_dag",
                str(dags),
                str(images),
                emu.base_url,
                str(out),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=280,
        )
        (root / "child.log").write_text(proc.stdout)
        assert proc.returncode == 0, proc.stdout[-6000:]
        logs = {}
        for name in SCENARIOS:
            after = proc.stdout.split(MARK.format(name), 1)[1]
            logs[name] = after.split("=== scenario ", 1)[0]
        return {"report": json.loads(out.read_text()), "logs": logs, "log": proc.stdout}


def _errors(log: str) -> str:
    """The lines of a log that explain a failure (the full log is too long for an assertion message)."""
    lines = log.splitlines()
    keep = [i for i, line in enumerate(lines) if "Error" in line or "Exception" in line or "failed" in line]
    return "\n".join(lines[i] for i in keep[-60:])


@pytest.mark.e2e
def test_served_files_are_verified_and_published(runs: dict[str, Any]) -> None:
    run, log = runs["report"]["served"], runs["logs"]["served"]
    assert run["run_state"] == "success", _errors(log)
    assert set(run["states"].values()) == {"success"}
    xcoms = run["xcoms"]
    catalogue = xcoms["upload_catalogue[-1].return_value"]
    assert [r["name"] for r in catalogue] == ["a.png", "b.png", "hero.png"]
    # The verified records, without the secure URLs (include_secure_url is off on the sensors).
    assert xcoms["verify_catalogue[-1].return_value"] == without_url(catalogue)
    assert xcoms["verify_hero[-1].return_value"] == without_url(xcoms["upload_hero[-1].return_value"])
    assert xcoms["verify_each[-1].return_value"] == without_url([xcoms["upload_each[0].return_value"]])
    hero, each = xcoms["upload_hero[-1].return_value"], xcoms["upload_each[0].return_value"]
    assert xcoms["publish[-1].return_value"] == {
        r["name"]: r["file_handle"] for r in [*catalogue, hero, each]
    }
    # A sensor deferred, and its trigger (inline in dag.test) waited through the second 503.
    assert "[DAG TEST] running trigger in line" in log
    assert "the storage answered HTTP 503; waiting" in log
    assert "not verified yet; next check in 1.0 s" in log


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("scenario", "error", "message"),
    [
        (
            "expired",
            "CapillarySecureUrlExpiredError",
            "the storage refused its secure URL (HTTP 403 AccessDenied: Request has expired); "
            "the secure URL lives one hour: re-run the upload task to get a fresh one",
        ),
        (
            "placeholder",
            "CapillaryVerificationError",
            "is served with 0 bytes, but its upload record says {size} bytes (Capillary stored a placeholder "
            "or a truncated file); upload it again (re-run the upload task)",
        ),
    ],
    ids=["expired", "placeholder"],
)
def test_sensors_fail_with_the_documented_message(
    runs: dict[str, Any], scenario: str, error: str, message: str
):
    run, log = runs["report"][scenario], runs["logs"][scenario]
    assert run["run_state"] == "failed", _errors(log)
    assert {task: run["states"][task] for task in SENSORS} == dict.fromkeys(SENSORS, "failed")
    assert run["states"]["publish[-1]"] == "upstream_failed"
    assert error in log
    assert message.format(size=len(PNG)) in log
    assert "publish[-1].return_value" not in run["xcoms"]


@pytest.mark.e2e
def test_secure_urls_never_reach_the_logs(runs: dict[str, Any]) -> None:
    signatures = [
        record["secure_file_path"].rsplit("X-Amz-Signature=", 1)[1]
        for run in runs["report"].values()
        for key, value in run["xcoms"].items()
        if key.endswith(".return_value") and key.startswith("upload_")
        for record in (value if isinstance(value, list) else [value])
    ]
    assert len(signatures) == 3 * 5  # three runs, five uploads each
    assert "X-Amz-Signature=***" in runs["log"]
    assert not [signature for signature in signatures if signature in runs["log"]]


@pytest.mark.e2e
def test_rendered_files_hide_the_secure_urls(runs: dict[str, Any]) -> None:
    run = runs["report"]["served"]
    query = parse_qs(urlsplit(run["xcoms"]["upload_hero[-1].return_value"]["secure_file_path"]).query)
    secrets = [query["X-Amz-Security-Token"][0], query["X-Amz-Signature"][0]]
    rendered = {task: json.dumps(run["rendered"][task]["files"]) for task in SENSORS}
    assert '"secure_file_path": ' in rendered["verify_hero[-1]"]  # the records are there...
    assert rendered["verify_each[-1]"] == '"LazyXComSequence(<unevaluated length>)"'
    for task in SENSORS:
        assert not [secret for secret in secrets if secret in rendered[task]]  # ...not their credentials


if __name__ == "__main__":
    _child(*sys.argv[1:5])
