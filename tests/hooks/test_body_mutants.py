"""Kills mutmut survivors in ``airflow_capillary/hooks/_body.py``: exact reads, rewinds, errors, framing."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re

import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.hooks._body import CHUNK_BYTES, UploadBody, build_body, multipart_envelope, upload_body
from airflow_capillary.hooks._upload_source import PreparedUpload

EMPTY_SHA = hashlib.sha256().hexdigest()


class Tracked(io.BytesIO):
    """A stream that records how often it was opened and whether it was closed."""

    opened: list[Tracked]

    def __init__(self, data: bytes, opened: list[Tracked]) -> None:
        super().__init__(data)
        opened.append(self)


def tracked_body(data: bytes, size: int | None = None, **kwargs: object) -> tuple[UploadBody, list[Tracked]]:
    opened: list[Tracked] = []
    body = UploadBody(lambda: Tracked(data, opened), len(data) if size is None else size, **kwargs)  # type: ignore[arg-type]
    return body, opened


def test_chunk_size_and_iteration_blocks() -> None:
    assert CHUNK_BYTES == 65536
    data = bytes(range(256)) * 512 + b"tail!"  # 131077 bytes
    body, _ = tracked_body(data, preamble=b"P", epilogue=b"E")
    chunks = list(body)
    assert [len(c) for c in chunks] == [65536, 65536, 7]
    assert b"".join(chunks) == b"P" + data + b"E"


def test_fresh_body_state_and_lazy_open() -> None:
    body, opened = tracked_body(b"0123456789", preamble=b"ab", epilogue=b"yz")
    assert len(body) == 14
    assert (body.tell(), body.content_sent, body.sha256, body.complete) == (0, 0, EMPTY_SHA, False)
    assert body.read(0) == b""
    assert body.tell() == 0
    assert body.read(2) == b"ab"
    assert opened == []  # the content is opened only when it is reached
    assert body.read(1) == b"0"
    assert len(opened) == 1
    assert (body.content_sent, body.sha256) == (1, hashlib.sha256(b"0").hexdigest())
    assert body.read(9) == b"123456789"
    assert opened[0].closed  # closed once all the announced bytes were read
    assert (body.tell(), body.complete) == (12, False)
    assert body.read(1) == b"y"
    assert body.complete is False
    assert body.read(1) == b"z"
    assert body.complete is True
    assert body.read(1) == b""
    assert body.read() == b""
    assert body.tell() == 14


@pytest.mark.parametrize("size", [None, -1, -5])
def test_read_everything(size: int | None) -> None:
    data = b"x" * (CHUNK_BYTES + 3)
    body, _ = tracked_body(data, preamble=b"<", epilogue=b">")
    assert body.read(1) == b"<"
    assert body.read(size) == data + b">"
    assert body.complete is True


def test_one_read_spans_every_part() -> None:
    body, _ = tracked_body(b"abc", preamble=b"12", epilogue=b"89")
    assert body.read(100) == b"12abc89"
    body, _ = tracked_body(b"abc", preamble=b"12", epilogue=b"89")
    assert [body.read(3), body.read(3), body.read(3)] == [b"12a", b"bc8", b"9"]


def test_empty_content_body() -> None:
    body, opened = tracked_body(b"", preamble=b"A", epilogue=b"B")
    assert body.read(10) == b"AB"
    assert opened == []
    assert (body.content_sent, body.sha256, body.complete) == (0, EMPTY_SHA, True)


def test_rewind_reopens_and_resets_everything() -> None:
    body, opened = tracked_body(b"content", preamble=b"<", epilogue=b">")
    assert body.read(4) == b"<con"
    assert body.seek(0) == 0
    assert opened[0].closed
    assert (body.tell(), body.content_sent, body.sha256, body.complete) == (0, 0, EMPTY_SHA, False)
    assert body.read() == b"<content>"
    assert len(opened) == 2
    assert body.sha256 == hashlib.sha256(b"content").hexdigest()
    assert body.content_sent == 7
    # Rewinding twice, or before anything was opened, is fine.
    assert body.seek(0, io.SEEK_SET) == 0
    assert body.seek(0) == 0
    assert body.read(100) == b"<content>"


def test_seek_to_where_it_is_stays() -> None:
    body, opened = tracked_body(b"content")
    assert body.read(3) == b"con"
    assert body.seek(3) == 3
    assert body.seek(3, io.SEEK_SET) == 3
    assert body.seek(0, io.SEEK_CUR) == 3
    assert opened[0].closed is False
    assert body.read() == b"tent"
    assert len(opened) == 1


@pytest.mark.parametrize(
    ("offset", "whence"),
    [
        (1, io.SEEK_SET),
        (5, io.SEEK_SET),
        (1, io.SEEK_CUR),
        (3, io.SEEK_CUR),
        (0, io.SEEK_END),
        (-1, io.SEEK_SET),
    ],
)
def test_other_seeks_are_refused(offset: int, whence: int) -> None:
    body, _ = tracked_body(b"content")
    body.read(2)
    with pytest.raises(io.UnsupportedOperation) as info:
        body.seek(offset, whence)
    assert str(info.value) == "an upload body can only be rewound to its start"
    assert body.tell() == 2


def test_shrunk_content_message_and_close() -> None:
    body, opened = tracked_body(b"abc", size=5)
    with pytest.raises(CapillaryInvalidInputError) as info:
        body.read(10)
    assert str(info.value) == "<content> ended after 3 of 5 bytes: it changed while being uploaded"
    assert opened[0].closed


def test_grown_content_message_and_close() -> None:
    body, opened = tracked_body(b"abcdef", size=5, label="/data/a.png")
    with pytest.raises(CapillaryInvalidInputError) as info:
        body.read(10)
    assert str(info.value) == "/data/a.png grew beyond 5 bytes while being uploaded"
    assert opened[0].closed


def test_unreadable_content_message_and_close() -> None:
    class Failing(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("disk gone")

    streams: list[Failing] = []

    def opener() -> Failing:
        streams.append(Failing(b""))
        return streams[-1]

    body = UploadBody(opener, 4, label="L")
    with pytest.raises(CapillaryInvalidInputError) as info:
        body.read(4)
    assert str(info.value) == "L cannot be read: disk gone"
    assert streams[0].closed

    def gone() -> io.BytesIO:
        raise FileNotFoundError("no such file")

    with pytest.raises(CapillaryInvalidInputError) as info:
        UploadBody(gone, 4, preamble=b"p").read(4)
    assert str(info.value) == "<content> cannot be read: no such file"


def test_close_is_idempotent() -> None:
    body, opened = tracked_body(b"abcdef")
    body.close()
    assert body.read(2) == b"ab"
    body.close()
    assert opened[0].closed
    body.close()
    assert body.read(2) == b"ab"  # a new stream, from the start: the position was kept
    assert len(opened) == 2


def test_multipart_envelope_escapes_and_boundary() -> None:
    preamble, epilogue, content_type = multipart_envelope("img", 'a"b\r\nc.png', "image/jpeg")
    match = re.fullmatch(r"multipart/form-data; boundary=([0-9a-f]{32})", content_type)
    assert match is not None
    boundary = match[1]
    assert (
        preamble
        == (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="img"; filename="a%22b%0D%0Ac.png"\r\n'
            "Content-Type: image/jpeg\r\n"
            "\r\n"
        ).encode()
    )
    assert epilogue == f"\r\n--{boundary}--\r\n".encode()
    assert multipart_envelope("img", "x", "image/png")[2] != content_type


def test_build_body_multipart_and_raw() -> None:
    body, headers = build_body(
        lambda: io.BytesIO(b"DATA"),
        4,
        file_name="f.png",
        content_type="image/png",
        encoding="multipart",
        field="file",
        label="LBL",
    )
    boundary = headers["Content-Type"].removeprefix("multipart/form-data; boundary=")
    assert list(headers) == ["Content-Type"]
    expected = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.png"\r\n'
        f"Content-Type: image/png\r\n\r\nDATA\r\n--{boundary}--\r\n"
    ).encode()
    assert len(body) == len(expected)
    assert body.read() == expected

    body, headers = build_body(
        lambda: io.BytesIO(b"DA"),
        4,
        file_name="f.png",
        content_type="image/png",
        encoding="multipart",
        field="file",
        label="LBL",
    )
    with pytest.raises(CapillaryInvalidInputError) as info:
        body.read()
    assert str(info.value) == "LBL ended after 2 of 4 bytes: it changed while being uploaded"

    body, headers = build_body(
        lambda: io.BytesIO(b"DA"),
        4,
        file_name="f.png",
        content_type="image/gif",
        encoding="raw",
        field="file",
        label="RAW",
    )
    assert headers == {"Content-Type": "image/gif"}
    assert len(body) == 4
    with pytest.raises(CapillaryInvalidInputError) as info:
        body.read()
    assert str(info.value) == "RAW ended after 2 of 4 bytes: it changed while being uploaded"


def prepared(placeholder: bool = False) -> PreparedUpload:
    return PreparedUpload(
        "g.png",
        "rewards",
        "image/png",
        3,
        "SRC",
        "https://h/x",
        placeholder=placeholder,
        opener=lambda: io.BytesIO(b"PNG"),
    )


def test_upload_body() -> None:
    assert upload_body(prepared(placeholder=True), encoding="multipart", field="file") == (None, {})
    body, headers = upload_body(prepared(), encoding="raw", field="file")
    assert headers == {"Content-Type": "image/png"}
    assert body is not None
    assert body.read() == b"PNG"
    body, headers = upload_body(prepared(), encoding="multipart", field="pic")
    assert body is not None
    boundary = headers["Content-Type"].removeprefix("multipart/form-data; boundary=")
    assert (
        body.read()
        == (
            f'--{boundary}\r\nContent-Disposition: form-data; name="pic"; filename="g.png"\r\n'
            f"Content-Type: image/png\r\n\r\nPNG\r\n--{boundary}--\r\n"
        ).encode()
    )
    short = dataclasses_replace(prepared(), size=4)
    body, _ = upload_body(short, encoding="raw", field="file")
    assert body is not None
    with pytest.raises(CapillaryInvalidInputError) as info:
        body.read()
    assert str(info.value) == "SRC ended after 3 of 4 bytes: it changed while being uploaded"


def dataclasses_replace(upload: PreparedUpload, **changes: object) -> PreparedUpload:
    return dataclasses.replace(upload, **changes)  # type: ignore[arg-type]
