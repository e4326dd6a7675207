"""Where a sync manifest lives: a local file (atomic rename, lock file) or an object-storage object.

A store reads and writes the whole document as bytes; it knows nothing of its content
(:mod:`~airflow_capillary.operators._manifest` does). Guarantees:

- **local file** (a path or a ``file://`` URI): a write goes to a temporary file in the same
  folder, is flushed and fsynced, then renamed over the manifest (and the folder is fsynced), so a
  reader sees the old document or the new one, never a part. Writers take an exclusive ``flock``
  on ``<manifest>.lock`` beside it, so that read-merge-write cycles of concurrent tasks (on one
  machine, or on a shared file system with working ``flock``) do not interleave;
- **object storage** (``s3://conn@bucket/key.json``, anything ``ObjectStoragePath`` opens): a
  write is one PUT of the whole document (atomic for readers on S3, GCS and Azure Blob). There is
  no lock: two tasks must not write one object concurrently (one manifest per mapped chunk).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError, CapillaryInvalidInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "LOCK_TIMEOUT",
    "LocalManifestStore",
    "ManifestStore",
    "ObjectStorageManifestStore",
    "describe_manifest",
    "invalid_manifest",
    "manifest_store",
]

#: Seconds a writer waits for the lock file of a local manifest before giving up.
LOCK_TIMEOUT = 120.0
#: Seconds between two attempts to take the lock.
LOCK_POLL = 0.05
#: Mode of a manifest file created by the provider (an existing file keeps its own).
NEW_FILE_MODE = 0o644


class ManifestStore(Protocol):
    """Reads and writes one manifest document.

    :ivar label: the location, as messages name it.
    :ivar has_lock: whether :meth:`lock` excludes concurrent writers.
    """

    label: str
    has_lock: bool

    def read(self) -> bytes | None:
        """Return the document, or ``None`` when there is none yet (a first run).

        :raises CapillaryInvalidInputError: it exists but cannot be read.
        """

    def write(self, data: bytes) -> None:
        """Replace the document atomically.

        :param data: the whole document.
        :raises OSError: the storage refused the write.
        """

    def check_writable(self, empty_document: bytes | None) -> None:
        """Check up front that :meth:`write` can succeed, where the storage allows it.

        :param empty_document: what a first run's document holds, when :meth:`read` found none;
            ``None`` when a document exists.
        :raises CapillaryInvalidInputError: the location cannot be written.
        """

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclude other writers for a read-merge-write cycle (a no-op without a lock)."""


def describe_manifest(manifest: Any) -> str:
    """Return how messages name a ``manifest`` argument.

    :param manifest: the argument.
    :return: its text.
    """
    return os.fspath(manifest) if isinstance(manifest, os.PathLike) else str(manifest)


def manifest_store(manifest: Any) -> ManifestStore:
    """Return the store of a rendered ``manifest`` argument.

    :param manifest: a local path (``str`` or path-like, ``~`` expanded), a ``file://`` URI, any
        other URI ``ObjectStoragePath`` opens, or an ``ObjectStoragePath``.
    :return: a :class:`LocalManifestStore` for local files, else an :class:`ObjectStorageManifestStore`.
    :raises CapillaryConfigError: the argument has another type or is empty.
    """
    if _is_object_storage(manifest):
        return _store_of_storage_path(manifest)
    if isinstance(manifest, os.PathLike):
        manifest = os.fsdecode(os.fspath(manifest))
    if not isinstance(manifest, str):
        raise CapillaryConfigError(
            "manifest must be a path, a URI or an ObjectStoragePath, got " + type(manifest).__name__
        )
    text = manifest.strip()
    if not text:
        raise CapillaryConfigError("manifest is an empty path")
    if "://" in text:
        from airflow.sdk import ObjectStoragePath

        return _store_of_storage_path(ObjectStoragePath(text))
    return LocalManifestStore(Path(os.path.abspath(Path(text).expanduser())))


def _is_object_storage(value: Any) -> bool:
    return hasattr(value, "protocol") and hasattr(value, "fs")


def _store_of_storage_path(path: ObjectStoragePath) -> ManifestStore:
    if path.protocol in ("file", "local"):
        return LocalManifestStore(Path(path.path))
    return ObjectStorageManifestStore(path)


