"""Hook lineage is best effort: a collector that fails never turns a stored upload into a failure."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from airflow_capillary import lineage


def test_a_failing_collector_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("collector down")

    monkeypatch.setattr(lineage, "hook_lineage_collector", broken)
    prepared = SimpleNamespace(source_label="/data/a.png", placeholder=False)
    result = SimpleNamespace(namespace="rewards", name="a.png", file_handle="h", version=1)
    with caplog.at_level(logging.WARNING, logger="airflow_capillary.lineage"):
        lineage.report_upload(object(), prepared, result, base_url="https://x.example")  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == ["Hook lineage of rewards/a.png was not reported"]
    assert caplog.records[0].exc_info is not None
