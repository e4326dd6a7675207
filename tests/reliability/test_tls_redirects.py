"""TLS and redirects (issue 7, item 4).

TLS: an emulator serving its self-signed certificate is refused by default (the system CA
bundle) and by an unrelated CA, and accepted once ``verify`` names its CA file.

Redirects: the emulator answers an upload with ``307 Temporary Redirect`` to another origin. The
hook follows redirects within the service's origin only, so the upload fails naming where the
redirect pointed, and nothing reaches the other origin: no image, no ``Authorization`` header, no
OAuth token, no static header. The targets: a recording server on another loopback port (reached
as ``127.0.0.1`` and as ``localhost``), and the emulator itself under its other host name
(``localhost`` instead of ``127.0.0.1``: same port, other origin).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from capillary_emulator import CapillaryEmulator, Fault

from airflow_capillary.exceptions import CapillaryRequestRejectedError, CapillaryServiceUnavailableError
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hostile import HostileServer
from tests.operators.images import png_bytes
from tests.reliability.conftest import FAST_RETRIES

pytestmark = pytest.mark.integration

PNG = png_bytes(width=4, height=4, seed=3)
CONN = "AIRFLOW_CONN_CAPILLARY_DEFAULT"
#: Static headers of the connection: one that looks like a credential, one that does not.
STATIC_HEADERS = {"X-Api-Key": "static-header-secret", "X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"}


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA file of another emulator: a valid CA, but not the one that signed ``tls_emulator``."""
    with CapillaryEmulator(data_dir=tmp_path_factory.mktemp("other-ca"), tls=True) as emu:
        assert emu.ca_cert_path is not None
        return emu.ca_cert_path


@pytest.fixture
def elsewhere() -> Iterator[HostileServer]:
    """Another origin on loopback that records whatever reaches it."""
    with HostileServer() as server:
        yield server


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


def _redirect_targets(emu: CapillaryEmulator, elsewhere: HostileServer) -> dict[str, str]:
    path = "/api_gateway/file-service/rewards/moved.png"
    return {
        "other-port": f"http://127.0.0.1:{elsewhere.port}{path}",
        "other-host-and-port": f"http://localhost:{elsewhere.port}{path}",
        "other-host-same-port": f"http://localhost:{emu.port}{path}",
    }


@pytest.mark.parametrize("auth_type", ["basic", "oauth"])
@pytest.mark.parametrize("target", ["other-port", "other-host-and-port", "other-host-same-port"])
@pytest.mark.parametrize("body", ["file", "placeholder"])
def test_a_redirect_to_another_origin_is_refused_and_reaches_nothing(
    http_emulator: CapillaryEmulator,
    elsewhere: HostileServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    auth_type: str,
    target: str,
    body: str,
) -> None:
    """The hook follows redirects within the service's origin only: the image, the credentials and
    the static headers never reach another origin, and the redirecting answer is an error naming
    where it pointed (issue 10, finding 1: the redirect handling of every request)."""
    http_emulator.reset()
    location = _redirect_targets(http_emulator, elsewhere)[target]
    monkeypatch.setenv(
        CONN,
        http_emulator.connection_uri(auth_type=auth_type, headers=STATIC_HEADERS),
    )
    http_emulator.push_fault(Fault(status=307, headers={"Location": location}, body=""))
    hook = CapillaryFileHook(max_retries=2, **FAST_RETRIES)
    origin = location.split("/api_gateway")[0]
    if body == "file":
        (tmp_path / "a.png").write_bytes(PNG)
    upload = (
        (lambda: hook.upload_file(tmp_path / "a.png"))
        if body == "file"
        else (lambda: hook.create_placeholder("a.png"))
    )
    with pytest.raises(
        CapillaryRequestRejectedError,
        match=f"^uploading 'a.png' to namespace 'rewards' \\(connection 'capillary_default'\\): HTTP 307, "
        f"a redirect to {re.escape(origin)}: not followed, it leaves the service's origin$",
    ):
        upload()

    # The original request carried the credentials (the test would prove nothing otherwise)...
    [first] = [r for r in http_emulator.requests() if r["path"].endswith("/a.png")]  # not retried
    sent = first["headers"]
    assert ("authorization" if auth_type == "basic" else "x-cap-api-oauth-token") in sent
    assert sent["x-api-key"] == "<redacted>"  # it arrived; the emulator's log never keeps its value
    # ...and nothing followed the redirect: no other origin, no other host name of the emulator.
    assert elsewhere.requests == []
    assert [r for r in http_emulator.requests() if r["path"].endswith("/moved.png")] == []
    assert http_emulator.stored_files() == []
