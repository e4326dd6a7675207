"""The hook's rate limiter: pacing, the shared pause, AIMD, bounded waiting (issue 14).

Everything runs on an injected clock: no test sleeps or races the wall clock. The last tests
drive the real limiter through a discrete-event simulation of a batch against a model of the
service's token bucket (the emulator's: ``rate`` per second, a burst of ``ceil(rate)``, 429 with
``Retry-After`` = whole seconds until the next token, refused requests cost no token).
"""

from __future__ import annotations

import heapq
import itertools
import math

import pytest

from airflow_capillary.hooks._rate_limit import RateLimiter, RateLimitStats


class Clock:
    """A monotonic clock that only moves when told to (``sleep`` moves it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(clock: Clock, per_minute: float | None = None, **kwargs: float) -> RateLimiter:
    return RateLimiter(per_minute, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


def test_a_configured_limit_paces_requests_evenly() -> None:
    """120 per minute: one request every 0.5 s, whatever the threads, never a burst."""
    clock = Clock()
    rl = limiter(clock, 120, max_slots=8)
    sent = []
    for _ in range(5):
        rl.acquire()
        sent.append(clock.now - 100.0)
        rl.success()
    assert sent == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert rl.stats == RateLimitStats(
        rate_limited=0, paused_seconds=0.0, waited_seconds=2.0, rate_per_minute=120.0
    )


def test_a_configured_limit_lets_the_pool_send_at_once_up_to_the_rate() -> None:
    """No slow start with a configured limit: the first requests are paced, not windowed."""
    clock = Clock()
    rl = limiter(clock, 6000, max_slots=4)
    assert [rl.try_acquire() for _ in range(2)] == [0.0, pytest.approx(0.01)]


def test_unconfigured_sends_unpaced_after_a_slow_start() -> None:
    """No limit known: one request in flight at first, one more per success, up to the pool."""
    clock = Clock()
    rl = limiter(clock, max_slots=3)
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() > 0  # the window holds one request
    rl.success()  # window 2
    assert [rl.try_acquire(), rl.try_acquire()] == [0.0, 0.0]
    assert rl.try_acquire() > 0
    rl.success()
    rl.success()  # window 3 = the pool
    assert [rl.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    rl.success()
    assert rl.try_acquire() == 0.0  # never more than the pool, never paced
    assert rl.stats.rate_per_minute is None


@pytest.mark.parametrize(("slots", "window"), [(1, 1), (3, 1), (4, 1), (8, 2), (9, 2), (64, 16)])
def test_the_slow_start_begins_at_a_quarter_of_the_pool(slots: int, window: int) -> None:
    """Before any answer, a quarter of the pool (at least one request) may be in flight."""
    clock = Clock()
    rl = limiter(clock, max_slots=slots)
    assert [rl.try_acquire() for _ in range(window)] == [0.0] * window
    assert rl.try_acquire() == 0.005  # full: ask again shortly
    rl.success()  # one answer: the window grows by one, and one left it
    assert [rl.try_acquire(), rl.try_acquire()] == [0.0, 0.0] if slots > 1 else [0.0, 0.005]


def test_a_429_pauses_every_thread_until_retry_after() -> None:
    """The pause is shared: a thread that did not get the 429 waits for it too."""
    clock = Clock()
    rl = limiter(clock, 600, max_slots=4)
    rl.acquire()
    rl.acquire()  # a second thread's request, in flight
    assert rl.pause(3.0) is True  # the first one met the limit
    rl.success()
    assert rl.acquire() == pytest.approx(3.0)  # any thread's next request waits out the pause
    stats = rl.stats
    assert stats.rate_limited == 1
    assert stats.paused_seconds == pytest.approx(3.0)


def test_the_first_429_sets_the_rate_below_what_the_service_admitted() -> None:
    """Unconfigured: 90% of the admitted rate at the first 429, then paced after the pause."""
    clock = Clock()
    rl = limiter(clock, max_slots=8)
    for _ in range(10):  # 10 answers over 2 s
        rl.acquire()
        rl.success()
        clock.now += 0.2
    rl.acquire()
    assert rl.pause(1.0) is True
    assert rl.stats.rate_per_minute == pytest.approx(0.9 * 10 / 2.0 * 60)  # 4.5 per second
    rl.acquire()
    first = clock.now
    rl.success()
    rl.acquire()
    assert clock.now - first == pytest.approx(1 / 4.5)


def test_a_429_before_any_success_only_pauses_and_starts_slowly_again() -> None:
    """Another task spent the key's budget: nothing to learn a rate from, so no crawl at 1/min."""
    clock = Clock()
    rl = limiter(clock, max_slots=4)
    rl.acquire()
    assert rl.pause(1.0) is True
    assert rl.acquire() == pytest.approx(1.0)  # the pause, not a minute's pacing
    assert rl.stats.rate_per_minute is None
    assert rl.try_acquire() > 0  # the slow start's window of one again
    rl.success()
    assert [rl.try_acquire(), rl.try_acquire()] == [0.0, 0.0]


