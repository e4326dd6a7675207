"""The trigger tests' clock: the wall time of the trigger's deadline, moved only by its sleeps."""

from __future__ import annotations

START = 1_700_000_000.0


class FakeClock:
    """Wall clock for the deadline; ``sleep`` records each wait and moves the clock on."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