def invalid_manifest(label: str, problem: str) -> CapillaryInvalidInputError:
    """Return the error of a manifest that cannot be used.

    :param label: the manifest's location.
    :param problem: what is wrong, a phrase after the location (``"is not valid JSON (...)"``).
    :return: the error, naming both and saying that nothing was uploaded.
    """
    return CapillaryInvalidInputError(
        f"manifest {label!r} {problem}. Nothing was uploaded: a manifest that cannot be used is never "
        "taken as empty (that would upload every file again as a new version); fix it, or move it away "
        "to start over"
    )


class LocalManifestStore:
    """A manifest on a local (or mounted) file system.

    :param path: the manifest file (absolute).
    """

    has_lock = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> bytes | None:
        """Return the file's bytes, or ``None`` when it does not exist.

        :return: the document, or ``None``.
        :raises CapillaryInvalidInputError: it is a folder, or cannot be read.
        """
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise invalid_manifest(self.label, "is a folder, not a file") from None
        except NotADirectoryError:
            raise invalid_manifest(
                self.label, "cannot be read or written (a part of its path is a file)"
            ) from None
        except OSError as exc:
            raise invalid_manifest(self.label, f"cannot be read ({exc.strerror or exc})") from None

    def check_writable(self, empty_document: bytes | None) -> None:
        """Create the folder if needed and open the lock file: both prove new files can be written there.

        :param empty_document: unused (the local check is the same with or without a document).
        :raises CapillaryInvalidInputError: the folder cannot be created or written.
        """
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.lock_path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE))
        except OSError as exc:
            raise invalid_manifest(
                self.label, f"cannot be written ({exc.strerror or exc}: {exc.filename or self.lock_path})"
            ) from None
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise invalid_manifest(
                self.label, f"cannot be written (folder {str(self.path.parent)!r} is read-only)"
            )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive ``flock`` on the lock file (waits up to :data:`LOCK_TIMEOUT`).

        :return: nothing (a context manager).
        :raises CapillaryError: another writer held the lock for too long.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        raise CapillaryError(
                            f"manifest {self.label!r}: the lock file {str(self.lock_path)!r} stayed "
                            f"locked by another writer for {LOCK_TIMEOUT:.0f}s"
                        ) from None
                    time.sleep(LOCK_POLL)
            yield
        finally:
            os.close(fd)  # releases the lock

    def write(self, data: bytes) -> None:
        """Write a temporary file in the same folder, fsync it, rename it over the manifest, fsync the folder.

        :param data: the whole document.
        :raises OSError: the write failed (the manifest is then unchanged).
        """
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = NEW_FILE_MODE
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)  # the rename itself survives a crash
        finally:
            os.close(folder_fd)


class ObjectStorageManifestStore:
    """A manifest object in object storage (S3, GCS, Azure Blob, ... through ``ObjectStoragePath``).

    :param path: the object's path.
    """

    has_lock = False

    def __init__(self, path: ObjectStoragePath) -> None:
        self.path = path
        self.label = str(path)

    def read(self) -> bytes | None:
        """Return the object's bytes, or ``None`` when it does not exist.

        :return: the document, or ``None``.
        :raises CapillaryInvalidInputError: the storage refused the read.
        """
        fs = self.path.fs
        with contextlib.suppress(Exception):  # listings cache: a re-read must see other writers
            fs.invalidate_cache(self.path.path)
        try:
            data = fs.cat_file(self.path.path)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise invalid_manifest(self.label, "is a folder, not an object") from None
        except Exception as exc:  # each storage has its own errors (botocore, azure, ...)
            raise invalid_manifest(self.label, f"cannot be read ({type(exc).__name__}: {exc})") from None
        return bytes(data)

    def check_writable(self, empty_document: bytes | None) -> None:
        """For a first run, create the object now (exclusive create): this proves the location is
        writable before any upload. An existing object is not rewritten (that could overwrite a
        concurrent writer's document); its writability shows at the first checkpoint.

        :param empty_document: the document to create when there is none; ``None``: one exists.
        :raises CapillaryInvalidInputError: the object cannot be created.
        """
        if empty_document is None:
            return
        try:
            self.path.fs.pipe_file(self.path.path, empty_document, mode="create")
        except FileExistsError:  # created meanwhile by another writer: writable, and not ours to replace
            return
        except Exception as exc:
            raise invalid_manifest(self.label, f"cannot be written ({type(exc).__name__}: {exc})") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """No lock on object storage: one writer per object (see the module docstring).

        :return: nothing (a context manager).
        """
        yield

    def write(self, data: bytes) -> None:
        """Replace the object with one PUT of the whole document.

        :param data: the whole document.
        :raises Exception: the storage's own error when the write failed.
        """
        self.path.fs.pipe_file(self.path.path, data)
