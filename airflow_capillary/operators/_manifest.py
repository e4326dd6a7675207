"""The sync manifest of :class:`~airflow_capillary.operators.upload_image.UploadImageOperator`.

Capillary has no list or idempotency API, so the provider remembers what it uploaded: one entry
per ``(namespace, name)`` with the sha256 and size of what was sent and what Capillary answered
(the document: :mod:`~airflow_capillary.operators._manifest_document`; where it lives:
:mod:`~airflow_capillary.operators._manifest_store`). A refresh then uploads only the files whose
content changed. :class:`Manifest` records each successful upload and writes a checkpoint every
``checkpoint_uploads`` uploads or ``checkpoint_seconds`` seconds; every write re-reads the stored
document under the store's lock and merges entry by entry (the newer ``uploaded_at`` wins), so
concurrent writers keep each other's entries.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from airflow_capillary.exceptions import CapillaryError
from airflow_capillary.operators._arguments import DEFAULT_CHECKPOINT_SECONDS, DEFAULT_CHECKPOINT_UPLOADS
from airflow_capillary.operators._manifest_document import (
    EMPTY_DOCUMENT,
    ManifestEntry,
    decode,
    encode,
    entry_key,
    entry_of,
    merge,
    unchanged_record,
)
from airflow_capillary.operators._manifest_store import ManifestStore, manifest_store

if TYPE_CHECKING:
    from airflow_capillary.models import UploadedFile

__all__ = [
    "Action",
    "Manifest",
    "action_for",
    "file_digest",
    "open_manifest",
]

#: Bytes read at a time while hashing a source (the memory used per file, whatever its size).
HASH_CHUNK_BYTES = 1 << 20

Action = Literal["new", "changed", "unchanged"]


class ManifestLog(Protocol):
    """What a manifest needs of a logger (stdlib or the task SDK's structlog)."""

    def info(self, msg: Any, /, *args: Any) -> Any:
        """Log ``msg % args`` at INFO."""

    def error(self, msg: Any, /, *args: Any) -> Any:
        """Log ``msg % args`` at ERROR."""


def file_digest(path: Any) -> tuple[str, int]:
    """Stream a source once and return its sha256 and size, reading :data:`HASH_CHUNK_BYTES` at a time.

    :param path: a local :class:`~pathlib.Path` or an ``ObjectStoragePath``.
    :return: hex sha256 and the number of bytes read.
    :raises OSError: the source cannot be read (the storage's own errors pass through too).
    """
    digest = hashlib.sha256()
    size = 0
    buffer = memoryview(bytearray(HASH_CHUNK_BYTES))
    stream: IO[bytes]
    if isinstance(path, Path):
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    else:
        stream = path.open("rb", block_size=HASH_CHUNK_BYTES)
    with stream:
        while count := stream.readinto(buffer):  # type: ignore[attr-defined]
            digest.update(buffer[:count])
            size += count
    return digest.hexdigest(), size


def action_for(entry: ManifestEntry | None, digest: tuple[str, int] | None) -> Action:
    """Decide what to do with a file.

    :param entry: its manifest entry, if any.
    :param digest: sha256 and size of its source; ``None`` with ``force_upload`` (not hashed).
    :return: ``new`` without an entry, ``unchanged`` when the entry has this sha256 and size,
        else ``changed``.
    """
    if entry is None:
        return "new"
    if digest is not None and digest == (entry["sha256"], entry["size"]):
        return "unchanged"
    return "changed"


def open_manifest(argument: Any, **options: Any) -> Manifest:
    """Open the manifest a rendered ``manifest`` argument names (see :meth:`Manifest.load`).

    :param argument: a local path, a URI or an ``ObjectStoragePath``.
    :param options: the other arguments of :class:`Manifest`.
    :return: the loaded manifest.
    :raises CapillaryConfigError: the argument has a wrong type.
    :raises CapillaryInvalidInputError: the manifest cannot be read, parsed or written.
    """
    return Manifest.load(manifest_store(argument), **options)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Manifest:
    """A loaded manifest: lookups, and the entries recorded since the last write.

    :param store: where it lives.
    :param entries: the entries read at the start.
    :param checkpoint_uploads: write after this many recorded uploads.
    :param checkpoint_seconds: write when this many seconds passed since the last write (or the
        start) and an upload is pending.
    :param log: where :meth:`load`, :meth:`plan` and :meth:`save` log their line.
    :param clock: monotonic clock (injectable).
    :param now: wall clock of ``uploaded_at`` (injectable).
    """

    def __init__(
        self,
        store: ManifestStore,
        entries: Mapping[str, ManifestEntry],
        *,
        checkpoint_uploads: int = DEFAULT_CHECKPOINT_UPLOADS,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        log: ManifestLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.entries = dict(entries)
        self.checkpoint_uploads = checkpoint_uploads
        self.checkpoint_seconds = checkpoint_seconds
        self.log = log
        #: Writes so far, and the number of entries the last one stored.
        self.writes = 0
        self.size = len(self.entries)
        self._clock = clock
        self._now = now
        self._pending: dict[str, ManifestEntry] = {}
        self._since_write = 0
        self._last_write = clock()
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        #: The last document read or written, and its entries: a re-read that finds the same bytes
        #: (no other writer meanwhile) is not parsed and checked again.
        self._known: tuple[bytes | None, dict[str, ManifestEntry]] = (None, {})

    @classmethod
    def load(cls, store: ManifestStore, **options: Any) -> Manifest:
        """Read and check the stored document, and check up front that the location is writable.

        :param store: where it lives.
        :param options: the other arguments of :class:`Manifest`.
        :return: the manifest (empty for a first run).
        :raises CapillaryInvalidInputError: it cannot be read, parsed or written.
        """
        data = store.read()
        entries = decode(data, store.label) if data is not None else {}
        store.check_writable(EMPTY_DOCUMENT if data is None else None)
        manifest = cls(store, entries, **options)
        manifest._known = (data, dict(entries))
        if manifest.log is not None:
            manifest.log.info("Manifest %s: %s entries", store.label, f"{len(entries):,}")
        return manifest

    @property
    def label(self) -> str:
        """The location, as messages name it."""
        return self.store.label

    @property
    def pending(self) -> int:
        """How many recorded uploads are not written yet."""
        with self._lock:
            return len(self._pending)

    def plan(
        self,
        sources: Sequence[str],
        prepared: Sequence[Any],
        actions: Sequence[Action | None],
        *,
        force: bool = False,
    ) -> dict[int, dict[str, Any]]:
        """Return the XCom records of the files decided ``unchanged`` (from their entries), and log
        the plan: how many files are unchanged, new and changed.

        :param sources: the source label of each file.
        :param prepared: each file's prepared upload (``namespace``, ``file_name``).
        :param actions: each file's action.
        :param force: ``force_upload`` is on (said in the line).
        :return: file index to record.
        """
        kept = {}
        for index, (item, action) in enumerate(zip(prepared, actions, strict=True)):
            entry = self.get(item.namespace, item.file_name)
            if action == "unchanged" and entry is not None:
                kept[index] = unchanged_record(
                    entry, namespace=item.namespace, name=item.file_name, source=sources[index]
                )
        if self.log is not None:
            self.log.info(
                "Manifest %s: %s files, %s unchanged, %s to upload (%s new, %s changed)%s",
                self.label,
                *(f"{n:,}" for n in (len(sources), len(kept), len(sources) - len(kept))),
                *(f"{sum(a == kind for a in actions):,}" for kind in ("new", "changed")),
                ", force_upload" if force else "",
            )
        return kept

    def save(self, *, raise_errors: bool, wait: bool = True) -> None:
        """Write the uploads not written yet (at the end of a batch, when it stops early, on_kill).

        :param raise_errors: raise a failure to write; else log it (the task is failing already).
        :param wait: see :meth:`flush` (``False`` from ``on_kill``).
        :raises CapillaryError: the write failed and ``raise_errors`` is true.
        """
        count = self.pending
        if not count:
            return
        try:
            if not self.flush(wait=wait):
                return  # another write is running; it finishes after on_kill returns
        except CapillaryError as exc:
            if raise_errors or self.log is None:
                raise
            self.log.error("%s", exc)
            return
        if self.log is not None:
            self.log.info(
                "Manifest %s: recorded %d upload(s), %s entries in all", self.label, count, f"{self.size:,}"
            )

    def get(self, namespace: str, name: str) -> ManifestEntry | None:
        """Return the entry of a file as read at the start, if any.

        :param namespace: the namespace.
        :param name: the name in Capillary.
        :return: the entry, or ``None``.
        """
        return self.entries.get(entry_key(namespace, name))

    def decide(self, prepared: Any, path: Any, *, force: bool = False) -> Action:
        """Hash a file's source (unless ``force``) and decide its action from its entry.

        :param prepared: its prepared upload (``namespace``, ``file_name``).
        :param path: its source (:func:`file_digest`).
        :param force: ``force_upload``: no hash, every file with an entry is ``changed``.
        :return: ``new``, ``changed`` or ``unchanged``.
        :raises OSError: the source cannot be read.
        """
        digest = None if force else file_digest(path)
        return action_for(self.get(prepared.namespace, prepared.file_name), digest)

    def record(self, prepared: Any, result: UploadedFile, *, source: str) -> None:
        """Record a successful upload; write a checkpoint when one is due.

        :param prepared: what was sent (its ``namespace`` and ``file_name`` make the key).
        :param result: the hook's result.
        :param source: the source label.
        :raises CapillaryError: a due checkpoint could not be written.
        """
        entry = entry_of(result, source=source, uploaded_at=self._now())
        with self._lock:
            self._pending[entry_key(prepared.namespace, prepared.file_name)] = entry
            self._since_write += 1
            due = self._since_write >= self.checkpoint_uploads or self._time_due()
        if due:
            self.flush()

    def tick(self) -> None:
        """Write a checkpoint if uploads are pending and ``checkpoint_seconds`` have passed.

        :raises CapillaryError: the checkpoint could not be written.
        """
        with self._lock:
            due = bool(self._pending) and self._time_due()
        if due:
            self.flush()

    def _time_due(self) -> bool:
        return self._clock() - self._last_write >= self.checkpoint_seconds

    def _decoded(self, data: bytes | None) -> dict[str, ManifestEntry]:
        """The entries of a document just read (parsed and checked, unless it is the one last seen)."""
        if data is None:
            return {}
        known, entries = self._known
        return dict(entries) if data == known else decode(data, self.label)

    def flush(self, *, wait: bool = True) -> bool:
        """Write the pending entries: under the store's lock, re-read, merge, write atomically.

        :param wait: wait for a write already running in another thread; ``False`` (``on_kill``,
            which may interrupt a write in its own thread) leaves that write to finish instead.
        :return: ``True`` when written (or nothing was pending), ``False`` when another write was
            running and ``wait`` is false.
        :raises CapillaryInvalidInputError: the stored document became unreadable meanwhile.
        :raises CapillaryError: the write failed (the pending entries stay pending).
        """
        if not self._writing.acquire(blocking=wait):
            return False
        try:
            with self._lock:
                changes = dict(self._pending)
            if not changes:
                return True
            with self.store.lock():
                data = self.store.read()
                merged = merge(self._decoded(data), changes)
                written = encode(merged)
                try:
                    self.store.write(written)
                except Exception as exc:
                    raise CapillaryError(
                        f"manifest {self.label!r} cannot be written ({type(exc).__name__}: {exc}); "
                        f"{len(changes)} uploaded file(s) are not recorded in it (their records are in "
                        "XCom 'uploaded')"
                    ) from None
            self._known = (written, merged)
            with self._lock:
                for key, entry in changes.items():
                    if self._pending.get(key) is entry:
                        del self._pending[key]
                self._since_write = len(self._pending)
                self._last_write = self._clock()
            self.writes += 1
            self.size = len(merged)
            return True
        finally:
            self._writing.release()
