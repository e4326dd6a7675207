"""Hostile inputs answer 4xx, never 500, and cost bounded memory (issue 10, findings 9 and 10).

Before: a non-ASCII Basic digest or ``X-Amz-Signature``, a ``Range`` of 4301 digits, a long
multipart boundary and deeply nested JSON to the token, settings or faults endpoints all answered
500 with a traceback; a part ``Content-Type`` with control characters was stored and broke every
later download of the file; the token endpoint buffered any body; the request log kept every
header of 100,000 requests; ``rewards\\n`` passed the namespace check; ``signing.key`` was 0644.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import stat
from urllib.parse import quote

import pytest
import requests
from capillary_emulator.requestlog import MAX_HEADERS, MAX_TEXT, MAX_VALUE
from capillary_emulator.server import CapillaryEmulator
from capillary_emulator.signing import KEY_FILE, load_or_create_key
from capillary_emulator.tls import ensure_certificates
from capillary_emulator.upload import validate_namespace

from tests.emulator.conftest import KEY, SECRET, basic_header, upload_url

pytestmark = pytest.mark.integration

UNAUTHORIZED = {"code": 401, "status": "false", "message": "Unauthorized: invalid or missing credentials"}


def _token_url(emu: CapillaryEmulator) -> str:
    return f"{emu.base_url}/v3/oauth/token/generate"


def _stored_url(emu: CapillaryEmulator, data: bytes = b"0123456789") -> str:
    answer = requests.post(upload_url(emu, "a.png"), data=data, headers=basic_header(), timeout=10)
    url: str = answer.json()["secureFilePath"]
    return url


def _raw(emu: CapillaryEmulator, data: bytes) -> bytes:
    """Send raw bytes on a new connection; return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):  # closed with unread bytes: an RST after the answer
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


# -- finding 9: 4xx instead of 500 ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["POST", "GET"], ids=["upload", "probe"])
@pytest.mark.parametrize(
    "credentials",
    [
        "demo:\u00e9\u00e9\u00e9".encode(),
        "d\u00e9mo:abc".encode(),
        b"demo:\xff\xfe",
        "\u00e9".encode("latin-1"),
    ],
    ids=["non-ascii-digest", "non-ascii-user", "not-utf8", "not-base64"],
)
def test_odd_basic_credentials_are_401(emu: CapillaryEmulator, method: str, credentials: bytes) -> None:
    value = b"Basic " + (base64.b64encode(credentials) if credentials != b"\xe9" else credentials)
    answer = requests.request(
        method, upload_url(emu, "a.png"), data=b"1", headers={"Authorization": value}, timeout=10
    )
    assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED)
    assert emu.stored_files() == []


@pytest.mark.parametrize(
    "signature",
    ["%C3%A9" * 32, "%FF", "\u00e9".encode().hex()],
    ids=["utf8", "invalid-utf8", "hex-of-non-ascii"],
)
def test_a_non_ascii_signature_is_a_signature_mismatch(emu: CapillaryEmulator, signature: str) -> None:
    url = _stored_url(emu)
    prefix, _, _ = url.partition("X-Amz-Signature=")
    answer = requests.get(f"{prefix}X-Amz-Signature={signature}", timeout=10)
    assert answer.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in answer.text


