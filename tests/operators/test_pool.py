"""Unit tests of the bounded pool: bound, order of outcomes, errors, prompt stop."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_capillary.operators._pool import BoundedPool, Outcome, PoolStoppedError


def test_every_item_is_attempted_and_outcomes_keep_item_order() -> None:
    def work(item: int) -> int:
        if item % 3 == 0:
            raise ValueError(f"bad {item}")
        time.sleep(0.001 * (10 - item))
        return item * 10

    seen: list[int] = []
    outcomes = BoundedPool(3, poll_interval=0.01).map(work, range(10), on_done=lambda o: seen.append(o.index))
    assert [o.index for o in outcomes] == list(range(10))
    assert [o.result for o in outcomes] == [None, 10, 20, None, 40, 50, None, 70, 80, None]
    assert [str(o.error) for o in outcomes if o.error] == ["bad 0", "bad 3", "bad 6", "bad 9"]
    assert sorted(seen) == list(range(10))


def test_concurrency_is_bounded() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def work(item: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    BoundedPool(4, poll_interval=0.01).map(work, range(16))
    assert peak == 4


def test_empty_batch() -> None:
    assert BoundedPool(2).map(lambda x: x, []) == []


def test_stop_cancels_pending_and_returns_without_waiting_for_calls_in_flight() -> None:
    pool = BoundedPool(2, poll_interval=0.01)
    release = threading.Event()
    started = threading.Semaphore(0)

    def work(item: int) -> int:
        started.release()
        release.wait(5)
        return item

    def stop_when_busy() -> None:
        started.acquire()
        started.acquire()
        pool.stop()

    stopper = threading.Thread(target=stop_when_busy)
    stopper.start()
    began = time.monotonic()
    outcomes = pool.map(work, range(6))
    elapsed = time.monotonic() - began
    release.set()
    stopper.join()
    assert elapsed < 2
    assert pool.stopped
    assert all(isinstance(o.error, PoolStoppedError) for o in outcomes)
    assert str(outcomes[0].error) == "not attempted: the task was stopped"
    # A stopped pool runs nothing more.
    calls: list[int] = []
    again = pool.map(calls.append, [1])
    assert calls == []
    assert len(again) == 1
    assert isinstance(again[0].error, PoolStoppedError)


def test_on_wait_is_called_while_waiting() -> None:
    ticks: list[int] = []
    BoundedPool(1, poll_interval=0.01).map(lambda _: time.sleep(0.1), [1], on_wait=lambda: ticks.append(1))
    assert len(ticks) >= 3


def test_exception_in_callback_stops_the_pool_and_propagates() -> None:
    pool = BoundedPool(1, poll_interval=0.01)

    def boom(_: Outcome[int]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.map(lambda x: x, [1, 2, 3], on_done=boom)
    assert pool.stopped
