"""Pre-signed downloads: bytes, HEAD, Range, expiry, tampering, missing objects."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import png_bytes, upload

pytestmark = pytest.mark.integration

DATA = png_bytes(1000)


def _secure_url(emu: CapillaryEmulator, name: str = "pic.png", data: bytes = DATA) -> str:
    return upload(emu, name, data).json()["secureFilePath"]


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params[name] = value
    return urlunsplit(parts._replace(query=urlencode(params)))


def _xml_error(code: str, message: str) -> tuple[str, str]:
    return f"<Code>{code}</Code>", f"<Message>{message}</Message>"


def test_get_serves_the_uploaded_bytes(emu: CapillaryEmulator) -> None:
    response = requests.get(_secure_url(emu), timeout=10)

    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["accept-ranges"] == "bytes"


def test_head_sends_headers_only(emu: CapillaryEmulator) -> None:
    response = requests.head(_secure_url(emu), timeout=10)

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["content-type"] == "image/png"


def test_each_version_keeps_its_own_bytes(emu: CapillaryEmulator) -> None:
    first = _secure_url(emu, "a.png", b"first")
    second = _secure_url(emu, "a.png", b"second version")

    assert requests.get(first, timeout=10).content == b"first"
    assert requests.get(second, timeout=10).content == b"second version"


@pytest.mark.parametrize(
    ("header", "status", "content_range", "body"),
    [
        ("bytes=0-3", 206, f"bytes 0-3/{len(DATA)}", DATA[:4]),
        ("bytes=10-", 206, f"bytes 10-{len(DATA) - 1}/{len(DATA)}", DATA[10:]),
        ("bytes=-5", 206, f"bytes {len(DATA) - 5}-{len(DATA) - 1}/{len(DATA)}", DATA[-5:]),
        (f"bytes=5-{len(DATA) + 100}", 206, f"bytes 5-{len(DATA) - 1}/{len(DATA)}", DATA[5:]),
        ("bytes=0-1,5-6", 200, None, DATA),
        ("lines=1-2", 200, None, DATA),
        (f"bytes={len(DATA)}-", 416, f"bytes */{len(DATA)}", None),
        ("bytes=-0", 416, f"bytes */{len(DATA)}", None),
    ],
    ids=[
        "first-bytes",
        "open-end",
        "suffix",
        "past-end-clamped",
        "multi-range-ignored",
        "other-unit-ignored",
        "start-past-end",
        "empty-suffix",
    ],
)
def test_range_requests(emu: CapillaryEmulator, header: str, status: int, content_range, body) -> None:
    response = requests.get(_secure_url(emu), headers={"Range": header}, timeout=10)

    assert response.status_code == status
    assert response.headers.get("content-range") == content_range
    if body is not None:
        assert response.content == body
        assert response.headers["content-length"] == str(len(body))
    else:
        assert "<Code>InvalidRange</Code>" in response.text


def test_expired_url_gets_403_request_has_expired(emu: CapillaryEmulator) -> None:
    emu.configure(url_expiry=1)
    url = _secure_url(emu)
    assert "X-Amz-Expires=1&" in url
    time.sleep(2.05)  # X-Amz-Date has whole seconds

    response = requests.get(url, timeout=10)

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    assert response.text.startswith(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    )
    assert "<Message>Request has expired</Message>" in response.text


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("X-Amz-Signature", "0" * 64),
        ("X-Amz-Expires", "604800"),
        ("X-Amz-Date", "20990101T000000Z"),
        ("X-Amz-Security-Token", "forged"),
        ("X-Amz-Credential", "ASIAAAAAAAAAAAAAAAAA/20240101/eu-west-1/s3/aws4_request"),
    ],
    ids=["signature", "expires", "date", "security-token", "credential"],
)
def test_tampered_url_gets_403_signature_does_not_match(
    emu: CapillaryEmulator, param: str, value: str
) -> None:
    response = requests.get(_with_param(_secure_url(emu), param, value), timeout=10)

    assert response.status_code == 403
    code, message = _xml_error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )
    assert code in response.text
    assert message in response.text


def test_other_object_path_with_a_valid_signature_is_refused(emu: CapillaryEmulator) -> None:
    url = urlsplit(_secure_url(emu, "a.png"))
    other = urlsplit(_secure_url(emu, "b.png"))

    response = requests.get(urlunsplit(url._replace(path=other.path)), timeout=10)

    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_missing_parameters_get_403_access_denied(emu: CapillaryEmulator) -> None:
    url = urlsplit(_secure_url(emu))
    response = requests.get(urlunsplit(url._replace(query="")), timeout=10)

    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert "X-Amz-Signature" in response.text


def test_deleted_object_gets_404(emu: CapillaryEmulator) -> None:
    url = _secure_url(emu)
    emu.reset()

    response = requests.get(url, timeout=10)

    assert response.status_code == 404
    assert "<Code>NoSuchKey</Code>" in response.text


def test_download_requests_are_logged(emu: CapillaryEmulator) -> None:
    url = _secure_url(emu)
    requests.get(url, timeout=10)

    entry = emu.requests()[-1]
    assert (entry["kind"], entry["method"], entry["status"]) == ("download", "GET", 200)
    assert entry["path"] == urlsplit(url).path
