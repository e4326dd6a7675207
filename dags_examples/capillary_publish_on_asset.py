"""Downstream of the catalogue refresh: runs when ``upload_images`` updates the reward-images asset.

``UploadImageOperator`` sets the asset event's ``extra`` to a compact summary of what it
uploaded (``count``, ``total_bytes``, and ``files``: name, namespace, file handle and version of
each), so a consumer needs no XCom from another DAG.

Connection: none (this DAG only reads the asset event).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, task

log = logging.getLogger(__name__)
# The same asset as the outlet of capillary_reward_catalogue_refresh.upload_images.
REWARD_IMAGES_ASSET = Asset(name="capillary_reward_images", uri="file:///capillary/rewards")

# [START howto_capillary_publish_on_asset]
with DAG(
    dag_id="capillary_publish_on_asset",
    schedule=[REWARD_IMAGES_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "example"],
) as dag:

    @task
    def handles_to_publish(triggering_asset_events: Any = None) -> dict[str, str]:
        """Collect ``{name: file_handle}`` from every asset event that triggered this run."""
        handles = {
            f["name"]: f["file_handle"]
            for event in triggering_asset_events[REWARD_IMAGES_ASSET]
            for f in event.extra.get("files", [])
        }
        log.info("%d reward images to publish", len(handles))
        return handles

    handles_to_publish()
# [END howto_capillary_publish_on_asset]
