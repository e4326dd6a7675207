"""Benchmark DAG (cases 5 and 6): the DAG of ``parse_provider.py`` with EmptyOperators instead."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(
    dag_id="bench_parse_empty",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["capillary", "benchmark"],
) as dag:
    banner = EmptyOperator(task_id="upload_banner")
    catalogue = EmptyOperator(task_id="upload_catalogue")
    verify = EmptyOperator(task_id="verify_catalogue")
    banner >> catalogue >> verify
