"""CapillaryFileHook against the emulator over real loopback sockets (http and https)."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from capillary_emulator import CapillaryEmulator, Fault

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks.file_service import CapillaryFileHook

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # 10,248 bytes
#: Fast retries: tiny backoff, Retry-After honoured but capped at 50 ms.
FAST: dict[str, Any] = {"retry_min_wait": 0.01, "retry_max_wait": 0.05, "retry_after_max": 0.05}


@pytest.fixture
def capillary_emulator(http_emulator: CapillaryEmulator) -> CapillaryEmulator:
    """The module's HTTP emulator, emptied (overrides the plugin's per-test emulator, for speed)."""
    http_emulator.reset()
    return http_emulator


@pytest.fixture
def tls_emulator(tls_emulator: CapillaryEmulator) -> CapillaryEmulator:
    """The module's HTTPS emulator (tests/conftest.py), emptied before each test."""
    tls_emulator.reset()
    return tls_emulator


@pytest.fixture(params=["http", "https"])
def emulator(request: pytest.FixtureRequest) -> CapillaryEmulator:
    name = "capillary_emulator" if request.param == "http" else "tls_emulator"
    return request.getfixturevalue(name)


@pytest.fixture
def hook_for(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CapillaryFileHook]:
    """Point ``capillary_default`` at an emulator (URI form) and return a hook on it."""

    def _hook(
        emu: CapillaryEmulator,
        auth_type: str = "basic",
        *,
        hook_kwargs: dict[str, Any] | None = None,
        **extras: Any,
    ) -> CapillaryFileHook:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CAPILLARY_DEFAULT", emu.connection_uri(auth_type=auth_type, **extras)
        )
        return CapillaryFileHook(**(hook_kwargs or {}))

    return _hook


def latest(emu: CapillaryEmulator, name: str) -> dict[str, Any]:
    return max((f for f in emu.stored_files() if f["name"] == name), key=lambda f: f["version"])


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
def test_upload_stores_the_exact_bytes(emulator, hook_for, auth_type, tmp_path: Path):
    image = tmp_path / "reward crème brûlée.png"
    image.write_bytes(PNG)
    hook = hook_for(emulator, auth_type)
    result = hook.upload_file(image)
    stored = latest(emulator, "reward crème brûlée.png")
    assert (stored["namespace"], stored["size"], stored["sha256"]) == (
        "rewards",
        len(PNG),
        hashlib.sha256(PNG).hexdigest(),
    )
    assert stored["content_type"] == "image/png"
    assert stored["placeholder"] is False
    assert (result.name, result.version, result.file_size) == ("reward crème brûlée.png", 1, len(PNG))
    assert result.sha256 == stored["sha256"]
    assert result.file_handle == stored["file_handle"]
    assert result.last_modified.tzinfo is not None
    verify = emulator.ca_cert_path or True
    served = requests.get(result.secure_file_path or "", verify=verify, timeout=10)
    assert served.content == PNG
    assert emulator.base_url.startswith("https://" if emulator.ca_cert_path else "http://")


def test_file_name_outside_latin_1(capillary_emulator, hook_for):
    assert hook_for(capillary_emulator).upload_file(PNG, file_name="gift €.png").name == "gift €.png"


def test_raw_encoding_and_versions(capillary_emulator, hook_for):
    hook = hook_for(capillary_emulator, upload_encoding="raw")
    first = hook.upload_file(PNG, file_name="a.png")
    second = hook.upload_file(PNG[:100], file_name="a.png")
    assert (first.version, second.version, second.latest_version, second.file_size) == (1, 2, 2, 100)
    assert latest(capillary_emulator, "a.png")["sha256"] == hashlib.sha256(PNG[:100]).hexdigest()


def test_one_token_for_many_uploads(capillary_emulator, hook_for):
    from concurrent.futures import ThreadPoolExecutor

    hook = hook_for(capillary_emulator, "oauth")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: hook.upload_file(PNG, file_name=f"img-{i}.png"), range(24)))
    assert len(results) == 24
    assert capillary_emulator.tokens_issued == 1


def test_placeholder(capillary_emulator, hook_for):
    result = hook_for(capillary_emulator).create_placeholder("later.png")
    stored = latest(capillary_emulator, "later.png")
    assert stored["placeholder"] is True
    assert result.name == "later.png"


# -- faults: every upload ends up stored whole through the hook's retries --------------------------

FAULTS = [
    Fault(status=503),
    Fault(status=429),
    Fault(status=502, headers={}),
    Fault(status=504, headers={}),
    Fault(action="reset"),
    Fault(action="malformed_json"),
    Fault(action="status_false"),
    Fault(action="placeholder"),
    Fault(action="truncate"),
    Fault(status=503, match="token"),
    Fault(status=401, headers={}, times=1),
]
FAULT_IDS = [
    "503",
    "429",
    "502",
    "504",
    "reset",
    "malformed_json",
    "status_false",
    "placeholder",
    "truncate",
    "token-503",
    "upload-401-oauth-refresh",
]


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_each_fault_is_recovered(capillary_emulator, hook_for, fault):
    auth_type = "oauth" if fault.match == "token" or fault.status == 401 else "basic"
    hook = hook_for(capillary_emulator, auth_type, hook_kwargs=FAST)
    capillary_emulator.push_fault(fault)
    result = hook.upload_file(PNG, file_name="f.png")
    stored = latest(capillary_emulator, "f.png")
    assert (stored["size"], stored["sha256"], stored["placeholder"]) == (
        len(PNG),
        hashlib.sha256(PNG).hexdigest(),
        False,
    )
    assert (result.version, result.file_size) == (stored["version"], len(PNG))
    uploads = [r for r in capillary_emulator.requests() if r["path"].endswith("/f.png")]
    assert len(uploads) == (1 if fault.match == "token" else 2)
    assert all(r["body_size"] == uploads[0]["body_size"] for r in uploads[1:]) or fault.action == "reset"


