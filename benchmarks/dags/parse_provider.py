"""Benchmark DAG (case 5): three provider tasks. ``parse_empty.py`` is the same DAG with EmptyOperators.

Nothing here touches the network or the files at parse time.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

with DAG(
    dag_id="bench_parse_provider",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "benchmark"],
) as dag:
    banner = UploadImageOperator(
        task_id="upload_banner", source="/data/rewards/banner.png", file_name="diwali-banner.png"
    )
    catalogue = UploadImageOperator(task_id="upload_catalogue", source="/data/rewards/*.png", max_workers=8)
    verify = CapillaryFileSensor(
        task_id="verify_catalogue",
        files=catalogue.output,
        check="sha256",
        deferrable=True,
        poke_interval=10,
        timeout=30 * 60,
    )
    banner >> catalogue
