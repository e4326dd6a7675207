"""Progress and summary lines report the rate limit once it showed (issue 14): the 429s, the time
paused and waited, and the current rate (fake clock, exact text)."""

from __future__ import annotations

import logging

import pytest

from airflow_capillary.hooks._rate_limit import RateLimitStats
from airflow_capillary.operators._progress import UploadProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _progress(clock: Clock, stats: list[RateLimitStats | None]) -> UploadProgress:
    return UploadProgress(
        total_files=4,
        total_bytes=4096,
        interval=10,
        log=logging.getLogger("test.progress.rate"),
        clock=clock,
        rate_limit=lambda: stats[-1],
    )


def test_lines_follow_the_progress_and_the_summary_once_the_limit_showed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    stats: list[RateLimitStats | None] = [RateLimitStats(0, 0.0, 0.3, None)]  # slow start only
    progress = _progress(clock, stats)
    caplog.set_level(logging.INFO, logger="test.progress.rate")
    clock.now += 11
    progress.advance(size=1024, ok=True)
    stats.append(
        RateLimitStats(rate_limited=3, paused_seconds=2.0, waited_seconds=14.5, rate_per_minute=108.0)
    )
    clock.now += 11
    progress.advance(size=1024, ok=True)
    progress.advance(size=1024, ok=True)
    progress.advance(size=1024, ok=True)
    progress.summary()
    assert [r.getMessage() for r in caplog.records] == [
        "Progress: 1/4 files (0 failed), 1.0 KiB of 4.0 KiB, 0.1 files/s, 93 B/s, ETA 33s",
        "Progress: 2/4 files (0 failed), 2.0 KiB of 4.0 KiB, 0.1 files/s, 93 B/s, ETA 22s",
        "Rate limit: 3 answers of 429 (or 503 with Retry-After), 2.0s paused, 14s waited in all, "
        "rate now 108.0/min",
        "Uploaded 4 of 4 files (4.0 KiB) in 22s, 0.2 files/s, 186 B/s; 0 failed",
        "Rate limit: 3 answers of 429 (or 503 with Retry-After), 2.0s paused, 14s waited in all, "
        "rate now 108.0/min",
    ]


@pytest.mark.parametrize(
    "stats",
    [None, RateLimitStats(0, 0.0, 0.2, None)],
    ids=["hook-without-a-limiter", "slow-start-only"],
)
def test_no_line_while_the_limit_did_not_show(
    stats: RateLimitStats | None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    progress = _progress(clock, [stats])
    caplog.set_level(logging.INFO, logger="test.progress.rate")
    for _ in range(4):
        progress.advance(size=1024, ok=True)
    clock.now += 4
    progress.summary()
    assert [r.getMessage() for r in caplog.records] == [
        "Uploaded 4 of 4 files (4.0 KiB) in 4.0s, 1.0 files/s, 1.0 KiB/s; 0 failed"
    ]


def test_a_configured_rate_shows_from_the_start(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = _progress(clock, [RateLimitStats(0, 0.0, 1.5, 600.0)])
    caplog.set_level(logging.INFO, logger="test.progress.rate")
    clock.now += 2
    for _ in range(4):
        progress.advance(size=1024, ok=True)
    progress.summary()
    assert [r.getMessage() for r in caplog.records][-1] == (
        "Rate limit: 0 answers of 429 (or 503 with Retry-After), 0.0s paused, 1.5s waited in all, "
        "rate now 600.0/min"
    )
