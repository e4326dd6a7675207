"""Unit tests of UploadImageOperator with a sync manifest (fake hook): what is uploaded, the records
and XComs, the log lines, the asset event, and that no upload is ever lost from the manifest."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_capillary.exceptions import CapillaryBatchError, CapillaryConfigError, CapillaryInvalidInputError
from airflow_capillary.links import CapillaryImageLink
from airflow_capillary.operators import _manifest
from airflow_capillary.operators._manifest_document import unchanged_record
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.fakes import NAMES, FakeHook, make_context, messages, pushed, record, unavailable
from tests.operators.images import png_bytes

#: How long a thread waits for an event of the other before the test fails.
WAIT = 10.0


def run(images: Path, manifest: Path, **kwargs: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Execute a batch over ``images`` with ``manifest``; return (result, pushed XComs, context)."""
    context = make_context()
    kwargs.setdefault("source", str(images))
    kwargs.setdefault("max_workers", 2)
    op = UploadImageOperator(task_id="up", manifest=str(manifest), **kwargs)
    result = op.execute(context)
    return result, pushed(context), context


def rerun(
    hook: FakeHook, images: Path, manifest: Path, **kwargs: Any
) -> tuple[list[str], Any, dict[str, Any]]:
    """Run again with a fresh count of uploads; return (names uploaded, result, pushed XComs)."""
    hook.uploads.clear()
    result, xcoms, _ = run(images, manifest, **kwargs)
    return sorted(hook.uploads), result, xcoms


def entries(manifest: Path) -> dict[str, Any]:
    document = json.loads(manifest.read_text())
    assert set(document) == {"format", "entries"}
    assert document["format"] == 1
    return document["entries"]


def kept(images: Path, manifest: Path, name: str) -> dict[str, Any]:
    """The record of ``name`` when it is unchanged: built from its manifest entry."""
    entry = entries(manifest)[f"rewards/{name}"]
    return unchanged_record(entry, namespace="rewards", name=name, source=str(images / name))


def test_first_run_uploads_everything_as_new_and_records_it(
    images: Path, tmp_path: Path, fake_hook: FakeHook
) -> None:
    manifest = tmp_path / "state" / "rewards.json"
    result, xcoms, _ = run(images, manifest)
    expected = [record(images / n, action="new") for n in NAMES]
    assert result == expected
    assert xcoms == {"uploaded": expected, "file_handles": {n: f"handle-{n}" for n in NAMES}}
    assert sorted(fake_hook.uploads) == NAMES
    stored = entries(manifest)
    assert sorted(stored) == [f"rewards/{n}" for n in NAMES]
    first = stored["rewards/a.png"]
    assert {k: v for k, v in first.items() if k != "uploaded_at"} == {
        "sha256": expected[0]["sha256"],
        "size": (images / "a.png").stat().st_size,
        "file_handle": "handle-a.png",
        "version": 1,
        "latest_version": 1,
        "content_type": "image/png",
        "s3_token": "rewards/100/a.png",
        "s3_url": "s3://bucket/rewards/100/a.png",
        "last_modified": "2026-11-26T04:10:59+00:00",
        "source": str(images / "a.png"),
    }
    assert "X-Amz" not in manifest.read_text()  # never a secure URL


def test_second_run_uploads_nothing_and_leaves_the_manifest_untouched(
    images: Path, tmp_path: Path, fake_hook: FakeHook
) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    uploads, result, xcoms = rerun(fake_hook, images, manifest)
    assert uploads == []
    expected = [kept(images, manifest, n) for n in NAMES]
    assert result == expected
    assert [r["secure_file_path"] for r in result] == [None] * 3
    assert xcoms == {"uploaded": [], "file_handles": {n: f"handle-{n}" for n in NAMES}}
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    assert len(fake_hook.prepared) == 6  # validated as ever, on both runs


def test_one_changed_file_is_uploaded_again_as_version_2(
    images: Path, tmp_path: Path, fake_hook: FakeHook
) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    (images / "b.jpg").write_bytes((images / "b.jpg").read_bytes() + b"\x00")  # same size + 1
    uploads, result, xcoms = rerun(fake_hook, images, manifest)
    assert uploads == ["b.jpg"]
    changed = record(images / "b.jpg", version=2, action="changed")
    assert changed["file_handle"] == "handle-b.jpg-v2"
    assert result == [kept(images, manifest, "a.png"), changed, kept(images, manifest, "c.webp")]
    assert xcoms["uploaded"] == [changed]
    assert xcoms["file_handles"] == {
        "a.png": "handle-a.png",
        "b.jpg": "handle-b.jpg-v2",
        "c.webp": "handle-c.webp",
    }
    assert (entries(manifest)["rewards/b.jpg"]["version"], entries(manifest)["rewards/b.jpg"]["sha256"]) == (
        2,
        changed["sha256"],
    )


