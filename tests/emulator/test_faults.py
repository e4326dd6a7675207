"""Injected faults as a ``requests`` client sees them, latency and the control endpoints."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import requests
from capillary_emulator.clock import ManualClock
from capillary_emulator.faults import Fault
from capillary_emulator.requestlog import REDACTED
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import KEY, SECRET, basic_header, png_bytes, upload_url

pytestmark = pytest.mark.integration

DATA = png_bytes(2000)


def _post(emu: CapillaryEmulator, data: bytes = DATA, name: str = "a.png", **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 10)
    return requests.post(upload_url(emu, name), data=data, headers=basic_header(), **kwargs)


def _sizes(emu: CapillaryEmulator) -> list[int]:
    return [stored["size"] for stored in emu.stored_files()]


def test_respond_fault_answers_its_status_once(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(status=503, headers={"Retry-After": "7"}))

    faulted, normal = _post(emu), _post(emu)

    assert faulted.status_code == 503
    assert faulted.headers["retry-after"] == "7"
    assert faulted.json() == {"code": 503, "status": "false", "message": "Service Unavailable"}
    assert normal.status_code == 200
    assert normal.json()["file"]["version"] == 1
    assert [(e["fault"], e["status"]) for e in emu.requests()] == [("503", 503), (None, 200)]


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        ({"error": "slow down"}, "application/json", '{"error": "slow down"}'),
        ("<html>Bad gateway</html>", "application/json", "<html>Bad gateway</html>"),
    ],
    ids=["json-body", "text-body"],
)
def test_respond_fault_with_custom_body(emu: CapillaryEmulator, body, content_type: str, text: str) -> None:
    emu.push_fault(Fault(status=429, headers={}, body=body))

    response = _post(emu)

    assert (response.status_code, response.text) == (429, text)
    assert "retry-after" not in response.headers
    assert response.headers["content-type"] == content_type


def test_times_and_until_reset(emu: CapillaryEmulator) -> None:
    emu.push_faults([Fault(status=500, times=2), Fault(status=502, times=None)])

    statuses = [_post(emu).status_code for _ in range(4)]
    emu.reset()

    assert statuses == [500, 500, 502, 502]
    assert _post(emu).status_code == 200


@pytest.mark.parametrize(
    ("match", "token_status", "upload_status"),
    [("upload", 200, 503), ("token", 503, 200), ("any", 503, 200)],
    ids=["upload", "token", "any-first-request"],
)
def test_faults_only_hit_their_match(
    emu: CapillaryEmulator, match: str, token_status: int, upload_status: int
) -> None:
    emu.push_fault(Fault(status=503, match=match))

    token = requests.post(
        f"{emu.base_url}/v3/oauth/token/generate", json={"key": KEY, "secret": SECRET}, timeout=10
    )
    uploaded = _post(emu)

    assert (token.status_code, uploaded.status_code) == (token_status, upload_status)
    if token_status == 503:
        assert token.json() == {"data": None, "errors": [{"code": 503, "message": "Service Unavailable"}]}


@pytest.mark.parametrize("size", [0, 10, 4 << 20], ids=["empty", "small", "4MiB"])
def test_reset_drops_the_connection_mid_upload(emu: CapillaryEmulator, size: int) -> None:
    emu.push_fault(Fault(action="reset"))

    with pytest.raises(requests.exceptions.ConnectionError):
        _post(emu, b"r" * size)

    assert emu.stored_files() == []
    [entry] = emu.requests()
    assert (entry["fault"], entry["status"]) == ("reset", None)
    assert _post(emu).status_code == 200  # the emulator itself is fine


def test_reset_after_store_loses_the_answer_but_keeps_the_file(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(action="reset", store=True))

    with pytest.raises(requests.exceptions.ConnectionError):
        _post(emu)

    assert _sizes(emu) == [len(DATA)]
    assert _post(emu).json()["file"]["version"] == 2  # the retry makes a duplicate version


def test_delay_fault_is_a_read_timeout_after_the_file_was_stored(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(action="delay", delay=1.0))

    with pytest.raises(requests.exceptions.ReadTimeout):
        _post(emu, timeout=(5, 0.3))

    assert _sizes(emu) == [len(DATA)]


def test_delay_before_a_respond_fault(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(status=503, delay=0.3))
    started = time.monotonic()
    assert _post(emu).status_code == 503
    assert time.monotonic() - started >= 0.3


def test_malformed_json_fault_stores_then_garbles_the_answer(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(action="malformed_json"))

    response = _post(emu)

    assert response.status_code == 200
    assert response.text.startswith('{"code": 200, "status": "true"')
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    assert _sizes(emu) == [len(DATA)]


def test_status_false_fault(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(action="status_false"))

    response = _post(emu)

    assert response.status_code == 200
    assert response.json() == {
        "code": 500,
        "status": "false",
        "message": "Failed to upload file",
        "file": None,
    }
    assert emu.stored_files() == []


def test_placeholder_fault_stores_zero_bytes_and_says_so(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(action="placeholder"))

    response = _post(emu)

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["file"]["fileSize"]) == ("true", "0")
    [stored] = emu.stored_files()
    assert (stored["size"], stored["placeholder"]) == (0, True)
    assert requests.get(response.json()["secureFilePath"], timeout=10).content == b""


def test_truncate_fault_stores_the_first_half(emu: CapillaryEmulator) -> None:
    emu.push_fault(Fault(action="truncate"))

    response = _post(emu)

    half = DATA[: len(DATA) // 2]
    assert response.json()["file"]["fileSize"] == str(len(half))
    assert emu.stored_files()[0]["sha256"] == hashlib.sha256(half).hexdigest()
    assert requests.get(response.json()["secureFilePath"], timeout=10).content == half


@pytest.mark.parametrize("action", ["reset", "truncate"])
def test_download_cut_short(emu: CapillaryEmulator, action: str) -> None:
    url = _post(emu, b"d" * (1 << 20)).json()["secureFilePath"]
    emu.push_fault(Fault(action=action, match="download"))

    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        requests.get(url, timeout=10).content  # noqa: B018

    assert len(requests.get(url, timeout=10).content) == 1 << 20


def test_download_respond_fault_is_s3_xml(emu: CapillaryEmulator) -> None:
    url = _post(emu).json()["secureFilePath"]
    emu.push_fault(Fault(status=503, match="download"))

    response = requests.get(url, timeout=10)

    assert response.status_code == 503
    assert "<Code>ServiceUnavailable</Code><Message>Service Unavailable</Message>" in response.text


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(action="reset", match="token"), requests.exceptions.ConnectionError),
        (Fault(action="malformed_json", match="token"), requests.exceptions.JSONDecodeError),
    ],
    ids=["reset", "malformed-json"],
)
def test_token_faults(emu: CapillaryEmulator, fault: Fault, error: type[Exception]) -> None:
    emu.push_fault(fault)

    with pytest.raises(error):
        requests.post(
            f"{emu.base_url}/v3/oauth/token/generate", json={"key": KEY, "secret": SECRET}, timeout=10
        ).json()

    assert emu.tokens_issued == 0


def test_latency_does_not_serialise_concurrent_requests(tmp_path) -> None:
    clock = ManualClock()
    with CapillaryEmulator(data_dir=tmp_path, latency=0.05, clock=clock) as emu:
        statuses: list[int] = []

        def worker(index: int) -> None:
            statuses.append(_post(emu, name=f"c{index}.png", timeout=60).status_code)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()

        # All 16 wait out their latency at once: a serialised latency never holds more than one.
        assert clock.wait_for_sleepers(16), f"only {clock.sleepers} requests waited at once"
        assert emu.stored_files() == []  # the latency comes before the upload is handled
        clock.advance(0.049)
        assert clock.sleepers == 16  # not yet
        clock.advance(0.001)
        for thread in threads:
            thread.join()

    assert statuses == [200] * 16


def test_random_faults_follow_their_seed(emu: CapillaryEmulator) -> None:
    def run() -> list[str | None]:
        emu.reset()
        emu.configure(fault_rate=0.5, fault_seed=7, fault_kinds=("503", "429", "500", "status_false"))
        for index in range(12):
            _post(emu, name=f"f{index}.png")
        return [entry["fault"] for entry in emu.requests()]

    first, second = run(), run()

    assert first == second
    assert {kind for kind in first if kind} <= {"503", "429", "500", "status_false"}
    assert 0 < sum(kind is not None for kind in first) < 12
    assert len(emu.stored_files()) == first.count(None)


def test_control_endpoints_over_http(emu: CapillaryEmulator) -> None:
    base = f"{emu.base_url}/_emulator"
    headers = emu.control_headers()
    pushed = requests.post(
        f"{base}/faults", json=[{"status": 503}, {"action": "reset"}], headers=headers, timeout=10
    )
    assert pushed.status_code == 200
    assert [(f["status"], f["action"]) for f in pushed.json()] == [(503, "respond"), (503, "reset")]
    bad = requests.post(f"{base}/faults", json={"action": "explode"}, headers=headers, timeout=10)
    assert bad.status_code == 400
    assert "unknown fault action 'explode'" in bad.json()["error"]
    assert requests.delete(f"{base}/faults", headers=headers, timeout=10).json() == []

    _post(emu)
    files = requests.get(f"{base}/files", headers=headers, timeout=10).json()
    assert [(f["name"], f["size"]) for f in files] == [("a.png", len(DATA))]
    assert [e["kind"] for e in requests.get(f"{base}/requests", headers=headers, timeout=10).json()] == [
        "upload"
    ]
    assert requests.get(f"{base}/stats", headers=headers, timeout=10).json()["requests"] == {
        "upload": {"200": 1}
    }

    settings = requests.post(f"{base}/settings", json={"latency": 0.01}, headers=headers, timeout=10).json()
    assert settings["latency"] == 0.01
    assert settings["users"] == ["demo"]  # names only, never passwords
    refused = requests.post(f"{base}/settings", json={"timezone": "UTC"}, headers=headers, timeout=10)
    assert (refused.status_code, refused.json()) == (400, {"error": "cannot change timezone at run time"})

    assert requests.post(f"{base}/reset", headers=headers, timeout=10).json() == {"reset": True}
    assert emu.stored_files() == []
    assert requests.get(f"{base}/health", timeout=10).json() == {"ok": True}  # no token needed


def test_redirect_fault_and_what_a_plain_requests_client_forwards(emu: CapillaryEmulator, tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path) as other:
        target = upload_url(other, "moved.png")
        emu.push_fault(Fault(status=307, headers={"Location": target}, body=""))
        headers = {**basic_header(), "X-CAP-API-OAUTH-TOKEN": "tok"}

        response = requests.post(upload_url(emu, "a.png"), data=b"img", headers=headers, timeout=10)

        assert [r.status_code for r in response.history] == [307]
        assert response.status_code == 401  # the credentials did not follow the redirect...
        [received] = other.requests()
        assert (received["method"], received["path"], received["body_size"]) == (
            "POST",
            "/api_gateway/file-service/rewards/moved.png",
            3,
        )
        assert "authorization" not in received["headers"]
        # ...except the custom token header, which requests does not strip: the hook has to
        # (the log shows that it arrived, never its value)
        assert received["headers"]["x-cap-api-oauth-token"] == REDACTED
