"""The hook's requests go through its rate limiter (issue 14 §1), over real loopback sockets.

The limiter itself is tested on a fake clock (tests/hooks/test_rate_limit.py). Here a hostile
server plays the service: its 429s pause the hook's pool, are answered by waiting without
spending a retry, count the token request too, and run out into ordinary failures once the
batch's budget of waiting (``max_rate_limit_wait``) is spent. Waits here are real but short
(``Retry-After: 1``), and only lower bounds of time are asserted: the pause is the behaviour.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryServiceUnavailableError
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hooks.conftest import TASK_SETTINGS, LogRecorder
from tests.hooks.recorder import PNG, upload_answer
from tests.hostile import Answer, HostileServer, wait_for

pytestmark = pytest.mark.integration

PATH = "/api_gateway/file-service/rewards/"
TOKEN = "/v3/oauth/token/generate"
LIMITED = Answer.json({"message": "slow down"}, status=429, headers={"Retry-After": "1"})


def stored(name: str) -> Answer:
    return Answer.json(upload_answer(name))


@pytest.fixture
def hook_on(set_conn: Callable[..., None]) -> Callable[..., CapillaryFileHook]:
    def make(server: HostileServer, **extra: Any) -> CapillaryFileHook:
        task = {"max_retries": 0, **{name: extra.pop(name) for name in list(extra) if name in TASK_SETTINGS}}
        set_conn(host=server.origin, **extra)
        hook = CapillaryFileHook(**task)
        log = LogRecorder()  # real waits (the pause is the behaviour); retries show in the log
        hook._log = log  # type: ignore[assignment]
        hook.retries = lambda: [line for line in log.lines if line.startswith("attempt ")]  # type: ignore[attr-defined]
        return hook

    return make


def test_a_429_is_answered_by_waiting_and_costs_no_retry(hostile_server, hook_on):
    hostile_server.route(PATH + "a.png", [LIMITED, stored("a.png")])
    hook = hook_on(hostile_server)  # max_retries=0: a retry would fail the upload
    result = hook.upload_file(PNG, file_name="a.png")
    assert result.sent_size == len(PNG)
    first, second = hostile_server.requests
    assert first.body == second.body  # sent again in full
    assert second.received_at - first.received_at >= 0.95  # after Retry-After: 1
    stats = hook.rate_limit_stats
    assert (stats.rate_limited, stats.paused_seconds) == (1, pytest.approx(1.0, abs=0.1))
    assert hook.retries() == []  # no retry was spent


def test_the_pause_holds_every_thread_of_the_hook(hostile_server, hook_on):
    hostile_server.route(PATH + "warm.png", stored("warm.png"))
    hostile_server.route(PATH + "a.png", [LIMITED, stored("a.png")])
    hostile_server.route(PATH + "b.png", stored("b.png"))
    hook = hook_on(hostile_server, max_connections=4)
    for _ in range(20):  # a batch under way: the first 429 then sets the rate from what was admitted
        hook.upload_file(PNG, file_name="warm.png")
    first = threading.Thread(target=hook.upload_file, args=(PNG,), kwargs={"file_name": "a.png"})
    first.start()
    assert wait_for(lambda: hook.rate_limit_stats.rate_limited == 1)  # a.png got its 429: paused
    hook.upload_file(PNG, file_name="b.png")  # another thread, same hook: waits out the pause
    first.join()
    limited, resent = hostile_server.requests_to(PATH + "a.png")
    [b] = hostile_server.requests_to(PATH + "b.png")
    assert b.received_at - limited.received_at >= 0.95
    assert resent.received_at - limited.received_at >= 0.95


def test_a_configured_limit_paces_the_requests(hostile_server, hook_on):
    for name in "abcd":
        hostile_server.route(f"{PATH}{name}.png", stored(f"{name}.png"))
    hook = hook_on(hostile_server, rate_limit_per_minute=300)  # one request every 0.2 s
    for name in "abcd":
        hook.upload_file(PNG, file_name=f"{name}.png")
    times = [r.received_at for r in hostile_server.requests]
    assert [round(later - earlier, 2) >= 0.19 for earlier, later in itertools.pairwise(times)] == [True] * 3
    assert hook.rate_limit_stats.rate_per_minute == 300.0
    assert hook.rate_limit_stats.rate_limited == 0


def test_the_token_request_counts_against_the_limit(hostile_server, hook_on):
    token = Answer.json(
        {"data": {"accessToken": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln", "ttlSeconds": 300}}
    )
    hostile_server.route(TOKEN, [LIMITED, token])
    hostile_server.route(PATH + "a.png", stored("a.png"))
    hook = hook_on(hostile_server, auth_type="oauth")
    hook.upload_file(PNG, file_name="a.png")
    assert [r.path for r in hostile_server.requests] == [TOKEN, TOKEN, PATH + "a.png"]
    assert hook.rate_limit_stats.rate_limited == 1
    assert hook.retries() == []


def test_a_429_as_the_first_answer_does_not_slow_the_batch_to_a_crawl(hostile_server, hook_on):
    hostile_server.route(PATH + "a.png", [LIMITED, stored("a.png")])
    hook = hook_on(hostile_server)
    hook.upload_file(PNG, file_name="a.png")
    limiter = hook._ensure_client().limiter
    assert limiter.try_acquire() < 5  # the next request may go within seconds, not a minute


def test_past_max_rate_limit_wait_a_429_is_an_ordinary_failure(hostile_server, hook_on):
    later = Answer.json({"message": "later"}, status=429, headers={"Retry-After": "5"})
    hostile_server.route(PATH + "a.png", later)
    hook = hook_on(hostile_server, max_rate_limit_wait=2)
    with pytest.raises(
        CapillaryServiceUnavailableError,
        match=r"^uploading 'a.png' to namespace 'rewards' \(connection 'capillary_default'\): "
        r"HTTP 429, Capillary said: later$",
    ):
        hook.upload_file(PNG, file_name="a.png")
    assert len(hostile_server.requests) == 1
    assert hook.rate_limit_stats.rate_limited == 1
    assert hook.retries() == []


def test_a_503_without_retry_after_is_not_a_rate_limit(hostile_server, hook_on):
    hostile_server.route(PATH + "a.png", [Answer(503), stored("a.png")])
    hook = hook_on(hostile_server, max_retries=1)
    hook.upload_file(PNG, file_name="a.png")
    assert len(hostile_server.requests) == 2
    assert hook.rate_limit_stats.rate_limited == 0
    assert len(hook.retries()) == 1  # one ordinary retry, after its backoff