def test_same_size_other_content_is_changed(images: Path, tmp_path: Path, fake_hook: FakeHook) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    original = (images / "a.png").read_bytes()
    (images / "a.png").write_bytes(png_bytes(seed=200))
    assert len(png_bytes(seed=200)) == len(original)
    assert png_bytes(seed=200) != original
    uploads, result, _ = rerun(fake_hook, images, manifest)
    assert uploads == ["a.png"]
    assert [r["action"] for r in result] == ["changed", "unchanged", "unchanged"]


def test_a_name_prefix_makes_new_entries(images: Path, tmp_path: Path, fake_hook: FakeHook) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    uploads, result, _ = rerun(fake_hook, images, manifest, name_prefix="diwali-")
    assert uploads == [f"diwali-{n}" for n in NAMES]
    assert [(r["name"], r["action"], r["version"]) for r in result] == [
        (f"diwali-{n}", "new", 1) for n in NAMES
    ]
    assert sorted(entries(manifest)) == sorted(
        [f"rewards/{n}" for n in NAMES] + [f"rewards/diwali-{n}" for n in NAMES]
    )


@pytest.mark.parametrize("force", [True, "True", "{{ params.force }}"], ids=["bool", "str", "template"])
def test_force_upload_uploads_everything_and_rewrites_the_entries(
    images: Path, tmp_path: Path, fake_hook: FakeHook, force: Any
) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    fake_hook.uploads.clear()
    context: dict[str, Any] = {**make_context(), "params": {"force": True}}
    op = UploadImageOperator(task_id="up", source=str(images), manifest=str(manifest), force_upload=force)
    op.render_template_fields(context)  # type: ignore[arg-type]
    result = op.execute(context)  # type: ignore[arg-type]
    assert isinstance(result, list)
    assert sorted(fake_hook.uploads) == NAMES
    assert [(r["action"], r["version"]) for r in result] == [("changed", 2)] * 3
    assert [e["version"] for e in entries(manifest).values()] == [2, 2, 2]


def test_a_failing_batch_records_its_successes_before_raising_and_the_retry_uploads_the_rest(
    images: Path, tmp_path: Path, mocker: Any
) -> None:
    manifest = tmp_path / "rewards.json"
    hook = FakeHook(failing={"a.png": unavailable("a.png")})
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    context = make_context()
    op = UploadImageOperator(task_id="up", source=str(images), manifest=str(manifest))
    with pytest.raises(CapillaryBatchError, match=r"^1 of 3 files failed to upload \(2 uploaded"):
        op.execute(context)
    assert sorted(entries(manifest)) == ["rewards/b.jpg", "rewards/c.webp"]
    assert [r["name"] for r in pushed(context)["uploaded"]] == ["b.jpg", "c.webp"]
    hook.failing.clear()
    uploads, result, _ = rerun(hook, images, manifest)
    assert uploads == ["a.png"]
    assert [r["action"] for r in result] == ["new", "unchanged", "unchanged"]


