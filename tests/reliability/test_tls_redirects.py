"""TLS and redirects (issue 7, item 4).

TLS: an emulator serving its self-signed certificate is refused by default (the system CA
bundle) and by an unrelated CA, and accepted once ``verify`` names its CA file.

Redirects: the emulator answers an upload with ``307 Temporary Redirect`` to another origin, and
the request that follows the redirect must carry neither the ``Authorization`` header, nor the
OAuth token header, nor a credential-like static header of the connection. The targets: a tiny
recording server on another loopback port (reached as ``127.0.0.1`` and as ``localhost``), and the
emulator itself under its other host name (``localhost`` instead of ``127.0.0.1``: same port,
other origin).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from capillary_emulator import CapillaryEmulator, Fault

from airflow_capillary.exceptions import CapillaryError, CapillaryServiceUnavailableError
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.operators.images import png_bytes
from tests.reliability.conftest import FAST_RETRIES

pytestmark = pytest.mark.integration

PNG = png_bytes(width=4, height=4, seed=3)
CONN = "AIRFLOW_CONN_CAPILLARY_DEFAULT"
#: Static headers of the connection: one that looks like a credential, one that does not.
STATIC_HEADERS = {"X-Api-Key": "static-header-secret", "X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"}


class RecordingServer:
    """A loopback HTTP server that records every request (method, path, headers, body) and answers 404."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_size": len(body),
                    }
                )
                payload = json.dumps({"code": 404, "status": "false", "message": "recorded"}).encode()
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _record

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="recording-server", daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA file of another emulator: a valid CA, but not the one that signed ``tls_emulator``."""
    with CapillaryEmulator(data_dir=tmp_path_factory.mktemp("other-ca"), tls=True) as emu:
        assert emu.ca_cert_path is not None
        return emu.ca_cert_path


@pytest.fixture(scope="module")
def recording_server() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def recorder(recording_server: RecordingServer) -> RecordingServer:
    recording_server.received.clear()
    return recording_server


# -- TLS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
@pytest.mark.parametrize("verify", ["default", "other-ca"])
def test_self_signed_certificate_is_refused(
    tls_emulator: CapillaryEmulator,
    other_ca: str,
    monkeypatch: pytest.MonkeyPatch,
    auth_type: str,
    verify: str,
) -> None:
    tls_emulator.reset()
    # The emulator's URI names its CA: "true" means the default bundle, which does not hold it.
    extras = {"verify": "true" if verify == "default" else other_ca}
    uri = tls_emulator.connection_uri(auth_type=auth_type, **extras)
    monkeypatch.setenv(CONN, uri)
    hook = CapillaryFileHook(**FAST_RETRIES)
    assert hook.config.verify == (True if verify == "default" else other_ca)
    with pytest.raises(CapillaryServiceUnavailableError) as info:
        hook.upload_file(PNG, file_name="tls.png")
    message = str(info.value)
    assert message.startswith("uploading 'tls.png' to namespace 'rewards' (connection 'capillary_default'): ")
    assert f"cannot reach 127.0.0.1:{tls_emulator.port}: SSLError" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "(after" not in message  # a certificate failure is not retried
    assert tls_emulator.requests() == []  # no HTTP request got through the handshake
    assert tls_emulator.stored_files() == []


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
def test_self_signed_certificate_is_accepted_with_its_ca(
    tls_emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch, auth_type: str
) -> None:
    tls_emulator.reset()
    assert tls_emulator.ca_cert_path is not None
    monkeypatch.setenv(
        CONN, tls_emulator.connection_uri(auth_type=auth_type, verify=tls_emulator.ca_cert_path)
    )
    hook = CapillaryFileHook()
    assert hook.config.base_url.startswith("https://")
    assert hook.config.verify == tls_emulator.ca_cert_path
    result = hook.upload_file(PNG, file_name="tls.png")
    [stored] = tls_emulator.stored_files()
    assert (result.file_handle, result.sha256) == (stored["file_handle"], hashlib.sha256(PNG).hexdigest())
    assert stored["sha256"] == result.sha256


# -- redirects ---------------------------------------------------------------------------------------

CREDENTIAL_HEADERS = ("authorization", "x-cap-api-oauth-token", "x-api-key")


def _redirect_targets(emu: CapillaryEmulator, recorder: RecordingServer) -> dict[str, str]:
    path = "/api_gateway/file-service/rewards/moved.png"
    return {
        "other-port": f"http://127.0.0.1:{recorder.port}{path}",
        "other-host-and-port": f"http://localhost:{recorder.port}{path}",
        "other-host-same-port": f"http://localhost:{emu.port}{path}",
    }


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
@pytest.mark.parametrize("target", ["other-port", "other-host-and-port", "other-host-same-port"])
@pytest.mark.parametrize("body", ["file", "placeholder"])
def test_redirect_to_another_origin_never_gets_the_credentials(
    http_emulator: CapillaryEmulator,
    recorder: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    auth_type: str,
    target: str,
    body: str,
) -> None:
    http_emulator.reset()
    location = _redirect_targets(http_emulator, recorder)[target]
    monkeypatch.setenv(
        CONN,
        http_emulator.connection_uri(auth_type=auth_type, headers=STATIC_HEADERS),
    )
    http_emulator.push_fault(Fault(status=307, headers={"Location": location}, body=""))
    hook = CapillaryFileHook(max_retries=0, **FAST_RETRIES)
    try:
        if body == "file":
            (tmp_path / "a.png").write_bytes(PNG)
            hook.upload_file(tmp_path / "a.png")
        else:
            hook.create_placeholder("a.png")
    except CapillaryError:
        pass  # what the redirect target answers does not matter here; only what it received

    # The original request carried the credentials (the test would prove nothing otherwise)...
    first = next(r for r in http_emulator.requests() if r["path"].endswith("/a.png"))
    sent = first["headers"]
    assert ("authorization" if auth_type == "basic" else "x-cap-api-oauth-token") in sent
    assert sent["x-api-key"] == STATIC_HEADERS["X-Api-Key"]
    # ...and the redirected one reached the other origin without any of them.
    if target == "other-host-same-port":
        followed = [r for r in http_emulator.requests() if r["path"].endswith("/moved.png")]
        assert all(r["headers"]["host"] == f"localhost:{http_emulator.port}" for r in followed)
    else:
        followed = recorder.received
    assert followed, f"the redirect to {location} was not followed: nothing to check"
    for request in followed:
        leaked = [name for name in CREDENTIAL_HEADERS if name in request["headers"]]
        assert leaked == [], f"{leaked} followed the redirect to {location}"
        assert request["headers"]["x-cap-api-attribution-entity-type"] == "TILL"  # not a credential
    # Only the original origin may store anything (oauth resends there once after the target's 401).
    origin = f"127.0.0.1:{http_emulator.port}"
    assert all(r["headers"]["host"] == origin for r in http_emulator.requests() if r["file_size"] is not None)
