"""Unit tests of where a manifest lives: which store a ``manifest`` argument gets, atomic local writes,
the lock file, the up-front write checks, and object storage through a real fsspec file system."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from fsspec.implementations.memory import MemoryFileSystem

from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError, CapillaryInvalidInputError
from airflow_capillary.operators import _manifest_store
from airflow_capillary.operators._manifest_store import (
    LocalManifestStore,
    ObjectStorageManifestStore,
    manifest_store,
)

#: How long a thread waits for an event of the other thread before the test fails.
WAIT = 10.0


class MemoryPath:
    """The parts of an ``ObjectStoragePath`` a store uses, over fsspec's in-memory file system."""

    protocol = "memory"

    def __init__(self, path: str, fs: MemoryFileSystem) -> None:
        self.path = path
        self.fs = fs

    def __str__(self) -> str:
        return f"memory://{self.path}"


@pytest.fixture
def memory_fs() -> Any:
    fs = MemoryFileSystem()
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def test_local_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cases = {
        "rewards.json": tmp_path / "rewards.json",
        "~/m/rewards.json": tmp_path / "home" / "m" / "rewards.json",
        f"file://{tmp_path}/rewards.json": tmp_path / "rewards.json",
        f"  {tmp_path}/rewards.json ": tmp_path / "rewards.json",
    }
    for argument, path in cases.items():
        store = manifest_store(argument)
        assert isinstance(store, LocalManifestStore)
        assert (store.path, store.label, store.lock_path) == (
            path,
            str(path),
            path.with_name("rewards.json.lock"),
        )
    for other in (tmp_path / "rewards.json", ObjectStoragePath(f"file://{tmp_path}/rewards.json")):
        store = manifest_store(other)
        assert isinstance(store, LocalManifestStore)
        assert store.path == tmp_path / "rewards.json"


def test_object_storage_arguments(memory_fs: MemoryFileSystem) -> None:
    path = MemoryPath("bucket/capillary/rewards.json", memory_fs)
    store = manifest_store(path)
    assert isinstance(store, ObjectStorageManifestStore)
    assert (store.label, store.has_lock) == ("memory://bucket/capillary/rewards.json", False)
    s3 = manifest_store("s3://aws_conn@bucket/capillary/rewards.json")
    assert isinstance(s3, ObjectStorageManifestStore)
    assert s3.label == "s3://aws_conn@bucket/capillary/rewards.json"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (42, r"^manifest must be a path, a URI or an ObjectStoragePath, got int$"),
        (["a.json"], r"^manifest must be a path, a URI or an ObjectStoragePath, got list$"),
        ("  ", r"^manifest is an empty path$"),
    ],
    ids=["int", "list", "blank"],
)
def test_bad_arguments(argument: Any, message: str) -> None:
    with pytest.raises(CapillaryConfigError, match=message):
        manifest_store(argument)


def test_local_read(tmp_path: Path) -> None:
    store = LocalManifestStore(tmp_path / "rewards.json")
    assert store.read() is None  # a first run
    (tmp_path / "rewards.json").write_bytes(b"{}")
    assert store.read() == b"{}"
    folder = LocalManifestStore(tmp_path)
    with pytest.raises(
        CapillaryInvalidInputError, match=rf"^manifest '{tmp_path}' is a folder, not a file\. Nothing"
    ):
        folder.read()


