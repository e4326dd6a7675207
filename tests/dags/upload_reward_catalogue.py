"""Upload a reward catalogue to Capillary in every way UploadImageOperator offers (end-to-end test DAG).

Run by ``tests/e2e/test_upload_dag.py`` with ``dag.test()`` against the local emulator. To run it
by hand, create the connection (basic auth shown; the emulator's default credentials)::

    export AIRFLOW_CONN_CAPILLARY_DEFAULT='capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A8080/'

and trigger it with ``{"folder": "/path/to/images"}`` as the run configuration.

Tasks:

- ``upload_catalogue``: every image of the folder (one batch, names prefixed), updating the
  ``capillary_reward_catalogue`` asset with a summary of the upload;
- ``upload_hero``: one file under another name (one record, and the "Capillary image" link);
- ``list_images`` then ``upload_each``: one mapped task instance per image listed upstream;
- ``upload_variants``: ``expand_kwargs`` with a name or a namespace per entry;
- ``publish``: reads the handles the catalogue upload pushed.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, Param, XComArg, task

from airflow_capillary.operators.upload_image import UploadImageOperator

REWARD_CATALOGUE = Asset("capillary_reward_catalogue")

# [START upload_image_operator]
with DAG(
    dag_id="upload_reward_catalogue",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "folder": Param("/opt/airflow/rewards", type="string"),
        "prefix": Param("diwali-", type="string"),
    },
    tags=["capillary", "test"],
):
    upload_catalogue = UploadImageOperator(
        task_id="upload_catalogue",
        source="{{ params.folder }}",
        name_prefix="{{ params.prefix }}",
        max_workers=4,
        progress_interval=1,
        outlets=[REWARD_CATALOGUE],
    )

    upload_hero = UploadImageOperator(
        task_id="upload_hero",
        source="{{ params.folder }}/a.png",
        file_name="hero.png",
    )

    @task
    def list_images(folder: str) -> list[str]:
        """List the PNG files of the folder (a stand-in for any upstream computation)."""
        return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".png"))

    upload_each = UploadImageOperator.partial(task_id="upload_each", name_prefix="each-").expand(
        source=list_images("{{ params.folder }}")
    )

    upload_variants = UploadImageOperator.partial(task_id="upload_variants").expand_kwargs(
        [
            {"source": "{{ params.folder }}/b.jpg", "file_name": "variant-b.jpg"},
            {"source": "{{ params.folder }}/c.webp", "namespace": "promo", "include_secure_url": False},
        ]
    )

    @task
    def publish(file_handles: dict[str, str]) -> int:
        """Stand-in for publishing rewards: count the handles the catalogue upload pushed."""
        return len(file_handles)

    publish(XComArg(upload_catalogue, key="file_handles"))
# [END upload_image_operator]
