"""Tiny but real images (correct magic bytes) for the operator tests, built without Pillow."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def png_bytes(width: int = 1, height: int = 1, seed: int = 0) -> bytes:
    """A valid RGB PNG; ``seed`` changes the pixel colour so that files differ."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes((seed % 256, 80, 160)) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(seed: int = 0) -> bytes:
    """JPEG markers a sniffer recognises: SOI, a JFIF APP0 segment, a comment, EOI."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    comment = f"capillary test {seed}".encode()
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", len(app0) + 2)
        + app0
        + b"\xff\xfe"
        + struct.pack(">H", len(comment) + 2)
        + comment
        + b"\xff\xd9"
    )


def webp_bytes(seed: int = 0) -> bytes:
    """A RIFF/WEBP container with a lossless (VP8L) chunk header."""
    payload = b"\x2f" + bytes((seed % 256, 0, 0, 0))
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_images(folder: Path, names: list[str]) -> list[Path]:
    """Write one image per name, its format chosen by the extension (anything else: text)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix == ".png":
            path.write_bytes(png_bytes(seed=seed))
        elif suffix in {".jpg", ".jpeg"}:
            path.write_bytes(jpeg_bytes(seed=seed))
        elif suffix == ".webp":
            path.write_bytes(webp_bytes(seed=seed))
        else:
            path.write_text(f"not an image {seed}\n")
        paths.append(path)
    return paths
