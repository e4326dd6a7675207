"""Kills mutmut survivors of operators/_manifest.py: defaults, load/plan/save lines, hashing's opens."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import warnings
from datetime import timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryError
from airflow_capillary.operators import _manifest
from airflow_capillary.operators._manifest import HASH_CHUNK_BYTES, Manifest, file_digest
from airflow_capillary.operators._manifest_document import EMPTY_DOCUMENT, encode, entry_of
from airflow_capillary.operators._manifest_store import LocalManifestStore
from tests.operators.fakes import uploaded_file

LOGGER = "capillary.test.manifest"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return logging.getLogger(LOGGER)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def item(name: str) -> SimpleNamespace:
    return SimpleNamespace(namespace="rewards", file_name=name)


class RecordingStore(LocalManifestStore):
    """A local store that records what check_writable is asked to write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.checked: list[bytes | None] = []

    def check_writable(self, probe: bytes | None) -> None:
        self.checked.append(probe)
        super().check_writable(probe)


def test_utc_now_is_aware_utc() -> None:
    assert _manifest._utc_now().tzinfo is timezone.utc


def test_a_local_source_is_hashed_unbuffered_without_warnings(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG" * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert file_digest(path) == (hashlib.sha256(b"\x89PNG" * 100).hexdigest(), 400)


class StoragePath:
    """Stands in for an ObjectStoragePath: records how it is opened."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def open(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        self.opened.append((args, kwargs))
        return io.BytesIO(self.data)


def test_an_object_storage_source_is_opened_binary_with_one_chunk_blocks() -> None:
    path = StoragePath(b"abc")
    assert file_digest(path) == (hashlib.sha256(b"abc").hexdigest(), 3)
    assert path.opened == [(("rb",), {"block_size": HASH_CHUNK_BYTES})]


def test_load_checks_writability_with_the_empty_document_only_on_a_first_run(
    tmp_path: Path, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    first = RecordingStore(tmp_path / "m.json")
    manifest = Manifest.load(first, log=log)
    assert first.checked == [EMPTY_DOCUMENT]
    assert (manifest.size, manifest.entries) == (0, {})
    entry = entry_of(
        uploaded_file("a.png", 3, sha256="a" * 64), source="/d/a.png", uploaded_at=_manifest._utc_now()
    )
    (tmp_path / "m.json").write_bytes(encode({"rewards/a.png": entry}))
    again = RecordingStore(tmp_path / "m.json")
    manifest = Manifest.load(again, log=log)
    assert again.checked == [None]
    assert manifest.size == 1
    assert lines(caplog) == [
        (logging.INFO, f"Manifest {tmp_path / 'm.json'}: 0 entries"),
        (logging.INFO, f"Manifest {tmp_path / 'm.json'}: 1 entries"),
    ]


def test_decide_hashes_unless_forced(tmp_path: Path) -> None:
    source = tmp_path / "a.png"
    source.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    entry = entry_of(
        uploaded_file("a.png", 3, sha256=digest), source=str(source), uploaded_at=_manifest._utc_now()
    )
    manifest = Manifest(LocalManifestStore(tmp_path / "m.json"), {"rewards/a.png": entry})
    assert manifest.decide(item("a.png"), source) == "unchanged"
    assert manifest.decide(item("a.png"), source, force=True) == "changed"


def test_plan_line_and_its_defaults(
    tmp_path: Path, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = Manifest(LocalManifestStore(tmp_path / "m.json"), {}, log=log)
    items = [item("a.png"), item("b.png"), item("c.png")]
    assert manifest.plan(["/a", "/b", "/c"], items, ["new", "changed", "new"]) == {}
    assert manifest.plan(["/a", "/b", "/c"], items, ["new", "changed", "new"], force=True) == {}
    label = tmp_path / "m.json"
    assert lines(caplog) == [
        (logging.INFO, f"Manifest {label}: 3 files, 0 unchanged, 3 to upload (2 new, 1 changed)"),
        (
            logging.INFO,
            f"Manifest {label}: 3 files, 0 unchanged, 3 to upload (2 new, 1 changed), force_upload",
        ),
    ]
    with pytest.raises(ValueError, match="zip"):
        manifest.plan(["/a", "/b", "/c"], items, ["new", "new"])


def failing_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Any) -> Manifest:
    manifest = Manifest(LocalManifestStore(tmp_path / "m.json"), {}, checkpoint_uploads=10, log=log)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")

    def full(self: Any, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalManifestStore, "write", full)
    return manifest


def test_save_raises_or_logs_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    message = (
        f"manifest '{tmp_path / 'm.json'}' cannot be written (OSError: [Errno 28] No space left on device); "
        "1 uploaded file(s) are not recorded in it (their records are in XCom 'uploaded')"
    )
    with pytest.raises(CapillaryError) as info:
        failing_manifest(tmp_path, monkeypatch, log).save(raise_errors=True)
    assert str(info.value) == message
    assert lines(caplog) == []
    failing_manifest(tmp_path, monkeypatch, log).save(raise_errors=False)
    assert lines(caplog) == [(logging.ERROR, message)]
    with pytest.raises(CapillaryError):  # no log to tell it to: raised anyway
        failing_manifest(tmp_path, monkeypatch, None).save(raise_errors=False)


class RecordingLock:
    """The manifest's write lock, recording whether each acquire blocks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blocking: list[bool] = []

    def acquire(self, blocking: bool = True) -> bool:
        self.blocking.append(blocking)
        return self.lock.acquire(blocking=blocking)

    def release(self) -> None:
        self.lock.release()


def test_flush_waits_for_a_running_write_by_default(tmp_path: Path) -> None:
    manifest = Manifest(LocalManifestStore(tmp_path / "m.json"), {}, checkpoint_uploads=10)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    lock = manifest._writing = RecordingLock()  # type: ignore[assignment]
    assert manifest.flush() is True
    assert lock.blocking == [True]
    assert manifest.pending == 0


def upload(name: str, version: int = 1) -> Any:
    return uploaded_file(name, 1, sha256="a" * 64, version=version)


def test_an_upload_recorded_again_during_a_write_stays_pending(tmp_path: Path) -> None:
    manifest: Manifest

    class RecordingDuringWrite(LocalManifestStore):
        def write(self, data: bytes) -> None:
            super().write(data)
            if manifest.writes == 0:  # another worker's upload of the same file lands meanwhile
                manifest.record(item("a.png"), upload("a.png", 2), source="/d/a.png")

    manifest = Manifest(RecordingDuringWrite(tmp_path / "m.json"), {}, checkpoint_uploads=3)
    manifest.record(item("a.png"), upload("a.png"), source="/d/a.png")
    assert manifest.flush() is True
    assert (manifest.writes, manifest.pending) == (1, 1)
    manifest.record(item("b.png"), upload("b.png"), source="/d/b.png")
    assert manifest.writes == 1
    manifest.record(item("c.png"), upload("c.png"), source="/d/c.png")  # the third since the write: due
    assert (manifest.writes, manifest.pending) == (2, 0)


def test_save_says_nothing_while_another_write_runs(
    tmp_path: Path, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    entries = {
        f"rewards/{i:04d}.png": entry_of(
            upload(f"{i:04d}.png"), source="/d", uploaded_at=_manifest._utc_now()
        )
        for i in range(999)
    }
    (tmp_path / "m.json").write_bytes(encode(entries))
    manifest = Manifest(LocalManifestStore(tmp_path / "m.json"), entries, checkpoint_uploads=10, log=log)
    manifest.record(item("new.png"), upload("new.png"), source="/d/new.png")
    manifest._writing.acquire()
    try:
        manifest.save(raise_errors=True, wait=False)
    finally:
        manifest._writing.release()
    assert lines(caplog) == []
    manifest.save(raise_errors=True)
    assert lines(caplog) == [
        (logging.INFO, f"Manifest {tmp_path / 'm.json'}: recorded 1 upload(s), 1,000 entries in all")
    ]


def test_plan_keeps_no_record_for_an_unchanged_file_without_an_entry(tmp_path: Path) -> None:
    assert (
        Manifest(LocalManifestStore(tmp_path / "m.json"), {}).plan(["/a"], [item("a.png")], ["unchanged"])
        == {}
    )