def test_the_first_rate_counts_from_the_first_success() -> None:
    """Time spent refused before the first success does not dilute the admitted rate."""
    clock = Clock()
    rl = limiter(clock, max_slots=8)
    rl.acquire()
    rl.pause(5.0)  # refused at once
    for _ in range(4):  # then 4 answers over 2 s
        rl.acquire()
        rl.success()
        clock.now += 0.5
    rl.acquire()
    rl.pause(1.0)
    assert rl.stats.rate_per_minute == pytest.approx(0.9 * 4 / 2.0 * 60)


def test_a_503_with_retry_after_pauses_without_slowing_down() -> None:
    """A busy service asks for a pause; only a 429 says something about the key's limit."""
    clock = Clock()
    rl = limiter(clock, 600, max_slots=4)
    rl.acquire()
    assert rl.pause(2.0, slow_down=False) is True
    assert rl.stats.rate_per_minute == pytest.approx(600.0)
    assert rl.acquire() == pytest.approx(2.0)
    assert rl.stats.rate_limited == 1


def test_429s_of_one_episode_cut_the_rate_once() -> None:
    """Several threads meeting the same limit slow the pool down once, not once each."""
    clock = Clock()
    rl = limiter(clock, 600, max_slots=8)
    for _ in range(3):
        rl.try_acquire()
        clock.now += 0.1
    assert rl.pause(1.0) is True
    assert rl.pause(1.0) is True  # same instant: the same episode
    assert rl.stats.rate_per_minute == pytest.approx(540.0)
    clock.now += 1.0  # after the pause, a new 429 is a new episode
    assert rl.pause(1.0) is True
    assert rl.stats.rate_per_minute == pytest.approx(486.0)
    assert rl.stats.rate_limited == 3


def test_successes_grow_the_rate_additively_up_to_the_configured_limit() -> None:
    """+1% of the rate set at the last cut per success-second; never above the configured limit."""
    clock = Clock()
    rl = limiter(clock, 600, max_slots=8)  # 10 per second
    rl.acquire()
    rl.pause(1.0)  # rate 9/s, reference 9/s
    rl.acquire()
    rl.success()
    assert rl.stats.rate_per_minute == pytest.approx((9 + 0.01 * 9 / 9) * 60)
    for _ in range(500):
        rl.acquire()
        rl.success()
    assert rl.stats.rate_per_minute == pytest.approx(600.0)  # capped at the configured limit


def test_pauses_beyond_max_wait_are_not_absorbed() -> None:
    """Waiting on the limit is bounded by time: past max_wait a 429 counts as a failure."""
    clock = Clock()
    rl = limiter(clock, 600, max_slots=2, max_wait=5.0)
    results = []
    for _ in range(4):
        rl.acquire()
        results.append(rl.pause(2.0))
    assert results == [True, True, False, False]  # 2 + 2 s absorbed, a third 2 s would pass 5 s
    assert rl.stats.paused_seconds == pytest.approx(4.0)


def test_an_error_releases_the_slot_without_touching_the_rate() -> None:
    clock = Clock()
    rl = limiter(clock, max_slots=1)
    rl.acquire()
    rl.release()
    assert rl.try_acquire() == 0.0
    assert rl.stats == RateLimitStats(
        rate_limited=0, paused_seconds=0.0, waited_seconds=0.0, rate_per_minute=None
    )


