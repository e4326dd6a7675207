"""UploadImageOperator with the real hook against the emulator over loopback sockets."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from airflow.sdk import DAG, Asset, ObjectStoragePath, task
from capillary_emulator import CapillaryEmulator, Fault

from airflow_capillary.exceptions import (
    CapillaryBatchError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    FailedUpload,
)
from airflow_capillary.links import CapillaryImageLink
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.images import write_images

pytestmark = pytest.mark.integration

NAMES = ["a.png", "b.jpg", "c.webp"]

#: Keys of a record: UploadedFile.to_dict() plus source.
RECORD_KEYS = {
    "name", "namespace", "version", "latest_version", "acl", "file_size", "file_handle", "content_type",
    "s3_token", "s3_url", "last_modified", "secure_file_path", "code", "status", "message", "sent_size",
    "sha256", "secure_url_refused", "source",
}  # fmt: skip


@pytest.fixture
def images(tmp_path: Path) -> Path:
    write_images(tmp_path / "catalogue", [*NAMES, "notes.txt", "sub/d.png"])
    return tmp_path / "catalogue"


def run(op: UploadImageOperator, context: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Execute like the task runner: render templates, execute; return (result, pushed XComs)."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    context = context if context is not None else {}
    context.setdefault("ti", mock.MagicMock(name="ti"))
    context.setdefault("outlet_events", OutletEventAccessors())
    op.render_template_fields(context)  # type: ignore[arg-type]
    try:
        result = op.execute(context)  # type: ignore[arg-type]
    finally:
        calls = context["ti"].xcom_push.call_args_list
        context["pushed"] = {c.kwargs["key"]: c.kwargs["value"] for c in calls}
    return result, context["pushed"]


def check_against_emulator(emu: CapillaryEmulator, record: dict[str, Any], path: Path) -> None:
    """The record describes what the emulator stored, and its secure URL serves the bytes."""
    data = path.read_bytes()
    stored = [f for f in emu.stored_files() if f["file_handle"] == record["file_handle"]]
    assert len(stored) == 1
    assert set(record) == RECORD_KEYS
    assert (record["name"], record["namespace"], record["version"]) == (
        stored[0]["name"],
        stored[0]["namespace"],
        stored[0]["version"],
    )
    assert record["file_size"] == record["sent_size"] == stored[0]["size"] == len(data)
    assert record["sha256"] == stored[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["s3_token"] == stored[0]["s3_token"]
    assert (record["code"], record["status"], record["acl"]) == (200, True, "PRIVATE")
    if record["secure_file_path"] is not None:
        response = requests.get(record["secure_file_path"], timeout=10)
        assert response.status_code == 200
        assert response.content == data


def test_single_file(capillary_conn: CapillaryEmulator, images: Path) -> None:
    op = UploadImageOperator(task_id="up", source=str(images / "a.png"))
    result, pushed = run(op)
    assert isinstance(result, dict)
    assert result["source"] == str(images / "a.png")
    assert (result["name"], result["namespace"], result["content_type"]) == ("a.png", "rewards", "image/png")
    check_against_emulator(capillary_conn, result, images / "a.png")
    assert pushed == {"uploaded": [result], "file_handles": {"a.png": result["file_handle"]}}
    assert CapillaryImageLink().get_link(op, ti_key=None) == result["secure_file_path"]
    assert result["secure_file_path"].startswith(f"{capillary_conn.base_url}/_s3/")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{d}/*.*", NAMES),
        ("{d}/**/*.png", ["a.png", "sub/d.png"]),
        ("{d}", NAMES),
        (["{d}/c.webp", "{d}/sub", "{d}/a.png"], ["a.png", "c.webp", "sub/d.png"]),
    ],
    ids=["glob", "recursive-glob", "folder", "list"],
)
def test_batches(capillary_conn: CapillaryEmulator, images: Path, source: Any, expected: list[str]) -> None:
    source = [s.format(d=images) for s in source] if isinstance(source, list) else source.format(d=images)
    op = UploadImageOperator(task_id="up", source=source, max_workers=4)
    result, pushed = run(op)
    assert [r["source"] for r in result] == [str(images / n) for n in expected]
    for record, name in zip(result, expected, strict=True):
        check_against_emulator(capillary_conn, record, images / name)
    assert pushed["uploaded"] == result
    assert pushed["file_handles"] == {r["name"]: r["file_handle"] for r in result}
    assert sorted(f["name"] for f in capillary_conn.stored_files()) == sorted(Path(n).name for n in expected)
    assert CapillaryImageLink().get_link(op, ti_key=None) == ""


def test_file_uri_and_object_storage_path(capillary_conn: CapillaryEmulator, images: Path) -> None:
    single, _ = run(UploadImageOperator(task_id="one", source=f"file://{images}/b.jpg"))
    assert single["source"] == f"file://{images}/b.jpg"
    check_against_emulator(capillary_conn, single, images / "b.jpg")
    batch, _ = run(UploadImageOperator(task_id="many", source=ObjectStoragePath(f"file://{images}")))
    assert [r["source"] for r in batch] == [f"file://{images}/{n}" for n in NAMES]
    for record, name in zip(batch, NAMES, strict=True):
        check_against_emulator(capillary_conn, record, images / name)


def test_renamed(capillary_conn: CapillaryEmulator, images: Path) -> None:
    single, _ = run(
        UploadImageOperator(task_id="one", source=str(images / "a.png"), file_name="hero banner.png")
    )
    assert single["name"] == "hero banner.png"
    assert [f["name"] for f in capillary_conn.stored_files()] == ["hero banner.png"]
    batch, pushed = run(
        UploadImageOperator(
            task_id="many", source=f"{images}/*.*", name_prefix="diwali-", rename=lambda n: n.upper()
        )
    )
    assert [r["name"] for r in batch] == ["diwali-A.PNG", "diwali-B.JPG", "diwali-C.WEBP"]
    assert set(pushed["file_handles"]) == {"diwali-A.PNG", "diwali-B.JPG", "diwali-C.WEBP"}


def test_partial_failure_keeps_the_successes(capillary_conn: CapillaryEmulator, images: Path) -> None:
    capillary_emulator = capillary_conn
    # One worker: the uploads go in source order, so a.png meets the 400 and b.jpg the 503 (without
    # Retry-After: a 503 with one is a rate limit the hook waits out, issue 14).
    capillary_emulator.push_faults([Fault(status=400), Fault(status=503, headers={})])
    context: dict[str, Any] = {}
    op = UploadImageOperator(task_id="up", source=str(images), max_workers=1, max_retries=0)
    with pytest.raises(CapillaryBatchError, match=r"^2 of 3 files failed to upload \(1 uploaded") as info:
        run(op, context)
    uploaded = context["pushed"]["uploaded"]
    assert [r["name"] for r in uploaded] == ["c.webp"]
    check_against_emulator(capillary_emulator, uploaded[0], images / "c.webp")
    assert context["pushed"]["file_handles"] == {"c.webp": uploaded[0]["file_handle"]}
    failures = info.value.failures
    assert [(f.source, f.file_name) for f in failures] == [
        (str(images / "a.png"), "a.png"),
        (str(images / "b.jpg"), "b.jpg"),
    ]
    assert failures[0].error.startswith("CapillaryRequestRejectedError: ")
    assert "400" in failures[0].error
    assert failures[1].error.startswith("CapillaryServiceUnavailableError: ")
    assert "503" in failures[1].error
    for failure in failures:
        assert failure.source in str(info.value)
    assert [f["name"] for f in capillary_emulator.stored_files()] == ["c.webp"]
    assert all(isinstance(f, FailedUpload) for f in failures)


def test_single_file_failure_is_the_hooks_error(capillary_conn: CapillaryEmulator, images: Path) -> None:
    capillary_conn.push_fault(Fault(status=413))
    context: dict[str, Any] = {}
    with pytest.raises(CapillaryRequestRejectedError, match=r"a\.png"):
        run(UploadImageOperator(task_id="up", source=str(images / "a.png")), context)
    assert context["pushed"] == {"uploaded": [], "file_handles": {}}


def test_invalid_content_fails_before_any_upload(capillary_conn: CapillaryEmulator, images: Path) -> None:
    (images / "fake.png").write_bytes(b"GIF89a not a png")
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"1 of 4 files cannot be uploaded, so none was: \n  - .*/fake\.png: ",
    ):
        run(UploadImageOperator(task_id="up", source=str(images)))
    assert capillary_conn.stored_files() == []
    assert [r for r in capillary_conn.requests() if r["method"] == "POST"] == []


def test_template_rendering(capillary_conn: CapillaryEmulator, images: Path) -> None:
    op = UploadImageOperator(
        task_id="up",
        source="{{ params.folder }}/*.png",
        namespace="{{ params.ns }}",
        name_prefix="{{ ds }}-",
        capillary_conn_id="{{ params.conn }}",
    )
    context = {
        "params": {"folder": str(images), "ns": "promo", "conn": "capillary_default"},
        "ds": "2026-11-26",
    }
    result, _ = run(op, context)
    assert (op.source, op.namespace, op.name_prefix) == (f"{images}/*.png", "promo", "2026-11-26-")
    assert [(r["name"], r["namespace"]) for r in result] == [("2026-11-26-a.png", "promo")]
    assert capillary_conn.stored_files()[0]["namespace"] == "promo"


def test_xcomarg_source(capillary_conn: CapillaryEmulator, images: Path) -> None:
    with DAG("xcomarg_source", schedule=None):

        @task
        def list_images() -> list[str]:
            return []

        op = UploadImageOperator(task_id="up", source=list_images())
    ti = mock.MagicMock(name="ti")
    ti.xcom_pull.return_value = [str(images / "b.jpg"), str(images / "a.png")]
    result, _ = run(op, {"ti": ti})
    assert [r["name"] for r in result] == ["a.png", "b.jpg"]


def test_mapped_expand_and_expand_kwargs(capillary_conn: CapillaryEmulator, images: Path) -> None:
    with DAG("mapped", schedule=None):
        by_source = UploadImageOperator.partial(task_id="by_source", name_prefix="m-").expand(
            source=[str(images / "a.png"), f"{images}/*.webp"]
        )
        by_kwargs = UploadImageOperator.partial(task_id="by_kwargs").expand_kwargs(
            [
                {"source": str(images / "a.png"), "file_name": "first.png"},
                {"source": str(images / "b.jpg"), "namespace": "promo"},
            ]
        )
    first, _ = run(by_source.unmap({"source": str(images / "a.png")}))  # type: ignore[arg-type]
    second, _ = run(by_source.unmap({"source": f"{images}/*.webp"}))  # type: ignore[arg-type]
    assert first["name"] == "m-a.png"
    assert [r["name"] for r in second] == ["m-c.webp"]
    third, _ = run(by_kwargs.unmap({"source": str(images / "a.png"), "file_name": "first.png"}))  # type: ignore[arg-type]
    fourth, _ = run(by_kwargs.unmap({"source": str(images / "b.jpg"), "namespace": "promo"}))  # type: ignore[arg-type]
    assert (third["name"], third["namespace"]) == ("first.png", "rewards")
    assert (fourth["name"], fourth["namespace"]) == ("b.jpg", "promo")


def test_asset_event_extra(capillary_conn: CapillaryEmulator, images: Path) -> None:
    asset = Asset("capillary_reward_catalogue")
    context: dict[str, Any] = {}
    result, _ = run(UploadImageOperator(task_id="up", source=f"{images}/*.*", outlets=[asset]), context)
    assert context["outlet_events"][asset].extra == {
        "capillary_conn_id": "capillary_default",
        "count": 3,
        "total_bytes": sum((images / n).stat().st_size for n in NAMES),
        "files": [
            {"name": r["name"], "namespace": "rewards", "file_handle": r["file_handle"], "version": 1}
            for r in result
        ],
    }


def test_without_secure_url_the_link_is_the_s3_url(capillary_conn: CapillaryEmulator, images: Path) -> None:
    op = UploadImageOperator(task_id="up", source=str(images / "a.png"), include_secure_url=False)
    result, pushed = run(op)
    assert result["secure_file_path"] is None
    assert pushed["uploaded"][0]["secure_file_path"] is None
    assert CapillaryImageLink().get_link(op, ti_key=None) == result["s3_url"]
    assert result["s3_url"].startswith("s3://")
