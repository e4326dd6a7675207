"""End to end: ``tests/dags/sensor_verify_uploads.py`` and ``tests/dags/sensor_hostile_storage.py``
run by ``dag.test()`` against the emulator.

Three runs of the first DAG (upload -> deferrable CapillaryFileSensor -> publish), each after
setting the emulator up through its control endpoints:

- ``served``: the first two downloads answer 503, so a sensor defers and its trigger (run inline by
  ``dag.test()``) waits; then every file is verified and ``publish`` gets the records;
- ``expired``: secure URLs live one second and the DAG waits two before verifying: every sensor
  fails with the documented "re-run the upload task" message;
- ``placeholder``: the storage serves 0 bytes instead of the images: every sensor fails with the
  size mismatch.

Two runs of the second (upload -> an untrusted task -> a deferrable and a poking sensor), with a
second loopback server standing for an internal service (issue 10, finding 7):

- ``rewritten``: the untrusted task points the secure URL at the internal server;
- ``redirected``: the emulator's storage answers 503 once (the deferrable sensor defers), then
  redirects every download to the internal server.

Both sensors must fail, and the internal server must receive no request at all.

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
HOSTILE_DAG_FILE = REPO_ROOT / "tests" / "dags" / "sensor_hostile_storage.py"
HOSTILE_DAG_ID = "capillary_sensor_hostile_storage"
HOSTILE_SENSORS = ("verify_deferred[-1]", "verify_sync[-1]")
#: The internal server's origin in the scenarios, filled in by the child from its argument.
INTERNAL = "{internal}"
HOSTILE_SCENARIOS: dict[str, dict[str, Any]] = {
    "rewritten": {"settings": {"url_expiry": 3600}, "faults": [], "conf": {"rewrite_to": INTERNAL}},
    "redirected": {
        "settings": {"url_expiry": 3600},
        "faults": [
            {"status": 503, "headers": {"Retry-After": "1"}, "match": "download", "times": 1},
            {
                "status": 302,
                "headers": {"Location": INTERNAL + "/latest/meta-data?X-Amz-Signature=stolen"},
                "body": "",
                "match": "download",
                "times": 100,
            },
        ],
        "conf": {"rewrite_to": ""},
    },
}
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


def _child(
    dags_folder: str, folder: str, base_url: str, out: str, internal: str = ""
) -> None:  # pragma: no cover
    """The child process: run the DAG of ``dags_folder`` once per scenario, report as JSON to ``out``."""
    import importlib.util
    import os

    import requests
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.settings import Session as session_factory
    from airflow.utils.db import initdb

    initdb()
    hostile = bool(internal)
    dag_file, dag_id = (HOSTILE_DAG_FILE, HOSTILE_DAG_ID) if hostile else (DAG_FILE, DAG_ID)
    scenarios = json.loads(
        json.dumps(HOSTILE_SCENARIOS if hostile else SCENARIOS).replace(INTERNAL, internal)
    )
    spec = importlib.util.spec_from_file_location(dag_file.stem, Path(dags_folder) / dag_file.name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id)
    report: dict[str, Any] = {}
    for name, scenario in scenarios.items():
        control = {"X-Emulator-Token": os.environ["CAPILLARY_EMULATOR_CONTROL_TOKEN"]}
        requests.delete(f"{base_url}/_emulator/faults", headers=control, timeout=10).raise_for_status()
        requests.post(
            f"{base_url}/_emulator/settings", json=scenario["settings"], headers=control, timeout=10
        ).raise_for_status()
        if scenario["faults"]:
            requests.post(
                f"{base_url}/_emulator/faults", json=scenario["faults"], headers=control, timeout=10
            ).raise_for_status()
        print(MARK.format(name), flush=True)
        conf = scenario.get("conf", {"settle_seconds": scenario.get("settle_seconds", 0)})
        run = dag.test(run_conf={"folder": folder, **conf})
        assert session_factory is not None
        with session_factory() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id).all()
            xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id).all()
            rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run.run_id)
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


def _run_child(
    root: Path, dag_file: Path, scenarios: dict[str, Any], emu: Any, internal: str = ""
) -> dict[str, Any]:
    """Run the scenarios of ``dag_file`` in a child process; return the report and each scenario's log."""
    images = root / "images"
    images.mkdir()
    for name, body in IMAGES.items():
        (images / name).write_bytes(body)
    out = root / "report.json"
    dags, env = child_dag_env(root, dag_file, emu.connection_uri(auth_type="basic"))
    args = [str(dags), str(images), emu.base_url, str(out), *([internal] if internal else [])]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.test_sensor_dag", *args],
        cwd=REPO_ROOT,
        env={**env, "CAPILLARY_EMULATOR_CONTROL_TOKEN": emu.control_token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=280,
    )
    (root / "child.log").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    logs = {}
    for name in scenarios:
        after = proc.stdout.split(MARK.format(name), 1)[1]
        logs[name] = after.split("=== scenario ", 1)[0]
    return {"report": json.loads(out.read_text()), "logs": logs, "log": proc.stdout}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the three scenarios against one emulator; return the report and each scenario's log."""
    from capillary_emulator import CapillaryEmulator

    root = tmp_path_factory.mktemp("sensor-dag")
    with CapillaryEmulator(data_dir=root / "emulator") as emu:
        return _run_child(root, DAG_FILE, SCENARIOS, emu)


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the two hostile scenarios; the report also holds what reached the internal server."""
    from capillary_emulator import CapillaryEmulator

    from tests.hostile import Answer, HostileServer

    root = tmp_path_factory.mktemp("sensor-hostile-dag")
    with CapillaryEmulator(data_dir=root / "emulator") as emu, HostileServer() as internal:
        internal.route("/latest/meta-data", Answer(200, b"role-credentials", {"Content-Type": "image/png"}))
        result = _run_child(root, HOSTILE_DAG_FILE, HOSTILE_SCENARIOS, emu, internal.origin)
        downloads = [r for r in emu.requests() if r["path"].startswith("/_s3/")]
        return {
            **result,
            "internal": internal.origin,
            "internal_requests": internal.requests,
            "downloads": downloads,
        }


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


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", list(HOSTILE_SCENARIOS))
def test_an_untrusted_url_or_redirect_never_reaches_another_origin(
    hostile_runs: dict[str, Any], scenario: str
):
    run, log = hostile_runs["report"][scenario], hostile_runs["logs"][scenario]
    internal = hostile_runs["internal"]
    assert hostile_runs["internal_requests"] == []  # in neither scenario, by neither sensor
    assert run["states"]["upload[-1]"] == "success", _errors(log)
    assert {task: run["states"][task] for task in HOSTILE_SENSORS} == dict.fromkeys(HOSTILE_SENSORS, "failed")
    assert run["run_state"] == "failed"
    refused = f"{internal} is not an allowed storage origin (allowed: "
    if scenario == "rewritten":
        expected = (
            "CapillaryInvalidInputError: files[0] ('hero.png', namespace rewards) has a secure_file_path "
        )
        expected += f"outside the storage origin policy, not fetched: {refused}"
        assert log.count(expected) >= 2, _errors(log)  # both sensors, before any request
    else:
        expected = "CapillaryRequestRejectedError: 'hero.png' (namespace rewards): the storage answered HTTP "
        expected += f"302 with a redirect that is not followed: {refused}"
        assert log.count(expected) >= 2, _errors(log)
        assert "[DAG TEST] running trigger in line" in log  # the refusal came from the trigger too
    assert "stolen" not in log  # the redirect's query


@pytest.mark.e2e
def test_the_storage_saw_only_the_hostile_scenarios_own_downloads(hostile_runs: dict[str, Any]):
    # rewritten: none (refused before any request); redirected: 503, then the 302 answered to the
    # trigger's round and to the poking sensor.
    assert [r["status"] for r in hostile_runs["downloads"]] == [503, 302, 302]


if __name__ == "__main__":
    _child(*sys.argv[1:6])
