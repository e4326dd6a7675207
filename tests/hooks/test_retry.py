"""The retry predicate (truth table), Retry-After parsing and the wait strategy."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests
from tenacity import RetryCallState, Retrying

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryIntegrityError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
)
from airflow_capillary.hooks._retry import (
    RetryAfterOrBackoff,
    ServiceFailure,
    is_retryable,
    parse_retry_after,
)


def response(status: int) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    return r


def http_error(status: int) -> requests.HTTPError:
    return requests.HTTPError(response=response(status))


# (outcome, retry_on_500, retry_integrity_errors, expected)
TRUTH_TABLE = [
    (requests.ConnectionError("refused"), False, False, True),
    (requests.exceptions.ConnectTimeout("connect"), False, False, True),
    (requests.exceptions.ReadTimeout("read"), False, False, True),
    (requests.exceptions.ChunkedEncodingError("cut"), False, False, True),
    (requests.exceptions.ProxyError("proxy down"), False, False, True),
    (requests.exceptions.SSLError("certificate verify failed"), False, False, False),
    (requests.exceptions.InvalidURL("bad"), False, False, False),
    (requests.exceptions.TooManyRedirects("loop"), False, False, False),
    (response(429), False, False, True),
    (response(502), False, False, True),
    (response(503), False, False, True),
    (response(504), False, False, True),
    (response(500), False, False, False),
    (response(500), True, False, True),
    (response(501), True, False, False),
    (response(400), False, False, False),
    (response(401), False, False, False),
    (response(403), False, False, False),
    (response(404), False, False, False),
    (response(413), False, False, False),
    (response(200), False, False, False),
    (response(201), False, False, False),
    (http_error(503), False, False, True),
    (http_error(400), False, False, False),
    (ServiceFailure("x", status_code=503), False, False, True),
    (ServiceFailure("x", status_code=500), False, False, False),
    (ServiceFailure("x", status_code=500), True, False, True),
    (ServiceFailure("x", status_code=500, idempotent=True), False, False, True),
    (ServiceFailure("x", status_code=501, idempotent=True), True, False, False),
    (CapillaryIntegrityError("status false"), False, False, False),
    (CapillaryIntegrityError("status false"), False, True, True),
    (CapillaryAuthError("401"), True, True, False),
    (CapillaryRequestRejectedError("400"), True, True, False),
    (CapillaryInvalidInputError("changed"), True, True, False),
    (ValueError("bug"), True, True, False),
]
TRUTH_IDS = [
    "connection-error",
    "connect-timeout",
    "read-timeout",
    "chunked-encoding",
    "proxy-error",
    "ssl-error",
    "invalid-url",
    "too-many-redirects",
    "429",
    "502",
    "503",
    "504",
    "500",
    "500-opted-in",
    "501",
    "400",
    "401",
    "403",
    "404",
    "413",
    "200",
    "201",
    "http-error-503",
    "http-error-400",
    "transient-503",
    "transient-500",
    "transient-500-opted-in",
    "transient-500-idempotent",
    "transient-501-idempotent",
    "integrity-off",
    "integrity-on",
    "auth",
    "rejected",
    "invalid-input",
    "other-exception",
]


@pytest.mark.parametrize(("outcome", "on_500", "on_integrity", "expected"), TRUTH_TABLE, ids=TRUTH_IDS)
def test_is_retryable_truth_table(outcome, on_500, on_integrity, expected):
    assert is_retryable(outcome, retry_on_500=on_500, retry_integrity_errors=on_integrity) is expected


NOW = datetime(2024, 5, 8, 3, 40, 59, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Wed, 08 May 2024 03:41:29 GMT", 30.0),
        ("Wed, 08 May 2024 03:40:00 GMT", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
    ],
    ids=[
        "absent",
        "empty",
        "zero",
        "seconds",
        "padded",
        "http-date",
        "date-in-past",
        "negative",
        "fraction",
        "garbage",
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def state_after(exc: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_wait_honours_retry_after_with_a_cap():
    wait = RetryAfterOrBackoff(min_wait=1, max_wait=30, retry_after_max=120, now=lambda: NOW)
    assert wait(state_after(ServiceFailure("x", status_code=503, retry_after="7"), 1)) == 7.0
    assert wait(state_after(ServiceFailure("x", status_code=429, retry_after="0"), 1)) == 0.0
    assert wait(state_after(ServiceFailure("x", status_code=429, retry_after="3600"), 1)) == 120.0
    # An HTTP date is read against the injected clock: exactly 30 s after NOW.
    date = ServiceFailure("x", status_code=503, retry_after="Wed, 08 May 2024 03:41:29 GMT")
    assert wait(state_after(date, 1)) == 30.0


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 1, 2), (2, 2, 3), (3, 4, 5), (5, 16, 17), (9, 30, 30)]
)
def test_wait_backs_off_exponentially_with_jitter(attempt, low, high):
    wait = RetryAfterOrBackoff(min_wait=1, max_wait=30, retry_after_max=120)
    waits = {wait(state_after(requests.ConnectionError("x"), attempt)) for _ in range(50)}
    assert all(low <= w <= high for w in waits)
    assert len(waits) > 1 or low == high  # jitter


def test_transient_without_retry_after_backs_off():
    wait = RetryAfterOrBackoff(min_wait=0.5, max_wait=30, retry_after_max=120)
    assert 0.5 <= wait(state_after(ServiceFailure("x", status_code=503), 1)) <= 1.0
    assert 0.5 <= wait(state_after(ServiceFailure("x", status_code=503, retry_after="soon"), 1)) <= 1.0
