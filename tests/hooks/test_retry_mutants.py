"""Kills mutmut survivors in airflow_capillary/hooks/_retry.py: defaults, HTTPError status, dates, jitter."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest
import requests
from tenacity import RetryCallState, Retrying

from airflow_capillary.exceptions import CapillaryIntegrityError
from airflow_capillary.hooks._retry import (
    RetryAfterOrBackoff,
    ServiceFailure,
    is_retryable,
    parse_retry_after,
)

NOW = datetime(2015, 10, 21, 7, 0, 0, tzinfo=timezone.utc)


def response(status: int) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    return resp


def failed_state(exc: BaseException, attempt: int = 1) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_500_and_integrity_errors_are_not_retried_by_default() -> None:
    assert is_retryable(response(500)) is False
    assert is_retryable(response(500), retry_on_500=True) is True
    assert is_retryable(CapillaryIntegrityError("bad answer")) is False
    assert is_retryable(CapillaryIntegrityError("bad answer"), retry_integrity_errors=True) is True


def test_an_http_error_is_judged_by_its_status() -> None:
    error = requests.HTTPError("500", response=response(500))
    assert is_retryable(error) is False
    assert is_retryable(error, retry_on_500=True) is True
    assert is_retryable(requests.HTTPError("503", response=response(503))) is True
    assert is_retryable(requests.HTTPError("no response")) is False


def test_an_http_date_without_a_zone_is_read_as_utc() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now=NOW) == 1680.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 1680.0
    assert parse_retry_after("Wed, 21 Oct 2015 06:00:00 -0000", now=NOW) == 0.0


def test_the_wait_reads_a_retry_after_date_against_the_current_utc_time() -> None:
    wait = RetryAfterOrBackoff(min_wait=1.0, max_wait=60.0, retry_after_max=120.0)
    past = ServiceFailure("HTTP 503", status_code=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert wait(failed_state(past)) == 0.0


@pytest.mark.parametrize(("attempt", "expected"), [(1, 15.0), (2, 25.0), (3, 45.0), (6, 100.0)])
def test_the_jitter_spans_the_first_wait(
    monkeypatch: pytest.MonkeyPatch, attempt: int, expected: float
) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.5)
    wait = RetryAfterOrBackoff(min_wait=10.0, max_wait=100.0, retry_after_max=120.0)
    assert wait(failed_state(requests.ConnectionError("reset"), attempt)) == expected
