"""Redirects over real loopback sockets: credentials never follow to another origin; 307 resends the body."""

from __future__ import annotations

import hashlib
import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_capillary.exceptions import CapillaryRequestRejectedError
from airflow_capillary.hooks._session import build_session, same_origin
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hooks.recorder import PNG, upload_answer


class Server:
    """A loopback HTTP server that records requests and answers with a scripted function."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.discard = False
        self.answer: Callable[[str], tuple[int, dict[str, str], bytes]] = lambda path: (
            200,
            {},
            json.dumps(upload_answer()).encode(),
        )
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if outer.discard:  # count and hash, keep nothing
                    digest, left = hashlib.sha256(), length
                    while left:
                        chunk = self.rfile.read(min(left, 65536))
                        digest.update(chunk)
                        left -= len(chunk)
                    body = digest.hexdigest().encode()
                else:
                    body = self.rfile.read(length)
                outer.seen.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers, payload = outer.answer(self.path)
                self.send_response(status)
                for key, value in {"Content-Length": str(len(payload)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    first, second = Server(), Server()
    yield first, second
    first.close()
    second.close()


def multipart_file(seen: dict[str, Any]) -> bytes:
    boundary = seen["headers"]["Content-Type"].split("boundary=")[1].encode()
    inner = seen["body"][len(boundary) + 4 : -(len(boundary) + 8)]
    return inner.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
def test_a_307_to_another_port_is_not_followed(servers, set_conn, auth_type):
    """Another port is another origin: the hook refuses the redirect; nothing reaches the other server."""
    origin, elsewhere = servers

    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/token/generate"):
            return 200, {}, json.dumps({"data": {"accessToken": "tok-abc-123", "ttlSeconds": 300}}).encode()
        return 307, {"Location": f"{elsewhere.base}{path}"}, b""

    origin.answer = answer
    set_conn(
        host=origin.base,
        auth_type=auth_type,
        headers={"X-Api-Key": "static-secret", "X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"},
    )
    with pytest.raises(
        CapillaryRequestRejectedError,
        match=f": HTTP 307, a redirect to {elsewhere.base}: not followed, it leaves the service's origin$",
    ):
        CapillaryFileHook().upload_file(PNG, file_name="test.png")
    assert elsewhere.seen == []
    assert origin.seen[-1]["path"] == "/api_gateway/file-service/rewards/test.png"


def test_credentials_follow_a_307_on_the_same_origin(servers, set_conn):
    origin, _ = servers
    origin.answer = lambda path: (
        (307, {"Location": "/moved" + path}, b"")
        if not path.startswith("/moved")
        else (200, {}, json.dumps(upload_answer()).encode())
    )
    set_conn(host=origin.base)
    CapillaryFileHook().upload_file(PNG, file_name="test.png")
    first, second = origin.seen
    assert second["path"] == "/moved/api_gateway/file-service/rewards/test.png"
    assert second["headers"]["Authorization"] == first["headers"]["Authorization"]
    assert multipart_file(second) == PNG


@pytest.mark.parametrize(
    ("old", "new", "same"),
    [
        ("https://a.example/x", "https://a.example/y", True),
        ("https://a.example/x", "https://a.example:443/y", True),
        ("http://a.example/x", "https://a.example/y", True),
        ("https://a.example/x", "http://a.example/y", False),
        ("https://a.example/x", "https://b.example/y", False),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8081/x", False),
        ("http://127.0.0.1:8080/x", "https://127.0.0.1:8443/x", False),
        ("https://A.example/x", "https://a.EXAMPLE/y", True),
    ],
    ids=[
        "same",
        "explicit-default-port",
        "upgrade",
        "downgrade",
        "other-host",
        "other-port",
        "upgrade-other-port",
        "case",
    ],
)
def test_same_origin(old, new, same):
    assert same_origin(old, new) is same


def test_connection_verify_and_proxies_win_over_the_environment(set_conn, monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/bundle.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1111")
    set_conn(verify=str(ca), proxies={"https": "http://127.0.0.1:2222"})
    session = build_session(CapillaryFileHook().config)
    settings = session.merge_environment_settings("https://127.0.0.1:8443/x", {}, None, None, None)
    assert settings["verify"] == str(ca)
    assert settings["proxies"]["https"] == "http://127.0.0.1:2222"


def test_default_verify_still_honours_the_environment_bundle(set_conn, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/bundle.pem")
    set_conn()
    session = build_session(CapillaryFileHook().config)
    assert session.merge_environment_settings("https://127.0.0.1/x", {}, None, None, None)["verify"] == (
        "/env/bundle.pem"
    )
    assert isinstance(session, requests.Session)


def test_64_mb_upload_over_a_real_socket_keeps_memory_flat(servers, set_conn, tmp_path: Path):
    size = 64 * 1024 * 1024
    path = tmp_path / "big.png"
    with open(path, "wb") as handle:
        handle.write(PNG[:8])
        handle.truncate(size)
    origin, _ = servers
    origin.discard = True
    origin.answer = lambda path: (200, {}, json.dumps(upload_answer("big.png", size)).encode())
    set_conn(host=origin.base, upload_encoding="raw")
    hook = CapillaryFileHook()
    hook.prepare_upload(PNG, file_name="warm.png")
    tracemalloc.start()
    try:
        result = hook.upload_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    expected = digest.hexdigest()
    [seen] = origin.seen
    assert seen["headers"]["Content-Length"] == str(size)
    assert seen["body"] == expected.encode()
    assert (result.sent_size, result.sha256) == (size, expected)
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
