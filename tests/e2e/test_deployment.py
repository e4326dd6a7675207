"""The provider in a real, production-shaped Airflow deployment: api-server, scheduler,
dag-processor, triggerer and two Celery workers, on PostgreSQL and Redis.

The DAG (``upload_image`` -> deferrable ``verify_image``) is triggered through the REST API; the
sensor's wait happens in the triggerer process; results are read back through the REST API only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import requests

from tests.e2e.airflow_deployment import COMPONENTS, AirflowDeployment
from tests.e2e.airflow_deployment.upload_dag import SENSOR_TASK, UPLOAD_TASK, UploadRun

if TYPE_CHECKING:
    from capillary_emulator import CapillaryEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TRIGGER_CLASS = "airflow_capillary.triggers.file_service.CapillaryFileTrigger"


def test_every_component_is_healthy(airflow_deployment: AirflowDeployment) -> None:
    """The health endpoint reports the database and every started component healthy."""
    health = airflow_deployment.client.health()
    assert {
        name: health[name]["status"] for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    } == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    assert sorted(airflow_deployment.processes) == sorted([*COMPONENTS, "celery-worker1", "celery-worker2"])
    airflow_deployment.check_alive()


def test_the_stack_is_production_shaped(airflow_deployment: AirflowDeployment) -> None:
    """CeleryExecutor, a PostgreSQL metadata database, and both workers answer the broker."""

    def config(section: str, key: str) -> str:
        return airflow_deployment.airflow("config", "get-value", section, key).stdout.strip()

    assert config("core", "executor") == "CeleryExecutor"
    assert config("database", "sql_alchemy_conn").startswith("postgresql+psycopg2://postgres@127.0.0.1:")
    assert config("celery", "broker_url").startswith("redis://127.0.0.1:")
    assert airflow_deployment.celery_ping() == ["worker1@capillary-e2e", "worker2@capillary-e2e"]


def test_provider_and_connection_type_are_registered(airflow_deployment: AirflowDeployment) -> None:
    """``airflow providers get`` and ``airflow providers hooks`` show the provider and its hook."""
    provider = json.loads(
        airflow_deployment.airflow("providers", "get", "airflow-provider-capillary", "-o", "json").stdout
    )
    assert provider == [{"Provider": "airflow-provider-capillary", "Version": "0.1.0"}]
    hooks = json.loads(airflow_deployment.airflow("providers", "hooks", "-o", "json").stdout)
    assert [hook for hook in hooks if hook["connection_type"] == "capillary"] == [
        {
            "connection_type": "capillary",
            "class": "airflow_capillary.hooks.file_service.CapillaryFileHook",
            "conn_id_attribute_name": "capillary_conn_id",
            "package_name": "airflow-provider-capillary",
            "hook_name": "Capillary File Service",
        }
    ]


def test_dag_run_triggered_through_the_api_succeeds(upload_run: UploadRun) -> None:
    """The run that the REST API triggered finished with both tasks successful."""
    assert upload_run.dag_run["state"] == "success", upload_run.dag_run
    assert upload_run.dag_run["run_type"] == "manual"
    assert upload_run.dag_run["conf"] == {"image": str(upload_run.image)}


def test_sensor_deferred_to_the_triggerer(
    upload_run: UploadRun, airflow_deployment: AirflowDeployment
) -> None:
    """The sensor was seen ``deferred``, its trigger ran in the triggerer process, in one try."""
    client = airflow_deployment.client
    assert "deferred" in upload_run.sensor_states, upload_run.sensor_states
    assert upload_run.sensor_states[-1] == "success"
    assert upload_run.sensor_states.index("deferred") < upload_run.sensor_states.index("success")

    tries = client.task_instance_tries(upload_run.dag_id, upload_run.run_id, SENSOR_TASK)
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "success")]
    sensor = client.task_instance(upload_run.dag_id, upload_run.run_id, SENSOR_TASK)
    assert (sensor["state"], sensor["try_number"]) == ("success", 1)

    # The trigger's own log lines are written by the triggerer process into the task's
    # "<attempt>.log.trigger.<triggerer job id>.log" file.
    triggerer_ids = [job["id"] for job in client.get("/jobs", params={"job_type": "TriggererJob"})["jobs"]]
    trigger_logs = [
        path
        for path in airflow_deployment.task_log_files()
        if f"dag_id={upload_run.dag_id}" in str(path)
        and f"task_id={SENSOR_TASK}" in str(path)
        and ".log.trigger." in path.name
    ]
    assert [int(path.name.rsplit(".", 2)[-2]) for path in trigger_logs] == triggerer_ids
    events = [json.loads(line) for line in trigger_logs[0].read_text().splitlines() if line.strip()]
    assert any(
        e.get("logger") == TRIGGER_CLASS and e["event"] == "all 1 file(s) are served intact" for e in events
    ), events
    assert any(e["event"] == "Trigger fired event" for e in events), events

    # The task log served by the API tells the whole story: deferred on the worker, resumed after.
    task_log = client.task_log(upload_run.dag_id, upload_run.run_id, SENSOR_TASK, 1)
    assert "Pausing task as DEFERRED" in task_log, task_log[-3000:]
    assert "all 1 file(s) are served intact" in task_log, task_log[-3000:]


def test_upload_xcoms_read_back_through_the_api(
    upload_run: UploadRun, airflow_deployment: AirflowDeployment, e2e_emulator: CapillaryEmulator
) -> None:
    """The upload's records in XCom match the bytes sent and what the emulator stored."""
    client = airflow_deployment.client
    record = client.xcom(upload_run.dag_id, upload_run.run_id, UPLOAD_TASK)
    assert record["name"] == upload_run.image.name
    assert record["source"] == str(upload_run.image)
    assert record["namespace"] == "rewards"
    assert record["content_type"] == "image/png"
    assert (record["file_size"], record["sent_size"]) == (len(upload_run.image_bytes),) * 2
    assert record["sha256"] == upload_run.sha256
    assert client.xcom(upload_run.dag_id, upload_run.run_id, UPLOAD_TASK, "file_handles") == {
        record["name"]: record["file_handle"]
    }

    stored = [f for f in e2e_emulator.stored_files() if f["name"] == record["name"]]
    assert [(f["namespace"], f["version"], f["size"], f["sha256"], f["placeholder"]) for f in stored] == [
        ("rewards", record["version"], len(upload_run.image_bytes), upload_run.sha256, False)
    ]
    assert stored[0]["file_handle"] == record["file_handle"]

    # The sensor returns the record it verified, in both modes; without the secure URL, since
    # the sensor's include_secure_url is off by default.
    verified = client.xcom(upload_run.dag_id, upload_run.run_id, SENSOR_TASK)
    assert verified == {**record, "secure_file_path": None}


