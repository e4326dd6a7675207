"""Serving on uvicorn's public API: no private class, TCP_NODELAY, and the connection limits
(issue 12 §1; issue 10 finding 10: connection cap, header and body timeouts, head size, EMFILE)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import inspect
import logging
import os
import pkgutil
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import capillary_emulator
import pytest
import requests
import uvicorn
from capillary_emulator import resources
from capillary_emulator.connection import CONTROL_TOKEN_ENV
from capillary_emulator.faults import Fault
from capillary_emulator.resources import RESERVED_FDS, EmulatorServer, default_max_connections
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import basic_header, png_bytes, upload_url, wait_until

pytestmark = pytest.mark.integration

HEALTH = b"GET /_emulator/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _connect(emu: CapillaryEmulator) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=30)
    return sock


def _read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (30 s socket timeout as a safety net)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _open_connections(emu: CapillaryEmulator) -> int:
    assert emu.state.connections is not None
    return len(emu.state.connections)


def test_no_class_of_the_emulator_derives_from_uvicorn_internals() -> None:
    bases: set[type] = set()
    for module_info in pkgutil.iter_modules(capillary_emulator.__path__):
        module = importlib.import_module(f"capillary_emulator.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            bases.update(base for base in cls.__mro__ if base.__module__.startswith("uvicorn"))
    assert bases == {uvicorn.Server}  # the public server class, documented for programmatic use
    assert EmulatorServer.__mro__[1] is uvicorn.Server


def test_connections_are_served_with_tcp_nodelay(emu: CapillaryEmulator) -> None:
    with requests.Session() as session:
        assert session.get(f"{emu.base_url}/_emulator/health", timeout=10).ok
        assert emu.state.connections is not None
        [transport] = emu.state.connections.transports()
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_forwarded_headers_change_neither_the_client_nor_the_scheme(emu: CapillaryEmulator) -> None:
    """The transport is found by the client address: a forged X-Forwarded-For must not hide it."""
    forged = {**basic_header(), "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    url = upload_url(emu, "a.png")
    answer = requests.post(url, data=b"1", headers=forged, timeout=10)
    assert answer.json()["secureFilePath"].startswith(emu.base_url + "/_s3/")

    emu.push_fault(Fault(action="reset"))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url, data=b"2", headers=forged, timeout=10)
    assert [entry["status"] for entry in emu.requests()] == [200, None]


def test_the_default_connection_cap_follows_the_descriptor_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert default_max_connections() == max(1, min(1024, (soft - RESERVED_FDS) // 3))


def test_connections_beyond_the_cap_get_503_and_are_closed(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, max_connections=2) as emu:
        held = [_connect(emu), _connect(emu)]
        assert wait_until(lambda: _open_connections(emu) == 2)

        refused = _connect(emu)
        answer = _read_to_eof(refused)

        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n")
        assert answer.endswith(b'{"code": 503, "status": "false", "message": "Too many open connections"}')
        assert emu.stats()["connections"] == {"open": 2, "refused": 1, "max": 2}
        held[0].close()
        assert wait_until(lambda: _open_connections(emu) == 1)
        with requests.Session() as session:
            assert session.get(f"{emu.base_url}/_emulator/health", timeout=10).json() == {"ok": True}
        for sock in (held[1], refused):
            sock.close()


def test_a_trickled_request_head_is_cut_off_at_the_header_timeout(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, header_timeout=0.5) as emu:
        sock = _connect(emu)
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        # One byte every 0.1 s would keep uvicorn's own keep-alive timer from ever firing.
        while time.monotonic() - started < 30:  # generous: the deadline under test is 0.5 s
            try:
                sock.sendall(b"x")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        elapsed = time.monotonic() - started
        sock.close()

    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert elapsed >= 0.5  # not before the deadline (a lower bound: load cannot make it fail)


def test_an_idle_connection_is_closed_at_the_header_timeout(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, header_timeout=0.3) as emu:
        sock = _connect(emu)
        sock.sendall(HEALTH)
        received = _read_to_eof(sock)  # the answer, then silence, then the server's close
        sock.close()
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b'{"ok": true}')
        assert wait_until(lambda: _open_connections(emu) == 0)


def test_a_stalled_body_is_answered_408(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, body_timeout=0.3) as emu:
        sock = _connect(emu)
        sock.sendall(
            b"POST /api_gateway/file-service/rewards/slow.png HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: {basic_header()['Authorization']}\r\n".encode()
            + b"Content-Length: 1000\r\n\r\n"
            + b"only ten b"
        )
        answer = _read_to_eof(sock)
        sock.close()

        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        assert answer.endswith(b'"message": "Request Timeout: no request body for 0.3 s"}')
        assert [(e["status"], e["body_size"]) for e in emu.requests()] == [(408, 10)]
        assert emu.stats()["requests"] == {"upload": {"408": 1}}
        assert emu.stored_files() == []
        assert list((emu.data_dir / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("header_bytes", "answer"),
    [(60_000, b"HTTP/1.1 200 OK\r\n"), (70_000, b"HTTP/1.1 431 Request Header Fields Too Large\r\n")],
    ids=["60k-served", "70k-refused"],
)
def test_the_request_head_is_bounded(emu: CapillaryEmulator, header_bytes: int, answer: bytes) -> None:
    sock = _connect(emu)
    sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * header_bytes)
    sock.sendall(b"\r\nConnection: close\r\n\r\n")
    received = _read_to_eof(sock)
    sock.close()
    assert received.startswith(answer), received[:100]


def test_a_big_body_in_the_same_write_as_its_head_is_not_a_big_head(emu: CapillaryEmulator) -> None:
    body = png_bytes(300_000)
    head = (
        b"POST /api_gateway/file-service/rewards/big.png HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: {basic_header()['Authorization']}\r\nConnection: close\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    sock = _connect(emu)
    sock.sendall(head + body)
    received = _read_to_eof(sock)
    sock.close()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert [stored["size"] for stored in emu.stored_files()] == [len(body)]


def test_running_out_of_descriptors_is_a_503_and_one_warning_line(
    emu: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_descriptor() -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(emu.state.store, "new_sink", no_descriptor)
    monkeypatch.setattr(resources, "_warnings", resources._Warnings())  # a fresh warning interval
    with caplog.at_level(logging.WARNING, logger="capillary_emulator"):
        answers = [requests.post(upload_url(emu, "a.png"), data=b"1", headers=basic_header(), timeout=10)]
        answers.append(
            requests.post(
                upload_url(emu, "b.png"), files={"file": ("b.png", b"2")}, headers=basic_header(), timeout=10
            )
        )

    for answer in answers:
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "1")
        assert answer.json()["message"] == "Service Unavailable: the emulator is out of file descriptors"
    assert [record.getMessage() for record in caplog.records] == [
        "capillary emulator: a request failed: [Errno 24] Too many open files"
    ]
    assert emu.stats()["requests"] == {"upload": {"503": 2}}


def test_the_loop_reports_accept_failures_once_per_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resources, "_warnings", resources._Warnings())
    loop = asyncio.new_event_loop()
    context = {
        "message": "socket.accept() out of system resource",
        "exception": OSError(errno.EMFILE, "Too many open files"),
    }
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(2000):
                resources._quiet_resource_errors(loop, context)
            resources._quiet_resource_errors(loop, {"message": "something else", "exception": KeyError("x")})
    finally:
        loop.close()
    assert [(r.name, r.levelname, r.getMessage().splitlines()[0]) for r in caplog.records] == [
        (
            "capillary_emulator",
            "WARNING",
            "capillary emulator: socket.accept() out of system resource: [Errno 24] Too many open files",
        ),
        ("asyncio", "ERROR", "something else"),  # anything else still reaches asyncio's own handler
    ]


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_a_low_descriptor_limit_gives_no_storm_of_tracebacks(tmp_path: Path) -> None:
    """Before: ~2000 "socket.accept() out of system resource" tracebacks for 300 connections at 64 fds."""
    token = "low-fd-test-token"
    process = subprocess.Popen(
        [sys.executable, "-m", "capillary_emulator", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_descriptors,
        env={**os.environ, CONTROL_TOKEN_ENV: token},
    )
    sockets: list[socket.socket] = []
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        port = int(base_url.rsplit(":", 1)[1])
        head = (
            "POST /api_gateway/file-service/rewards/f.png HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {basic_header()['Authorization']}\r\nContent-Length: 10\r\n\r\n01234"
        ).encode()
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sockets.append(sock)
            with contextlib.suppress(OSError):  # refused and closed already
                sock.sendall(head)  # half a body: each served upload holds a temporary file open
        answers = []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.sendall(b"56789")
            try:
                answers.append(sock.recv(200)[9:12])
            except OSError:
                answers.append(b"reset")  # refused with unread bytes from the client: an RST
        for sock in sockets:
            sock.close()
        sockets.clear()
        control = {"X-Emulator-Token": token}
        with requests.Session() as session:  # it still serves
            url = f"{base_url}/api_gateway/file-service/rewards/after.png"
            assert session.post(url, data=b"1", headers=basic_header(), timeout=30).status_code == 200
            connections = session.get(f"{base_url}/_emulator/stats", headers=control, timeout=30).json()[
                "connections"
            ]
    finally:
        for sock in sockets:
            sock.close()
        process.terminate()
        _, stderr = process.communicate(timeout=30)

    cap = (64 - RESERVED_FDS) // 3
    assert process.returncode == 0
    assert set(answers) <= {b"200", b"503", b"reset", b""}, set(answers)
    assert 1 <= answers.count(b"200") <= 300 - connections["refused"]
    assert (connections["max"], connections["refused"] > 0) == (cap, True)
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) <= 3, stderr[:3000]
