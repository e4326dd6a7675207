"""BoundedPool: a stop() that lands between the stop check and the next submit (on_kill from
another thread) ends the batch with PoolStoppedError outcomes, not the executor's RuntimeError."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_capillary.operators._pool import BoundedPool, PoolStoppedError


def test_stop_between_the_check_and_the_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = BoundedPool(1, poll_interval=0.01)
    submitted: list[int] = []
    real_submit = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, *args: Any, **kwargs: Any) -> Any:
        submitted.append(1)
        if len(submitted) == 2:
            pool.stop()  # as on_kill would, right after map() checked self.stopped
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    outcomes = pool.map(lambda x: x, [0, 1, 2])
    assert len(submitted) == 2
    assert [type(o.error) for o in outcomes[1:]] == [PoolStoppedError, PoolStoppedError]
    # The first item ran or was cancelled by the stop, depending on the worker thread.
    assert outcomes[0].result == 0 or isinstance(outcomes[0].error, PoolStoppedError)