def test_on_kill_writes_what_was_uploaded(images: Path, tmp_path: Path, mocker: Any) -> None:
    manifest = tmp_path / "rewards.json"
    hook = FakeHook()
    second_started, release = threading.Event(), threading.Event()
    original = hook.upload

    def upload(prepared: Any) -> Any:
        if prepared.file_name == "b.jpg":
            second_started.set()
            release.wait(WAIT)
        return original(prepared)

    hook.upload = upload  # type: ignore[method-assign]
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    op = UploadImageOperator(task_id="up", source=str(images), manifest=str(manifest), max_workers=1)
    seen_after_kill: list[list[str]] = []

    def kill() -> None:
        assert second_started.wait(WAIT)  # a.png is uploaded, b.jpg in flight
        deadline = time.monotonic() + WAIT
        while op._manifest is None or op._manifest.pending != 1:  # a.png recorded, not yet written
            assert time.monotonic() < deadline, "a.png was never recorded"
            time.sleep(0.001)
        op.on_kill()
        seen_after_kill.append(sorted(entries(manifest)))  # written by on_kill itself
        release.set()

    killer = threading.Thread(target=kill)
    killer.start()
    with pytest.raises(CapillaryBatchError):
        op.execute(make_context())
    killer.join(WAIT)
    assert seen_after_kill == [["rewards/a.png"]]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b'{"format": 1, "entries": {"rewards/a.png": {"sha256": "',
            "is not valid JSON: truncated or corrupt",
        ),
        (b'{"format": 7, "entries": {}}', "has format 7; this version of the provider reads format 1"),
        (
            b'{"format": 1, "entries": {"rewards/a.png": {}}}',
            "has 11 problems in its entries: 'rewards/a.png' has",
        ),
        (b"", "is empty"),
    ],
    ids=["truncated", "wrong-format", "entry-without-handle", "empty"],
)
def test_a_bad_manifest_stops_the_task_before_any_validation_or_upload(
    images: Path, tmp_path: Path, fake_hook: FakeHook, content: bytes, problem: str
) -> None:
    manifest = tmp_path / "rewards.json"
    manifest.write_bytes(content)
    context = make_context()
    with pytest.raises(CapillaryInvalidInputError) as info:
        UploadImageOperator(task_id="up", source=str(images), manifest=str(manifest)).execute(context)
    assert str(info.value).startswith(f"manifest '{manifest}' {problem}")
    assert "Nothing was uploaded" in str(info.value)
    assert (fake_hook.prepared, fake_hook.uploads) == ([], [])
    context["ti"].xcom_push.assert_not_called()
    assert manifest.read_bytes() == content


def test_an_unusable_location_stops_the_task_before_any_upload(
    images: Path, tmp_path: Path, fake_hook: FakeHook
) -> None:
    (tmp_path / "file").write_text("x")
    op = UploadImageOperator(task_id="up", source=str(images), manifest=str(tmp_path / "file" / "m.json"))
    with pytest.raises(
        CapillaryInvalidInputError, match=r"m\.json' cannot be read or written \(a part of its"
    ):
        op.execute(make_context())
    assert (fake_hook.prepared, fake_hook.uploads) == ([], [])


def test_a_source_that_cannot_be_hashed_fails_the_batch_before_any_upload(
    images: Path, tmp_path: Path, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _manifest.file_digest

    def digest(path: Any) -> tuple[str, int]:
        if Path(str(path)).name == "c.webp":
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(_manifest, "file_digest", digest)
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^1 of 3 files cannot be uploaded, so none was: \n  - .*/c\.webp: OSError: \[Errno 5\] "
        r"Input/output error$",
    ):
        run(images, tmp_path / "rewards.json")
    assert fake_hook.uploads == []


def test_log_lines_count_each_action(
    images: Path, tmp_path: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest, max_workers=1, progress_interval=0)
    (images / "c.webp").write_bytes((images / "c.webp").read_bytes() + b"!")
    oplog.clear()
    run(images, manifest, progress_interval=0)
    lines = messages(oplog)
    assert lines[:3] == [
        "Skipped 1 non-image file(s): " + str(images / "readme.txt"),
        f"Manifest {manifest}: 3 entries",
        f"Manifest {manifest}: 3 files, 2 unchanged, 1 to upload (0 new, 1 changed)",
    ]
    assert lines[3] == "Uploading 1 files to namespace 'rewards' with 1 workers"
    assert (
        lines[4]
        == f"Uploaded {images / 'c.webp'} as rewards/c.webp version 2 (27 bytes), handle handle-c.webp-v2"
    )
    assert lines[5].startswith("1 uploaded (0 new, 1 changed), 2 unchanged, 0 failed; 27 B in ")
    assert lines[6:] == [f"Manifest {manifest}: recorded 1 upload(s), 3 entries in all"]


def test_everything_unchanged_logs_a_summary_and_no_upload_line(
    images: Path, tmp_path: Path, fake_hook: FakeHook, oplog: pytest.LogCaptureFixture
) -> None:
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    oplog.clear()
    run(images, manifest)
    lines = messages(oplog)
    assert lines[2] == f"Manifest {manifest}: 3 files, 3 unchanged, 0 to upload (0 new, 0 changed)"
    assert lines[3].startswith("0 uploaded (0 new, 0 changed), 3 unchanged, 0 failed; 0 B in ")
    assert len(lines) == 4


