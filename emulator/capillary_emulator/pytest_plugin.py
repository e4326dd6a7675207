"""Pytest fixtures exposing the Capillary emulator.

Loaded by pytest through the ``pytest11`` entry point of the ``capillary-emulator`` distribution.
Importing this module is cheap: the emulator itself is imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from capillary_emulator.server import CapillaryEmulator


@pytest.fixture
def capillary_emulator(tmp_path: Path) -> Iterator[CapillaryEmulator]:
    """Run a fresh plain-HTTP emulator on 127.0.0.1 with a fresh data dir for one test.

    Default credentials: basic ``demo`` / ``demo-password``, OAuth ``demo-key`` / ``demo-secret``.
    Raw HTTP calls to its ``/_emulator`` endpoints need ``capillary_emulator.control_headers()``
    (the per-process ``control_token``); its Python API needs nothing.

    :param tmp_path: pytest's per-test temporary directory.
    :return: the running emulator (stopped after the test).
    """
    from capillary_emulator.server import CapillaryEmulator

    with CapillaryEmulator(data_dir=tmp_path / "capillary-emulator") as emu:
        yield emu


@pytest.fixture
def capillary_conn(
    capillary_emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> CapillaryEmulator:
    """Point ``AIRFLOW_CONN_CAPILLARY_DEFAULT`` at the emulator (basic auth).

    :param capillary_emulator: the running emulator.
    :param monkeypatch: pytest's monkeypatch fixture.
    :return: the running emulator.
    """
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", capillary_emulator.connection_uri(auth_type="basic"))
    return capillary_emulator
