"""Catalogue sync with ``s3://`` sources and an ``s3://`` manifest, against a real S3 API on loopback.

The S3 API is moto's server mode on 127.0.0.1 (``tests/s3.py``); the provider reaches it through
``ObjectStoragePath`` and an ``aws`` connection with an ``endpoint_url``, nothing patched. The
uploads go to the emulator, which counts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from capillary_emulator import CapillaryEmulator

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.operators._manifest import HASH_CHUNK_BYTES, file_digest
from airflow_capillary.operators._manifest_document import decode, encode
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.integration.test_operator_emulator import run
from tests.integration.test_sync_emulator import refusal, upload_count, versions
from tests.operators.images import png_bytes
from tests.s3 import MotoS3Server, S3Bucket, moto_s3, s3_bucket  # noqa: F401 - the fixtures

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"reward-{i:02d}.png" for i in range(20)]


@pytest.fixture
def catalogue(s3_bucket: S3Bucket) -> S3Bucket:  # noqa: F811 - the imported fixture
    """20 PNG images under ``catalogue/`` (and a text file the glob must not match)."""
    for seed, name in enumerate(NAMES):
        s3_bucket.put(f"catalogue/{name}", png_bytes(width=8, height=8, seed=seed))
    s3_bucket.put("catalogue/readme.txt", b"not an image")
    return s3_bucket


def sync(bucket: S3Bucket, manifest: str) -> list[dict]:
    op = UploadImageOperator(
        task_id="sync", source=bucket.uri("catalogue/*.png"), manifest=manifest, max_workers=4
    )
    result, _ = run(op)
    assert isinstance(result, list)
    return result


def test_an_s3_glob_uploads_all_then_nothing_then_the_changed_object(
    capillary_conn: CapillaryEmulator, catalogue: S3Bucket
) -> None:
    manifest = catalogue.uri("capillary/rewards.json")
    first = sync(catalogue, manifest)
    assert upload_count(capillary_conn) == 20
    assert [(r["name"], r["action"], r["source"]) for r in first] == [
        (name, "new", catalogue.uri(f"catalogue/{name}")) for name in NAMES
    ]
    stored = {f["name"]: f["sha256"] for f in capillary_conn.stored_files()}
    assert stored == {name: hashlib.sha256(catalogue.get(f"catalogue/{name}")).hexdigest() for name in NAMES}

    second = sync(catalogue, manifest)
    assert upload_count(capillary_conn) == 20  # the second run uploads nothing
    assert [r["action"] for r in second] == ["unchanged"] * 20
    assert [r["file_handle"] for r in second] == [r["file_handle"] for r in first]

    catalogue.put("catalogue/reward-07.png", png_bytes(width=8, height=8, seed=99))
    third = sync(catalogue, manifest)
    assert upload_count(capillary_conn) == 21
    assert [(r["name"], r["action"], r["version"]) for r in third if r["action"] != "unchanged"] == [
        ("reward-07.png", "changed", 2)
    ]
    assert versions(capillary_conn)["reward-07.png"] == [1, 2]
    assert (
        capillary_conn.stored_files()[-1]["sha256"]
        == hashlib.sha256(catalogue.get("catalogue/reward-07.png")).hexdigest()
    )


def test_the_manifest_round_trips_on_s3(
    capillary_conn: CapillaryEmulator, catalogue: S3Bucket, tmp_path: Path
) -> None:
    sync(catalogue, catalogue.uri("capillary/rewards.json"))
    data = catalogue.get("capillary/rewards.json")
    entries = decode(data, "s3 manifest")
    assert sorted(entries) == [f"rewards/{name}" for name in NAMES]
    assert encode(entries) == data  # the stable form, byte for byte
    assert data.endswith(b"}\n")
    assert b"X-Amz" not in data
    assert json.loads(data)["format"] == 1
    assert catalogue.keys("capillary/") == ["capillary/rewards.json"]  # one object, no lock or temp files
    # The same document as a local file makes the same decisions: nothing to upload.
    local = tmp_path / "rewards.json"
    local.write_bytes(data)
    assert [r["action"] for r in sync(catalogue, str(local))] == ["unchanged"] * 20
    assert upload_count(capillary_conn) == 20
    # And a manifest given as an ObjectStoragePath reads the same object.
    op = UploadImageOperator(
        task_id="sync",
        source=catalogue.uri("catalogue/*.png"),
        manifest=ObjectStoragePath(catalogue.uri("capillary/rewards.json")),
    )
    result, _ = run(op)
    assert [r["action"] for r in result] == ["unchanged"] * 20
    assert upload_count(capillary_conn) == 20


def test_a_first_run_creates_the_s3_manifest_before_any_upload(
    capillary_conn: CapillaryEmulator, catalogue: S3Bucket
) -> None:
    capillary_conn.push_faults([])  # nothing special: look at the manifest when the first upload arrives
    seen: list[list[str]] = []
    original = UploadImageOperator._upload_all

    def upload_all(self: UploadImageOperator, *args: object, **kwargs: object) -> object:
        seen.append(catalogue.keys("capillary/"))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(UploadImageOperator, "_upload_all", upload_all)
        sync(catalogue, catalogue.uri("capillary/rewards.json"))
    assert seen == [["capillary/rewards.json"]]


def test_a_manifest_in_a_missing_bucket_fails_before_any_request(
    capillary_conn: CapillaryEmulator, catalogue: S3Bucket
) -> None:
    manifest = f"s3://aws_moto@no-such-bucket-{catalogue.name}/rewards.json"
    with pytest.raises(CapillaryInvalidInputError) as info:
        sync(catalogue, manifest)
    assert str(info.value) == refusal(
        manifest, "cannot be written (FileNotFoundError: The specified bucket does not exist)"
    )
    assert capillary_conn.requests() == []


def test_a_corrupt_s3_manifest_fails_before_any_request(
    capillary_conn: CapillaryEmulator, catalogue: S3Bucket
) -> None:
    catalogue.put("capillary/rewards.json", b'{"format": 1, "entries": {"rewards/reward-00.png": ')
    manifest = catalogue.uri("capillary/rewards.json")
    with pytest.raises(CapillaryInvalidInputError) as info:
        sync(catalogue, manifest)
    assert str(info.value) == refusal(
        manifest, "is not valid JSON: truncated or corrupt (Expecting value: line 1 column 52)"
    )
    assert capillary_conn.requests() == []
    assert catalogue.get("capillary/rewards.json") == b'{"format": 1, "entries": {"rewards/reward-00.png": '


def _child_hash(*uris: str) -> None:  # pragma: no cover - runs in the child
    """Hash each object URI twice (the first warms the file system, client and code up); print the
    digests and the peak of memory allocated while hashing each the second time."""
    report = []
    for uri in uris:
        file_digest(ObjectStoragePath(uri))
        tracemalloc.start()
        digest = file_digest(ObjectStoragePath(uri))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        report.append({"digest": digest, "peak": peak})
    print(json.dumps(report))


def test_hashing_an_s3_object_streams_with_flat_memory(
    moto_s3: MotoS3Server,  # noqa: F811 - the imported fixture
    s3_bucket: S3Bucket,  # noqa: F811
) -> None:
    # In a child process: moto serves from this one, and its buffers would be counted here.
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    objects = {"big/small.png": block * 4, "big/banner.png": block * 64 + b"tail"}  # 4 MiB, 64 MiB
    for key, data in objects.items():
        s3_bucket.put(key, data)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "AIRFLOW_CONN_AWS_MOTO": moto_s3.connection_json()}
    command = [sys.executable, "-m", "tests.integration.test_sync_s3", *map(s3_bucket.uri, objects)]
    child = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    small, big = json.loads(child.stdout.strip().splitlines()[-1])
    assert [small["digest"], big["digest"]] == [
        [hashlib.sha256(data).hexdigest(), len(data)] for data in objects.values()
    ]
    # Flat: 16 times the bytes cost no more memory (s3fs reads 1 MiB blocks ahead; measured ~7 MiB
    # of buffers in all, whatever the size), and far less than the 64 MiB object.
    assert big["peak"] - small["peak"] < HASH_CHUNK_BYTES
    assert big["peak"] < 12 * HASH_CHUNK_BYTES


if __name__ == "__main__":
    _child_hash(*sys.argv[1:])