def test_asset_event_counts_each_action(images: Path, tmp_path: Path, fake_hook: FakeHook) -> None:
    manifest = tmp_path / "rewards.json"
    asset = Asset("reward_catalogue")
    run(images, manifest)
    (images / "a.png").write_bytes((images / "a.png").read_bytes() + b"!")
    result, _, context = run(images, manifest, outlets=[asset])
    assert context["outlet_events"][asset].extra == {
        "capillary_conn_id": "capillary_default",
        "count": 3,
        "total_bytes": sum(r["file_size"] for r in result),
        "files": [
            {"name": r["name"], "namespace": "rewards", "file_handle": r["file_handle"],
             "version": r["version"], "action": r["action"]}
            for r in result
        ],
        "actions": {"new": 0, "changed": 1, "unchanged": 2},
    }  # fmt: skip
    assert [f["action"] for f in context["outlet_events"][asset].extra["files"]] == [
        "changed",
        "unchanged",
        "unchanged",
    ]


def test_single_unchanged_file_returns_its_record_and_links_to_the_s3_url(
    images: Path, tmp_path: Path, fake_hook: FakeHook
) -> None:
    manifest = tmp_path / "rewards.json"
    op = UploadImageOperator(task_id="up", source=str(images / "a.png"), manifest=str(manifest))
    first = op.execute(make_context())
    assert isinstance(first, dict)
    assert first["action"] == "new"
    fake_hook.uploads.clear()
    op = UploadImageOperator(task_id="up", source=str(images / "a.png"), manifest=str(manifest))
    context = make_context()
    result = op.execute(context)
    assert result == kept(images, manifest, "a.png")
    assert fake_hook.uploads == []
    assert CapillaryImageLink().get_link(op, ti_key=None) == "s3://bucket/rewards/100/a.png"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"manifest_checkpoint_uploads": 0}, r"^manifest_checkpoint_uploads must be >= 1, got 0$"),
        ({"manifest_checkpoint_uploads": 2.5}, r"^manifest_checkpoint_uploads must be an int >= 1$"),
        ({"manifest_checkpoint_seconds": 0},
         r"^manifest_checkpoint_seconds must be a number of seconds > 0, got 0$"),
        ({"manifest_checkpoint_seconds": "30"},
         r"^manifest_checkpoint_seconds must be a number of seconds > 0, got '30'$"),
        ({"force_upload": 1}, r"^force_upload must be a bool, got 1$"),
    ],
    ids=["uploads-zero", "uploads-float", "seconds-zero", "seconds-str", "force-int"],
)  # fmt: skip
def test_invalid_manifest_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CapillaryConfigError, match=message):
        UploadImageOperator(task_id="up", source="/x.png", **kwargs)


@pytest.mark.parametrize(
    ("manifest", "force", "message"),
    [
        (42, False, r"^manifest must be a path, a URI or an ObjectStoragePath, got int$"),
        ("", False, r"^manifest is an empty path$"),
        ("{m}", "maybe", r"^force_upload must be a bool \(or render to 'true' or 'false'\), got 'maybe'$"),
    ],
    ids=["int", "empty", "force-text"],
)
def test_invalid_rendered_arguments_fail_before_any_upload(
    images: Path, tmp_path: Path, fake_hook: FakeHook, manifest: Any, force: Any, message: str
) -> None:
    if manifest == "{m}":
        manifest = str(tmp_path / "m.json")
    op = UploadImageOperator(task_id="up", source=str(images), manifest=manifest, force_upload=force)
    with pytest.raises(CapillaryConfigError, match=message):
        op.execute(make_context())
    assert fake_hook.uploads == []


def test_openlineage_of_a_sync_has_every_source_in_and_only_the_uploads_out(
    images: Path, tmp_path: Path, fake_hook: FakeHook
) -> None:
    fake_hook.config = SimpleNamespace(base_url="https://eucrm.cc.capillarytech.com")  # type: ignore[assignment]
    manifest = tmp_path / "rewards.json"
    run(images, manifest)
    (images / "b.jpg").write_bytes((images / "b.jpg").read_bytes() + b"!")
    op = UploadImageOperator(task_id="up", source=str(images), manifest=str(manifest))
    op.execute(make_context())
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(images / n)) for n in NAMES]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("capillary://eucrm.cc.capillarytech.com", "rewards/b.jpg")
    ]
