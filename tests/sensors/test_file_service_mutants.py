"""CapillaryFileSensor's argument bounds and its message for an unexpected event (survivors of the sensor)."""

from __future__ import annotations

import pytest

from airflow_capillary.exceptions import CapillaryError
from airflow_capillary.sensors.file_service import CapillaryFileSensor


def test_one_failure_and_one_worker_are_allowed() -> None:
    sensor = CapillaryFileSensor(task_id="verify", files=[], max_consecutive_failures=1, max_workers=1)
    assert (sensor.max_consecutive_failures, sensor.max_workers) == (1, 1)


@pytest.mark.parametrize("length", [300, 301], ids=["at-the-limit", "one-over"])
def test_an_unexpected_event_is_quoted_up_to_300_characters(length: int) -> None:
    bare = len(repr({"status": "bogus", "pad": ""}))
    event = {"status": "bogus", "pad": "x" * (length - bare)}
    text = repr(event)
    assert len(text) == length
    shown = text if length <= 300 else text[:300] + "...(truncated)"

    with pytest.raises(CapillaryError) as info:
        CapillaryFileSensor(task_id="verify", files=[]).execute_complete({}, event)

    assert str(info.value) == f"unexpected event from CapillaryFileTrigger: {shown}"
