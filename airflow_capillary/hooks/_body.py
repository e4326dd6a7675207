"""The upload request body: streamed, with a known length, rebuilt for every attempt.

:class:`UploadBody` is a read-only file-like object made of three segments: a preamble, the
file content (read from a fresh stream opened by the source's opener), and an epilogue. For
multipart uploads the preamble and epilogue are the part headers and the closing boundary; for
raw uploads both are empty. It has ``__len__`` (so ``requests`` sends ``Content-Length``
instead of chunked encoding) and ``__iter__`` (so ``requests`` treats it as a stream and
urllib3 reads it block by block): memory use does not depend on the file size.

``seek(0)`` starts over from a newly opened stream, which is what ``requests`` does to rewind
a body on a 307/308 redirect. The sha256 and size of the file bytes are computed while they
stream; if the file yields fewer or more bytes than announced, reading fails loudly rather
than sending a truncated part.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from airflow_capillary.exceptions import CapillaryInvalidInputError

if TYPE_CHECKING:
    from airflow_capillary.hooks._upload_source import PreparedUpload

__all__ = ["CHUNK_BYTES", "UploadBody", "build_body", "multipart_envelope", "upload_body"]

#: Block size used when iterating (urllib3 reads with its own block size, 16 KiB by default).
CHUNK_BYTES = 64 * 1024


class UploadBody:
    """A streaming request body: ``preamble + file content + epilogue``.

    :param opener: returns a new binary stream positioned at the start of the content.
    :param size: the exact number of content bytes the stream must yield.
    :param preamble: bytes sent before the content.
    :param epilogue: bytes sent after the content.
    :param label: names the source in error messages.
    """

    def __init__(
        self,
        opener: Callable[[], BinaryIO],
        size: int,
        *,
        preamble: bytes = b"",
        epilogue: bytes = b"",
        label: str = "<content>",
    ) -> None:
        self._opener = opener
        self._size = size
        self._preamble = preamble
        self._epilogue = epilogue
        self._label = label
        self._length = len(preamble) + size + len(epilogue)
        self._stream: BinaryIO | None = None
        self._pos = 0
        self._sha256 = hashlib.sha256()
        self._content_sent = 0

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_BYTES):
            yield chunk

    @property
    def sha256(self) -> str:
        """Hex sha256 of the content bytes read so far (all of them once the body is sent)."""
        return self._sha256.hexdigest()

    @property
    def content_sent(self) -> int:
        """Number of content bytes read so far."""
        return self._content_sent

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read."""
        return self._pos >= self._length

    def tell(self) -> int:
        """Return the position in the body.

        :return: bytes read since the start.
        """
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Rewind to the start (reopening the content), or stay where we are.

        :param offset: 0 with ``SEEK_SET``, or the current position.
        :param whence: ``io.SEEK_SET`` or ``io.SEEK_CUR``.
        :return: the new position.
        :raises io.UnsupportedOperation: any other seek.
        """
        if whence == io.SEEK_SET and offset == 0:
            self.close()
            self._pos = 0
            self._sha256 = hashlib.sha256()
            self._content_sent = 0
            return 0
        if (whence == io.SEEK_SET and offset == self._pos) or (whence == io.SEEK_CUR and offset == 0):
            return self._pos
        raise io.UnsupportedOperation("an upload body can only be rewound to its start")

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when ``size`` is negative or ``None``).

        :param size: the most bytes to return.
        :return: the bytes; ``b""`` at the end.
        :raises CapillaryInvalidInputError: the content changed size while being read, or could
            not be read any more.
        """
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_BYTES), b""))
        start_content = len(self._preamble)
        end_content = start_content + self._size
        # Fill the block across the parts: a small image goes out in one send, framing included.
        pieces: list[bytes] = []
        wanted = size
        while wanted > 0 and self._pos < self._length:
            if self._pos < start_content:
                piece = self._preamble[self._pos : self._pos + wanted]
            elif self._pos < end_content:
                piece = self._read_content(min(wanted, end_content - self._pos))
            else:
                offset = self._pos - end_content
                piece = self._epilogue[offset : offset + wanted]
            self._pos += len(piece)
            wanted -= len(piece)
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _read_content(self, size: int) -> bytes:
        try:
            if self._stream is None:
                self._stream = self._opener()
            data = self._stream.read(size)
        except OSError as exc:  # removed or unreadable since prepare_upload checked it
            self.close()
            raise CapillaryInvalidInputError(f"{self._label} cannot be read: {exc}") from None
        if not data:
            self.close()
            raise CapillaryInvalidInputError(
                f"{self._label} ended after {self._content_sent} of {self._size} bytes: "
                "it changed while being uploaded"
            )
        self._sha256.update(data)
        self._content_sent += len(data)
        if self._content_sent == self._size:
            extra = self._stream.read(1)
            self.close()
            if extra:
                raise CapillaryInvalidInputError(
                    f"{self._label} grew beyond {self._size} bytes while being uploaded"
                )
        return data

    def close(self) -> None:
        """Close the content stream, if one is open."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()


def multipart_envelope(field: str, file_name: str, content_type: str) -> tuple[bytes, bytes, str]:
    """Build the multipart/form-data framing around one file part.

    The file name is written as UTF-8 in ``filename="..."`` (as browsers and curl do), with
    ``"``, CR and LF percent-encoded as the HTML standard says.

    :param field: the form field name (``file``).
    :param file_name: the file name.
    :param content_type: the part's content type.
    :return: ``(preamble, epilogue, Content-Type header value)``.
    """
    boundary = secrets.token_hex(16)
    escaped = file_name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    preamble = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{escaped}"\r\n'
        f"Content-Type: {content_type}\r\n"
        "\r\n"
    ).encode()
    epilogue = f"\r\n--{boundary}--\r\n".encode()
    return preamble, epilogue, f"multipart/form-data; boundary={boundary}"


def build_body(
    opener: Callable[[], BinaryIO],
    size: int,
    *,
    file_name: str,
    content_type: str,
    encoding: str,
    field: str,
    label: str,
) -> tuple[UploadBody, dict[str, str]]:
    """Build a new body for one attempt, and the headers that describe it.

    :param opener: returns a new stream of the content from its start.
    :param size: content size in bytes.
    :param file_name: the file name (multipart ``filename``).
    :param content_type: the image's content type.
    :param encoding: ``multipart`` (one part named ``field``) or ``raw`` (the bytes are the body).
    :param field: the multipart field name.
    :param label: names the source in error messages.
    :return: the body and its ``Content-Type`` header (requests adds ``Content-Length``).
    """
    if encoding == "raw":
        return UploadBody(opener, size, label=label), {"Content-Type": content_type}
    preamble, epilogue, multipart_type = multipart_envelope(field, file_name, content_type)
    body = UploadBody(opener, size, preamble=preamble, epilogue=epilogue, label=label)
    return body, {"Content-Type": multipart_type}


def upload_body(
    prepared: PreparedUpload, *, encoding: str, field: str
) -> tuple[UploadBody | None, dict[str, str]]:
    """Build a new body for one attempt at ``prepared`` (see :func:`build_body`).

    :param prepared: the validated upload.
    :param encoding: ``multipart`` or ``raw``.
    :param field: the multipart field name.
    :return: the body and its ``Content-Type`` header; ``(None, {})`` for a placeholder.
    """
    if prepared.placeholder:
        return None, {}
    return build_body(
        prepared.opener,
        prepared.size,
        file_name=prepared.file_name,
        content_type=prepared.content_type,
        encoding=encoding,
        field=field,
        label=prepared.source_label,
    )
