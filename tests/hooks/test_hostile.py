"""The hostile server fixture itself (tests/hostile.py): each behaviour on a real socket."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.hostile import (
    Answer,
    HostileServer,
    Huge,
    Redirect,
    Trickle,
    nested_json,
)


def test_records_every_request_per_server(hostile_servers):
    first, second = hostile_servers(2)
    first.route("/a", Answer.json({"ok": True}, status=201, headers={"X-Test": "1"}))
    response = requests.post(first.url("/a?x=1"), data=b"hello", headers={"X-Key": "v"}, timeout=5)
    assert (response.status_code, response.json(), response.headers["X-Test"]) == (201, {"ok": True}, "1")
    [got] = first.requests
    assert (got.method, got.path, got.query, got.target, got.body, got.body_size) == (
        "POST",
        "/a",
        "x=1",
        "/a?x=1",
        b"hello",
        5,
    )
    assert got.headers["x-key"] == "v"
    assert second.requests == []
    assert first.origin != second.origin


def test_unrouted_paths_answer_404(hostile_server: HostileServer):
    response = requests.get(hostile_server.url("/nothing"), timeout=5)
    assert response.status_code == 404
    assert hostile_server.requests_to("/nothing")[0].method == "GET"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_reaches_the_second_origin(hostile_servers, status):
    first, second = hostile_servers(2)
    first.route("/r", Redirect(second.url("/landed"), status=status))
    response = requests.post(first.url("/r"), data=b"body", timeout=5)
    assert response.status_code == 404  # the second origin's unrouted answer
    [landed] = second.requests
    assert landed.path == "/landed"
    assert landed.method == ("POST" if status in (307, 308) else "GET")


def test_sequences_and_callables(hostile_server: HostileServer):
    hostile_server.route("/seq", [Answer(503), Answer(200, b"ok")])
    assert [requests.get(hostile_server.url("/seq"), timeout=5).status_code for _ in range(3)] == [
        503,
        200,
        200,
    ]
    hostile_server.route("/fn", lambda received: Answer(200, received.body[::-1]))
    assert requests.post(hostile_server.url("/fn"), data=b"abc", timeout=5).content == b"cba"


def test_chunked_request_bodies_are_read(hostile_server: HostileServer):
    requests.post(hostile_server.url("/c"), data=iter([b"ab", b"cd"]), timeout=5)
    assert hostile_server.requests[0].body == b"abcd"


def test_trickle_sends_bytes_slowly(hostile_server: HostileServer):
    hostile_server.route("/slow", Trickle(total=3, chunk=1, interval=0.1, fill=b"x"))
    started = time.monotonic()
    response = requests.get(hostile_server.url("/slow"), timeout=5)
    assert response.content == b"xxx"
    # Time is the behaviour here: three writes 0.1 s apart take at least 0.3 s.
    assert time.monotonic() - started >= 0.29


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_body_is_generated_lazily(hostile_server: HostileServer, chunked):
    size = 5 * 1024 * 1024 + 3
    hostile_server.route("/big", Huge(size, chunked=chunked, prefix=b'{"m": "', fill=b"z"))
    with requests.get(hostile_server.url("/big"), stream=True, timeout=5) as response:
        data = b"".join(response.iter_content(65536))
    assert len(data) == size
    assert data.startswith(b'{"m": "zz')
    assert ("Transfer-Encoding" in response.headers) is chunked


def test_nested_json_recurses(hostile_server: HostileServer):
    hostile_server.route("/deep", nested_json())
    body = requests.get(hostile_server.url("/deep"), timeout=5).content
    assert body == b"[" * 200_000
    with pytest.raises(RecursionError):
        json.loads(body)


def test_close_ends_a_trickle_in_progress(hostile_servers):
    [server] = hostile_servers(1)
    server.route("/forever", Trickle(total=10**9, interval=0.05))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    server.close()
    sock.settimeout(5)
    while sock.recv(65536):  # the server hangs up instead of trickling on
        pass
    sock.close()


def test_tls(hostile_servers):
    [server] = hostile_servers(1, tls=True)
    server.route("/s", Answer(200, b"secure"))
    assert server.origin.startswith("https://127.0.0.1:")
    assert requests.get(server.url("/s"), verify=str(server.ca_cert), timeout=5).content == b"secure"
