"""Helpers for the emulator tests: credentials, URLs and a sample image."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import zlib
from collections.abc import Callable, Iterator

import pytest
import requests
from capillary_emulator.server import CapillaryEmulator
from capillary_emulator.state import RUNTIME_SETTINGS, EmulatorSettings

RUNTIME_DEFAULTS = {name: getattr(EmulatorSettings(), name) for name in RUNTIME_SETTINGS}

USER, PASSWORD = "demo", "demo-password"
KEY, SECRET = "demo-key", "demo-secret"


def basic_header(user: str = USER, password: str = PASSWORD, *, hashed: bool = True) -> dict[str, str]:
    """Return Capillary's Basic header: base64(user:md5hex(password)) (or the plain password)."""
    secret = hashlib.md5(password.encode()).hexdigest() if hashed else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def png_bytes(extra: int = 0) -> bytes:
    """Return a valid 1x1 PNG, padded with ``extra`` bytes in an ancillary chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    padding = chunk(b"tEXt", b"c\x00" + b"x" * extra) if extra else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + padding
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def upload_url(emu: CapillaryEmulator, name: str, namespace: str = "rewards") -> str:
    """Return the upload URL of ``name`` (already percent-encoded by the caller when needed)."""
    return f"{emu.base_url}/api_gateway/file-service/{namespace}/{name}"


def upload(
    emu: CapillaryEmulator, name: str = "test.png", data: bytes | None = None, **kwargs
) -> requests.Response:
    """POST a multipart upload (part ``file``) with Basic auth."""
    body = png_bytes() if data is None else data
    headers = {**basic_header(), **kwargs.pop("headers", {})}
    files = kwargs.pop("files", {"file": (name, body, "image/png")})
    return requests.post(upload_url(emu, name), files=files, headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapillaryEmulator]:
    """One emulator per test module (starting and stopping one takes ~0.25 s)."""
    with CapillaryEmulator(data_dir=tmp_path_factory.mktemp("emulator")) as emulator:
        yield emulator


@pytest.fixture
def emu(shared_emulator: CapillaryEmulator) -> CapillaryEmulator:
    """The module's emulator, emptied and back to default settings for each test."""
    shared_emulator.reset()
    shared_emulator.configure(**RUNTIME_DEFAULTS)
    return shared_emulator


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds; ``timeout`` is a safety net, not the behaviour under test."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
