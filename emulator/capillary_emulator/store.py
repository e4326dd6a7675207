"""Persistent storage of uploaded files: objects on disk plus an SQLite index.

Layout of the data directory::

    signing.key            the emulator's secret key (see ``signing``)
    index.sqlite3          one row per stored version (WAL journal: a kill -9 loses nothing committed)
    objects/<uuid>.<ext>   the stored bytes, named like the S3 object of ``s3_token``
    tmp/                   bodies being received; renamed into objects/ when complete

Bodies are streamed to ``tmp/`` and renamed into ``objects/`` before their index row is committed,
so a crash at any point leaves either a complete version or none (at worst an orphan object file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    placeholder INTEGER NOT NULL,
    file_handle TEXT NOT NULL,
    bucket TEXT NOT NULL,
    s3_token TEXT NOT NULL UNIQUE,
    object_name TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    UNIQUE (namespace, name, version)
)
"""
_COLUMNS = (
    "namespace, name, version, size, sha256, content_type, placeholder, file_handle, bucket, s3_token, "
    "object_name, last_modified"
)
_PLACEHOLDERS = ", ".join("?" * 12)


@dataclass(frozen=True)
class StoredFile:
    """One stored version of a file.

    :param namespace: the namespace.
    :param name: the file name as uploaded.
    :param version: version number, from 1 per (namespace, name).
    :param size: stored bytes.
    :param sha256: hex digest of the stored bytes.
    :param content_type: MIME type.
    :param placeholder: whether 0 bytes were stored (the documented placeholder).
    :param file_handle: the file handle (UUID) returned to the client.
    :param bucket: the emulated S3 bucket.
    :param s3_token: ``{namespace}/{org_id}/{uuid}.{ext}``.
    :param path: where the bytes are on disk.
    :param last_modified: upload time, UTC.
    """

    namespace: str
    name: str
    version: int
    size: int
    sha256: str
    content_type: str
    placeholder: bool
    file_handle: str
    bucket: str
    s3_token: str
    path: Path
    last_modified: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe form (``path`` and ``last_modified`` as ISO 8601 strings)."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "placeholder": self.placeholder,
            "file_handle": self.file_handle,
            "bucket": self.bucket,
            "s3_token": self.s3_token,
            "path": str(self.path),
            "last_modified": self.last_modified.isoformat(),
        }


class BodySink:
    """A temporary file receiving a body, with its running size and SHA-256.

    :param directory: where to create the file (on the same file system as the objects).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{uuid.uuid4().hex}.part"
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()/discard()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append bytes.

        :param data: the next bytes of the body.
        """
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of what was written."""
        return self._hash.hexdigest()

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def truncate(self, size: int) -> None:
        """Keep only the first ``size`` bytes and rehash them (for the ``truncate`` fault).

        :param size: bytes to keep.
        """
        self.close()
        os.truncate(self.path, size)
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self._hash, self.size = digest, size

    def discard(self) -> None:
        """Close and delete the file."""
        self.close()
        self.path.unlink(missing_ok=True)


class FileStore:
    """Versioned file storage in a data directory.

    :param data_dir: the directory (created when missing).
    :param bucket: the emulated S3 bucket name.
    :param org_id: the organisation id used in ``s3_token``.
    """

    def __init__(self, data_dir: Path, *, bucket: str, org_id: str) -> None:
        self.data_dir = data_dir
        self.bucket = bucket
        self.org_id = org_id
        self.objects_dir = data_dir / "objects"
        self.tmp_dir = data_dir / "tmp"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # bodies cut short by a crash
        self.tmp_dir.mkdir()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / "index.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def new_sink(self) -> BodySink:
        """Return a temporary file to stream a body into."""
        return BodySink(self.tmp_dir)

    def commit(
        self,
        sink: BodySink | None,
        *,
        namespace: str,
        name: str,
        content_type: str,
        now: datetime | None = None,
    ) -> StoredFile:
        """Store a received body (or a placeholder) as the next version of ``namespace/name``.

        :param sink: the received body, or ``None`` for a placeholder (0 bytes). A 0-byte body is a
            placeholder too.
        :param namespace: the namespace.
        :param name: the file name, with its extension.
        :param content_type: MIME type to record.
        :param now: upload time (default: now).
        :return: the new version.
        """
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else "bin"
        object_name = f"{uuid.uuid4()}.{ext}"
        target = self.objects_dir / object_name
        if sink is None:
            target.touch()
            size, sha256 = 0, hashlib.sha256().hexdigest()
        else:
            sink.close()
            os.replace(sink.path, target)
            size, sha256 = sink.size, sink.sha256
        stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        row = (
            namespace,
            name,
            size,
            sha256,
            content_type,
            int(size == 0),
            str(uuid.uuid4()),
            self.bucket,
            f"{namespace}/{self.org_id}/{object_name}",
            object_name,
            stamp.isoformat(),
        )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (version,) = self._db.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM files WHERE namespace = ? AND name = ?",
                    (namespace, name),
                ).fetchone()
                self._db.execute(
                    f"INSERT INTO files ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
                    (*row[:2], version, *row[2:]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                target.unlink(missing_ok=True)
                raise
        return self._row_to_file((*row[:2], version, *row[2:]))

    def _row_to_file(self, row: tuple[Any, ...]) -> StoredFile:
        (
            namespace,
            name,
            version,
            size,
            sha256,
            content_type,
            placeholder,
            handle,
            bucket,
            token,
            obj,
            mod,
        ) = row
        return StoredFile(
            namespace=namespace,
            name=name,
            version=version,
            size=size,
            sha256=sha256,
            content_type=content_type,
            placeholder=bool(placeholder),
            file_handle=handle,
            bucket=bucket,
            s3_token=token,
            path=self.objects_dir / obj,
            last_modified=datetime.fromisoformat(mod),
        )

    def files(self) -> list[StoredFile]:
        """Return every stored version, in upload order."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM files ORDER BY id").fetchall()
        return [self._row_to_file(row) for row in rows]

    def find(self, bucket: str, s3_token: str) -> StoredFile | None:
        """Return the version stored under an S3 object key.

        :param bucket: the bucket from the URL.
        :param s3_token: the object key from the URL.
        :return: the version, or ``None``.
        """
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE bucket = ? AND s3_token = ?", (bucket, s3_token)
            ).fetchone()
        return None if row is None else self._row_to_file(row)

    def reset(self) -> None:
        """Delete every stored file and index row."""
        with self._lock:
            self._db.execute("DELETE FROM files")
            shutil.rmtree(self.objects_dir, ignore_errors=True)
            self.objects_dir.mkdir()

    def close(self) -> None:
        """Close the index."""
        with self._lock:
            self._db.close()
