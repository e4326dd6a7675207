"""Unit tests of the progress lines (fake clock, exact text)."""

from __future__ import annotations

import logging

import pytest

from airflow_capillary.operators._progress import UploadProgress, format_bytes, format_duration


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"), (3 * 1024**3, "3.0 GiB")],
    ids=["zero", "bytes", "kib", "mib", "gib"],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4s"), (12.4, "12s"), (209, "3m29s"), (3723, "1h02m03s")],
    ids=["fraction", "seconds", "minutes", "hours"],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_at_intervals_and_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.progress")
    progress = UploadProgress(total_files=4, total_bytes=4096, interval=10, log=log, clock=clock)
    caplog.set_level(logging.INFO, logger="test.progress")
    clock.now = 105
    progress.advance(size=1024, ok=True)  # before the interval: silent
    clock.now = 110
    progress.advance(size=1024, ok=False)  # interval reached: one line
    progress.tick()  # same instant: silent
    clock.now = 115
    progress.advance(size=1024, ok=True)  # 5 s after the last line: silent
    clock.now = 120
    progress.tick()  # interval reached while waiting: one line
    progress.advance(size=1024, ok=True)  # finished: no progress line
    progress.summary()
    assert [r.getMessage() for r in caplog.records] == [
        "Progress: 2/4 files (1 failed), 1.0 KiB of 4.0 KiB, 0.2 files/s, 102 B/s, ETA 30s",
        "Progress: 3/4 files (1 failed), 2.0 KiB of 4.0 KiB, 0.1 files/s, 102 B/s, ETA 20s",
        "Uploaded 3 of 4 files (3.0 KiB) in 20s, 0.1 files/s, 153 B/s; 1 failed",
    ]
    assert {r.levelno for r in caplog.records} == {logging.INFO}


def test_eta_from_file_rate_when_no_bytes_yet_and_unknown_when_nothing_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = UploadProgress(total_files=3, total_bytes=300, interval=5, log=log, clock=clock)
    clock.now = 105
    progress.tick()
    clock.now = 110
    progress.advance(size=100, ok=False)
    assert [r.getMessage() for r in caplog.records] == [
        "Progress: 0/3 files (0 failed), 0 B of 300 B, 0.0 files/s, 0 B/s, ETA unknown",
        "Progress: 1/3 files (1 failed), 0 B of 300 B, 0.1 files/s, 0 B/s, ETA 20s",
    ]


def test_interval_zero_disables_progress_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = UploadProgress(total_files=2, total_bytes=2, interval=0, log=log, clock=clock)
    clock.now = 1000
    progress.advance(size=1, ok=True)
    assert caplog.records == []


def test_with_a_manifest_the_lines_count_new_changed_and_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = UploadProgress(
        total_files=12, total_bytes=12 * 1024, interval=10, log=log, clock=clock, unchanged=4988
    )
    for index in range(12):
        clock.now += 1
        progress.advance(size=1024, ok=index != 5, action="new" if index < 3 else "changed")
    progress.summary()
    assert [r.getMessage() for r in caplog.records] == [
        "Progress: 10/12 uploads (3 new, 6 changed, 1 failed), 4,988 unchanged, 9.0 KiB of 12.0 KiB, "
        "1.0 files/s, 921 B/s, ETA 3.3s",
        "11 uploaded (3 new, 8 changed), 4,988 unchanged, 1 failed; 11.0 KiB in 12s, 0.9 files/s, 938 B/s",
    ]


def test_with_a_manifest_and_nothing_to_upload(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="test.progress")
    progress = UploadProgress(
        total_files=0, total_bytes=0, interval=10, log=logging.getLogger("test.progress"), clock=clock,
        unchanged=6,
    )  # fmt: skip
    clock.now += 20
    progress.tick()
    progress.summary()
    assert [r.getMessage() for r in caplog.records] == [
        "0 uploaded (0 new, 0 changed), 6 unchanged, 0 failed; 0 B in 20s, 0.0 files/s, 0 B/s"
    ]
