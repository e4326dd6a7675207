"""OpenLineage events of a real ``airflow dags test`` of the catalogue refresh.

The OpenLineage provider (in the dev lock) runs with its file transport: every event is one JSON
line in a file this test reads. The refresh runs twice against one emulator and one manifest: the
first run uploads the six sample images, the second finds them unchanged and uploads nothing.
The ``COMPLETE`` event of ``upload_images`` names, exactly, the six sources as inputs (OpenLineage's
naming for local files) and, as outputs, the six Capillary files of the first run and none of the
second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from capillary_emulator import CapillaryEmulator

from tests.e2e.test_example_dags import REWARDS, SAMPLES, _dags_test
from tests.e2e.test_example_dags import airflow_home as airflow_home  # the module's migrated home

pytestmark = pytest.mark.e2e

DAG_ID = "capillary_reward_catalogue_refresh"
JOB = f"{DAG_ID}.upload_images"
#: Inputs of every run: the sample images, as OpenLineage names local files.
SOURCES = [("file", str(REWARDS / name)) for name in SAMPLES]


def _complete_events(events_file: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("eventType") == "COMPLETE" and e.get("job", {}).get("name") == JOB]


def _datasets(event: dict[str, Any], key: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[key]]


def test_upload_task_reports_its_sources_and_the_files_it_uploaded(
    airflow_home: dict[str, str], tmp_path: Path
) -> None:
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **airflow_home,
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "capillary-e2e",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
    }
    with CapillaryEmulator(data_dir=tmp_path / "emulator") as emu:
        _dags_test(env, emu, DAG_ID)
        first = _complete_events(events_file)
        _dags_test(env, emu, DAG_ID)
        both = _complete_events(events_file)
        stored = sorted((f["name"], f["version"]) for f in emu.stored_files())
        authority = urlsplit(emu.base_url).netloc

    assert stored == [(name, 1) for name in SAMPLES]  # the second run uploaded nothing
    assert len(first) == 1, first
    assert len(both) == 2, both
    uploaded, unchanged = both
    assert uploaded["run"]["runId"] != unchanged["run"]["runId"]
    assert _datasets(uploaded, "inputs") == SOURCES
    files = [(f"capillary://{authority}", f"rewards/{name}") for name in SAMPLES]
    assert _datasets(uploaded, "outputs") == files
    assert _datasets(unchanged, "inputs") == SOURCES
    assert _datasets(unchanged, "outputs") == []
