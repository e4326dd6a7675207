"""Kills mutmut survivors in ``airflow_capillary/hooks/_upload_source.py`` (``_source`` at ff9b061)."""

from __future__ import annotations

import gc
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.hooks import _upload_source
from airflow_capillary.hooks._upload_source import (
    SPOOL_MEMORY_BYTES,
    _object_storage_source,
    _Window,
    resolve_source,
)
from tests.hooks.recorder import PNG


class Plain:
    """A readable, seekable stream with no ``seekable``, ``name`` or ``mode``, reading only ints."""

    def __init__(self, data: bytes, start: int = 0) -> None:
        self._data = io.BytesIO(data)
        self._data.seek(start)

    def read(self, size: int = -1) -> bytes:
        if size < 0:  # a ``None`` size is a TypeError here
            return self._data.read()
        return self._data.read(size)

    def tell(self) -> int:
        return self._data.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)


class NoSeek:
    """A readable stream with ``tell`` but no ``seek``."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def tell(self) -> int:
        return self._data.tell()


class SaysNotSeekable(io.BytesIO):
    """Could seek, but says it cannot (as a pipe wrapper may)."""

    name = "/in/pipe.png"

    def seekable(self) -> bool:
        return False


def read_all(source: _upload_source.Source) -> bytes:
    with source.opener() as stream:
        return stream.read()


def test_bytes_source() -> None:
    for data in (b"abc", bytearray(b"abc"), memoryview(b"abc")):
        source = resolve_source(data)
        assert (source.label, source.size, source.default_name) == ("<bytes>", 3, None)
        assert read_all(source) == b"abc"
        assert source.head(2) == b"ab"
    assert resolve_source(b"").size == 0


def test_path_sources(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(PNG)

    class BytesPath:
        def __fspath__(self) -> bytes:
            return os.fsencode(str(path))

    for given in (str(path), path, BytesPath()):
        source = resolve_source(given)
        assert (source.label, source.size, source.default_name) == (str(path), len(PNG), "p.png")
        assert read_all(source) == PNG
    assert resolve_source(path).head() == PNG  # SNIFF_BYTES is more than 51


@pytest.mark.parametrize("value", [42, None, object(), type("R", (), {"read": b"not callable"})()])
def test_unsupported_source_message(value: Any) -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        resolve_source(value)
    assert str(info.value) == (
        f"cannot upload a {type(value).__name__}: give a path, an ObjectStoragePath, bytes or a binary file"
    )


def test_object_storage_path_is_recognised(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    assert _upload_source._object_storage_path_class() is ObjectStoragePath
    (tmp_path / "o.png").write_bytes(PNG)
    path = ObjectStoragePath(f"file://{tmp_path}/o.png")
    source = resolve_source(path)
    assert (source.label, source.size, source.default_name) == (str(path), len(PNG), "o.png")
    assert read_all(source) == PNG
    missing = ObjectStoragePath(f"file://{tmp_path}/none.png")
    with pytest.raises(CapillaryInvalidInputError) as info:
        resolve_source(missing)
    assert str(info.value) == f"{str(missing)!r} does not exist or is not a regular file"


@pytest.mark.parametrize("error", [OSError("denied"), ValueError("bad size")])
def test_object_storage_read_errors(error: Exception) -> None:
    class Remote:
        name = "r.png"

        def __str__(self) -> str:
            return "s3://b/r.png"

        def is_file(self) -> bool:
            return True

        def stat(self) -> Any:
            raise error

    with pytest.raises(CapillaryInvalidInputError) as info:
        _object_storage_source(Remote())
    assert str(info.value) == f"'s3://b/r.png' cannot be read: {error}"


def test_seekable_stream_is_windowed_not_copied() -> None:
    stream = io.BytesIO(b"HEAD" + PNG)
    stream.seek(4)
    source = resolve_source(stream)
    assert (source.label, source.size, source.default_name) == ("<stream>", len(PNG), None)
    assert stream.tell() == 4  # its position is put back, nothing was read
    stream.seek(4)
    stream.write(b"LIVE")  # the window reads the caller's stream itself
    assert read_all(source) == b"LIVE" + PNG[4:]
    assert not stream.closed


def test_stream_without_seekable_method_is_windowed() -> None:
    stream = Plain(b"xxabcdef", start=2)
    source = resolve_source(stream)
    assert (source.label, source.size, source.default_name) == ("<stream>", 6, None)
    assert stream.tell() == 2
    assert read_all(source) == b"abcdef"


def test_empty_seekable_stream_has_size_zero() -> None:
    stream = io.BytesIO(b"abc")
    stream.seek(3)
    assert resolve_source(stream).size == 0
    assert resolve_source(io.BytesIO()).size == 0
    stream.seek(10)  # past the end: nothing to send, not a negative size
    assert resolve_source(stream).size == 0


def test_stream_that_says_not_seekable_is_spooled() -> None:
    stream = SaysNotSeekable(b"zz" + PNG)
    stream.read(2)
    source = resolve_source(stream)
    assert (source.label, source.size, source.default_name) == ("<stream /in/pipe.png>", len(PNG), "pipe.png")
    assert stream.tell() == 2 + len(PNG)  # copied once into the spool
    stream.seek(2)
    stream.write(b"LIVE")
    assert read_all(source) == PNG  # the copy, not the live stream
    assert read_all(source) == PNG


def test_stream_without_seek_is_spooled() -> None:
    stream = NoSeek(PNG)
    source = resolve_source(stream)
    assert source.size == len(PNG)
    assert stream.tell() == len(PNG)
    assert read_all(source) == PNG


def test_stream_whose_tell_fails_is_spooled() -> None:
    class BadTell(io.BytesIO):
        def tell(self) -> int:
            raise ValueError("no position")

    stream = BadTell(PNG)
    source = resolve_source(stream)
    assert source.size == len(PNG)
    assert read_all(source) == PNG


@pytest.mark.parametrize(("name", "label"), [(5, "<stream>"), ("", "<stream>"), (None, "<stream>")])
def test_stream_names_that_are_not_paths(name: Any, label: str) -> None:
    stream = io.BytesIO(PNG)
    stream.name = name
    source = resolve_source(stream)
    assert (source.label, source.default_name) == (label, None)


def test_named_stream_label_and_default_name() -> None:
    stream = io.BytesIO(PNG)
    stream.name = "/data/in/x.png"
    source = resolve_source(stream)
    assert (source.label, source.default_name) == ("<stream /data/in/x.png>", "x.png")


def test_text_mode_stream_is_refused() -> None:
    class TextLike(Plain):
        mode = "r"
        name = "/t.png"

    with pytest.raises(CapillaryInvalidInputError) as info:
        resolve_source(TextLike(PNG))
    assert str(info.value) == "<stream /t.png> is a text stream: open the file in binary mode ('rb')"
    with pytest.raises(CapillaryInvalidInputError) as info:
        resolve_source(io.StringIO("x"))
    assert str(info.value) == "<stream> is a text stream: open the file in binary mode ('rb')"

    class BinaryLike(Plain):
        mode = "rb+"

    assert resolve_source(BinaryLike(b"ab")).size == 2


def test_stream_yielding_text_is_refused() -> None:
    class Strings:
        def __init__(self) -> None:
            self.done = False

        def read(self, size: int = -1) -> str:
            if self.done:
                return ""
            self.done = True
            return "text"

    with pytest.raises(CapillaryInvalidInputError) as info:
        resolve_source(Strings())
    assert str(info.value) == "<stream> does not yield bytes: open it in binary mode"


def test_spool_size_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[Any] = []
    spools: list[Any] = []
    real = tempfile.SpooledTemporaryFile

    def spooled(*args: Any, **kwargs: Any) -> Any:
        sizes.append((args, kwargs))
        spools.append(real(*args, **kwargs))
        return spools[-1]

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", spooled)
    assert SPOOL_MEMORY_BYTES == 8 * 1024 * 1024
    source = resolve_source(NoSeek(b"abc"))
    assert sizes == [((), {"max_size": SPOOL_MEMORY_BYTES})]
    assert read_all(source) == b"abc"
    assert not spools[0].closed  # lives as long as the source can reopen it
    del source
    gc.collect()
    assert spools[0].closed


def test_window_reads() -> None:
    window = _Window(Plain(b"0123456789"), 4)  # type: ignore[arg-type]
    assert window.readable() is True
    assert window.read(2) == b"45"
    assert window.read(None) == b"6789"
    assert window.read(None) == b""
    window = _Window(Plain(b"0123456789"), 7)  # type: ignore[arg-type]
    assert window.read() == b"789"
    window = _Window(Plain(b"abcdef"), 1)  # type: ignore[arg-type]
    buffer = bytearray(2)
    assert window.readinto(buffer) == 2
    assert buffer == bytearray(b"bc")
    big = bytearray(b"......")
    assert window.readinto(big) == 3
    assert big == bytearray(b"def...")
    assert window.readinto(big) == 0
    inner = io.BytesIO(b"keep")
    window = _Window(inner, 0)
    window.close()
    assert not inner.closed
