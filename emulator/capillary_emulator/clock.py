"""The emulator's clock: what its rate limiter reads and what its ``latency`` sleeps on.

:class:`SystemClock` (the default) is ``time.monotonic`` and ``asyncio.sleep``. A test injects a
:class:`ManualClock` (``CapillaryEmulator(clock=ManualClock())``) to drive both without racing the
wall clock: time moves only on :meth:`ManualClock.advance`, and :meth:`ManualClock.wait_for_sleepers`
waits until a given number of requests are sleeping on it. Fault ``delay``\\ s, token and URL
expiry, and the server's header and body timeouts keep real time: they exist to make clients time
out or to protect the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What the emulator needs from a clock."""

    def monotonic(self) -> float:
        """Return the current time in seconds (only differences matter)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` in the server's event loop.

        :param seconds: how long.
        """


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real.

        :param seconds: how long.
        """
        await asyncio.sleep(seconds)


@dataclass
class _Sleeper:
    deadline: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class ManualClock:
    """A clock that moves only when told to; thread-safe (the server runs in another thread).

    :param start: the initial reading of :meth:`monotonic`.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._condition = threading.Condition()
        self._sleepers: list[_Sleeper] = []

    def monotonic(self) -> float:
        """Return the current reading."""
        with self._condition:
            return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until :meth:`advance` has moved the clock ``seconds`` past now.

        :param seconds: how long, in the clock's time.
        """
        if seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        sleeper = _Sleeper(0.0, loop, loop.create_future())
        with self._condition:
            sleeper.deadline = self._now + seconds
            self._sleepers.append(sleeper)
            self._condition.notify_all()
        try:
            await sleeper.future
        finally:
            with self._condition:
                if sleeper in self._sleepers:
                    self._sleepers.remove(sleeper)
                    self._condition.notify_all()

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting on the clock right now."""
        with self._condition:
            return len(self._sleepers)

    def wait_for_sleepers(self, count: int, timeout: float = 30.0) -> bool:
        """Block until at least ``count`` sleeps wait on the clock.

        :param count: how many.
        :param timeout: real seconds to wait at most (a safety net, not the behaviour under test).
        :return: whether the count was reached.
        """
        with self._condition:
            return self._condition.wait_for(lambda: len(self._sleepers) >= count, timeout)

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleep whose time has come.

        :param seconds: how far (>= 0).
        :raises ValueError: for a negative step.
        """
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds!r}")
        with self._condition:
            self._now += seconds
            due = [sleeper for sleeper in self._sleepers if sleeper.deadline <= self._now]
            for sleeper in due:
                self._sleepers.remove(sleeper)
            self._condition.notify_all()
        for sleeper in due:
            sleeper.loop.call_soon_threadsafe(_wake, sleeper.future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