@pytest.mark.parametrize(
    ("per_minute", "slots", "max_wait", "message"),
    [
        (0, 8, 1800, "rate_limit_per_minute must be > 0, got 0"),
        (-5.0, 8, 1800, "rate_limit_per_minute must be > 0, got -5.0"),
        (None, 0, 1800, "max_slots must be >= 1, got 0"),
        (None, 8, 0, "max_rate_limit_wait must be > 0 seconds, got 0"),
    ],
    ids=["zero-limit", "negative-limit", "no-slots", "no-wait"],
)
def test_bad_settings_are_refused(
    per_minute: float | None, slots: int, max_wait: float, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        RateLimiter(per_minute, max_slots=slots, max_wait=max_wait)


# -- a batch against a model of the service, driven event by event -------------------------------


class ServiceBucket:
    """The emulator's rate limit: ``rate`` per second, a burst of ``ceil(rate)``."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate, self.clock = rate, clock
        self.capacity = max(1, math.ceil(rate))
        self.tokens, self.updated = float(self.capacity), clock.now

    def answer(self) -> int | None:
        now = self.clock.now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return max(1, math.ceil((1 - self.tokens) / self.rate))


def simulate(
    files: int, limit: float, *, workers: int = 8, latency: float = 0.05, per_minute: float | None = None
):
    """Upload ``files`` with ``workers`` threads through one limiter; return (seconds, 429s)."""
    clock = Clock()
    service = ServiceBucket(limit, clock)
    rl = RateLimiter(per_minute, max_slots=workers, clock=clock, sleep=clock.sleep)
    start, pending, done, refused = clock.now, files, 0, 0
    events: list[tuple[float, int, int | None]] = []
    order = itertools.count()
    idle = workers
    while done < files:
        wake = None
        while idle and pending:
            wait = rl.try_acquire()
            if wait > 0:
                wake = clock.now + wait
                break
            idle, pending = idle - 1, pending - 1
            heapq.heappush(events, (clock.now + latency, next(order), service.answer()))
        if events and (wake is None or events[0][0] <= wake):
            clock.now, _, retry_after = heapq.heappop(events)
            idle += 1
            if retry_after is None:
                done += 1
                rl.success()
            else:
                refused += 1
                pending += 1
                assert rl.pause(retry_after) is True
        else:
            assert wake is not None
            clock.now = wake
    return clock.now - start, refused


@pytest.mark.parametrize(
    ("files", "limit"),
    [(60, 2.0), (300, 20.0), (100, 100 / 60), (2000, 100.0)],
    ids=["60-at-2-per-s", "300-at-20-per-s", "100-at-100-per-min", "2000-at-100-per-s"],
)
def test_an_unconfigured_batch_settles_at_the_service_limit(files: int, limit: float) -> None:
    """Adaptive: at most 10% of the uploads answered 429, at least 90% of the limit used."""
    seconds, refused = simulate(files, limit)
    assert refused <= 0.10 * files, refused
    assert files / seconds >= 0.90 * limit, files / seconds


@pytest.mark.parametrize(("files", "limit"), [(60, 2.0), (300, 20.0)], ids=["2-per-s", "20-per-s"])
def test_a_configured_batch_meets_no_429(files: int, limit: float) -> None:
    seconds, refused = simulate(files, limit, per_minute=limit * 60)
    assert refused == 0
    assert files / seconds >= 0.95 * limit


def test_without_a_limit_nothing_is_paced() -> None:
    """An unlimited service: the slow start costs two round trips (2, 4, then the pool of 8)."""
    seconds, refused = simulate(800, limit=1e9, workers=8, latency=0.05)
    assert refused == 0
    assert seconds == pytest.approx(800 / 8 * 0.05 + 2 * 0.05)


def test_a_big_pool_reaches_its_size_in_two_round_trips() -> None:
    """64 workers at 200 ms: 16, 32, then 64 in flight: the ramp and the last, partial round cost 0.35 s."""
    seconds, refused = simulate(2000, limit=1e9, workers=64, latency=0.2)
    assert refused == 0
    assert seconds == pytest.approx(2000 / 64 * 0.2 + 0.35)
