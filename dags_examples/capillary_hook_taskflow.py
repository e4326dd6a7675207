"""Use ``CapillaryFileHook`` directly from TaskFlow: reserve a placeholder, upload bytes made in the task.

Connection: ``capillary_default``, created as in ``capillary_reward_catalogue_refresh``
(``AIRFLOW_CONN_CAPILLARY_DEFAULT='capillary://till_user:till_password@eucrm.cc.capillarytech.com'``
or the UI's "Capillary File Service" type).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, task

REWARD_IMAGES = os.environ.get("CAPILLARY_REWARD_IMAGES", str(Path(__file__).parent / "data" / "rewards"))
BANNER = Path(REWARD_IMAGES) / "double-points.png"

# [START howto_capillary_hook_taskflow]
with DAG(
    dag_id="capillary_hook_taskflow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "example"],
) as dag:

    @task
    def reserve_placeholder() -> dict[str, Any]:
        """Create the documented placeholder object (no file body) for a banner designed later."""
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        placeholder = CapillaryFileHook().create_placeholder("campaign-banner.png")
        return placeholder.to_dict(include_secure_url=False)

    @task
    def upload_banner(placeholder: dict[str, Any]) -> dict[str, Any]:
        """Upload the banner's bytes under the placeholder's name: Capillary stores a new version."""
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        uploaded = CapillaryFileHook().upload_file(BANNER.read_bytes(), file_name=placeholder["name"])
        return uploaded.to_dict(include_secure_url=False)

    upload_banner(reserve_placeholder())
# [END howto_capillary_hook_taskflow]
