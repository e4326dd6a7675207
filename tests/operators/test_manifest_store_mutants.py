"""Kills mutmut survivors of operators/_manifest_store.py: which store, exact errors, temp file, caches."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError, CapillaryInvalidInputError
from airflow_capillary.operators import _manifest_store
from airflow_capillary.operators._manifest_store import (
    LocalManifestStore,
    ObjectStorageManifestStore,
    describe_manifest,
    manifest_store,
)

TAIL = (
    ". Nothing was uploaded: a manifest that cannot be used is never taken as empty (that would upload every "
    "file again as a new version); fix it, or move it away to start over"
)


def test_describe_manifest() -> None:
    assert describe_manifest(Path("/m/rewards.json")) == "/m/rewards.json"
    assert describe_manifest("s3://conn@bucket/rewards.json") == "s3://conn@bucket/rewards.json"
    assert describe_manifest(42) == "42"


def test_an_object_with_only_a_protocol_is_not_a_storage_path() -> None:
    class Half:
        protocol = "s3"

    with pytest.raises(CapillaryConfigError) as info:
        manifest_store(Half())
    assert str(info.value) == "manifest must be a path, a URI or an ObjectStoragePath, got Half"


def test_a_local_protocol_is_a_local_file() -> None:
    class LocalPath:
        protocol = "local"
        fs = object()
        path = "/m/rewards.json"

    store = manifest_store(LocalPath())
    assert isinstance(store, LocalManifestStore)
    assert store.path == Path("/m/rewards.json")


def test_the_folder_must_be_writable_and_searchable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, int]] = []

    def access(path: Any, mode: int) -> bool:
        asked.append((path, mode))
        return False

    monkeypatch.setattr(_manifest_store.os, "access", access)
    with pytest.raises(CapillaryInvalidInputError) as info:
        LocalManifestStore(tmp_path / "rewards.json").check_writable(None)
    assert str(info.value) == (
        f"manifest '{tmp_path / 'rewards.json'}' cannot be written (folder '{tmp_path}' is read-only){TAIL}"
    )
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]


@pytest.mark.parametrize(
    ("error", "reason"),
    [(OSError(5, "Input/output error"), "Input/output error"), (OSError("stale handle"), "stale handle")],
    ids=["strerror", "no-strerror"],
)
def test_a_local_read_error_names_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, reason: str
) -> None:
    def failing(self: Path) -> bytes:
        raise error

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(CapillaryInvalidInputError) as info:
        LocalManifestStore(tmp_path / "rewards.json").read()
    assert str(info.value) == f"manifest '{tmp_path / 'rewards.json'}' cannot be read ({reason}){TAIL}"


def test_a_local_write_creates_missing_folders_and_writes_through_a_tmp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a" / "b" / "rewards.json"
    names: list[str] = []
    real_replace = os.replace

    def replace(source: Any, destination: Any) -> None:
        names.append(Path(source).name)
        real_replace(source, destination)

    monkeypatch.setattr(_manifest_store.os, "replace", replace)
    LocalManifestStore(target).write(b"{}\n")
    assert target.read_bytes() == b"{}\n"
    [name] = names
    assert re.fullmatch(r"\.rewards\.json\.[^.]+\.tmp", name), name


class RecordingFs:
    """A file system whose cache and reads are scripted."""

    def __init__(self, read_error: Exception, cache_error: Exception | None = None) -> None:
        self.read_error, self.cache_error = read_error, cache_error
        self.invalidated: list[Any] = []

    def invalidate_cache(self, path: Any = None) -> None:
        self.invalidated.append(path)
        if self.cache_error is not None:
            raise self.cache_error

    def cat_file(self, path: str) -> bytes:
        raise self.read_error


class FakePath:
    protocol = "fake"

    def __init__(self, fs: Any) -> None:
        self.fs, self.path = fs, "bucket/rewards.json"

    def __str__(self) -> str:
        return "fake://bucket/rewards.json"


@pytest.mark.parametrize("cache_error", [None, RuntimeError("no cache")], ids=["cache", "failing-cache"])
def test_an_object_read_forgets_the_cache_of_its_path(cache_error: Exception | None) -> None:
    fs = RecordingFs(FileNotFoundError("bucket/rewards.json"), cache_error)
    assert ObjectStorageManifestStore(FakePath(fs)).read() is None  # type: ignore[arg-type]
    assert fs.invalidated == ["bucket/rewards.json"]


def test_an_object_that_is_a_folder() -> None:
    store = ObjectStorageManifestStore(FakePath(RecordingFs(IsADirectoryError("bucket"))))  # type: ignore[arg-type]
    with pytest.raises(CapillaryInvalidInputError) as info:
        store.read()
    assert str(info.value) == f"manifest 'fake://bucket/rewards.json' is a folder, not an object{TAIL}"


def test_a_lock_error_other_than_busy_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_manifest_store.fcntl, "flock", flock)
    fake_time = SimpleNamespace(monotonic=lambda: sum(sleeps), sleep=sleeps.append)
    monkeypatch.setattr(_manifest_store, "time", fake_time)
    store = LocalManifestStore(tmp_path / "rewards.json")
    with pytest.raises(CapillaryError) as info, store.lock():
        pass
    assert str(info.value) == (
        f"manifest '{tmp_path / 'rewards.json'}': the lock file '{tmp_path / 'rewards.json.lock'}' stayed "
        "locked by another writer for 120s"
    )
    assert sleeps == []


def test_a_local_write_keeps_the_special_mode_bits(tmp_path: Path) -> None:
    target = tmp_path / "rewards.json"
    target.write_bytes(b"old\n")
    target.chmod(0o2640)
    LocalManifestStore(target).write(b"new\n")
    assert target.stat().st_mode & 0o7777 == 0o2640


class ObjectFs:
    """Records the writes; reads answer a bytearray, as some file systems do."""

    def __init__(self) -> None:
        self.piped: list[tuple[Any, ...]] = []

    def invalidate_cache(self, path: Any = None) -> None:
        pass

    def cat_file(self, path: str) -> bytearray:
        return bytearray(b"{}")

    def pipe_file(self, *args: Any, **kwargs: Any) -> None:
        self.piped.append((*args, kwargs))


def test_an_existing_object_is_not_rewritten_and_is_read_as_bytes() -> None:
    fs = ObjectFs()
    store = ObjectStorageManifestStore(FakePath(fs))  # type: ignore[arg-type]
    store.check_writable(None)
    assert fs.piped == []
    data = store.read()
    assert (data, type(data)) == (b"{}", bytes)
    store.check_writable(b"{}\n")
    assert fs.piped == [("bucket/rewards.json", b"{}\n", {"mode": "create"})]
