"""The OAuth token endpoint and token checks on uploads."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import KEY, SECRET, upload_url

pytestmark = pytest.mark.integration


def _token_url(emu: CapillaryEmulator) -> str:
    return f"{emu.base_url}/v3/oauth/token/generate"


def _upload_with_token(emu: CapillaryEmulator, token: str) -> requests.Response:
    return requests.post(
        upload_url(emu, "a.png"), data=b"x", headers={"X-CAP-API-OAUTH-TOKEN": token}, timeout=10
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"json": {"key": KEY, "secret": SECRET}}, {"data": {"key": KEY, "secret": SECRET}}],
    ids=["json", "form"],
)
def test_good_credentials_get_a_jwt_shaped_token(emu: CapillaryEmulator, kwargs: dict) -> None:
    before = int(time.time())
    response = requests.post(_token_url(emu), timeout=10, **kwargs)

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["data", "errors"]
    assert body["errors"] is None
    assert body["data"]["ttlSeconds"] == 300
    header, payload, signature = body["data"]["accessToken"].split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    assert decode(header) == {"alg": "HS256", "typ": "JWT"}
    claims = decode(payload)
    assert claims["sub"] == KEY
    assert before <= claims["iat"] <= claims["exp"] - 300 <= int(time.time())
    assert len(signature) == 43
    assert emu.tokens_issued == 1
    assert emu.token_requests()[0]["key"] == KEY
    assert emu.token_requests()[0]["accepted"] is True


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"key": KEY, "secret": "wrong"}, 401, "Invalid client key or secret"),
        ({"key": "unknown", "secret": SECRET}, 401, "Invalid client key or secret"),
        ({"key": KEY}, 400, 'Both key and secret are required (JSON body {"key": ..., "secret": ...})'),
        ([KEY, SECRET], 400, 'Both key and secret are required (JSON body {"key": ..., "secret": ...})'),
    ],
    ids=["wrong-secret", "unknown-key", "missing-secret", "not-an-object"],
)
def test_bad_credentials_get_errors(emu: CapillaryEmulator, payload, status: int, message: str) -> None:
    response = requests.post(_token_url(emu), json=payload, timeout=10)

    assert response.status_code == status
    assert response.json() == {"data": None, "errors": [{"code": status, "message": message}]}
    assert emu.tokens_issued == 0


def test_token_expires_after_its_ttl(emu: CapillaryEmulator) -> None:
    emu.configure(token_ttl=1)
    body = requests.post(_token_url(emu), json={"key": KEY, "secret": SECRET}, timeout=10).json()
    assert body["data"]["ttlSeconds"] == 1
    token = body["data"]["accessToken"]
    assert _upload_with_token(emu, token).status_code == 200

    time.sleep(1.1)

    response = _upload_with_token(emu, token)
    assert response.status_code == 401
    assert response.json()["message"] == "Unauthorized: invalid or missing credentials"


def test_tampered_token_is_refused(emu: CapillaryEmulator) -> None:
    token = requests.post(_token_url(emu), json={"key": KEY, "secret": SECRET}, timeout=10).json()["data"][
        "accessToken"
    ]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] += 3600
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    assert _upload_with_token(emu, f"{header}.{forged}.{signature}").status_code == 401


def test_token_from_another_emulator_is_refused(emu: CapillaryEmulator, tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path) as other:
        foreign = requests.post(_token_url(other), json={"key": KEY, "secret": SECRET}, timeout=10).json()
    assert _upload_with_token(emu, foreign["data"]["accessToken"]).status_code == 401


def test_tokens_survive_a_restart_on_the_same_data_dir(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path) as first:
        token = requests.post(_token_url(first), json={"key": KEY, "secret": SECRET}, timeout=10).json()
    with CapillaryEmulator(data_dir=tmp_path) as second:
        assert _upload_with_token(second, token["data"]["accessToken"]).status_code == 200


def test_custom_clients(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, oauth_clients={"k1": "s1"}, users={}) as emu:
        assert (
            requests.post(_token_url(emu), json={"key": "k1", "secret": "s1"}, timeout=10).status_code == 200
        )
        assert (
            requests.post(_token_url(emu), json={"key": KEY, "secret": SECRET}, timeout=10).status_code == 401
        )
