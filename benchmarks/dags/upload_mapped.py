"""Benchmark DAG (case 6): one mapped task instance per image of ``CAPILLARY_BENCH_IMAGES``."""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_capillary.operators.upload_image import UploadImageOperator

FOLDER = Path(os.environ.get("CAPILLARY_BENCH_IMAGES", "/nonexistent/capillary-bench-images"))
IMAGES = sorted(str(path) for path in FOLDER.glob("*.png")) if FOLDER.is_dir() else []

with DAG(
    dag_id="bench_upload_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "benchmark"],
) as dag:
    UploadImageOperator.partial(task_id="upload", max_workers=1).expand(source=IMAGES)
