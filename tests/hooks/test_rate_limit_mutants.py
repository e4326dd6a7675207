"""Kills mutmut survivors in airflow_capillary/hooks/_rate_limit.py: defaults, bounds and exact waits."""

from __future__ import annotations

import pytest

from airflow_capillary.hooks._rate_limit import RateLimiter, RateLimitStats


class Clock:
    """A clock that moves only when slept on; ``early`` sleeps wake after half the time asked.

    A 51st sleep fails the test (a limiter that would wait for ever).
    """

    def __init__(self, now: float = 100.0, early: int = 0) -> None:
        self.now = now
        self.early = early
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) > 50:
            raise AssertionError("waits for ever")
        if self.early:
            self.early -= 1
            seconds /= 2
        self.now += seconds


def limiter(clock: Clock, per_minute: float | None = None, **kwargs: float) -> RateLimiter:
    return RateLimiter(per_minute, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


def test_defaults() -> None:
    default = RateLimiter()
    assert (default.ceiling, default.max_slots, default.max_wait) == (None, 16, 1800.0)
    assert default.stats == RateLimitStats(0, 0.0, 0.0, None)


def test_small_limits_and_waits_are_accepted() -> None:
    slow = RateLimiter(0.5, max_wait=0.5, max_slots=1)
    assert (slow.ceiling, slow.max_wait, slow.max_slots) == (0.5 / 60, 0.5, 1)
    assert slow.stats.rate_per_minute == 0.5


@pytest.mark.parametrize("per_minute", [None, 60.0])
def test_nothing_waits_at_clock_zero(per_minute: float | None) -> None:
    clock = Clock(now=0.0)
    assert limiter(clock, per_minute).acquire() == 0.0
    assert clock.sleeps == []


def test_acquire_returns_every_wait_it_made() -> None:
    clock = Clock(early=1)
    rl = limiter(clock, max_slots=4)
    assert rl.try_acquire() == 0.0
    assert rl.pause(1.0) is True
    assert rl.acquire() == 1.5  # 1.0 (woke after 0.5), then the remaining 0.5
    assert clock.sleeps == [1.0, 0.5]
    assert rl.stats.waited_seconds == 1.5


@pytest.mark.parametrize("end", ["pause", "release"])
def test_a_rate_limited_or_failed_request_frees_exactly_its_slot(end: str) -> None:
    clock = Clock()
    rl = limiter(clock, max_slots=4)  # a window of one request
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == 0.005  # the window is full: wait for an answer
    if end == "pause":
        assert rl.pause(2.0) is True
        clock.now += 2.0
    else:
        rl.release()
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == 0.005


def test_a_pause_of_exactly_max_wait_is_absorbed() -> None:
    rl = limiter(Clock(), max_wait=2.0)
    assert rl.try_acquire() == 0.0
    assert rl.pause(2.0) is True
    assert rl.try_acquire() == 2.0
    assert rl.pause(0.1) is False


def test_the_end_of_a_pause_with_a_full_window_waits_for_an_answer() -> None:
    clock = Clock()
    rl = limiter(clock, max_slots=8)  # a window of two
    assert (rl.try_acquire(), rl.try_acquire()) == (0.0, 0.0)
    assert rl.pause(1.0) is True  # nothing admitted yet: the window drops to one
    clock.now = 100.5
    assert rl.try_acquire() == 0.5  # the rest of the pause
    clock.now = 101.0
    assert rl.try_acquire() == 0.005  # the pause is over, one request still in flight
    rl.release()
    assert rl.try_acquire() == 0.0


def test_a_503_pause_holds_back_a_paced_limiter_until_it_ends() -> None:
    clock = Clock()
    rl = limiter(clock, 60.0)
    assert rl.try_acquire() == 0.0  # the next slot is at 101
    assert rl.pause(5.0, slow_down=False) is True
    clock.now = 102.0
    assert rl.try_acquire() == 3.0
    clock.now = 104.5
    assert rl.try_acquire() == 0.5
    clock.now = 105.0
    assert rl.try_acquire() == 0.0
    assert rl.stats == RateLimitStats(1, 5.0, 0.0, 60.0)
