"""The end-to-end suite's own DAG: upload one image, then verify it with a deferrable sensor.

Written into the deployment's DAGs folder by :func:`run_upload_dag`, which triggers it through the
REST API and records what the API showed while it ran (the sensor's states: ``deferred`` proves
that it waited in the triggerer).
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.airflow_deployment.deployment import AirflowDeployment

DAG_ID = "capillary_e2e_upload_verify"
DAG_FILE = "capillary_e2e_upload_verify.py"
UPLOAD_TASK = "upload_image"
SENSOR_TASK = "verify_image"

DAG_SOURCE = f'''"""Upload one image, then prove it is served, with a deferrable sensor (from tests/e2e)."""

import pendulum
from airflow.sdk import DAG, Param

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

with DAG(
    dag_id="{DAG_ID}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={{"image": Param("", type="string")}},
    tags=["capillary", "e2e"],
):
    upload = UploadImageOperator(task_id="{UPLOAD_TASK}", source="{{{{ params.image }}}}")
    CapillaryFileSensor(
        task_id="{SENSOR_TASK}",
        files=upload.output,
        deferrable=True,
        poke_interval=1,
        timeout=120,
    )
'''


def tiny_png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (0, 124, 238)) -> bytes:
    """Return a small, valid PNG of one solid colour.

    :param width: pixels.
    :param height: pixels.
    :param rgb: the colour.
    :return: the PNG file's bytes.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@dataclass
class UploadRun:
    """A finished run of the upload DAG and what was observed while it ran.

    :param dag_id: the DAG id.
    :param run_id: the run id.
    :param image: the uploaded file.
    :param image_bytes: its content.
    :param dag_run: the finished DAG run document.
    :param sensor_states: distinct states of the sensor task instance, in the order first seen.
    :param seconds: wall-clock seconds from trigger to finished.
    :param released: whether the storage was told to serve the file (after the deferral).
    """

    dag_id: str
    run_id: str
    image: Path
    image_bytes: bytes
    dag_run: dict[str, Any]
    sensor_states: list[str] = field(default_factory=list)
    seconds: float = 0.0
    released: bool = False

    @property
    def sha256(self) -> str:
        """Hex sha256 of the uploaded bytes."""
        return hashlib.sha256(self.image_bytes).hexdigest()


def _scheduler_saw_deferral(deployment: AirflowDeployment, ti_id: str) -> bool:
    """Whether the scheduler has processed the exit of the worker that deferred the task instance."""
    return any(
        "TaskInstance Finished" in line and f"ti_id={ti_id}" in line and "state=deferred" in line
        for line in deployment.component_log("scheduler").splitlines()
    )


def run_upload_dag(
    deployment: AirflowDeployment,
    image_dir: Path,
    *,
    release: Callable[[], None],
    timeout: float = 180.0,
    release_deadline: float = 60.0,
) -> UploadRun:
    """Add the DAG, trigger one run through the REST API and wait for it, watching the sensor.

    The storage must refuse the file (404) until ``release`` is called. It is called once the
    sensor is ``deferred`` and the scheduler has processed the exit of the worker that deferred it:
    when a trigger fires before that, Airflow 3.3.2's scheduler takes the worker's late "success"
    for a state change made behind its back and fails the task (apache/airflow#66374, #71580).

    :param deployment: the running deployment.
    :param image_dir: folder where the image to upload is written.
    :param release: makes the storage serve the file.
    :param timeout: deadline for the run, in seconds.
    :param release_deadline: seconds after the deferral at which ``release`` is called anyway.
    :return: the finished run and its observations.
    """
    image = image_dir / "e2e-reward.png"
    image_bytes = tiny_png()
    image.write_bytes(image_bytes)
    deployment.add_dag_file(DAG_FILE, DAG_SOURCE)
    deployment.wait_for_dag(DAG_ID, file_name=DAG_FILE, timeout=90)

    client = deployment.client
    started = time.monotonic()
    run_id = client.trigger_dag_run(DAG_ID, conf={"image": str(image)})["dag_run_id"]
    states: list[str] = []
    deferred_at: list[float] = []
    released: list[float] = []

    def watch_sensor() -> None:
        try:
            sensor = client.task_instance(DAG_ID, run_id, SENSOR_TASK)
        except AssertionError:  # not created yet
            return
        state = sensor.get("state")
        if state and state not in states:
            states.append(state)
        if state == "deferred" and not deferred_at:
            deferred_at.append(time.monotonic())
        if deferred_at and not released:
            overdue = time.monotonic() - deferred_at[0] > release_deadline
            if overdue or _scheduler_saw_deferral(deployment, sensor["id"]):
                release()
                released.append(time.monotonic())

    dag_run = client.wait_for_dag_run(DAG_ID, run_id, timeout=timeout, interval=0.25, on_poll=watch_sensor)
    watch_sensor()
    return UploadRun(
        dag_id=DAG_ID,
        run_id=run_id,
        image=image,
        image_bytes=image_bytes,
        dag_run=dag_run,
        sensor_states=states,
        seconds=time.monotonic() - started,
        released=bool(released),
    )
