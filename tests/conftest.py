"""Shared test configuration.

Airflow runs against a throw-away ``AIRFLOW_HOME`` so that tests never touch a real
deployment; connections come from ``AIRFLOW_CONN_*`` variables, never from a database.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from capillary_emulator import CapillaryEmulator

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="capillary-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

# The emulator's fixtures (capillary_emulator, capillary_conn) come from its pytest11 entry point.


@pytest.fixture(scope="module")
def http_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapillaryEmulator]:
    """One plain-HTTP emulator per test module, shared by its tests (which reset it): starting
    one per test costs about 0.25 s."""
    from capillary_emulator import CapillaryEmulator

    with CapillaryEmulator(data_dir=tmp_path_factory.mktemp("http-emulator")) as emu:
        yield emu


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapillaryEmulator]:
    """One HTTPS emulator per test module (its own self-signed CA in ``ca_cert_path``)."""
    from capillary_emulator import CapillaryEmulator

    with CapillaryEmulator(data_dir=tmp_path_factory.mktemp("tls-emulator"), tls=True) as emu:
        yield emu


def pytest_collection_modifyitems(items: list) -> None:
    """Run the ``e2e`` tests last.

    Their session fixtures (a whole Airflow deployment, an emulator) live until the session
    ends; run first, they would load the machine under every other test.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