def test_local_write_is_a_fsynced_rename_of_a_temporary_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "manifests" / "rewards.json"
    store = LocalManifestStore(target)
    calls: list[tuple[str, Any]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: Any, destination: Any) -> None:
        calls.append(
            ("replace", (Path(source).parent, Path(source).name.startswith(".rewards.json."), destination))
        )
        real_replace(source, destination)

    monkeypatch.setattr(_manifest_store.os, "fsync", fsync)
    monkeypatch.setattr(_manifest_store.os, "replace", replace)
    store.write(b"first\n")
    assert target.read_bytes() == b"first\n"
    temporary = calls[0][1]
    assert calls == [
        ("fsync", temporary),  # the content, before the rename
        ("replace", (target.parent, True, target)),
        ("fsync", str(target.parent)),  # the rename
    ]
    assert Path(temporary).parent == target.parent
    assert sorted(p.name for p in target.parent.iterdir()) == ["rewards.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_local_write_keeps_the_mode_and_a_failed_write_leaves_the_old_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "rewards.json"
    store = LocalManifestStore(target)
    store.write(b"old\n")
    target.chmod(0o600)
    store.write(b"new\n")
    assert (target.read_bytes(), target.stat().st_mode & 0o777) == (b"new\n", 0o600)

    def failing_replace(source: Any, destination: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_manifest_store.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left on device"):
        store.write(b"newer\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rewards.json"]  # no temporary file left


def test_local_check_writable_creates_the_folder_and_the_lock_file(tmp_path: Path) -> None:
    store = LocalManifestStore(tmp_path / "new" / "folder" / "rewards.json")
    store.check_writable(b"{}")
    assert sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == ["rewards.json.lock"]


def test_a_path_through_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    store = LocalManifestStore(tmp_path / "not-a-folder" / "rewards.json")
    with pytest.raises(CapillaryInvalidInputError) as info:
        store.read()
    assert str(info.value).startswith(
        f"manifest '{tmp_path}/not-a-folder/rewards.json' cannot be read or written (a part of its path is a "
        "file). Nothing was uploaded: "
    )
    deeper = LocalManifestStore(tmp_path / "not-a-folder" / "sub" / "rewards.json")
    with pytest.raises(CapillaryInvalidInputError) as info:
        deeper.check_writable(None)
    assert str(info.value).startswith(
        f"manifest '{tmp_path}/not-a-folder/sub/rewards.json' cannot be written (Not a directory: "
        f"{tmp_path}/not-a-folder/sub). Nothing was uploaded: "
    )


def test_local_check_writable_refuses_a_read_only_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.access is what a non-root worker would see for a read-only folder (root passes every check).
    monkeypatch.setattr(_manifest_store.os, "access", lambda path, mode: False)
    with pytest.raises(
        CapillaryInvalidInputError, match=rf"cannot be written \(folder '{tmp_path}' is read-only\)"
    ):
        LocalManifestStore(tmp_path / "rewards.json").check_writable(None)


def test_local_lock_excludes_a_second_writer_until_released(tmp_path: Path) -> None:
    store = LocalManifestStore(tmp_path / "rewards.json")
    other = LocalManifestStore(tmp_path / "rewards.json")  # its own file descriptor, as another task
    order: list[str] = []
    held, attempting = threading.Event(), threading.Event()

    def second() -> None:
        assert held.wait(WAIT)
        attempting.set()
        with other.lock():
            order.append("second acquired")

    thread = threading.Thread(target=second)
    thread.start()
    with store.lock():
        order.append("first acquired")
        held.set()
        assert attempting.wait(WAIT)
        # The second writer polls every LOCK_POLL seconds; give it several polls to (wrongly) get in.
        for _ in range(5):
            threading.Event().wait(_manifest_store.LOCK_POLL)
        order.append("first releases")
    thread.join(WAIT)
    assert order == ["first acquired", "first releases", "second acquired"]


def test_local_lock_gives_up_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_manifest_store, "LOCK_TIMEOUT", 0.2)  # time is the behaviour here
    store = LocalManifestStore(tmp_path / "rewards.json")
    with (
        store.lock(),
        pytest.raises(
            CapillaryError,
            match=rf"^manifest '{tmp_path}/rewards\.json': the lock file '{tmp_path}/rewards\.json\.lock' "
            r"stayed locked by another writer for 0s$",
        ),
        LocalManifestStore(tmp_path / "rewards.json").lock(),
    ):
        pass


def test_object_storage_read_write_and_first_run_creation(memory_fs: MemoryFileSystem) -> None:
    store = ObjectStorageManifestStore(MemoryPath("/bucket/rewards.json", memory_fs))  # type: ignore[arg-type]
    assert store.read() is None
    store.check_writable(b"{first}")  # a first run creates the object at once
    assert store.read() == b"{first}"
    store.check_writable(b"{again}")  # created meanwhile by another writer: left as it is
    assert store.read() == b"{first}"
    store.write(b"{second}")
    assert store.read() == b"{second}"
    store.check_writable(None)  # an existing object is not rewritten
    assert store.read() == b"{second}"
    with store.lock():  # no lock on object storage: a no-op
        store.write(b"{third}")
    assert memory_fs.cat_file("/bucket/rewards.json") == b"{third}"


def test_object_storage_errors_name_the_manifest(
    memory_fs: MemoryFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ObjectStorageManifestStore(MemoryPath("/bucket/rewards.json", memory_fs))  # type: ignore[arg-type]

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("Access Denied")

    monkeypatch.setattr(memory_fs, "cat_file", denied)
    monkeypatch.setattr(memory_fs, "pipe_file", denied)
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^manifest 'memory:///bucket/rewards\.json' cannot be read "
        r"\(PermissionError: Access Denied\)\. Nothing was uploaded",
    ):
        store.read()
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^manifest 'memory:///bucket/rewards\.json' cannot be written "
        r"\(PermissionError: Access Denied\)",
    ):
        store.check_writable(b"{}")
