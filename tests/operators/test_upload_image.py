"""Unit tests of UploadImageOperator with a fake hook: exact calls, XCom values, errors and logs."""

from __future__ import annotations

import logging
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset, ObjectStoragePath

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryBatchError,
    CapillaryConfigError,
    CapillaryInvalidInputError,
    FailedUpload,
)
from airflow_capillary.links import CapillaryImageLink
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.fakes import (
    NAMES,
    FakeHook,
    make_context,
    messages,
    pushed,
    record,
    secure_url,
    unavailable,
)
from tests.operators.images import write_images


def test_single_file_returns_one_record_and_pushes_handles(images: Path, fake_hook: FakeHook) -> None:
    op = UploadImageOperator(task_id="up", source=str(images / "a.png"))
    context = make_context()
    result = op.execute(context)
    expected = record(images / "a.png")
    assert result == expected
    assert result["secure_file_path"] == secure_url("a.png")
    assert result["last_modified"] == "2026-11-26T04:10:59+00:00"
    assert pushed(context) == {"uploaded": [expected], "file_handles": {"a.png": "handle-a.png"}}
    assert fake_hook.prepared == [
        (images / "a.png", {"file_name": "a.png", "namespace": None, "content_type": None})
    ]
    assert fake_hook.uploads == ["a.png"]
    assert CapillaryImageLink().get_link(op, ti_key=context["ti"]) == secure_url("a.png")


def test_single_file_renamed_without_secure_url_links_to_s3_url(images: Path, fake_hook: FakeHook) -> None:
    op = UploadImageOperator(
        task_id="up",
        source=images / "b.jpg",
        file_name="hero.jpg",
        include_secure_url=False,
        content_type="image/jpeg",
    )
    context = make_context()
    result = op.execute(context)
    assert result == record(images / "b.jpg", "hero.jpg", secure=False)
    assert result["secure_file_path"] is None
    assert fake_hook.prepared == [
        (images / "b.jpg", {"file_name": "hero.jpg", "namespace": None, "content_type": "image/jpeg"})
    ]
    assert CapillaryImageLink().get_link(op, ti_key=None) == "s3://bucket/rewards/100/hero.jpg"


@pytest.mark.parametrize(
    "source",
    ["{d}", "{d}/*", "{d}/[abc].*", ["{d}/c.webp", "{d}/a.png", "{d}/b.jpg"], ["{d}/*.png", "{d}"]],
    ids=["folder", "glob", "glob-class", "list", "overlapping-list"],
)
def test_batch_returns_records_sorted_by_source(images: Path, fake_hook: FakeHook, source: Any) -> None:
    source = [s.format(d=images) for s in source] if isinstance(source, list) else source.format(d=images)
    op = UploadImageOperator(task_id="up", source=source, max_workers=2)
    context = make_context()
    result = op.execute(context)
    expected = [record(images / n) for n in NAMES]
    assert result == expected
    assert pushed(context) == {
        "uploaded": expected,
        "file_handles": {n: f"handle-{n}" for n in NAMES},
    }
    assert sorted(fake_hook.uploads) == NAMES
    assert CapillaryImageLink().get_link(op, ti_key=None) == ""


def test_name_prefix_and_rename(images: Path, fake_hook: FakeHook) -> None:
    op = UploadImageOperator(
        task_id="up", source=f"{images}/*.png", name_prefix="diwali-", rename=lambda n: n.upper()
    )
    result = op.execute(make_context())
    assert isinstance(result, list)
    assert [r["name"] for r in result] == ["diwali-A.PNG"]
    assert fake_hook.prepared[0][1]["file_name"] == "diwali-A.PNG"


