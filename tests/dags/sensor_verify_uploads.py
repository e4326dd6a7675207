"""Upload reward images, then prove they are served intact before publishing (end-to-end test DAG).

Run by ``tests/e2e/test_sensor_dag.py`` with ``dag.test()`` against the local emulator (there the
deferred sensors' trigger runs inline). To run it by hand, create the connection (basic auth shown;
the emulator's default credentials)::

    export AIRFLOW_CONN_CAPILLARY_DEFAULT='capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A8080/'

and trigger it with ``{"folder": "/path/to/images"}`` as the run configuration.

Tasks:

- ``upload_catalogue``: every PNG of the folder (a list of records);
- ``upload_hero``: one file (one record);
- ``list_images`` then ``upload_each``: one mapped upload per image (a lazy sequence of records);
- ``settle``: waits ``params.settle_seconds`` (0 by default; the e2e test uses it to let secure
  URLs expire);
- ``verify_catalogue``, ``verify_hero`` (sha256) and ``verify_each``: one deferrable
  :class:`CapillaryFileSensor` per upload task;
- ``publish``: stands in for publishing the rewards, from the verified records only.
"""

from __future__ import annotations

import os
import time

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

with DAG(
    dag_id="capillary_sensor_verify_uploads",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "folder": Param("/opt/airflow/rewards", type="string"),
        "settle_seconds": Param(0, type="number", minimum=0),
    },
    tags=["capillary", "test"],
) as dag:
    upload_catalogue = UploadImageOperator(task_id="upload_catalogue", source="{{ params.folder }}/*.png")
    upload_hero = UploadImageOperator(task_id="upload_hero", source="{{ params.folder }}/hero.png")

    @task
    def list_images(folder: str) -> list[str]:
        """List the JPEG files of the folder (a stand-in for any upstream computation)."""
        return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".jpg"))

    upload_each = UploadImageOperator.partial(task_id="upload_each").expand(
        source=list_images("{{ params.folder }}")
    )

    @task
    def settle(seconds: float) -> None:
        """Wait before verifying (0 unless a test wants the secure URLs to expire first)."""
        time.sleep(float(seconds))

    settled = settle("{{ params.settle_seconds }}")
    [upload_catalogue, upload_hero, upload_each] >> settled

    # [START capillary_file_sensor]
    verify_catalogue = CapillaryFileSensor(
        task_id="verify_catalogue",
        files=upload_catalogue.output,
        deferrable=True,
        poke_interval=1,
        timeout=300,
    )
    verify_hero = CapillaryFileSensor(
        task_id="verify_hero",
        files=upload_hero.output,
        check="sha256",
        deferrable=True,
        poke_interval=1,
        timeout=300,
    )
    verify_each = CapillaryFileSensor(
        task_id="verify_each",
        files=upload_each.output,
        deferrable=True,
        poke_interval=1,
        timeout=300,
    )

    @task
    def publish(catalogue: list[dict], hero: dict, each: list[dict]) -> dict[str, str]:
        """Stand-in for publishing rewards: only files the sensors proved are served get published."""
        return {record["name"]: record["file_handle"] for record in [*catalogue, hero, *each]}

    settled >> [verify_catalogue, verify_hero, verify_each]
    publish(verify_catalogue.output, verify_hero.output, verify_each.output)
    # [END capillary_file_sensor]
