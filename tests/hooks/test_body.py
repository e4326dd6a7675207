"""Upload sources and the streamed body: exact bytes, rebuild on rewind, size guards, flat memory."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

import pytest
import requests

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.hooks._body import UploadBody, build_body, multipart_envelope
from airflow_capillary.hooks._upload_source import SPOOL_MEMORY_BYTES, resolve_source
from tests.hooks.recorder import PNG


class OneWay(io.RawIOBase):
    """A non-seekable binary stream (like a socket or a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def read_all(body: UploadBody, block: int = 7) -> bytes:
    out = b""
    while chunk := body.read(block):
        out += chunk
    return out


def test_raw_body_streams_exact_bytes_with_known_length():
    body = UploadBody(lambda: io.BytesIO(PNG), len(PNG))
    assert len(body) == 51
    assert read_all(body) == PNG
    assert (body.content_sent, body.sha256, body.complete) == (51, hashlib.sha256(PNG).hexdigest(), True)
    assert body.read(10) == b""


def test_body_with_preamble_and_epilogue_reads_across_segments():
    body = UploadBody(lambda: io.BytesIO(b"0123456789"), 10, preamble=b"<<", epilogue=b">>>")
    assert len(body) == 15
    # Each read fills its block across the parts (fewer sends per upload), never past the end.
    assert [body.read(4) for _ in range(5)] == [b"<<01", b"2345", b"6789", b">>>", b""]
    assert body.tell() == 15


def test_rewind_reopens_the_source_and_resets_the_hash():
    opened: list[int] = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(PNG)

    body = UploadBody(opener, len(PNG), preamble=b"P", epilogue=b"E")
    assert body.read(20) == b"P" + PNG[:19]
    assert body.read(20) == PNG[19:39]
    assert body.seek(0) == 0
    assert body.tell() == 0
    assert read_all(body) == b"P" + PNG + b"E"
    assert body.sha256 == hashlib.sha256(PNG).hexdigest()
    assert len(opened) == 2
    assert body.seek(0, io.SEEK_CUR) == len(body)
    with pytest.raises(io.UnsupportedOperation, match="only be rewound to its start"):
        body.seek(5)


def test_iteration_yields_the_whole_body():
    body = UploadBody(lambda: io.BytesIO(PNG), len(PNG), preamble=b"a", epilogue=b"z")
    assert b"".join(body) == b"a" + PNG + b"z"


def test_read_all_at_once():
    body = UploadBody(lambda: io.BytesIO(PNG), len(PNG), preamble=b"a")
    assert body.read() == b"a" + PNG


def test_source_shorter_than_announced_fails_loudly():
    body = UploadBody(lambda: io.BytesIO(PNG[:10]), len(PNG), label="/tmp/x.png")
    with pytest.raises(CapillaryInvalidInputError, match=r"/tmp/x.png ended after 10 of 51 bytes: it"):
        read_all(body, 100)


def test_source_longer_than_announced_fails_loudly():
    body = UploadBody(lambda: io.BytesIO(PNG + b"more"), len(PNG), label="/tmp/x.png")
    with pytest.raises(
        CapillaryInvalidInputError, match=r"/tmp/x.png grew beyond 51 bytes while being uploaded"
    ):
        read_all(body, 100)


def test_multipart_envelope_is_exact():
    preamble, epilogue, content_type = multipart_envelope("file", 'gift "card"\u20ac.png', "image/png")
    boundary = content_type.removeprefix("multipart/form-data; boundary=")
    assert len(boundary) == 32
    assert (
        preamble
        == (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="gift %22card%22\u20ac.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
    )
    assert epilogue == f"\r\n--{boundary}--\r\n".encode()


def test_multipart_body_parses_with_a_standard_parser():
    from email.parser import BytesParser
    from email.policy import HTTP

    body, headers = build_body(
        lambda: io.BytesIO(PNG),
        len(PNG),
        file_name="a.png",
        content_type="image/png",
        encoding="multipart",
        field="image",
        label="x",
    )
    raw = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + read_all(body, 1000)
    message = BytesParser(policy=HTTP).parsebytes(raw)
    [part] = list(message.iter_parts())
    assert part.get_param("name", header="content-disposition") == "image"
    assert part.get_filename() == "a.png"
    assert part.get_content_type() == "image/png"
    assert part.get_payload(decode=True) == PNG


def test_raw_build_uses_the_image_content_type():
    body, headers = build_body(
        lambda: io.BytesIO(PNG),
        len(PNG),
        file_name="a.png",
        content_type="image/png",
        encoding="raw",
        field="file",
        label="x",
    )
    assert headers == {"Content-Type": "image/png"}
    assert read_all(body) == PNG


# -- sources -------------------------------------------------------------------------------------


def test_path_source(tmp_path: Path):
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    for given in (path, str(path)):
        source = resolve_source(given)
        assert (source.label, source.size, source.default_name) == (str(path), 51, "photo.png")
        assert source.head(8) == PNG[:8]
        with source.opener() as first, source.opener() as second:
            assert first.read() == PNG
            assert second.read() == PNG


def test_missing_path_source(tmp_path: Path):
    with pytest.raises(CapillaryInvalidInputError, match="does not exist"):
        resolve_source(tmp_path / "nope.png")


def test_bytes_sources():
    for data in (PNG, bytearray(PNG), memoryview(PNG)):
        source = resolve_source(data)
        assert (source.label, source.size, source.default_name) == ("<bytes>", 51, None)
        assert source.opener().read() == PNG


def test_seekable_stream_remembers_its_start_and_stays_open(tmp_path: Path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"HEADER" + PNG)
    with open(path, "rb") as handle:
        handle.seek(6)
        source = resolve_source(handle)
        assert (source.label, source.size, source.default_name) == (f"<stream {path}>", 51, "blob.bin")
        for _ in range(2):
            with source.opener() as stream:
                assert stream.read() == PNG
        assert not handle.closed


def test_bytesio_stream_has_no_default_name():
    source = resolve_source(io.BytesIO(PNG))
    assert (source.label, source.size, source.default_name) == ("<stream>", 51, None)


def test_non_seekable_stream_is_spooled_once():
    stream = OneWay(PNG)
    source = resolve_source(stream)
    assert source.size == 51
    assert stream.read() == b""  # consumed once, by the spool
    for _ in range(2):
        with source.opener() as reopened:
            assert reopened.read() == PNG


def test_text_stream_is_refused(tmp_path: Path):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    with (
        open(path, encoding="latin-1") as handle,
        pytest.raises(CapillaryInvalidInputError, match="is a text stream: open the file in binary mode"),
    ):
        resolve_source(handle)
    with pytest.raises(CapillaryInvalidInputError, match="is a text stream"):
        resolve_source(io.StringIO("x"))


def test_unsupported_source_type():
    with pytest.raises(CapillaryInvalidInputError, match="cannot upload a int: give a path"):
        resolve_source(42)


def test_object_storage_path_source(tmp_path: Path):
    from airflow.sdk import ObjectStoragePath

    (tmp_path / "remote.png").write_bytes(PNG)
    path = ObjectStoragePath(f"file://{tmp_path}/remote.png")
    source = resolve_source(path)
    assert (source.size, source.default_name) == (51, "remote.png")
    assert source.label.endswith("remote.png")
    for _ in range(2):  # a fresh stream per attempt
        with source.opener() as stream:
            assert stream.read() == PNG
    with pytest.raises(CapillaryInvalidInputError, match="does not exist or is not a regular file"):
        resolve_source(ObjectStoragePath(f"file://{tmp_path}/missing.png"))


# -- memory --------------------------------------------------------------------------------------


def test_64_mb_upload_through_requests_keeps_memory_flat(tmp_path: Path):
    """requests + urllib3 stream the body in blocks; nothing materialises the 64 MB."""
    size = 64 * 1024 * 1024
    path = tmp_path / "big.png"
    with open(path, "wb") as handle:
        handle.write(PNG[:8])
        handle.truncate(size)
    source = resolve_source(path)
    body, headers = build_body(
        source.opener,
        source.size,
        file_name="big.png",
        content_type="image/png",
        encoding="multipart",
        field="file",
        label=str(path),
    )
    prepared = requests.Request("POST", "http://127.0.0.1:1/x", data=body, headers=headers).prepare()
    assert prepared.headers["Content-Length"] == str(len(body))
    assert "Transfer-Encoding" not in prepared.headers
    assert prepared.body is body
    tracemalloc.start()
    try:
        received = 0
        while chunk := prepared.body.read(16384):  # type: ignore[union-attr]
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == len(body)
    assert body.content_sent == size
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"


def test_spool_keeps_big_streams_on_disk():
    data = os.urandom(SPOOL_MEMORY_BYTES + 1)
    source = resolve_source(OneWay(data))
    assert source.size == len(data)
    with source.opener() as stream:
        assert hashlib.sha256(stream.read()).digest() == hashlib.sha256(data).digest()