def test_skipped_non_images_are_one_log_line(
    images: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    UploadImageOperator(task_id="up", source=str(images), progress_interval=0).execute(make_context())
    skipped = [m for m in messages(oplog) if "non-image" in m]
    assert skipped == [f"Skipped 1 non-image file(s): {images / 'readme.txt'}"]


def test_one_debug_line_per_file_and_a_summary_with_no_secure_url(
    images: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    op = UploadImageOperator(task_id="up", source=str(images), max_workers=1)
    op.execute(make_context())
    lines = messages(oplog)
    per_file = [m for m in lines if m.startswith("Uploaded /")]
    assert per_file == [
        f"Uploaded {images / n} as rewards/{n} version 1 ({(images / n).stat().st_size} bytes), "
        f"handle handle-{n}"
        for n in NAMES
    ]
    assert lines[0] == "Skipped 1 non-image file(s): " + str(images / "readme.txt")
    assert lines[1] == "Uploading 3 files to namespace 'rewards' with 1 workers"
    assert lines[-1].startswith("Uploaded 3 of 3 files (137 B) in ")
    assert lines[-1].endswith("; 0 failed")
    assert len(lines) == 6
    levels = [(r.levelno, r.getMessage().startswith("Uploaded /")) for r in oplog.records]
    assert levels == [(logging.INFO, False)] * 2 + [(logging.DEBUG, True)] * 3 + [(logging.INFO, False)]
    assert not any("SESSIONTOKEN" in m or "X-Amz-Signature" in m for m in lines)


def test_single_file_link_line_is_redacted(
    images: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    UploadImageOperator(task_id="up", source=str(images / "a.png")).execute(make_context())
    lines = messages(oplog)
    assert lines == [
        f"Uploaded {images / 'a.png'} as rewards/a.png version 1 (69 bytes), handle handle-a.png",
        "Capillary image: https://bucket.s3.example/rewards/100/a.png?X-Amz-Security-Token=***"
        "&X-Amz-Expires=3600&X-Amz-Signature=***",
    ]
    text = "\n".join(lines)
    assert "SESSIONTOKEN" not in text
    assert "abcdef0123456789" not in text


def test_invalid_files_fail_before_any_upload(images: Path, mocker: Any) -> None:
    hook = FakeHook(invalid={"b.jpg": "b.jpg: content is not JPEG", "c.webp": "c.webp is empty"})
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    context = make_context()
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^2 of 3 files cannot be uploaded, so none was: \n  - .*/b\.jpg: CapillaryInvalidInputError: "
        r"b\.jpg: content is not JPEG\n  - .*/c\.webp: CapillaryInvalidInputError: c\.webp is empty$",
    ):
        UploadImageOperator(task_id="up", source=str(images)).execute(context)
    assert hook.uploads == []
    assert len(hook.prepared) == 3
    context["ti"].xcom_push.assert_not_called()


def test_single_invalid_file_raises_the_hooks_error(images: Path, mocker: Any) -> None:
    mocker.patch.object(UploadImageOperator, "hook", new=FakeHook(invalid={"a.png": "a.png: not a PNG"}))
    with pytest.raises(CapillaryInvalidInputError, match=r"^a\.png: not a PNG$"):
        UploadImageOperator(task_id="up", source=str(images / "a.png")).execute(make_context())


def test_partial_failure_pushes_successes_then_raises_one_batch_error(images: Path, mocker: Any) -> None:
    hook = FakeHook(
        failing={"a.png": unavailable("a.png"), "c.webp": CapillaryAuthError("credentials refused")}
    )
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    context = make_context()
    op = UploadImageOperator(task_id="up", source=str(images), capillary_conn_id="cap", namespace="rewards")
    with pytest.raises(CapillaryBatchError) as info:
        op.execute(context)
    assert sorted(hook.uploads) == NAMES  # every file attempted
    assert pushed(context) == {
        "uploaded": [record(images / "b.jpg")],
        "file_handles": {"b.jpg": "handle-b.jpg"},
    }
    error = info.value
    assert str(error) == (
        "2 of 3 files failed to upload (1 uploaded, their records are in XCom 'uploaded'): \n"
        f"  - {images / 'a.png'}: CapillaryServiceUnavailableError: uploading a.png to namespace rewards "
        "(connection capillary_default): HTTP 503 after 6 attempts\n"
        f"  - {images / 'c.webp'}: CapillaryAuthError: credentials refused"
    )
    assert error.failures == (
        FailedUpload(
            str(images / "a.png"),
            "a.png",
            "CapillaryServiceUnavailableError: uploading a.png to namespace rewards "
            "(connection capillary_default): HTTP 503 after 6 attempts",
        ),
        FailedUpload(str(images / "c.webp"), "c.webp", "CapillaryAuthError: credentials refused"),
    )
    assert (error.uploaded_count, error.conn_id, error.namespace) == (1, "cap", "rewards")
    assert pickle.loads(pickle.dumps(error)).failures == error.failures
    assert CapillaryImageLink().get_link(op, ti_key=None) == ""


def test_single_file_failure_raises_the_hooks_error_after_pushing_empty(images: Path, mocker: Any) -> None:
    error = unavailable("a.png")
    mocker.patch.object(UploadImageOperator, "hook", new=FakeHook(failing={"a.png": error}))
    context = make_context()
    with pytest.raises(type(error)) as info:
        UploadImageOperator(task_id="up", source=str(images / "a.png")).execute(context)
    assert info.value is error
    assert pushed(context) == {"uploaded": [], "file_handles": {}}


def test_failure_list_is_capped_in_the_message(tmp_path: Path, mocker: Any) -> None:
    names = [f"img{i:03d}.png" for i in range(60)]
    write_images(tmp_path, names)
    mocker.patch.object(
        UploadImageOperator, "hook", new=FakeHook(failing={n: RuntimeError("boom") for n in names})
    )
    with pytest.raises(
        CapillaryBatchError, match=r"img049\.png: RuntimeError: boom\n  - \.\.\. and 10 more$"
    ) as info:
        UploadImageOperator(task_id="up", source=str(tmp_path), progress_interval=0).execute(make_context())
    assert len(info.value.failures) == 60


def test_empty_source(tmp_path: Path, fake_hook: FakeHook) -> None:
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^source '.*/\*\.png' matched no image \(set allow_empty_source=True to allow this\)$",
    ):
        UploadImageOperator(task_id="up", source=f"{tmp_path}/*.png").execute(make_context())
    context = make_context()
    result = UploadImageOperator(task_id="up", source=str(tmp_path), allow_empty_source=True).execute(context)
    assert result == []
    assert pushed(context) == {"uploaded": [], "file_handles": {}}
    assert fake_hook.prepared == []


def test_duplicate_names_fail_before_preparation(tmp_path: Path, fake_hook: FakeHook) -> None:
    write_images(tmp_path, ["x/a.png", "y/a.png"])
    with pytest.raises(CapillaryInvalidInputError, match=r"'a\.png' <- .*/x/a\.png, .*/y/a\.png"):
        UploadImageOperator(task_id="up", source=f"{tmp_path}/**/*.png").execute(make_context())
    assert fake_hook.prepared == []


def test_asset_event_extra_carries_the_summary(images: Path, fake_hook: FakeHook) -> None:
    asset = Asset("reward_catalogue")
    op = UploadImageOperator(task_id="up", source=f"{images}/*.png", outlets=[asset])
    context = make_context()
    op.execute(context)
    assert context["outlet_events"][asset].extra == {
        "capillary_conn_id": "capillary_default",
        "count": 1,
        "total_bytes": (images / "a.png").stat().st_size,
        "files": [{"name": "a.png", "namespace": "rewards", "file_handle": "handle-a.png", "version": 1}],
    }


def test_task_policy_arguments_reach_the_hook_when_given(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def build(*args: Any, **kwargs: Any) -> FakeHook:
        built.append((args, kwargs))
        return FakeHook()

    monkeypatch.setattr("airflow_capillary.hooks.file_service.CapillaryFileHook", build)
    policy: dict[str, Any] = {
        "timeout": (3.0, 30.0),
        "rate_limit_per_minute": 100.0,
        "max_retries": 0,
        "retry_min_wait": 0.5,
        "retry_max_wait": 2.0,
        "retry_after_max": 10.0,
        "retry_on_500": True,
        "retry_integrity_errors": False,
        "check_content": False,
        "allow_empty": True,
        "max_file_size": 1024,
    }
    op = UploadImageOperator(task_id="up", source=str(images), namespace="promo", max_workers=3, **policy)
    assert {name: getattr(op, name) for name in policy} == policy
    op.execute(make_context())
    assert built == [(("capillary_default",), {"namespace": "promo", "max_connections": 3, **policy})]
    built.clear()
    UploadImageOperator(task_id="up", source=str(images), max_retries=2).execute(make_context())
    assert built == [(("capillary_default",), {"namespace": None, "max_connections": 8, "max_retries": 2})]


def test_a_connection_error_is_raised_once_before_any_file_is_prepared(images: Path, mocker: Any) -> None:
    class BrokenHook(FakeHook):
        @property
        def config(self) -> Any:
            raise CapillaryConfigError(
                "connection 'capillary_default': extra 'max_retries' moved to the task"
            )

        @config.setter
        def config(self, value: Any) -> None:
            pass

    hook = BrokenHook()
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    with pytest.raises(
        CapillaryConfigError, match=r"^connection 'capillary_default': extra 'max_retries' moved"
    ):
        UploadImageOperator(task_id="up", source=str(images)).execute(make_context())
    assert (hook.prepared, hook.uploads) == ([], [])


def test_local_files_are_validated_in_the_task_thread_object_storage_in_the_pool(
    images: Path, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    original = fake_hook.prepare_upload

    def prepare(source: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(source, **kwargs)

    monkeypatch.setattr(fake_hook, "prepare_upload", prepare)
    UploadImageOperator(task_id="up", source=str(images)).execute(make_context())
    assert threads == [threading.current_thread().name] * 3
    threads.clear()
    UploadImageOperator(task_id="up", source=ObjectStoragePath(f"file://{images}")).execute(make_context())
    assert len(threads) == 3
    assert all(name.startswith("capillary-upload") for name in threads)
