"""One mapped upload task per reward image, then one sensor over all mapped outputs.

Use this shape when each image should be retried, cleared and inspected on its own in the
UI; use one ``UploadImageOperator`` with a folder or glob (see
``capillary_reward_catalogue_refresh``) when the catalogue is large: one task uploads
concurrently over one connection pool and one OAuth token (BENCHMARKS.md compares both).

Connection: ``capillary_default``, created as in ``capillary_reward_catalogue_refresh``
(``AIRFLOW_CONN_CAPILLARY_DEFAULT='capillary://till_user:till_password@eucrm.cc.capillarytech.com'``
or the UI's "Capillary File Service" type).
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

REWARD_IMAGES = os.environ.get("CAPILLARY_REWARD_IMAGES", str(Path(__file__).parent / "data" / "rewards"))

# [START howto_capillary_upload_mapped]
with DAG(
    dag_id="capillary_upload_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "example"],
) as dag:

    @task
    def list_images(folder: str = REWARD_IMAGES) -> list[str]:
        """List the images to upload (at run time, not at DAG parse)."""
        return sorted(str(p) for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))

    upload = UploadImageOperator.partial(task_id="upload", max_workers=1).expand(source=list_images())

    CapillaryFileSensor(
        task_id="verify",
        files=upload.output,  # every mapped task's record
        deferrable=True,
        poke_interval=5,
        timeout=10 * 60,
    )
# [END howto_capillary_upload_mapped]
