"""Unit tests of the sync manifest: hashing with flat memory, the action of a file, entries and
unchanged records, and the checkpoints (by count, by time, merged with a concurrent writer)."""

from __future__ import annotations

import hashlib
import json
import threading
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryError, CapillaryInvalidInputError
from airflow_capillary.operators import _manifest
from airflow_capillary.operators._manifest import (
    HASH_CHUNK_BYTES,
    Manifest,
    action_for,
    file_digest,
    open_manifest,
)
from airflow_capillary.operators._manifest_document import EMPTY_DOCUMENT, decode, entry_of, unchanged_record
from airflow_capillary.operators._manifest_store import LocalManifestStore
from tests.operators.fakes import uploaded_file

START = datetime(2026, 11, 26, 20, 0, tzinfo=timezone.utc)


class Clocks:
    """A monotonic clock and a wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = START

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def manifest_at(path: Path, clocks: Clocks, **options: Any) -> Manifest:
    return Manifest.load(
        LocalManifestStore(path), clock=lambda: clocks.monotonic, now=lambda: clocks.wall, **options
    )


def item(name: str) -> SimpleNamespace:
    """What ``record`` needs of a prepared upload."""
    return SimpleNamespace(namespace="rewards", file_name=name)


def stored(path: Path) -> dict[str, Any]:
    return dict(decode(path.read_bytes(), str(path)))


def test_file_digest_streams_with_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    block = bytes(range(256)) * 4096  # 1 MiB
    with path.open("wb") as handle:
        for index in range(24):
            handle.write(block[index:] + block[:index])
        handle.write(b"tail")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        digest = file_digest(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == (expected, 24 * len(block) + 4)
    assert peak < 2 * HASH_CHUNK_BYTES  # one read buffer, whatever the file's 24 MiB
    assert file_digest(tmp_path / "big.png") == digest
    (tmp_path / "empty.png").write_bytes(b"")
    assert file_digest(tmp_path / "empty.png") == (hashlib.sha256(b"").hexdigest(), 0)


def test_file_digest_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "gone.png")


@pytest.mark.parametrize(
    ("entry", "digest", "action"),
    [
        (None, ("a" * 64, 10), "new"),
        (None, None, "new"),
        ({"sha256": "a" * 64, "size": 10}, ("a" * 64, 10), "unchanged"),
        ({"sha256": "a" * 64, "size": 10}, ("b" * 64, 10), "changed"),
        ({"sha256": "a" * 64, "size": 10}, ("a" * 64, 11), "changed"),
        ({"sha256": "a" * 64, "size": 10}, None, "changed"),
    ],
    ids=["no-entry", "no-entry-forced", "same", "other-sha", "other-size", "forced"],
)
def test_action_for(entry: Any, digest: Any, action: str) -> None:
    assert action_for(entry, digest) == action


def test_entry_of_an_upload_has_no_secure_url() -> None:
    result = uploaded_file("a.png", 69, version=3, sha256="c" * 64)
    entry = entry_of(result, source="/data/a.png", uploaded_at=START + timedelta(microseconds=5))
    assert entry == {
        "sha256": "c" * 64,
        "size": 69,
        "file_handle": "handle-a.png-v3",
        "version": 3,
        "latest_version": 3,
        "content_type": "image/png",
        "s3_token": "rewards/100/a.png",
        "s3_url": "s3://bucket/rewards/100/a.png",
        "last_modified": "2026-11-26T04:10:59+00:00",
        "uploaded_at": "2026-11-26T20:00:00.000005+00:00",
        "source": "/data/a.png",
    }
    assert "X-Amz" not in json.dumps(entry)


def test_unchanged_record_has_the_keys_of_an_uploaded_one() -> None:
    result = uploaded_file("a.png", 69, version=2, sha256="c" * 64)
    entry = entry_of(result, source="/old/a.png", uploaded_at=START)
    record = unchanged_record(entry, namespace="rewards", name="a.png", source="/new/a.png")
    assert record == {
        "name": "a.png",
        "namespace": "rewards",
        "version": 2,
        "latest_version": 2,
        "acl": None,
        "file_size": 69,
        "file_handle": "handle-a.png-v2",
        "content_type": "image/png",
        "s3_token": "rewards/100/a.png",
        "s3_url": "s3://bucket/rewards/100/a.png",
        "last_modified": "2026-11-26T04:10:59+00:00",
        "secure_file_path": None,
        "code": None,
        "status": None,
        "message": "not uploaded: unchanged since 2026-11-26T20:00:00.000000+00:00",
        "sent_size": 0,
        "secure_url_refused": None,
        "sha256": "c" * 64,
        "source": "/new/a.png",
        "action": "unchanged",
    }
    assert list(record) == [*result.to_dict(), "source", "action"]


def test_first_run_loads_empty_and_writes_nothing_until_an_upload(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "m" / "rewards.json"
    manifest = manifest_at(path, clocks)
    assert (manifest.entries, manifest.pending, manifest.writes) == ({}, 0, 0)
    assert sorted(p.name for p in path.parent.iterdir()) == ["rewards.json.lock"]
    assert manifest.flush() is True  # nothing pending: no write
    assert not path.exists()


def test_load_refuses_a_bad_manifest(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "rewards.json"
    path.write_text('{"format": 1, "entries": {')
    with pytest.raises(CapillaryInvalidInputError, match=rf"^manifest '{path}' is not valid JSON"):
        manifest_at(path, clocks)
    assert path.read_text() == '{"format": 1, "entries": {'  # never rewritten


def test_checkpoint_every_n_uploads(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "rewards.json"
    manifest = manifest_at(path, clocks, checkpoint_uploads=2, checkpoint_seconds=3600)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    assert (manifest.pending, path.exists()) == (1, False)
    manifest.record(item("b.png"), uploaded_file("b.png", 2, sha256="b" * 64), source="/d/b.png")
    assert (manifest.pending, manifest.writes, manifest.size) == (0, 1, 2)
    assert sorted(stored(path)) == ["rewards/a.png", "rewards/b.png"]
    manifest.record(item("c.png"), uploaded_file("c.png", 3, sha256="c" * 64), source="/d/c.png")
    assert (manifest.pending, manifest.writes) == (1, 1)
    assert manifest.flush() is True
    assert sorted(stored(path)) == ["rewards/a.png", "rewards/b.png", "rewards/c.png"]
    assert stored(path)["rewards/c.png"]["file_handle"] == "handle-c.png"


def test_checkpoint_after_t_seconds_on_record_or_tick(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "rewards.json"
    manifest = manifest_at(path, clocks, checkpoint_uploads=100, checkpoint_seconds=30)
    manifest.tick()  # nothing pending
    clocks.advance(29)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    manifest.tick()
    assert manifest.writes == 0
    clocks.advance(1)
    manifest.tick()  # 30 s since the start, one upload pending
    assert (manifest.writes, sorted(stored(path))) == (1, ["rewards/a.png"])
    clocks.advance(10)
    manifest.record(item("b.png"), uploaded_file("b.png", 1, sha256="b" * 64), source="/d/b.png")
    clocks.advance(19)
    manifest.tick()
    assert manifest.writes == 1  # 29 s since the last write
    clocks.advance(1)
    manifest.record(item("c.png"), uploaded_file("c.png", 1, sha256="c" * 64), source="/d/c.png")
    assert (manifest.writes, sorted(stored(path))) == (2, ["rewards/a.png", "rewards/b.png", "rewards/c.png"])


def test_each_write_merges_what_another_writer_stored(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "rewards.json"
    first = manifest_at(path, clocks, checkpoint_uploads=1)
    second = manifest_at(path, clocks, checkpoint_uploads=1)
    first.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    clocks.advance(1)
    second.record(item("b.png"), uploaded_file("b.png", 1, sha256="b" * 64), source="/d/b.png")
    clocks.advance(1)
    second.record(item("a.png"), uploaded_file("a.png", 1, version=2, sha256="d" * 64), source="/e/a.png")
    clocks.advance(1)
    first.record(item("c.png"), uploaded_file("c.png", 1, sha256="c" * 64), source="/d/c.png")
    entries = stored(path)
    assert sorted(entries) == ["rewards/a.png", "rewards/b.png", "rewards/c.png"]
    assert (entries["rewards/a.png"]["version"], entries["rewards/a.png"]["source"]) == (2, "/e/a.png")


def test_a_failed_write_keeps_the_uploads_pending_and_names_the_manifest(
    tmp_path: Path, clocks: Clocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rewards.json"
    manifest = manifest_at(path, clocks, checkpoint_uploads=10)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")

    def full(self: Any, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalManifestStore, "write", full)
    with pytest.raises(
        CapillaryError,
        match=rf"^manifest '{path}' cannot be written \(OSError: \[Errno 28\] No space left on device\); 1 "
        r"uploaded file\(s\) are not recorded in it \(their records are in XCom 'uploaded'\)$",
    ):
        manifest.flush()
    assert manifest.pending == 1
    monkeypatch.undo()
    assert manifest.flush() is True
    assert sorted(stored(path)) == ["rewards/a.png"]


def test_flush_without_wait_leaves_a_running_write_to_finish(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "rewards.json"
    manifest = manifest_at(path, clocks, checkpoint_uploads=10)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    manifest._writing.acquire()  # a write in progress (as when on_kill interrupts one)
    try:
        assert manifest.flush(wait=False) is False
        assert manifest.pending == 1
    finally:
        manifest._writing.release()
    assert manifest.flush(wait=False) is True
    assert manifest.pending == 0


def test_a_document_corrupted_meanwhile_stops_the_write(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "rewards.json"
    manifest = manifest_at(path, clocks, checkpoint_uploads=10)
    manifest.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    path.write_text("garbage")
    with pytest.raises(CapillaryInvalidInputError, match=rf"^manifest '{path}' is not valid JSON"):
        manifest.flush()
    assert path.read_text() == "garbage"  # not overwritten with a document missing the other entries


def test_open_manifest_reads_the_document_the_argument_names(tmp_path: Path) -> None:
    (tmp_path / "rewards.json").write_bytes(EMPTY_DOCUMENT)
    manifest = open_manifest(f"file://{tmp_path}/rewards.json", checkpoint_uploads=5)
    assert (manifest.label, manifest.entries, manifest.checkpoint_uploads) == (
        str(tmp_path / "rewards.json"),
        {},
        5,
    )


def test_concurrent_threads_lose_no_entry(tmp_path: Path) -> None:
    path = tmp_path / "rewards.json"
    start = threading.Barrier(4)

    def writer(worker: int) -> None:
        manifest = open_manifest(str(path), checkpoint_uploads=1)
        start.wait()
        for index in range(25):
            name = f"w{worker}-{index:02d}.png"
            manifest.record(item(name), uploaded_file(name, 1, sha256="a" * 64), source=name)

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(stored(path)) == sorted(f"rewards/w{w}-{i:02d}.png" for w in range(4) for i in range(25))


def test_a_checkpoint_reparses_only_what_another_writer_changed(
    tmp_path: Path, clocks: Clocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rewards.json"
    first = manifest_at(path, clocks, checkpoint_uploads=1)
    parsed: list[int] = []
    real_decode = _manifest.decode

    def decode(data: bytes, label: str) -> Any:
        parsed.append(len(data))
        return real_decode(data, label)

    monkeypatch.setattr(_manifest, "decode", decode)
    first.record(item("a.png"), uploaded_file("a.png", 1, sha256="a" * 64), source="/d/a.png")
    first.record(item("b.png"), uploaded_file("b.png", 1, sha256="b" * 64), source="/d/b.png")
    assert parsed == []  # its own document each time: nothing to parse again
    other = manifest_at(path, clocks, checkpoint_uploads=1)  # parses once, at its load
    other.record(item("c.png"), uploaded_file("c.png", 1, sha256="c" * 64), source="/d/c.png")
    first.record(item("d.png"), uploaded_file("d.png", 1, sha256="d" * 64), source="/d/d.png")
    assert len(parsed) == 2  # the other's load, then first's re-read of what the other wrote
    assert sorted(stored(path)) == ["rewards/a.png", "rewards/b.png", "rewards/c.png", "rewards/d.png"]
