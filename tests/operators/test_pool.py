"""Unit tests of the bounded pool: bound, order of outcomes, errors, prompt stop."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_capillary.operators._pool import BoundedPool, Outcome, PoolStoppedError

#: Longest a test waits for an event that a correct pool makes happen at once: it only ends a
#: broken run (a hang) with a failure; no assertion depends on it.
WAIT = 30.0


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
    bound, count = 4, 16
    lock = threading.Lock()
    running = peak = 0
    threads: set[str] = set()
    full = threading.Event()  # ``bound`` calls run at the same time
    submitted = threading.Event()  # ``map`` submitted the batch and waits (``on_wait`` runs only then)

    def work(item: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.current_thread().name)
            if running == bound:
                full.set()
        # Every call is held until ``bound`` of them run at once and the whole batch is submitted:
        # the bound is reached whatever the scheduling, and a pool without a bound would have
        # started one thread (and one running call) per item by then. The timeout only ends a
        # broken run instead of hanging it.
        assert full.wait(WAIT)
        assert submitted.wait(WAIT)
        with lock:
            running -= 1

    outcomes = BoundedPool(bound, poll_interval=0.01, thread_name_prefix="bounded").map(
        work, range(count), on_wait=submitted.set
    )
    assert [o.error for o in outcomes] == [None] * count
    assert (peak, running) == (bound, 0)
    assert len(threads) == bound
    assert all(name.startswith("bounded") for name in threads)


def test_empty_batch() -> None:
    assert BoundedPool(2).map(lambda x: x, []) == []


def test_stop_cancels_pending_and_returns_without_waiting_for_calls_in_flight() -> None:
    pool = BoundedPool(2, poll_interval=0.01)
    release = threading.Event()
    started = threading.Semaphore(0)
    returned: list[int] = []

    def work(item: int) -> int:
        started.release()
        release.wait(WAIT)  # held until the test has seen map() return
        returned.append(item)
        return item

    def stop_when_busy() -> None:
        started.acquire()
        started.acquire()
        pool.stop()

    stopper = threading.Thread(target=stop_when_busy)
    stopper.start()
    outcomes = pool.map(work, range(6))
    # map() returned while both calls in flight were still held: it did not wait for them.
    in_flight_returned = list(returned)
    release.set()
    stopper.join()
    assert in_flight_returned == []
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
    third = threading.Event()

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            third.set()

    # The only call waits for the third tick: on_wait must run while a call is in flight.
    outcomes = BoundedPool(1, poll_interval=0.01).map(lambda _: third.wait(WAIT), [1], on_wait=tick)
    assert [o.result for o in outcomes] == [True]
    assert len(ticks) >= 3


def test_exception_in_callback_stops_the_pool_and_propagates() -> None:
    pool = BoundedPool(1, poll_interval=0.01)

    def boom(_: Outcome[int]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.map(lambda x: x, [1, 2, 3], on_done=boom)
    assert pool.stopped