@pytest.mark.parametrize(
    ("header", "status", "body", "content_range"),
    [
        ("bytes=" + "9" * 4301 + "-", 416, None, "bytes */10"),
        ("bytes=2-" + "9" * 4301, 206, b"23456789", "bytes 2-9/10"),
        ("bytes=-" + "9" * 4301, 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=" + "0" * 4300 + "3-4", 206, b"34", "bytes 3-4/10"),
        ("bytes=3-4\n", 206, b"34", "bytes 3-4/10"),
    ],
    ids=["huge-first", "huge-last", "huge-suffix", "leading-zeros", "trailing-newline-stripped"],
)
def test_ranges_with_thousands_of_digits(
    emu: CapillaryEmulator, header: str, status: int, body: bytes | None, content_range: str
) -> None:
    url = _stored_url(emu)
    answer = requests.get(url, headers={"Range": header.strip()}, timeout=10)
    assert (answer.status_code, answer.headers["content-range"]) == (status, content_range)
    if body is not None:
        assert answer.content == body
    else:
        assert "<Code>InvalidRange</Code>" in answer.text


@pytest.mark.parametrize("length", [71, 256, 257, 5000], ids=["71", "256", "257", "5000"])
def test_an_over_long_multipart_boundary_is_400(emu: CapillaryEmulator, length: int) -> None:
    boundary = "b" * length
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        f"abc\r\n--{boundary}--\r\n"
    )
    headers = {**basic_header(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    answer = requests.post(upload_url(emu, "a.png"), data=body, headers=headers, timeout=10)
    assert (answer.status_code, answer.json()["message"]) == (
        400,
        f"malformed multipart body: the boundary is {length} characters long, "
        "more than the 70 RFC 2046 allows",
    )
    assert emu.stored_files() == []
    assert list((emu.data_dir / "tmp").iterdir()) == []


def test_a_100k_boundary_is_refused_with_the_request_head(emu: CapillaryEmulator) -> None:
    """100,000 characters of boundary make a head past the 64 KiB bound: 431 before any parsing."""
    boundary = "b" * 100_000
    headers = {**basic_header(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    answer = requests.post(upload_url(emu, "a.png"), data=b"x", headers=headers, timeout=10)
    assert (answer.status_code, answer.json()["message"]) == (431, "The request head is too large")
    assert emu.requests() == []


def test_too_many_parts_is_400(emu: CapillaryEmulator) -> None:
    files = [(f"f{i}", (f"{i}.png", b"x", "image/png")) for i in range(17)]
    answer = requests.post(upload_url(emu, "a.png"), files=files, headers=basic_header(), timeout=10)
    assert (answer.status_code, answer.json()["message"]) == (
        400,
        "malformed multipart body: more than 16 parts",
    )
    assert list((emu.data_dir / "tmp").iterdir()) == []


NESTED = "[" * 5000  # 5 KB: small enough for every body cap, deep enough for a RecursionError


def test_deeply_nested_json_to_the_token_endpoint_is_400(emu: CapillaryEmulator) -> None:
    answer = requests.post(
        _token_url(emu), data=NESTED, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert (answer.status_code, answer.json()) == (
        400,
        {
            "data": None,
            "errors": [
                {
                    "code": 400,
                    "message": 'Both key and secret are required (JSON body {"key": ..., "secret": ...})',
                }
            ],
        },
    )


@pytest.mark.parametrize("path", ["settings", "faults"])
@pytest.mark.parametrize(
    "body", [NESTED, "[" * 200_000, '{"a": ' * 5000], ids=["5k-lists", "200k-lists", "5k-objects"]
)
def test_deeply_nested_json_to_the_control_endpoints_is_400(
    emu: CapillaryEmulator, path: str, body: str
) -> None:
    answer = requests.post(
        f"{emu.base_url}/_emulator/{path}", data=body, headers=emu.control_headers(), timeout=10
    )
    assert (answer.status_code, answer.json()) == (400, {"error": "the JSON body is nested too deeply"})
    assert emu.pending_faults() == []


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("faults", "[1, 2]", "expected a fault object or a list of them"),
        ("faults", '{"status": "x"}', "invalid literal for int() with base 10: 'x'"),
        ("settings", "[]", "expected a JSON object of settings"),
        ("settings", '{"latency": "fast"}', "'<' not supported between instances of 'str' and 'int'"),
        ("settings", '{"rate_limit": [1]}', "a rate limit is a number or a text such as '100/min', got [1]"),
        ("settings", "\xff", "the JSON body is not UTF-8"),
        (
            "settings",
            "{",
            "the body is not JSON: Expecting property name enclosed in double quotes at position 1",
        ),
    ],
    ids=[
        "fault-not-object",
        "fault-status-text",
        "settings-not-object",
        "latency-text",
        "rate-list",
        "not-utf8",
        "not-json",
    ],
)
def test_other_bad_control_bodies_are_400(emu: CapillaryEmulator, path: str, body: str, error: str) -> None:
    answer = requests.post(
        f"{emu.base_url}/_emulator/{path}",
        data=body.encode("latin-1"),
        headers=emu.control_headers(),
        timeout=10,
    )
    assert (answer.status_code, answer.json()) == (400, {"error": error})


def test_a_part_content_type_with_control_characters_is_400(emu: CapillaryEmulator) -> None:
    files = {"file": ("a.png", b"image bytes", "image/png\x0bX-Evil: 1")}
    answer = requests.post(upload_url(emu, "a.png"), files=files, headers=basic_header(), timeout=10)
    assert (answer.status_code, answer.json()["message"]) == (
        400,
        "Invalid Content-Type 'image/png\\x0bX-Evil: 1': control characters are not allowed",
    )
    assert emu.stored_files() == []
    assert list((emu.data_dir / "tmp").iterdir()) == []
    # the file can still be uploaded and downloaded with a sane type
    files = {"file": ("a.png", b"image bytes", "image/png")}
    url = requests.post(upload_url(emu, "a.png"), files=files, headers=basic_header(), timeout=10).json()[
        "secureFilePath"
    ]
    downloaded = requests.get(url, timeout=10)
    assert (downloaded.content, downloaded.headers["content-type"]) == (b"image bytes", "image/png")


def test_a_request_content_type_with_control_characters_never_reaches_the_store(
    emu: CapillaryEmulator,
) -> None:
    head = (
        "POST /api_gateway/file-service/rewards/a.png HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {basic_header()['Authorization']}\r\nContent-Type: image/png\x0bX-Evil: 1\r\n"
        "Content-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    assert _raw(emu, head.encode()).startswith(b"HTTP/1.1 400 Bad Request\r\n")  # refused by the HTTP parser
    assert emu.stored_files() == []


# -- finding 10: bounded bodies and logs, fullmatch, 0600 ------------------------------------------------
def test_the_token_endpoint_refuses_a_big_declared_body_without_reading_it(emu: CapillaryEmulator) -> None:
    head = (
        b"POST /v3/oauth/token/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    answer = _raw(emu, head + b'{"key": "' + b"k" * 8192)  # 8 KiB sent of the 10 GB announced

    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert answer.endswith(
        b'{"data": null, "errors": [{"code": 413, "message": "Request body is larger than 16384 bytes"}]}'
    )
    assert emu.token_requests() == []


def test_the_token_endpoint_caps_a_chunked_body(emu: CapillaryEmulator) -> None:
    def body():
        yield b'{"key": "demo-key", "secret": "'
        for _ in range(100):
            yield b"s" * 1024

    answer = requests.post(
        _token_url(emu), data=body(), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 413
    assert emu.tokens_issued == 0


def test_form_token_requests_still_work_under_the_cap(emu: CapillaryEmulator) -> None:
    form = requests.post(_token_url(emu), data={"key": KEY, "secret": SECRET}, timeout=10)
    multipart = requests.post(
        _token_url(emu), files={"key": (None, KEY), "secret": (None, SECRET)}, timeout=10
    )
    assert (form.status_code, multipart.status_code) == (200, 200)
    assert emu.tokens_issued == 2


def test_request_log_entries_are_bounded(emu: CapillaryEmulator) -> None:
    headers = {f"X-Filler-{index:02d}": "v" * 1000 for index in range(40)}  # 40 KB: under the head bound
    path_name = "p" * 3000 + ".png"
    requests.post(
        upload_url(emu, quote(path_name)), data=b"1", headers={**basic_header(), **headers}, timeout=10
    )

    [entry] = emu.requests()
    assert len(entry["headers"]) == MAX_HEADERS + 1
    assert entry["headers"]["<dropped>"] == "more headers than the log keeps"
    assert max(len(value) for value in entry["headers"].values()) == MAX_VALUE + len("...<truncated>")
    assert len(entry["path"]) == MAX_TEXT + len("...<truncated>")
    assert entry["status"] == 400  # the name is longer than 255 bytes


def test_the_request_log_keeps_the_last_entries_and_the_counts_all(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, request_log_size=5) as emu:
        for index in range(8):
            requests.post(upload_url(emu, f"f{index}.png"), data=b"1", headers=basic_header(), timeout=10)
        assert [entry["path"].rsplit("/", 1)[1] for entry in emu.requests()] == [
            f"f{i}.png" for i in range(3, 8)
        ]
        assert emu.stats()["requests"] == {"upload": {"200": 8}}
        emu.configure(request_log_size=2)
        assert [entry["path"].rsplit("/", 1)[1] for entry in emu.requests()] == ["f6.png", "f7.png"]
    assert CapillaryEmulator().settings.request_log_size == 10_000


def test_a_namespace_with_a_trailing_newline_is_400(emu: CapillaryEmulator) -> None:
    answer = requests.post(
        f"{emu.base_url}/api_gateway/file-service/rewards%0A/a.png",
        data=b"1",
        headers=basic_header(),
        timeout=10,
    )
    assert (answer.status_code, answer.json()["message"]) == (
        400,
        "Invalid namespace 'rewards\\n': use 1-128 letters, digits, '.', '-' or '_'",
    )
    assert emu.stored_files() == []
    assert validate_namespace("rewards") is None
    assert validate_namespace("rewards\n") is not None


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_secret_key_files_are_private(tmp_path) -> None:
    load_or_create_key(tmp_path)
    files = ensure_certificates(tmp_path)
    assert _mode(tmp_path / KEY_FILE) == 0o600
    assert _mode(files.key) == 0o600
    assert _mode(files.ca_cert) == 0o644 & ~_umask()


def test_a_readable_key_left_by_an_older_emulator_is_narrowed(tmp_path) -> None:
    key = load_or_create_key(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    assert load_or_create_key(tmp_path) == key
    assert _mode(tmp_path / KEY_FILE) == 0o600


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_the_running_emulator_writes_its_key_private(emu: CapillaryEmulator) -> None:
    assert _mode(emu.data_dir / KEY_FILE) == 0o600
    assert hashlib.sha256((emu.data_dir / KEY_FILE).read_bytes()).hexdigest()  # it exists and is readable
