"""Nightly reward-catalogue refresh: upload the new and changed reward images, prove Capillary
serves them, publish the whole catalogue.

The upload task keeps a sync manifest (what it uploaded, with each image's sha256): a nightly run
uploads only the images that are new or whose content changed, and takes the record of every
other image from the manifest. Trigger with ``{"force_upload": true}`` to upload everything again.

Connection: the tasks use the Airflow connection ``capillary_default``. Create it once, e.g.
as an environment variable (URI or JSON form)::

    # Basic auth: till username and plain password (the hook sends its MD5)
    export AIRFLOW_CONN_CAPILLARY_DEFAULT='capillary://till_user:till_password@eucrm.cc.capillarytech.com'
    # OAuth client credentials
    export AIRFLOW_CONN_CAPILLARY_DEFAULT='{"conn_type": "capillary", "host": "https://eucrm.cc.capillarytech.com",
        "login": "client-key", "password": "client-secret",
        "extra": {"auth_type": "oauth", "oauth_url": "https://eu.api.capillarytech.com/v3/oauth/token/generate"}}'

or in the UI (Admin > Connections, type "Capillary File Service"). ``make demo`` points it at the
local emulator (``python -m capillary_emulator``).

Settings (environment): ``CAPILLARY_REWARD_IMAGES``, the folder of images (default: the samples
beside this file); ``CAPILLARY_PAYLOAD_DIR``, where the catalogue payload is written;
``CAPILLARY_MANIFEST``, the sync manifest (default ``manifest.json`` in the payload folder; in a
deployment, durable storage that every worker reaches, e.g.
``s3://aws_default@my-bucket/capillary/rewards.json``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

REWARD_IMAGES = os.environ.get("CAPILLARY_REWARD_IMAGES", str(Path(__file__).parent / "data" / "rewards"))
PAYLOAD_DIR = os.environ.get("CAPILLARY_PAYLOAD_DIR", "/tmp/capillary-reward-catalogue")
MANIFEST = os.environ.get("CAPILLARY_MANIFEST", os.path.join(PAYLOAD_DIR, "manifest.json"))
log = logging.getLogger(__name__)
REWARD_IMAGES_ASSET = Asset(name="capillary_reward_images", uri="file:///capillary/rewards")

# [START howto_capillary_reward_catalogue_refresh]
with DAG(
    dag_id="capillary_reward_catalogue_refresh",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"force_upload": Param(False, type="boolean", description="Upload every image again")},
    tags=["capillary", "example"],
) as dag:
    upload_images = UploadImageOperator(
        task_id="upload_images",
        source=REWARD_IMAGES,  # a folder: every image in it
        manifest=MANIFEST,  # what was uploaded: only new and changed images are sent again
        force_upload="{{ params.force_upload }}",
        max_workers=8,
        outlets=[REWARD_IMAGES_ASSET],
    )

    verify_images = CapillaryFileSensor(
        task_id="verify_images",
        files=upload_images.output,  # every record; unchanged ones pass without a request
        check="sha256",  # stream each served file and compare its checksum
        deferrable=True,  # wait in the triggerer, not in a worker slot
        poke_interval=10,
        timeout=30 * 60,
    )

    @task
    def publish_catalogue(verified: list[dict[str, Any]], ds: str | None = None) -> str:
        """Write the reward catalogue (what goes to Capillary's rewards API) and log a summary."""
        rewards = [
            {
                "name": record["name"],
                "file_handle": record["file_handle"],
                "version": record["version"],
                "content_type": record["content_type"],
                "file_size": record["file_size"],
                "action": record["action"],  # new, changed or unchanged
                "verified": True,
            }
            for record in sorted(verified, key=lambda r: r["name"])
        ]
        path = Path(PAYLOAD_DIR) / f"reward-catalogue-{ds}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"date": ds, "rewards": rewards}, indent=2))
        width = max(len(r["name"]) for r in rewards)
        lines = [
            f"{r['name']:<{width}}  {r['action']:<9}  v{r['version']:<3}  {r['file_handle']}  "
            f"{r['file_size']:>7} B"
            for r in rewards
        ]
        log.info("reward catalogue update: %d images\n%s", len(rewards), "\n".join(lines))
        return str(path)

    publish_catalogue(verify_images.output)
# [END howto_capillary_reward_catalogue_refresh]
