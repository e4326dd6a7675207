"""Streaming ``multipart/form-data`` reception: every part goes straight to a temporary file.

Starlette's own form parser spools files through ``SpooledTemporaryFile``; this one writes each part
to a :class:`~capillary_emulator.store.BodySink` in the store's directory, so that the chosen
part is renamed into place without a second copy, whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from capillary_emulator.store import BodySink

#: RFC 2046 limits a boundary to 70 characters.
MAX_BOUNDARY = 70
#: Parts accepted in one body (each one is a temporary file until the file part is chosen).
MAX_PARTS = 16


class MultipartError(ValueError):
    """The multipart body is malformed or ambiguous."""


@dataclass
class Part:
    """One received part.

    :param name: the form field name.
    :param filename: the file name, when the part is a file.
    :param content_type: the part's ``Content-Type``.
    :param sink: its bytes.
    """

    name: str | None
    filename: str | None
    content_type: str | None
    sink: BodySink


class MultipartReceiver:
    """Feed body chunks in, get the parts out.

    :param boundary: the boundary from the request's ``Content-Type``.
    :param new_sink: factory of temporary files.
    :raises MultipartError: for a boundary longer than :data:`MAX_BOUNDARY` characters.
    """

    def __init__(self, boundary: bytes, new_sink: Callable[[], BodySink]) -> None:
        if len(boundary) > MAX_BOUNDARY:
            raise MultipartError(
                f"malformed multipart body: the boundary is {len(boundary)} characters long, "
                f"more than the {MAX_BOUNDARY} RFC 2046 allows"
            )
        self._new_sink = new_sink
        self.parts: list[Part] = []
        self._headers: dict[str, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._current: Part | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
            max_header_count=32,
        )

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        # Raw bytes: browsers and curl send a UTF-8 file name as is in Content-Disposition.
        self._headers[self._field.decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise MultipartError(f"malformed multipart body: more than {MAX_PARTS} parts")
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name")
        filename = options.get(b"filename")
        self._current = Part(
            name=name.decode("utf-8", "replace") if name is not None else None,
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            content_type=self._headers["content-type"].decode("latin-1")
            if "content-type" in self._headers
            else None,
            sink=self._new_sink(),
        )
        self.parts.append(self._current)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.sink.write(data[start:end])

    def _on_part_end(self) -> None:
        if self._current is not None:
            self._current.sink.close()
        self._current = None

    def feed(self, data: bytes) -> None:
        """Parse the next chunk of the body.

        :param data: bytes.
        :raises MultipartError: when the body is malformed.
        """
        try:
            self._parser.write(data)
        except FormParserError as exc:
            raise MultipartError(f"malformed multipart body: {exc}") from exc

    def finish(self) -> None:
        """Signal the end of the body.

        :raises MultipartError: when the body ended before its closing boundary.
        """
        try:
            self._parser.finalize()
        except FormParserError as exc:  # pragma: no cover - finalize is lenient in current versions
            raise MultipartError(f"malformed multipart body: {exc}") from exc
        if self._current is not None:
            raise MultipartError("malformed multipart body: it ended inside a part")

    def choose(self, field: str = "file") -> Part | None:
        """Pick the file part and delete the other parts' files.

        The part named ``field``; else the only part with a file name; else ``None`` (only form
        fields, or nothing: the upload becomes a placeholder).

        :param field: the preferred field name.
        :return: the chosen part, or ``None``.
        :raises MultipartError: when several file parts are sent and none is named ``field``.
        """
        named = [part for part in self.parts if part.name == field]
        files = [part for part in self.parts if part.filename is not None]
        chosen: Part | None = None
        if named:
            chosen = named[0]
        elif len(files) == 1:
            chosen = files[0]
        elif len(files) > 1:
            self.discard()
            names = ", ".join(repr(part.name) for part in files)
            raise MultipartError(f"several file parts ({names}) and none named {field!r}")
        for part in self.parts:
            if part is not chosen:
                part.sink.discard()
        return chosen

    def discard(self) -> None:
        """Delete every part's file."""
        for part in self.parts:
            part.sink.discard()
