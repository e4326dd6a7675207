"""Kills mutmut survivors of operators/upload_image.py: error attributes, log lines, progress, manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from airflow_capillary.exceptions import (
    CapillaryBatchError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
)
from airflow_capillary.operators import upload_image
from airflow_capillary.operators._arguments import as_bool
from airflow_capillary.operators._pool import BoundedPool
from airflow_capillary.operators._progress import UploadProgress
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.fakes import NAMES, FakeHook, make_context, messages, pushed, record


def test_the_default_progress_interval_is_thirty_seconds() -> None:
    assert UploadImageOperator(task_id="up", source="/x.png").progress_interval == 30.0


def test_an_empty_source_error_names_the_connection_and_namespace(
    tmp_path: Path, fake_hook: FakeHook
) -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        UploadImageOperator(
            task_id="up", source=f"{tmp_path}/*.png", capillary_conn_id="cap", namespace="ns"
        ).execute(make_context())
    assert (info.value.conn_id, info.value.namespace) == ("cap", "ns")


def test_an_allowed_empty_source_is_one_log_line(
    tmp_path: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    source = f"{tmp_path}/*.png"
    UploadImageOperator(task_id="up", source=source, allow_empty_source=True).execute(make_context())
    assert messages(oplog) == [f"Source {source!r} matched no image: nothing to upload"]


def test_invalid_files_of_a_batch_name_the_connection_and_namespace(images: Path, mocker: Any) -> None:
    mocker.patch.object(UploadImageOperator, "hook", new=FakeHook(invalid={"b.jpg": "bad"}))
    with pytest.raises(CapillaryInvalidInputError) as info:
        UploadImageOperator(
            task_id="up", source=str(images), capillary_conn_id="cap", namespace="ns"
        ).execute(make_context())
    assert (info.value.conn_id, info.value.namespace) == ("cap", "ns")


def test_a_kill_while_validating_uploads_nothing(images: Path, fake_hook: FakeHook) -> None:
    op = UploadImageOperator(task_id="up", source=str(images), capillary_conn_id="cap", namespace="ns")
    prepare = fake_hook.prepare_upload

    def prepare_then_kill(source: Any, **kwargs: Any) -> Any:
        op.on_kill()
        return prepare(source, **kwargs)

    fake_hook.prepare_upload = prepare_then_kill  # type: ignore[method-assign]
    with pytest.raises(CapillaryError) as info:
        op.execute(make_context())
    assert type(info.value) is CapillaryError
    assert str(info.value) == "upload stopped (on_kill) while validating the files: nothing was uploaded"
    assert (info.value.conn_id, info.value.namespace) == ("cap", "ns")
    assert fake_hook.uploads == []


def test_on_kill_stops_the_pool_and_saves_the_manifest_without_waiting(
    fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    op = UploadImageOperator(task_id="up", source="/x.png")
    op.on_kill()  # nothing started: nothing to stop
    assert messages(oplog) == []
    pool, manifest = BoundedPool(1), mock.Mock()
    op._pool, op._manifest = pool, manifest
    op.on_kill()
    assert pool.stopped
    assert messages(oplog) == ["Stopping: pending uploads are cancelled"]
    assert manifest.mock_calls == [mock.call.save(raise_errors=False, wait=False)]


def test_two_files_are_a_batch(images: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture) -> None:
    UploadImageOperator(task_id="up", source=[str(images / "a.png"), str(images / "b.jpg")]).execute(
        make_context()
    )
    lines = messages(oplog)
    assert lines[0] == "Uploading 2 files to namespace 'rewards' with 2 workers"
    assert lines[-1].startswith("Uploaded 2 of 2 files (")
    assert lines[-1].endswith("; 0 failed")


def test_progress_is_built_for_the_batch(images: Path, fake_hook: FakeHook, mocker: Any) -> None:
    built: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> UploadProgress:
        built.append(kwargs)
        return UploadProgress(**kwargs)

    mocker.patch.object(upload_image, "UploadProgress", side_effect=spy)
    UploadImageOperator(task_id="up", source=str(images / "a.png"), progress_interval=45).execute(
        make_context()
    )
    UploadImageOperator(task_id="up", source=str(images), progress_interval=45).execute(make_context())
    sizes = {n: (images / n).stat().st_size for n in NAMES}
    assert [(b["total_files"], b["total_bytes"], b["interval"], b["unchanged"]) for b in built] == [
        (1, sizes["a.png"], 0, None),
        (3, sum(sizes.values()), 45, None),
    ]


def test_a_failed_upload_is_one_warning(images: Path, mocker: Any, oplog: pytest.LogCaptureFixture) -> None:
    mocker.patch.object(UploadImageOperator, "hook", new=FakeHook(failing={"b.jpg": RuntimeError("boom")}))
    with pytest.raises(CapillaryError):
        UploadImageOperator(task_id="up", source=str(images), progress_interval=0).execute(make_context())
    warnings = [r.getMessage() for r in oplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"Failed to upload {images / 'b.jpg'}: RuntimeError: boom"]


def manifest_operator(images: Path, mocker: Any, **kwargs: Any) -> tuple[UploadImageOperator, mock.Mock, Any]:
    manifest = mock.Mock(name="manifest")
    manifest.decide.return_value = "new"
    manifest.plan.return_value = {}
    opened = mocker.patch("airflow_capillary.operators._manifest.open_manifest", return_value=manifest)
    op = UploadImageOperator(
        task_id="up",
        source=str(images / "a.png"),
        manifest="/m/rewards.json",
        manifest_checkpoint_uploads=7,
        manifest_checkpoint_seconds=9.5,
        **kwargs,
    )
    return op, manifest, opened


def test_the_manifest_is_opened_planned_ticked_and_saved(
    images: Path, fake_hook: FakeHook, mocker: Any
) -> None:
    op, manifest, opened = manifest_operator(images, mocker, force_upload="true")
    assert op.execute(make_context()) == record(images / "a.png", action="new")
    opened.assert_called_once_with(
        "/m/rewards.json", checkpoint_uploads=7, checkpoint_seconds=9.5, log=op.log
    )
    [plan] = [c for c in manifest.mock_calls if c[0] == "plan"]
    assert plan == mock.call.plan([str(images / "a.png")], mock.ANY, ["new"], force=True)
    assert manifest.decide.call_args.kwargs == {"force": True}
    assert manifest.tick.called  # the pool's wait callback reaches the manifest's checkpoints
    assert [c for c in manifest.mock_calls if c[0] == "save"] == [mock.call.save(raise_errors=True)]


def test_a_failure_before_the_uploads_saves_the_manifest_without_raising(
    images: Path, fake_hook: FakeHook, mocker: Any
) -> None:
    op, manifest, _ = manifest_operator(images, mocker)
    manifest.plan.side_effect = OSError("disk full")
    with pytest.raises(OSError, match=r"^disk full$"):
        op.execute(make_context())
    assert [c for c in manifest.mock_calls if c[0] == "save"] == [mock.call.save(raise_errors=False)]
    assert fake_hook.uploads == []


def test_max_workers_up_to_the_limit_and_a_rendered_force_upload_that_is_not_text() -> None:
    assert UploadImageOperator(task_id="up", source="/x.png", max_workers=64).max_workers == 64
    with pytest.raises(CapillaryConfigError) as info:
        UploadImageOperator(task_id="up", source="/x.png", max_workers=65)
    assert str(info.value) == "max_workers must be from 1 to 64, got 65"
    assert (as_bool("1", "force_upload"), as_bool(" Off ", "force_upload")) == (True, False)
    with pytest.raises(CapillaryConfigError) as info:
        as_bool(1, "force_upload")  # a native template rendered an int
    assert str(info.value) == "force_upload must be a bool (or render to 'true' or 'false'), got 1"


def test_the_rate_limit_line_follows_the_summary(
    images: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    fake_hook.rate_limit_stats = SimpleNamespace(  # type: ignore[attr-defined]
        rate_limited=3, paused_seconds=0.0, waited_seconds=4.0, rate_per_minute=None
    )
    UploadImageOperator(task_id="up", source=str(images), progress_interval=0).execute(make_context())
    lines = messages(oplog)
    assert lines[-2].startswith("Uploaded 3 of 3 files (")
    assert lines[-1] == (
        "Rate limit: 3 answers of 429 (or 503 with Retry-After), 0.0s paused, 4.0s waited in all, "
        "rate now unpaced"
    )


def test_a_single_file_with_a_manifest_logs_the_summary(
    images: Path, fake_hook: FakeHook, mocker: Any, oplog: pytest.LogCaptureFixture
) -> None:
    op, _, _ = manifest_operator(images, mocker)
    op.execute(make_context())
    assert messages(oplog)[-2].startswith("1 uploaded (1 new, 0 changed), 0 unchanged, 0 failed; 69 B in ")


def test_a_single_file_whose_check_did_not_raise_an_exception_is_listed(
    images: Path, fake_hook: FakeHook, mocker: Any
) -> None:
    from airflow.sdk import ObjectStoragePath

    mocker.patch.object(fake_hook, "prepare_upload", side_effect=SystemExit(3))  # in a pool thread
    source = ObjectStoragePath(f"file://{images}/a.png")
    with pytest.raises(CapillaryInvalidInputError) as info:
        UploadImageOperator(task_id="up", source=source).execute(make_context())
    assert str(info.value) == (
        f"1 of 1 files cannot be uploaded, so none was: \n  - file://{images}/a.png: SystemExit: 3"
    )


def test_a_checkpoint_failure_still_pushes_the_unchanged_records(
    images: Path, mocker: Any, oplog: pytest.LogCaptureFixture
) -> None:
    hook = FakeHook(failing={"b.jpg": RuntimeError("boom")})
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    op, manifest, _ = manifest_operator(images, mocker)
    op.source = [str(images / "a.png"), str(images / "b.jpg")]
    manifest.decide.side_effect = ["unchanged", "new"]
    kept = {"name": "a.png", "file_handle": "handle-a.png"}
    manifest.plan.return_value = {0: kept}
    manifest.tick.side_effect = CapillaryError("checkpoint failed")
    context = make_context()
    with pytest.raises(CapillaryError, match=r"^checkpoint failed$"):
        op.execute(context)
    assert pushed(context) == {"uploaded": [], "file_handles": {"a.png": "handle-a.png"}}


def test_the_pools_waits_tick_the_progress(
    images: Path, fake_hook: FakeHook, mocker: Any, oplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]

    def clock() -> float:  # every reading is 100 s after the previous one
        now[0] += 100.0
        return now[0]

    mocker.patch.object(
        upload_image, "UploadProgress", side_effect=lambda **kw: UploadProgress(**kw, clock=clock)
    )
    UploadImageOperator(task_id="up", source=str(images), max_workers=1, progress_interval=1).execute(
        make_context()
    )
    first = [m for m in messages(oplog) if m.startswith("Progress: 1/3 files (0 failed)")]
    assert len(first) >= 2  # the advance's line, then the wait callback's after it


def test_a_single_file_whose_upload_did_not_raise_an_exception_is_a_batch_error(
    images: Path, fake_hook: FakeHook, mocker: Any
) -> None:
    mocker.patch.object(fake_hook, "upload", side_effect=SystemExit(3))  # in a pool thread
    with pytest.raises(CapillaryBatchError) as info:
        UploadImageOperator(task_id="up", source=str(images / "a.png")).execute(make_context())
    assert str(info.value) == (
        "1 of 1 files failed to upload (0 uploaded, their records are in XCom 'uploaded'): \n"
        f"  - {images / 'a.png'}: SystemExit: 3"
    )
