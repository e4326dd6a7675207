"""A catalogue too big for one worker: chunks by name, mapped uploads over the workers, one check.

Shape: ``plan_chunks`` lists the catalogue and splits it into chunks, deterministically by name
(a file always lands in the same chunk, whatever else is added or removed), each chunk with its
own manifest; ``upload_chunk`` is one ``UploadImageOperator`` mapped over the chunks, which the
executor spreads over its workers (Celery, Kubernetes); one deferrable sensor checks every
chunk's records; ``publish_catalogue`` writes the whole catalogue's payload.

Why one manifest per chunk: a manifest remembers what was uploaded, so that a nightly run uploads
only what changed. Object storage has no lock, so two tasks must never write one manifest: with
one per chunk, each has exactly one writer. Keep the chunk count stable: changing it moves files
to other chunks, whose manifests do not know them yet, so they are uploaded again (once).

Sharing one API key: Capillary limits requests per API key. The pool ``capillary_uploads``
bounds how many upload tasks run at once, and each task's ``rate_limit_per_minute`` is the key's
limit divided by the pool's slots; a task that still meets a 429 pauses all its threads for the
``Retry-After`` the service sends. Create the pool once::

    airflow pools set capillary_uploads 4 "Capillary uploads sharing one API key"

Connection: ``capillary_default``, created as in ``capillary_reward_catalogue_refresh``.

Settings (environment): ``CAPILLARY_CATALOGUE``, a folder or object-storage prefix of images
(``s3://aws_conn@bucket/rewards/``; default: the samples beside this file);
``CAPILLARY_MANIFESTS``, a folder or object-storage prefix for the chunks' manifests (shared by
every worker: object storage in a real deployment); ``CAPILLARY_CHUNKS`` (default 8);
``CAPILLARY_KEY_RATE_LIMIT``, the API key's limit in requests per minute (default 100, what
Capillary documents for demo and testing clusters); ``CAPILLARY_PAYLOAD_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_capillary.operators.upload_image import UploadImageOperator
from airflow_capillary.sensors.file_service import CapillaryFileSensor

CATALOGUE = os.environ.get("CAPILLARY_CATALOGUE", str(Path(__file__).parent / "data" / "rewards"))
MANIFESTS = os.environ.get("CAPILLARY_MANIFESTS", "/tmp/capillary-manifests/fanout")
CHUNKS = int(os.environ.get("CAPILLARY_CHUNKS", "8"))
PAYLOAD_DIR = os.environ.get("CAPILLARY_PAYLOAD_DIR", "/tmp/capillary-reward-catalogue")
#: The API key's limit (requests per minute), shared by every upload task of every DAG using it.
KEY_RATE_LIMIT = float(os.environ.get("CAPILLARY_KEY_RATE_LIMIT", "100"))
#: The pool's slots: at most this many upload tasks run at once.
POOL = "capillary_uploads"
POOL_SLOTS = 4
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".tif", ".tiff", ".ico", ".avif"}
log = logging.getLogger(__name__)


def chunk_of(name: str, chunks: int) -> int:
    """Return the chunk a file belongs to: a stable hash of its name, so it never moves.

    :param name: the file's name in the catalogue.
    :param chunks: how many chunks there are.
    :return: the chunk's index, ``0 <= index < chunks``.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % chunks


def _join(prefix: str, name: str) -> str:
    """Join a folder or object-storage prefix and a file name."""
    return f"{prefix.rstrip('/')}/{name}"


# [START howto_capillary_catalogue_fanout]
with DAG(
    dag_id="capillary_catalogue_fanout",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs at once would write the same chunk manifests
    tags=["capillary", "example"],
) as dag:

    @task
    def plan_chunks(catalogue: str = CATALOGUE, chunks: int = CHUNKS) -> list[dict[str, Any]]:
        """List the catalogue (at run time, not at parse) and split it into chunks by name."""
        root = ObjectStoragePath(catalogue)
        names = sorted(
            path.name
            for path in root.iterdir()
            if path.is_file() and Path(path.name).suffix.lower() in IMAGE_SUFFIXES
        )
        members: dict[int, list[str]] = {}
        for name in names:
            members.setdefault(chunk_of(name, chunks), []).append(_join(catalogue, name))
        plan = [
            {"source": files, "manifest": _join(MANIFESTS, f"chunk-{index:02d}-of-{chunks:02d}.json")}
            for index, files in sorted(members.items())
        ]
        log.info("%d images in %d chunks (of %d)", len(names), len(plan), chunks)
        return plan

    upload_chunk = UploadImageOperator.partial(
        task_id="upload_chunk",
        pool=POOL,
        rate_limit_per_minute=KEY_RATE_LIMIT / POOL_SLOTS,  # the key's limit, shared by the pool
        max_workers=4,
        manifest_checkpoint_uploads=25,  # a task killed mid-chunk re-uploads at most this many
        retries=2,  # a task whose worker died runs again elsewhere; its manifest skips what is done
        retry_delay=pendulum.duration(seconds=10),
    ).expand_kwargs(plan_chunks())

    verify_catalogue = CapillaryFileSensor(
        task_id="verify_catalogue",
        files=upload_chunk.output,  # every chunk's records; unchanged ones pass without a request
        check="size",
        deferrable=True,
        poke_interval=10,
        timeout=30 * 60,
    )

    @task
    def publish_catalogue(verified: list[dict[str, Any]], ds: str | None = None) -> str:
        """Write the whole catalogue's payload: every image's handle, changed or not."""
        rewards = sorted(
            ({"name": r["name"], "file_handle": r["file_handle"], "version": r["version"]} for r in verified),
            key=lambda r: r["name"],
        )
        path = Path(PAYLOAD_DIR) / f"reward-catalogue-fanout-{ds}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"date": ds, "rewards": rewards}, indent=2))
        log.info("reward catalogue: %d images in %s", len(rewards), path)
        return str(path)

    publish_catalogue(verify_catalogue.output)
# [END howto_capillary_catalogue_fanout]
