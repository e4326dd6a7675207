"""Benchmark DAG (case 6): every image of ``CAPILLARY_BENCH_IMAGES`` in one batch task."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_capillary.operators.upload_image import UploadImageOperator

IMAGES = os.environ.get("CAPILLARY_BENCH_IMAGES", "/nonexistent/capillary-bench-images")
WORKERS = int(os.environ.get("CAPILLARY_BENCH_WORKERS", "8"))

with DAG(
    dag_id="bench_upload_batch",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "benchmark"],
) as dag:
    UploadImageOperator(task_id="upload", source=IMAGES, max_workers=WORKERS)