def test_read_timeout_after_the_service_stored_the_file_is_retried(capillary_emulator, hook_for):
    hook = hook_for(capillary_emulator, timeout="[5, 0.3]", hook_kwargs=FAST)
    capillary_emulator.push_fault(Fault(action="delay", delay=1.0))
    result = hook.upload_file(PNG, file_name="slow.png")
    assert result.version == 2  # the first attempt was stored too: a duplicate version, documented


def test_500_is_not_retried_by_default(capillary_emulator, hook_for):
    hook = hook_for(capillary_emulator, hook_kwargs=FAST)
    capillary_emulator.push_fault(Fault(status=500, headers={}))
    with pytest.raises(CapillaryServiceUnavailableError, match=r"HTTP 500") as info:
        hook.upload_file(PNG, file_name="x.png")
    assert info.value.status_code == 500
    hook = CapillaryFileHook(retry_on_500=True, **FAST)
    capillary_emulator.push_fault(Fault(status=500, headers={}))
    assert hook.upload_file(PNG, file_name="x.png").version == 1


def test_persistent_503_gives_up(capillary_emulator, hook_for):
    hook = hook_for(capillary_emulator, hook_kwargs={"max_retries": 2, **FAST})
    capillary_emulator.push_fault(Fault(status=503, headers={}, times=None))  # no Retry-After: not a pause
    with pytest.raises(CapillaryServiceUnavailableError, match=r"HTTP 503.*\(after 3 attempts\)$"):
        hook.upload_file(PNG, file_name="x.png")
    assert len([r for r in capillary_emulator.requests() if r["path"].endswith("/x.png")]) == 3


def test_too_large_is_rejected(tmp_path: Path, hook_for):
    with CapillaryEmulator(data_dir=tmp_path / "emu", max_body_bytes=1000) as emu:
        with pytest.raises(CapillaryRequestRejectedError, match=r"HTTP 413") as info:
            hook_for(emu, upload_encoding="raw").upload_file(PNG, file_name="big.png")
        assert info.value.status_code == 413


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
def test_wrong_credentials(capillary_emulator, hook_for, auth_type):
    hook = hook_for(capillary_emulator, auth_type, password="wrong-password")
    with pytest.raises(CapillaryAuthError, match=r"HTTP 401"):
        hook.upload_file(PNG, file_name="x.png")
    assert capillary_emulator.stored_files() == []


def test_token_is_refreshed_before_it_expires(tmp_path: Path, hook_for):
    with CapillaryEmulator(data_dir=tmp_path / "emu", token_ttl=3) as emu:
        hook = hook_for(emu, "oauth")
        hook.upload_file(PNG, file_name="a.png")
        time.sleep(2.3)  # past ttl - ttl/4 = 2.25 s: refreshed before the 3 s run out
        hook.upload_file(PNG, file_name="a.png")
        assert emu.tokens_issued == 2
        assert [r["status"] for r in emu.requests() if r["path"].endswith("/a.png")] == [200, 200]


# -- test_connection --------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
def test_test_connection_ok(emulator, hook_for, auth_type):
    ok, message = hook_for(emulator, auth_type).test_connection()
    assert ok, message
    assert message.startswith("ok: ")
    assert emulator.stored_files() == []


def test_test_connection_oauth_credentials_refused(capillary_emulator, hook_for):
    ok, message = hook_for(capillary_emulator, "oauth", password="wrong").test_connection()
    assert (ok, message.split(":")[0]) == (False, "credentials refused")
    assert "wrong" not in message


def test_test_connection_basic_credentials_refused(capillary_emulator, hook_for):
    ok, message = hook_for(capillary_emulator, "basic", password="wrong").test_connection()
    assert (ok, message.split(":")[0]) == (False, "credentials refused")


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
def test_test_connection_cannot_reach(monkeypatch, auth_type):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A{port}/?auth_type={auth_type}&timeout=2"
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", uri)
    ok, message = CapillaryFileHook().test_connection()
    assert (ok, message.startswith(f"cannot reach http://127.0.0.1:{port}: ")) == (False, True)


def test_tls_without_the_ca_is_refused_without_retry(tls_emulator, monkeypatch):
    uri = tls_emulator.connection_uri(auth_type="basic", verify="true")
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", uri)
    with pytest.raises(CapillaryServiceUnavailableError, match=r"cannot reach .*SSLError"):
        CapillaryFileHook(**FAST).upload_file(PNG, file_name="x.png")
    assert tls_emulator.requests() == []