def test_sensor_waited_for_the_storage(
    upload_run: UploadRun, airflow_deployment: AirflowDeployment, e2e_emulator: CapillaryEmulator
) -> None:
    """The storage refused the file until the sensor had deferred, then served it."""
    record = airflow_deployment.client.xcom(upload_run.dag_id, upload_run.run_id, UPLOAD_TASK)
    statuses = [
        r["status"]
        for r in e2e_emulator.requests()
        if r["kind"] == "download" and r["path"].endswith(record["s3_token"])
    ]
    refused = statuses.count(404)
    assert upload_run.released
    assert refused >= 1, statuses  # the worker's poke (the trigger's first ones too, on a slow machine)
    assert statuses[:refused] == [404] * refused, statuses
    assert statuses[refused] in (200, 206), statuses


def test_capillary_image_extra_link(upload_run: UploadRun, airflow_deployment: AirflowDeployment) -> None:
    """The REST API gives the "Capillary image" link, and it serves the uploaded image."""
    client = airflow_deployment.client
    links = client.extra_links(upload_run.dag_id, upload_run.run_id, UPLOAD_TASK)
    record = client.xcom(upload_run.dag_id, upload_run.run_id, UPLOAD_TASK)
    assert links == {"Capillary image": record["secure_file_path"]}
    image = requests.get(links["Capillary image"], timeout=10)
    assert (image.status_code, image.headers["Content-Type"], image.content) == (
        200,
        "image/png",
        upload_run.image_bytes,
    )
