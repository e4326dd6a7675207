"""Progress lines at their edges: unit boundaries, the first second, repeated failures, a full byte count.

Mutants of operators/_progress.py that survived: ``<`` against ``<=`` at 1024 and at 10 s, the
divisor of each unit, the floor of the elapsed time, ``failed += 1`` against ``failed = 1``, and
the ETA once every byte is sent but a file is still pending.
"""

from __future__ import annotations

import pytest

from airflow_capillary.operators._progress import UploadProgress, format_bytes, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines:
    """Stands in for the task logger: keeps each line formatted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, /, *args: object) -> None:
        self.lines.append(msg % args)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (1024, "1.0 KiB"),
        (1024 * 1023, "1023.0 KiB"),
        (1024**2, "1.0 MiB"),
        (1024**3 - 1024**2, "1023.0 MiB"),
        (1024**3, "1.0 GiB"),
        (1024**4, "1.0 TiB"),
        (1000 * 1024**4, "1000.0 TiB"),
    ],
    ids=["1-kib", "1023-kib", "1-mib", "1023-mib", "1-gib", "1-tib", "1000-tib"],
)
def test_format_bytes_at_the_unit_boundaries(size: int, text: str) -> None:
    assert format_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(9.96, "10.0s"), (10, "10s"), (10.4, "10s"), (59.6, "1m00s")],
    ids=["just-under-10", "10", "just-over-10", "rounds-to-a-minute"],
)
def test_format_duration_switches_to_whole_seconds_at_10(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_every_failure_is_counted() -> None:
    clock, log = Clock(), Lines()
    progress = UploadProgress(total_files=3, total_bytes=30, interval=0, log=log, clock=clock)

    progress.advance(size=10, ok=False)
    progress.advance(size=10, ok=False)
    progress.advance(size=10, ok=True)
    clock.now += 20

    progress.summary()
    assert (progress.done, progress.failed, progress.bytes_done) == (3, 2, 10)
    assert log.lines == ["Uploaded 1 of 3 files (10 B) in 20s, 0.1 files/s, 0 B/s; 2 failed"]


def test_rates_within_the_first_second_are_per_second() -> None:
    clock, log = Clock(), Lines()
    progress = UploadProgress(total_files=3, total_bytes=3072, interval=0.1, log=log, clock=clock)

    clock.now += 0.5
    progress.advance(size=1024, ok=True)
    progress.advance(size=1024, ok=True)
    progress.advance(size=1024, ok=True)
    progress.summary()

    assert log.lines == [
        "Progress: 1/3 files (0 failed), 1.0 KiB of 3.0 KiB, 2.0 files/s, 2.0 KiB/s, ETA 1.0s",
        "Uploaded 3 of 3 files (3.0 KiB) in 0.5s, 6.0 files/s, 6.0 KiB/s; 0 failed",
    ]


def test_eta_is_zero_once_every_byte_is_sent() -> None:
    clock, log = Clock(), Lines()
    # Two files: one of 1 byte, one empty. After the first, no byte is left to send.
    progress = UploadProgress(total_files=2, total_bytes=1, interval=1, log=log, clock=clock)

    clock.now += 10
    progress.advance(size=1, ok=True)

    assert log.lines == ["Progress: 1/2 files (0 failed), 1 B of 1 B, 0.1 files/s, 0 B/s, ETA 0.0s"]
