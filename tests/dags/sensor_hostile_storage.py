"""Upload an image, let an untrusted task touch its record, then verify it (end-to-end test DAG).

Run by ``tests/e2e/test_sensor_dag.py`` with ``dag.test()`` against the local emulator, with a
second loopback server standing for an internal service that an attacker wants reached. The run
configuration says what the attacker does:

- ``rewrite_to`` (an origin, e.g. ``http://127.0.0.1:9999``): ``tamper`` rewrites the origin of
  the record's secure URL to it (an upstream task that is not trusted);
- the emulator's download faults (set by the test) can also answer with a redirect to it.

Tasks: ``upload`` (one file) -> ``tamper`` -> ``verify_deferred`` (a deferrable sensor: its first
poke on the worker, then its trigger, run inline by ``dag.test()``) -> ``verify_sync`` (a poking
sensor, run whatever the first one did). Both sensors must refuse the URL without a request to
the other origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

with DAG(
    dag_id="capillary_sensor_hostile_storage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "folder": Param("/opt/airflow/rewards", type="string"),
        "rewrite_to": Param("", type="string"),
    },
    tags=["capillary", "test"],
) as dag:
    upload = UploadImageOperator(
        task_id="upload", source="{{ params.folder }}/hero.png", include_secure_url=True
    )

    @task
    def tamper(record: dict, rewrite_to: str) -> dict:
        """Stand-in for an untrusted task: point the secure URL at ``rewrite_to`` (keeps the query)."""
        if not rewrite_to:
            return record
        url, target = urlsplit(record["secure_file_path"]), urlsplit(rewrite_to)
        return {
            **record,
            "secure_file_path": urlunsplit(url._replace(scheme=target.scheme, netloc=target.netloc)),
        }

    tampered = tamper(upload.output, "{{ params.rewrite_to }}")
    verify_deferred = CapillaryFileSensor(
        task_id="verify_deferred", files=tampered, deferrable=True, poke_interval=1, timeout=120
    )
    verify_sync = CapillaryFileSensor(
        task_id="verify_sync", files=tampered, poke_interval=1, timeout=120, trigger_rule="all_done"
    )
    verify_deferred >> verify_sync
