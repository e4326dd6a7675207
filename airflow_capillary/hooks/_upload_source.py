"""What an upload sends: a local path, an ``ObjectStoragePath``, bytes or a binary file object.

(Not to be confused with :mod:`airflow_capillary.operators._expand`, which turns an operator's
``source`` argument into the list of files of a batch.)

:func:`resolve_source` turns any of them into a :class:`Source`: its size, a label for
messages, a default file name, and an ``opener`` that returns a *fresh* stream positioned at
the start of the content. The upload body calls the opener once per attempt, so a retry never
sends an already-consumed stream. Nothing here reads more than the first few kilobytes.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from airflow_capillary import _validation as v
from airflow_capillary._validation import SNIFF_BYTES, check_local_file
from airflow_capillary.exceptions import CapillaryInvalidInputError

if TYPE_CHECKING:
    from airflow_capillary.hooks._config import CapillaryConnectionConfig

__all__ = [
    "SPOOL_MEMORY_BYTES",
    "PreparedUpload",
    "Source",
    "UploadSource",
    "prepare_placeholder",
    "prepare_upload",
    "resolve_source",
]

#: Non-seekable streams are spooled once; up to this many bytes stay in memory, the rest on disk.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024

#: What ``upload_file`` accepts as ``source``.
UploadSource = Any  # str | os.PathLike[str] | ObjectStoragePath | bytes | BinaryIO


@dataclasses.dataclass(frozen=True)
class Source:
    """Content to upload, reopenable from the start any number of times.

    :param label: describes the source in messages (a path, ``<bytes>``, ``<stream>``).
    :param size: size in bytes.
    :param default_name: the file name to use when none is given (``None``: must be given).
    :param opener: returns a new binary stream positioned at the start; the caller closes it.
    """

    label: str
    size: int
    default_name: str | None
    opener: Callable[[], BinaryIO] = dataclasses.field(repr=False, compare=False)

    def head(self, count: int = SNIFF_BYTES) -> bytes:
        """Return up to ``count`` first bytes of the content.

        :param count: how many bytes.
        :return: the bytes.
        """
        with self.opener() as stream:
            return stream.read(count)


class _Window(io.RawIOBase):
    """Reads a caller-owned seekable stream from ``start``; closing it leaves the stream open."""

    def __init__(self, stream: IO[bytes], start: int) -> None:
        super().__init__()
        self._stream = stream
        stream.seek(start)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def resolve_source(source: UploadSource) -> Source:
    """Describe ``source`` as a :class:`Source` (checks a local file exists and is readable).

    :param source: a local path (str or ``os.PathLike``), an ``ObjectStoragePath``, ``bytes`` /
        ``bytearray`` / ``memoryview``, or a binary file object (seekable: read from its current
        position, which is remembered; non-seekable: spooled once to a temporary file).
    :return: the source.
    :raises CapillaryInvalidInputError: the source is missing, unreadable or of a wrong type.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return Source(label="<bytes>", size=len(data), default_name=None, opener=lambda: io.BytesIO(data))
    object_storage_path = _object_storage_path_class()
    if object_storage_path is not None and isinstance(source, object_storage_path):
        return _object_storage_source(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        size = check_local_file(path)
        return Source(
            label=path,
            size=size,
            default_name=os.path.basename(path),
            opener=lambda: cast("BinaryIO", open(path, "rb")),
        )
    if callable(getattr(source, "read", None)):
        return _stream_source(source)
    raise CapillaryInvalidInputError(
        f"cannot upload a {type(source).__name__}: give a path, an ObjectStoragePath, bytes or a binary file"
    )


def _object_storage_path_class() -> type | None:
    try:
        from airflow.sdk import ObjectStoragePath
    except ImportError:  # pragma: no cover - airflow.sdk always has it on Airflow >= 3.1
        return None
    return cast("type", ObjectStoragePath)


def _object_storage_source(path: Any) -> Source:
    label = str(path)
    try:
        if not path.is_file():
            raise CapillaryInvalidInputError(f"{label!r} does not exist or is not a regular file")
        size = int(path.stat().st_size)
    except CapillaryInvalidInputError:
        raise
    except (OSError, ValueError) as exc:
        raise CapillaryInvalidInputError(f"{label!r} cannot be read: {exc}") from None
    return Source(label=label, size=size, default_name=path.name, opener=lambda: path.open("rb"))


def _stream_source(stream: Any) -> Source:
    name = getattr(stream, "name", None)
    default_name = os.path.basename(name) if isinstance(name, str) and name else None
    label = f"<stream {name}>" if isinstance(name, str) and name else "<stream>"
    mode = getattr(stream, "mode", "b")
    if isinstance(stream, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode):
        raise CapillaryInvalidInputError(f"{label} is a text stream: open the file in binary mode ('rb')")
    if _seekable(stream):
        start = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
        return Source(
            label=label,
            size=max(0, end - start),
            default_name=default_name,
            opener=lambda: cast("BinaryIO", io.BufferedReader(_Window(stream, start))),
        )
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - lives with the Source
    try:
        shutil.copyfileobj(stream, spool)
    except TypeError:
        spool.close()
        raise CapillaryInvalidInputError(f"{label} does not yield bytes: open it in binary mode") from None
    size = spool.tell()

    def opener() -> BinaryIO:
        return cast("BinaryIO", io.BufferedReader(_Window(cast("IO[bytes]", spool), 0)))

    # The spool lives as long as something (a Source, a PreparedUpload) can still reopen it.
    weakref.finalize(opener, spool.close)
    return Source(label=label, size=size, default_name=default_name, opener=opener)


def _seekable(stream: Any) -> bool:
    try:
        if callable(getattr(stream, "seekable", None)) and not stream.seekable():
            return False
        stream.tell()
    except (OSError, AttributeError, ValueError):
        return False
    return callable(getattr(stream, "seek", None))


@dataclasses.dataclass(frozen=True)
class PreparedUpload:
    """A validated upload, ready to send (any number of times: the body reopens from the start).

    :param file_name: the name in Capillary.
    :param namespace: the file-service namespace.
    :param content_type: the content type sent with the file.
    :param size: the number of bytes to send.
    :param source_label: describes the source (a path, ``<bytes>``, ``<stream>``...).
    :param url: the upload URL (name and namespace percent-encoded).
    :param placeholder: no file is sent: Capillary creates a placeholder.
    :param opener: returns a new binary stream positioned at the start of the content.
    """

    file_name: str
    namespace: str
    content_type: str
    size: int
    source_label: str
    url: str
    placeholder: bool = False
    opener: Callable[[], BinaryIO] = dataclasses.field(
        default=lambda: io.BytesIO(b""), repr=False, compare=False
    )


def prepare_upload(
    config: CapillaryConnectionConfig,
    source: UploadSource,
    *,
    file_name: str | None,
    namespace: str | None,
    content_type: str | None,
) -> PreparedUpload:
    """Validate an upload without any network call (see ``CapillaryFileHook.prepare_upload``).

    :param config: the resolved connection and task policy.
    :param source: a local path, ``ObjectStoragePath``, bytes or binary file object.
    :param file_name: the name in Capillary (default: the source's base name).
    :param namespace: the namespace (default: the connection's).
    :param content_type: the content type to send (default: from the extension).
    :return: the prepared upload.
    :raises CapillaryInvalidInputError: an input is wrong (names file, namespace and connection).
    """
    ns = namespace or config.namespace
    with _naming(config.conn_id, file_name, ns):
        v.validate_namespace(ns)
        src = resolve_source(source)
        name = file_name if file_name is not None else src.default_name
        if name is None:
            raise CapillaryInvalidInputError(f"file_name is required to upload {src.label}")
    with _naming(config.conn_id, name, ns):
        v.validate_file_name(name)
        ctype = v.validate_content_type(content_type) if content_type else v.content_type_for(name)
        v.check_size(name, src.size, allow_empty=config.allow_empty, max_file_size=config.max_file_size)
        if config.check_content and src.size:
            v.check_content_matches(name, src.head())
    url = config.url(v.upload_path(ns, name))
    return PreparedUpload(name, ns, ctype, src.size, src.label, url, opener=src.opener)


def prepare_placeholder(
    config: CapillaryConnectionConfig, file_name: str, namespace: str | None
) -> PreparedUpload:
    """Validate a placeholder's name and namespace (see ``CapillaryFileHook.create_placeholder``).

    :param config: the resolved connection.
    :param file_name: the name in Capillary (with an image extension).
    :param namespace: the namespace (default: the connection's).
    :return: the prepared placeholder (no content).
    :raises CapillaryInvalidInputError: the name or namespace is wrong.
    """
    ns = namespace or config.namespace
    with _naming(config.conn_id, file_name, ns):
        v.validate_namespace(ns)
        v.validate_file_name(file_name)
    url = config.url(v.upload_path(ns, file_name))
    return PreparedUpload(
        file_name, ns, v.content_type_for(file_name), 0, "<placeholder>", url, placeholder=True
    )


@contextmanager
def _naming(conn_id: str, file_name: str | None, namespace: str | None) -> Iterator[None]:
    """Add the file, namespace and connection to an input error raised inside."""
    try:
        yield
    except CapillaryInvalidInputError as exc:
        raise CapillaryInvalidInputError(
            f"{exc.message} (file {file_name!r}, namespace {namespace!r}, connection {conn_id!r})",
            conn_id=conn_id,
            file_name=file_name,
            namespace=namespace,
        ) from None
