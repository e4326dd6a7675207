"""Fixtures of the trigger tests."""

from __future__ import annotations

import asyncio
import types

import pytest

from airflow_capillary.triggers import file_service
from tests.triggers.clock import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(file_service.time, "time", fake.time)
    # A stand-in for the module's ``asyncio`` (patching ``asyncio.sleep`` itself would also catch
    # every other event loop of the process, e.g. a session-wide emulator's server thread).
    fake_asyncio = types.SimpleNamespace(**{**vars(asyncio), "sleep": fake.sleep})
    monkeypatch.setattr(file_service, "asyncio", fake_asyncio)
    return fake
