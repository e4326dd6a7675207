"""BoundedPool.stop() on its own makes map() return (mutants of operators/_pool.py that survived).

The pool's other tests poll the stop flag every 10 ms, so map() noticed a stop on its next poll
even when stop() cancelled nothing. Here the poll interval is longer than the test, and stop()
comes once map() has submitted every item and waits: only the cancellation of the pending calls,
which stop() does itself, can wake map() while the calls in flight are held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import overload

from airflow_capillary.operators._pool import BoundedPool, PoolStoppedError

#: Longest the test waits for map() or stop() to return. It only ends a broken run (one that
#: waits for the held calls) with a failure instead of a hang; a correct pool returns at once.
WAIT = 30.0
#: Longest a call is held: longer than WAIT, so a pool that waits for it is caught before it ends.
HOLD = 3 * WAIT


class Batch(Sequence[int]):
    """Items 0..n-1 that signal when map() has taken the last one (its submissions are done)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = threading.Event()

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return range(self.n)[index]

    def __iter__(self) -> Iterator[int]:
        yield from range(self.n)
        self.taken.set()


def test_stop_alone_wakes_map_while_every_call_in_flight_is_held() -> None:
    pool = BoundedPool(2, poll_interval=10 * HOLD)
    batch = Batch(5)
    release = threading.Event()
    started = threading.Semaphore(0)
    finished: list[int] = []
    stop_returned = threading.Event()

    def work(item: int) -> int:
        started.release()
        release.wait(HOLD)
        finished.append(item)
        return item

    def stop_when_both_run_and_all_are_submitted() -> None:
        started.acquire()
        started.acquire()
        batch.taken.wait(WAIT)
        pool.stop()
        stop_returned.set()

    stopper = threading.Thread(target=stop_when_both_run_and_all_are_submitted)
    stopper.start()
    try:
        outcomes = pool.map(work, batch)
        finished_when_map_returned = list(finished)
        # stop() itself returns while the calls are still held: it does not wait for them.
        stop_returned_while_held = stop_returned.wait(WAIT) and not release.is_set()
    finally:
        release.set()
        stopper.join()

    assert finished_when_map_returned == []
    assert stop_returned_while_held
    assert [o.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert all(isinstance(o.error, PoolStoppedError) and o.result is None for o in outcomes)


def test_stop_before_map_runs_nothing() -> None:
    pool = BoundedPool(2)
    pool.stop()
    calls: list[int] = []

    outcomes = pool.map(calls.append, [1, 2])

    assert calls == []
    assert pool.stopped
    assert [(o.index, type(o.error)) for o in outcomes] == [(0, PoolStoppedError), (1, PoolStoppedError)]


def test_defaults_and_worker_thread_names() -> None:
    pool = BoundedPool(3)
    names: list[str] = []

    pool.map(lambda _: names.append(threading.current_thread().name), [1])

    assert (pool.max_workers, pool.poll_interval, pool.thread_name_prefix) == (3, 0.5, "capillary-upload")
    assert [name.rsplit("_", 1)[0] for name in names] == ["capillary-upload"]


def test_map_leaves_no_worker_thread_behind_and_a_later_stop_is_harmless() -> None:
    pool = BoundedPool(4, poll_interval=0.01, thread_name_prefix="leak-check")

    outcomes = pool.map(lambda x: x * 2, range(8))

    assert [o.result for o in outcomes] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert [t.name for t in threading.enumerate() if t.name.startswith("leak-check")] == []
    pool.stop()
    assert pool.stopped


def test_an_item_raising_pool_stopped_error_does_not_end_the_batch() -> None:
    def work(item: int) -> int:
        if item == 0:
            raise PoolStoppedError()
        return item

    outcomes = BoundedPool(1, poll_interval=0.01).map(work, range(3))

    assert isinstance(outcomes[0].error, PoolStoppedError)
    assert [(o.index, o.result, o.error) for o in outcomes[1:]] == [(1, 1, None), (2, 2, None)]


def test_a_call_dequeued_just_before_stop_never_reaches_the_function() -> None:
    """stop() lands after a worker took the next item but before the function runs.

    ThreadPoolExecutor cannot cancel an item a worker has already marked running, so only the
    pool's own check at call time keeps the function from running. The moment is made exact with
    a profile hook on the worker threads: stop() is called as the second item is marked running.
    """
    pool = BoundedPool(1, poll_interval=0.01)
    calls: list[int] = []
    marked_running: list[bool] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "return" and frame.f_code.co_name == "set_running_or_notify_cancel" and arg is True:
            marked_running.append(True)
            if len(marked_running) == 2:
                pool.stop()

    threading.setprofile(profile)
    try:
        outcomes = pool.map(calls.append, [0, 1, 2])
    finally:
        threading.setprofile(None)

    assert len(marked_running) == 2
    assert calls == [0]
    assert (outcomes[0].index, outcomes[0].error) == (0, None)
    assert [type(o.error) for o in outcomes[1:]] == [PoolStoppedError, PoolStoppedError]
