"""End to end: ``tests/dags/upload_reward_catalogue.py`` run by ``dag.test()`` against the emulator.

``dag.test()`` (Airflow 3.3) runs only DAGs it finds in a DAG bundle, and writes to the metadata
database; so the run happens in a child process with its own ``AIRFLOW_HOME``, SQLite database
and DAG folder (a copy of the one DAG file), and reports the task states, XComs and asset events
it finds in the database as JSON. Running this module as a script is that child process.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from capillary_emulator import CapillaryEmulator

from tests.e2e._child_dag import REPO_ROOT, child_dag_env
from tests.operators.images import write_images

DAG_FILE = REPO_ROOT / "tests" / "dags" / "upload_reward_catalogue.py"
DAG_ID = "upload_reward_catalogue"
IMAGES = ["a.png", "b.jpg", "c.webp", "d.png"]


def _child(dags_folder: str, folder: str, out: str) -> None:  # pragma: no cover - runs in the child
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.db import initdb
    from airflow.utils.session import create_session

    initdb()
    bag = DagBag(dag_folder=dags_folder)
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(DAG_ID)
    assert dag is not None
    run = dag.test(run_conf={"folder": folder})
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        events = session.query(AssetEvent).all()
        report = {
            "run_state": str(run.state),
            "states": {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in tis},
            "xcoms": {f"{x.task_id}[{x.map_index}].{x.key}": XComModel.deserialize_value(x) for x in xcoms},
            "asset_events": [{"asset": e.asset.name, "extra": e.extra} for e in events],
        }
    Path(out).write_text(json.dumps(report, default=str))


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the DAG once against a fresh emulator; return the report and the emulator's state."""
    root = tmp_path_factory.mktemp("upload-dag")
    images = root / "images"
    write_images(images, [*IMAGES, "readme.txt"])
    out = root / "report.json"
    with CapillaryEmulator(data_dir=root / "emulator") as emu:
        dags, env = child_dag_env(root, DAG_FILE, emu.connection_uri(auth_type="basic"))
        proc = subprocess.run(
            [sys.executable, "-m", "tests.e2e.test_upload_dag", str(dags), str(images), str(out)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        report = json.loads(out.read_text())
        return {
            "report": report,
            "log": proc.stdout + proc.stderr,
            "images": images,
            "stored": emu.stored_files(),
            "served": _fetch(report),
        }


def _fetch(report: dict[str, Any]) -> dict[str, bytes]:
    """Download the hero image through its extra link while the emulator still runs."""
    link = report["xcoms"].get("upload_hero[-1]._link_CapillaryImageLink")
    if not link:
        return {}
    response = requests.get(link, timeout=10)
    return {"hero": response.content if response.status_code == 200 else b""}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.e2e
def test_every_task_succeeds(dag_run: dict[str, Any]) -> None:
    report = dag_run["report"]
    assert report["run_state"] == "success", dag_run["log"][-4000:]
    assert report["states"] == {
        "upload_catalogue[-1]": "success",
        "upload_hero[-1]": "success",
        "list_images[-1]": "success",
        "upload_each[0]": "success",
        "upload_each[1]": "success",
        "upload_variants[0]": "success",
        "upload_variants[1]": "success",
        "publish[-1]": "success",
    }


@pytest.mark.e2e
def test_batch_xcoms(dag_run: dict[str, Any]) -> None:
    xcoms, images = dag_run["report"]["xcoms"], dag_run["images"]
    records = xcoms["upload_catalogue[-1].return_value"]
    assert [r["source"] for r in records] == [str(images / n) for n in IMAGES]
    assert [r["name"] for r in records] == [f"diwali-{n}" for n in IMAGES]
    assert [r["sha256"] for r in records] == [_sha(images / n) for n in IMAGES]
    assert all(r["secure_file_path"] for r in records)
    assert xcoms["upload_catalogue[-1].uploaded"] == records
    assert xcoms["upload_catalogue[-1].file_handles"] == {r["name"]: r["file_handle"] for r in records}
    assert xcoms["publish[-1].return_value"] == len(IMAGES)
    assert xcoms["upload_catalogue[-1]._link_CapillaryImageLink"] == ""


@pytest.mark.e2e
def test_single_file_record_and_extra_link(dag_run: dict[str, Any]) -> None:
    xcoms, images = dag_run["report"]["xcoms"], dag_run["images"]
    hero = xcoms["upload_hero[-1].return_value"]
    assert isinstance(hero, dict)
    assert (hero["name"], hero["source"], hero["sha256"]) == (
        "hero.png",
        str(images / "a.png"),
        _sha(images / "a.png"),
    )
    assert xcoms["upload_hero[-1]._link_CapillaryImageLink"] == hero["secure_file_path"]
    assert dag_run["served"]["hero"] == (images / "a.png").read_bytes()


@pytest.mark.e2e
def test_mapped_over_an_xcomarg_and_expand_kwargs(dag_run: dict[str, Any]) -> None:
    xcoms, images = dag_run["report"]["xcoms"], dag_run["images"]
    assert xcoms["list_images[-1].return_value"] == [str(images / "a.png"), str(images / "d.png")]
    assert [xcoms[f"upload_each[{i}].return_value"]["name"] for i in (0, 1)] == ["each-a.png", "each-d.png"]
    first, second = (xcoms[f"upload_variants[{i}].return_value"] for i in (0, 1))
    assert (first["name"], first["namespace"]) == ("variant-b.jpg", "rewards")
    assert (second["name"], second["namespace"], second["secure_file_path"]) == ("c.webp", "promo", None)
    assert xcoms["upload_variants[1]._link_CapillaryImageLink"] == second["s3_url"]


@pytest.mark.e2e
def test_asset_event_extra(dag_run: dict[str, Any]) -> None:
    records = dag_run["report"]["xcoms"]["upload_catalogue[-1].return_value"]
    assert dag_run["report"]["asset_events"] == [
        {
            "asset": "capillary_reward_catalogue",
            "extra": {
                "capillary_conn_id": "capillary_default",
                "count": len(IMAGES),
                "total_bytes": sum(r["file_size"] for r in records),
                "files": [
                    {"name": r["name"], "namespace": "rewards", "file_handle": r["file_handle"], "version": 1}
                    for r in records
                ],
            },
        }
    ]


@pytest.mark.e2e
def test_emulator_stored_every_upload_and_logs_hide_secure_urls(dag_run: dict[str, Any]) -> None:
    stored = sorted((f["namespace"], f["name"]) for f in dag_run["stored"])
    assert stored == sorted(
        [("rewards", f"diwali-{n}") for n in IMAGES]
        + [("rewards", "hero.png"), ("rewards", "each-a.png"), ("rewards", "each-d.png")]
        + [("rewards", "variant-b.jpg"), ("promo", "c.webp")]
    )
    assert "X-Amz-Signature=" in dag_run["log"]  # URLs are logged only redacted...
    assert "X-Amz-Signature=***" in dag_run["log"]
    for record in dag_run["report"]["xcoms"]["upload_catalogue[-1].return_value"]:
        signature = record["secure_file_path"].rsplit("X-Amz-Signature=", 1)[1]
        assert signature not in dag_run["log"]  # ...never with their signature


if __name__ == "__main__":
    _child(*sys.argv[1:4])
