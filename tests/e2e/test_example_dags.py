"""The example DAGs in ``dags_examples/``: they import cleanly, and ``airflow dags test`` of each
succeeds against the emulator, which then holds exactly the expected files and versions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from capillary_emulator import CapillaryEmulator

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = REPO_ROOT / "dags_examples"
REWARDS = DAGS / "data" / "rewards"
AIRFLOW = Path(sys.executable).with_name("airflow")
SAMPLES = sorted(p.name for p in REWARDS.iterdir())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: What the emulator holds after one upload of every sample image.
EXPECTED_SAMPLES = [
    ("rewards", name, 1, (REWARDS / name).stat().st_size, _sha256(REWARDS / name), False) for name in SAMPLES
]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated throw-away AIRFLOW_HOME (SQLite) whose DAG folder is ``dags_examples/``."""
    home = tmp_path_factory.mktemp("example-dags-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "CAPILLARY_PAYLOAD_DIR": str(home / "payloads"),
    }
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def _dags_test(env: dict[str, str], emu: CapillaryEmulator, dag_id: str, *conf: str) -> str:
    result = subprocess.run(
        [str(AIRFLOW), "dags", "test", *conf, dag_id],
        env={**env, "AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_uri()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "state=success" in output, output[-4000:]
    return output


def _stored(emu: CapillaryEmulator) -> list[tuple[str, str, int, int, str, bool]]:
    return sorted(
        (f["namespace"], f["name"], f["version"], f["size"], f["sha256"], f["placeholder"])
        for f in emu.stored_files()
    )


def test_every_example_dag_imports_without_error_or_warning() -> None:
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(DAGS))

    assert bag.import_errors == {}
    assert [str(w.message) for w in caught] == []
    assert sorted(bag.dag_ids) == [
        "capillary_catalogue_fanout",
        "capillary_hook_taskflow",
        "capillary_publish_on_asset",
        "capillary_reward_catalogue_refresh",
        "capillary_upload_mapped",
    ]


def _payload(env: dict[str, str]) -> list[dict[str, Any]]:
    (payload_file,) = Path(env["CAPILLARY_PAYLOAD_DIR"]).glob("reward-catalogue-*.json")
    rewards: list[dict[str, Any]] = json.loads(payload_file.read_text())["rewards"]
    return rewards


def test_reward_catalogue_refresh_syncs_verifies_and_writes_the_payload(
    airflow_home: dict[str, str], tmp_path: Path
) -> None:
    manifest = Path(airflow_home["CAPILLARY_PAYLOAD_DIR"]) / "manifest.json"
    with CapillaryEmulator(data_dir=tmp_path / "emulator") as emu:
        # The first night: every image is new, uploaded once, verified, published.
        _dags_test(airflow_home, emu, "capillary_reward_catalogue_refresh")
        first = _stored(emu)
        handles = {f["name"]: f["file_handle"] for f in emu.stored_files()}
        first_payload = _payload(airflow_home)
        # The next night, nothing changed: no upload, the same handles published.
        output = _dags_test(airflow_home, emu, "capillary_reward_catalogue_refresh")
        second = _stored(emu)
        second_payload = _payload(airflow_home)
        # force_upload through the DAG's param: every image again, as version 2.
        _dags_test(airflow_home, emu, "capillary_reward_catalogue_refresh", "-c", '{"force_upload": true}')
        forced = _stored(emu)
        forced_payload = _payload(airflow_home)

    assert first == EXPECTED_SAMPLES
    assert [(r["name"], r["action"], r["version"], r["file_size"], r["verified"]) for r in first_payload] == [
        (name, "new", 1, (REWARDS / name).stat().st_size, True) for name in SAMPLES
    ]
    assert {r["name"]: r["file_handle"] for r in first_payload} == handles
    assert second == first  # the emulator received no upload
    assert "0 uploaded (0 new, 0 changed), 6 unchanged, 0 failed" in output
    assert [(r["name"], r["action"], r["file_handle"]) for r in second_payload] == [
        (name, "unchanged", handles[name]) for name in SAMPLES
    ]
    assert forced == sorted(
        EXPECTED_SAMPLES + [(ns, n, 2, size, sha, ph) for ns, n, _, size, sha, ph in first]
    )
    assert [(r["name"], r["action"], r["version"]) for r in forced_payload] == [
        (n, "changed", 2) for n in SAMPLES
    ]
    entries = json.loads(manifest.read_text())["entries"]
    assert sorted(entries) == [f"rewards/{name}" for name in SAMPLES]
    assert {e["version"] for e in entries.values()} == {2}


def test_upload_mapped_uploads_each_image_in_its_own_task(
    airflow_home: dict[str, str], tmp_path: Path
) -> None:
    with CapillaryEmulator(data_dir=tmp_path / "emulator") as emu:
        output = _dags_test(airflow_home, emu, "capillary_upload_mapped")
        stored = _stored(emu)

    assert stored == EXPECTED_SAMPLES
    assert all(f"map_index={i}" in output for i in range(len(SAMPLES)))


def test_hook_taskflow_creates_a_placeholder_then_a_second_version(
    airflow_home: dict[str, str], tmp_path: Path
) -> None:
    banner = REWARDS / "double-points.png"
    with CapillaryEmulator(data_dir=tmp_path / "emulator") as emu:
        _dags_test(airflow_home, emu, "capillary_hook_taskflow")
        stored = _stored(emu)

    assert stored == [
        ("rewards", "campaign-banner.png", 1, 0, hashlib.sha256(b"").hexdigest(), True),
        ("rewards", "campaign-banner.png", 2, banner.stat().st_size, _sha256(banner), False),
    ]


def test_publish_on_asset_runs_without_events(airflow_home: dict[str, str], tmp_path: Path) -> None:
    with CapillaryEmulator(data_dir=tmp_path / "emulator") as emu:
        output = _dags_test(airflow_home, emu, "capillary_publish_on_asset")
        assert emu.stored_files() == []
    assert "0 reward images to publish" in output
