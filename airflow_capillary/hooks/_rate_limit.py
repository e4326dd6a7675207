"""One rate limiter per hook, shared by all its threads: pacing, a shared pause, and AIMD.

Capillary limits requests per API key (100 per minute on demo and testing clusters, brand
limits elsewhere) and answers ``429`` with ``Retry-After`` beyond the limit. A batch that keeps
sending at full speed turns most of its requests into 429s and fails files whose retries run
out. :class:`RateLimiter` keeps a batch at the service's limit instead:

- **Pacing.** With a rate, requests leave at most every ``1 / rate`` seconds, whichever thread
  sends them (a token bucket of one token: no bursts above the rate).
- **Shared pause.** A 429, or a 503 with ``Retry-After``, pauses *every* thread of the hook
  until ``Retry-After`` has passed: the threads that did not get the 429 would get the next ones.
  Only a 429 slows the rate down: a 503 says the service is busy, not what the key's limit is.
- **Configured limit** (``rate_limit_per_minute``): the pacing starts at that rate and never
  goes above it.
- **Adaptive** (no limit configured, the default): no pacing at first, so an unlimited service
  is not slowed down, but a slow start: a quarter of the pool in flight (at least one), one
  more per success, up to the pool. Starting at a quarter keeps the probe short for a big pool
  (64 workers at 200 ms reach the pool in two round trips, not six), while a small one probes
  a tight limit gently (8 workers start with 2). The first 429 sets the rate to 90% of what
  the service admitted since its first success (a 429 before any success only pauses, and the
  slow start begins again, from one request); each later one
  cuts the rate by 10% (multiplicative decrease); every success adds 1% of the rate set at the
  last decrease, per second at that rate (additive increase). A batch settles just below the
  service's limit without being told it. These constants come from a simulation of the
  service's token bucket (limits from 100 per minute to 100 per second, 8 workers, 50 ms
  latency): under 10% of requests answered 429, over 95% of the limit used.
- **Bounded waiting.** The time spent paused by 429s is bounded per limiter (per batch) by
  ``max_wait``; past it, :meth:`RateLimiter.pause` answers False and the caller treats the 429 as
  an ordinary failure (its retry budget applies). Pacing itself is not bounded: a big batch on
  a tight limit takes as long as the limit says, and completes.

The limiter is sans-I/O apart from sleeping: the clock and the sleep are injected, so the tests
drive it without waiting. Every method is thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimitStats", "RateLimiter", "initial_window"]

#: The first 429 sets the rate to this share of what the service admitted until then.
FIRST_DECREASE = 0.9
#: Each later 429 multiplies the rate by this.
DECREASE = 0.9
#: Each success adds this share of the rate set at the last decrease, per second at that rate.
INCREASE = 0.01
#: The rate never drops below this (requests per second): one request a minute.
MIN_RATE = 1 / 60


def initial_window(max_slots: int) -> float:
    """The slow start's first window without a configured limit: a quarter of the pool, at least one.

    :param max_slots: the pool size.
    :return: the requests that may be in flight before the first answer.
    """
    return float(max(1, max_slots // 4))


@dataclass(frozen=True)
class RateLimitStats:
    """What the limiter did so far (for progress and summary lines).

    :param rate_limited: answers that paused the pool (429, or 503 with ``Retry-After``).
    :param paused_seconds: time the pool spent paused by them.
    :param waited_seconds: time the threads waited for their turn, pauses included (summed).
    :param rate_per_minute: the current rate in requests per minute, or None while unpaced.
    """

    rate_limited: int
    paused_seconds: float
    waited_seconds: float
    rate_per_minute: float | None


class RateLimiter:
    """Paces, pauses and adapts the requests of one hook (see the module's docstring).

    :param rate_limit_per_minute: the API key's limit, or None to adapt to the service's 429s.
    :param max_slots: the most requests in flight at once (the pool size; the slow start's cap).
    :param max_wait: seconds of 429 pauses this limiter absorbs before 429s count as failures.
    :param clock: monotonic seconds (injected in tests).
    :param sleep: how to wait (injected in tests).
    :raises ValueError: for a limit or ``max_wait`` of 0 or below, or ``max_slots`` below 1.
    """

    def __init__(
        self,
        rate_limit_per_minute: float | None = None,
        *,
        max_slots: int = 16,
        max_wait: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_limit_per_minute is not None and not rate_limit_per_minute > 0:
            raise ValueError(f"rate_limit_per_minute must be > 0, got {rate_limit_per_minute!r}")
        if max_slots < 1:
            raise ValueError(f"max_slots must be >= 1, got {max_slots!r}")
        if not max_wait > 0:
            raise ValueError(f"max_rate_limit_wait must be > 0 seconds, got {max_wait!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.ceiling: float | None = rate_limit_per_minute / 60 if rate_limit_per_minute else None
        self.max_slots = max_slots
        self.max_wait = max_wait
        self._rate = self.ceiling
        self._reference = self._rate or 0.0
        # Slow start only where nothing is known: with a configured rate the pacing is the limit.
        self._window = float(max_slots) if self.ceiling is not None else initial_window(max_slots)
        self._in_flight = 0
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._started: float | None = None
        self._admitted = 0
        self._first_admitted: float | None = None
        self._rate_limited = 0
        self._paused = 0.0
        self._waited = 0.0

    # -- the calls around one request --------------------------------------------------------------

    def acquire(self) -> float:
        """Wait until this thread may send a request, and count it in flight.

        Every call must be followed by exactly one of :meth:`success`, :meth:`pause` or
        :meth:`release` for the same request.

        :return: the seconds this thread waited (pauses and pacing).
        """
        waited = 0.0
        while (wait := self.try_acquire()) > 0:
            self._sleep(wait)
            waited += wait
        with self._lock:
            self._waited += waited
        return waited

    def try_acquire(self) -> float:
        """Take a turn to send if one is free now (the non-blocking half of :meth:`acquire`).

        :return: 0.0 when the request may go (it is now in flight), else the seconds to wait
            before asking again.
        """
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
            wait = self._paused_until - now
            if wait <= 0 and self._in_flight >= self._window:
                wait = 0.005  # the slow start's window is full: wait for an answer
            if wait <= 0 and self._rate is not None:
                wait = self._next_slot - now
            if wait > 0:
                return wait
            if self._rate is not None:
                self._next_slot = max(now, self._next_slot) + 1.0 / self._rate
            self._in_flight += 1
            return 0.0

    def success(self) -> None:
        """The request got an answer that was not a rate limit: grow the window or the rate."""
        with self._lock:
            self._in_flight -= 1
            self._admitted += 1
            if self._first_admitted is None:
                self._first_admitted = self._clock()
            if self._rate is None:
                self._window = min(float(self.max_slots), self._window + 1)
            elif self._reference:
                grown = self._rate + INCREASE * self._reference / self._rate
                self._rate = min(grown, self.ceiling) if self.ceiling is not None else grown

    def release(self) -> None:
        """The request ended without an answer that says anything about the rate (an error)."""
        with self._lock:
            self._in_flight -= 1

    def pause(self, retry_after: float, *, slow_down: bool = True) -> bool:
        """The request was rate limited: pause every thread and slow down.

        Several threads meeting the same limit at once count as one pause (the first one
        slows the rate; the others only extend the pause if their ``Retry-After`` is later).

        :param retry_after: the service's ``Retry-After``, seconds (at least a short wait is made).
        :param slow_down: also cut the rate (a 429: the key's limit). False for a 503 with
            ``Retry-After``: the service asks for a pause, which says nothing about the limit.
        :return: True when the limiter absorbed the 429 (send the request again without spending
            a retry), False once the pauses have used up ``max_wait``.
        """
        with self._lock:
            self._in_flight -= 1
            self._rate_limited += 1
            now = self._clock()
            wait = max(retry_after, 0.1)
            if self._paused + wait > self.max_wait:
                return False
            fresh = now >= self._paused_until
            until = now + wait
            if until > self._paused_until:
                self._paused += until - max(now, self._paused_until)
                self._paused_until = until
            if fresh and slow_down:
                if self._rate is not None:
                    self._rate = max(MIN_RATE, self._rate * DECREASE)
                elif self._first_admitted is not None:
                    elapsed = max(now - self._first_admitted, 1.0)
                    self._rate = max(MIN_RATE, FIRST_DECREASE * self._admitted / elapsed)
                if self._rate is not None:
                    self._reference = self._rate
                    self._window = float(self.max_slots)
                else:
                    # Nothing admitted yet (another task spent the key's budget): no rate to
                    # learn from; start slowly again after the pause.
                    self._window = 1.0
                self._next_slot = self._paused_until
            return True

    # -- reporting ----------------------------------------------------------------------------------

    @property
    def stats(self) -> RateLimitStats:
        """What the limiter did so far."""
        with self._lock:
            return RateLimitStats(
                rate_limited=self._rate_limited,
                paused_seconds=self._paused,
                waited_seconds=self._waited,
                rate_per_minute=self._rate * 60 if self._rate is not None else None,
            )
