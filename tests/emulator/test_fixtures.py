"""The pytest plugin's fixtures and the connection strings, parsed by Airflow itself."""

from __future__ import annotations

import json
import os

import pytest
import requests
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import basic_header

pytestmark = pytest.mark.integration


def test_capillary_emulator_fixture_is_fresh_http_with_its_own_data_dir(capillary_emulator, tmp_path) -> None:
    assert capillary_emulator.base_url.startswith("http://127.0.0.1:")
    assert capillary_emulator.ca_cert_path is None
    assert capillary_emulator.data_dir == tmp_path / "capillary-emulator"
    assert capillary_emulator.stored_files() == []
    assert capillary_emulator.requests() == []
    stats = f"{capillary_emulator.base_url}/_emulator/stats"
    assert requests.get(stats, headers=capillary_emulator.control_headers(), timeout=10).ok  # holds the token
    assert requests.get(stats, timeout=10).status_code == 401


def test_capillary_conn_points_the_default_connection_at_the_emulator(capillary_conn) -> None:
    assert os.environ["AIRFLOW_CONN_CAPILLARY_DEFAULT"] == capillary_conn.connection_uri(auth_type="basic")

    from airflow.models.connection import Connection

    conn = Connection(conn_id="capillary_default", uri=os.environ["AIRFLOW_CONN_CAPILLARY_DEFAULT"])
    assert (conn.conn_type, conn.host, conn.login, conn.password) == (
        "capillary",
        capillary_conn.base_url,
        "demo",
        "demo-password",
    )
    assert conn.extra_dejson == {"auth_type": "basic"}
    url = f"{conn.host}/api_gateway/file-service/rewards/a.png"
    assert requests.post(
        url, data=b"1", headers=basic_header(str(conn.login), str(conn.password)), timeout=10
    ).ok


def test_oauth_connection_forms(tmp_path) -> None:
    from airflow.models.connection import Connection

    with CapillaryEmulator(data_dir=tmp_path, tls=True) as emu:
        uri = Connection(
            conn_id="c", uri=emu.connection_uri(auth_type="oauth", namespace="catalog", timeout=2)
        )
        as_json = json.loads(emu.connection_json(auth_type="oauth", namespace="catalog", timeout=2))

    assert (uri.host, uri.login, uri.password) == (emu.base_url, "demo-key", "demo-secret")
    # Airflow (3.1 and 3.3) decodes JSON-looking URI extras: "2" arrives as 2
    assert uri.extra_dejson == {
        "auth_type": "oauth",
        "verify": emu.ca_cert_path,
        "namespace": "catalog",
        "timeout": 2,
    }
    assert as_json == {
        "conn_type": "capillary",
        "host": emu.base_url,
        "login": "demo-key",
        "password": "demo-secret",
        "extra": {"auth_type": "oauth", "verify": emu.ca_cert_path, "namespace": "catalog", "timeout": 2},
    }


def test_connection_credentials_can_be_overridden(capillary_emulator) -> None:
    uri = capillary_emulator.connection_uri(login="demo", password="wrong")
    assert uri.startswith("capillary://demo:wrong@")
    with pytest.raises(ValueError, match="no credentials configured for oauth"):
        CapillaryEmulator(oauth_clients={}).connection_uri(auth_type="oauth")
