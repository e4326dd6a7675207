"""The control endpoints and the request log against a hostile caller (issue 10, finding 8).

Before: ``GET /_emulator/requests`` answered anyone with every ``Authorization`` header (user and
MD5), the OAuth tokens and the full pre-signed queries; no Host check (DNS rebinding); control
POSTs accepted ``text/plain``, which any web page can send.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from capillary_emulator.connection import CONTROL_TOKEN_HEADER
from capillary_emulator.process import EmulatorProcess
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import KEY, SECRET, basic_header, upload_url

pytestmark = pytest.mark.integration

#: Every control endpoint and method that needs the token.
GUARDED = [
    ("GET", "faults"),
    ("POST", "faults"),
    ("DELETE", "faults"),
    ("GET", "files"),
    ("GET", "requests"),
    ("GET", "tokens"),
    ("GET", "stats"),
    ("POST", "reset"),
    ("GET", "settings"),
    ("POST", "settings"),
]
TOKEN_MESSAGE = (
    "missing or wrong X-Emulator-Token header: the control token is printed by the emulator at start "
    "and held by CapillaryEmulator/EmulatorProcess.control_token"
)


def _control(emu: CapillaryEmulator, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{emu.base_url}/_emulator/{path}", timeout=10, **kwargs)


def _traffic_with_every_credential(emu: CapillaryEmulator) -> list[str]:
    """An upload with Basic, one with an OAuth token (both with a static API key header and a cookie),
    a download through the secure URL; return the secrets that went over the wire."""
    token = requests.post(
        f"{emu.base_url}/v3/oauth/token/generate", json={"key": KEY, "secret": SECRET}, timeout=10
    ).json()["data"]["accessToken"]
    extra = {"X-Api-Key": "static-key-value-123", "Cookie": "session=cookie-value-456"}
    basic = basic_header()
    first = requests.post(upload_url(emu, "a.png"), data=b"1", headers={**basic, **extra}, timeout=10)
    second = requests.post(
        upload_url(emu, "b.png"), data=b"2", headers={"X-CAP-API-OAUTH-TOKEN": token, **extra}, timeout=10
    )
    url = first.json()["secureFilePath"]
    assert (
        requests.get(url, headers={"Authorization": "Bearer bearer-secret-789"}, timeout=10).content == b"1"
    )
    assert second.status_code == 200
    query = dict(parse_qsl(urlsplit(url).query))
    return [
        basic["Authorization"].split(" ", 1)[1],
        token,
        "static-key-value-123",
        "cookie-value-456",
        "bearer-secret-789",
        query["X-Amz-Signature"],
        query["X-Amz-Security-Token"],
        query["X-Amz-Credential"],
    ]


def test_the_request_log_keeps_no_credential(emu: CapillaryEmulator) -> None:
    secrets = _traffic_with_every_credential(emu)

    over_http = _control(emu, "GET", "requests", headers=emu.control_headers()).json()
    for log in (json.dumps(emu.requests()), json.dumps(over_http)):
        assert [secret for secret in secrets if secret in log] == []
    token_request, basic_upload, oauth_upload, download = emu.requests()
    assert token_request["headers"]["content-type"] == "application/json"
    assert basic_upload["headers"]["authorization"] == "Basic <redacted>"
    assert oauth_upload["headers"]["x-cap-api-oauth-token"] == "<redacted>"
    assert basic_upload["headers"]["x-api-key"] == oauth_upload["headers"]["x-api-key"] == "<redacted>"
    assert basic_upload["headers"]["cookie"] == "<redacted>"
    assert download["headers"]["authorization"] == "Bearer <redacted>"
    query = dict(parse_qsl(download["query"]))
    assert {
        name: query[name] for name in ("X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Credential")
    } == {
        "X-Amz-Signature": "<redacted>",
        "X-Amz-Security-Token": "<redacted>",
        "X-Amz-Credential": "<redacted>",
    }
    assert (query["X-Amz-Algorithm"], query["X-Amz-SignedHeaders"]) == ("AWS4-HMAC-SHA256", "host")
    assert [entry["principal"] for entry in emu.requests()] == [
        "oauth:demo-key",
        "basic:demo",
        "oauth:demo-key",
        None,
    ]


@pytest.mark.parametrize(("method", "path"), GUARDED, ids=[f"{m}-{p}" for m, p in GUARDED])
@pytest.mark.parametrize(
    "token", [None, "wrong-token", "t\u00e9"], ids=["no-token", "wrong-token", "non-ascii-token"]
)
def test_control_endpoints_require_the_token(
    emu: CapillaryEmulator, method: str, path: str, token: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers[CONTROL_TOKEN_HEADER] = token
    body = (
        {"faults": [{"status": 503}], "settings": {"latency": 1.0}, "reset": {}}[path]
        if method == "POST"
        else None
    )

    answer = _control(emu, method, path, headers=headers, json=body)

    assert (answer.status_code, answer.json()) == (401, {"error": TOKEN_MESSAGE})
    assert emu.pending_faults() == []
    assert emu.settings.latency == 0.0


def test_health_needs_no_token(emu: CapillaryEmulator) -> None:
    assert _control(emu, "GET", "health").json() == {"ok": True}


@pytest.mark.parametrize("path", ["faults", "settings", "reset"])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_control_posts_require_json(emu: CapillaryEmulator, path: str, content_type: str | None) -> None:
    """A web page can POST these three types cross-origin without a CORS preflight."""
    body = {"faults": '[{"status": 503}]', "settings": '{"latency": 1.0}', "reset": "{}"}[path]
    _traffic_with_every_credential(emu)
    headers = {CONTROL_TOKEN_HEADER: emu.control_token}
    if content_type is not None:
        headers["Content-Type"] = content_type

    answer = _control(emu, "POST", path, headers=headers, data=body)

    assert (answer.status_code, answer.json()) == (
        415,
        {"error": "control POSTs take Content-Type: application/json"},
    )
    assert emu.pending_faults() == []
    assert emu.settings.latency == 0.0
    assert len(emu.requests()) == 4  # not reset


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:{port}",
        "127.0.0.1.attacker.example:{port}",
        "10.0.0.1:{port}",
        "",
    ],
    ids=["name", "name-port", "loopback-prefix", "private-address", "empty"],
)
@pytest.mark.parametrize("path", ["requests", "health"])
def test_control_endpoints_refuse_a_foreign_host(emu: CapillaryEmulator, host: str, path: str) -> None:
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1."""
    value = host.format(port=emu.port)

    answer = _control(emu, "GET", path, headers={**emu.control_headers(), "Host": value})

    message = (
        f"the control endpoints answer only to a loopback Host (localhost, 127.0.0.1, [::1]), got {value!r}"
    )
    assert (answer.status_code, answer.json()) == (403, {"error": message})


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "127.0.0.2:{port}", "[::1]:{port}", "localhost."],
)
def test_control_endpoints_answer_loopback_hosts(emu: CapillaryEmulator, host: str) -> None:
    answer = _control(
        emu, "GET", "files", headers={**emu.control_headers(), "Host": host.format(port=emu.port)}
    )
    assert (answer.status_code, answer.json()) == (200, [])


def test_the_process_runner_holds_the_token_across_restarts(tmp_path) -> None:
    with EmulatorProcess(tmp_path) as process:
        token = process.control_token
        assert len(token) == 43
        assert requests.get(f"{process.base_url}/_emulator/files", timeout=10).status_code == 401
        assert process.stored_files() == []
        process.kill()
        process.restart()
        assert process.control_token == token
        assert process.configure(latency=0.001)["latency"] == 0.001
        assert "control token" not in " ".join(process.command())  # never on the command line
    assert EmulatorProcess(tmp_path).control_token != token  # one per runner


def test_each_emulator_has_its_own_token(tmp_path) -> None:
    first, second = CapillaryEmulator(data_dir=tmp_path / "a"), CapillaryEmulator(data_dir=tmp_path / "b")
    assert first.control_token != second.control_token
    assert CapillaryEmulator(control_token="chosen").control_token == "chosen"
    with first:
        assert first.state.control_token == first.control_token
        answer = requests.get(
            f"{first.base_url}/_emulator/stats", headers=second.control_headers(), timeout=10
        )
        assert answer.status_code == 401
