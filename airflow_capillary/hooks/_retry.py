"""What is retried, and how long to wait: the one retry policy of the hook.

Retried (:func:`is_retryable`, the only place that decides): connection errors (except TLS
verification failures, which do not heal), timeouts, a response cut short
(``ChunkedEncodingError``), HTTP 429, 502, 503, 504, HTTP 500 only with ``retry_on_500`` or for a
request that is safe to repeat (the OAuth token request), and an answer that fails the integrity
checks only with ``retry_integrity_errors`` (uploading again creates a new version in Capillary).
Never other 4xx, never 2xx, never invalid input.

The wait (:class:`RetryAfterOrBackoff`) honours ``Retry-After`` (seconds or HTTP date), capped
at ``retry_after_max``; otherwise it is exponential backoff with jitter.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random

from airflow_capillary.exceptions import CapillaryIntegrityError

if TYPE_CHECKING:
    from airflow_capillary.hooks._config import CapillaryConnectionConfig

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryAfterOrBackoff",
    "ServiceFailure",
    "build_retrying",
    "is_retryable",
    "is_service_failure",
    "parse_retry_after",
    "rate_limit_pause",
]

#: Pause for a 429 that does not say ``Retry-After`` (seconds).
RATE_LIMIT_PAUSE = 1.0

#: Statuses always retried.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class ServiceFailure(Exception):
    """The service answered 429 or 5xx; internal to the retry loop, which decides what to do.

    When the loop gives up (retries spent, or a status not retried) the hook turns it into
    :class:`~airflow_capillary.exceptions.CapillaryServiceUnavailableError`.

    :param message: what failed (already redacted), without the file: the hook adds it.
    :param status_code: the HTTP status.
    :param retry_after: the ``Retry-After`` header as sent, if any.
    :param body: the redacted response body.
    :param idempotent: the request is safe to repeat, so a 500 is retried too.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: str | None = None,
        body: str | None = None,
        idempotent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after_header = retry_after
        self.body = body
        self.idempotent = idempotent

    def retry_after(self, now: datetime | None = None) -> float | None:
        """Seconds the service asked to wait (see :func:`parse_retry_after`).

        :param now: the current time (for an HTTP date).
        :return: seconds, or ``None`` if it did not say (or said nonsense).
        """
        return parse_retry_after(self.retry_after_header, now=now)


def rate_limit_pause(status: int, retry_after: str | None) -> float | None:
    """Tell whether an answer is a rate limit, and how long the pool should pause for it.

    :param status: the HTTP status.
    :param retry_after: the ``Retry-After`` header, if any.
    :return: seconds for a 429 (``Retry-After``, else 1 s) and for a 503 that says
        ``Retry-After``; ``None`` for anything else.
    """
    seconds = parse_retry_after(retry_after)
    if status == 429:
        return RATE_LIMIT_PAUSE if seconds is None else seconds
    return seconds if status == 503 else None


def is_service_failure(status: int) -> bool:
    """Tell whether an HTTP status is the service failing (429 or 5xx), not a verdict on the request.

    :param status: the HTTP status.
    :return: ``True`` for 429 and 500-599.
    """
    return status == 429 or status >= 500


def is_retryable(
    outcome: BaseException | requests.Response,
    *,
    retry_on_500: bool = False,
    retry_integrity_errors: bool = False,
) -> bool:
    """Tell whether an attempt that ended with ``outcome`` is worth repeating.

    Pure: looks only at its arguments.

    :param outcome: the exception an attempt raised, or the response it got.
    :param retry_on_500: HTTP 500 is retried too.
    :param retry_integrity_errors: a :class:`CapillaryIntegrityError` is retried.
    :return: ``True`` to retry.
    """
    if isinstance(outcome, requests.Response):
        return _status_retryable(outcome.status_code, retry_on_500)
    if isinstance(outcome, ServiceFailure):
        return _status_retryable(outcome.status_code, retry_on_500 or outcome.idempotent)
    if isinstance(outcome, CapillaryIntegrityError):
        return retry_integrity_errors
    if isinstance(outcome, requests.exceptions.SSLError):
        return False  # certificate problems do not heal by retrying
    if isinstance(
        outcome,
        (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError),
    ):
        return True
    if isinstance(outcome, requests.HTTPError) and outcome.response is not None:
        return _status_retryable(outcome.response.status_code, retry_on_500)
    return False


def _status_retryable(status: int, retry_on_500: bool) -> bool:
    return status in RETRYABLE_STATUSES or (status == 500 and retry_on_500)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay in seconds, or an HTTP date.

    :param value: the header value, or ``None``.
    :param now: the current time (for tests); defaults to now in UTC.
    :return: seconds to wait (0 for a date in the past), or ``None`` if absent or unparsable.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() is true for "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class RetryAfterOrBackoff(wait_base):
    """Wait what the server asked (``Retry-After``, capped) or exponential backoff with jitter.

    :param min_wait: first backoff wait (seconds); doubles each attempt.
    :param max_wait: longest backoff wait (seconds).
    :param retry_after_max: cap on an honoured ``Retry-After`` (seconds).
    :param now: the current time, for a ``Retry-After`` HTTP date (tests pass a fixed clock).
    """

    def __init__(
        self,
        *,
        min_wait: float,
        max_wait: float,
        retry_after_max: float,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.retry_after_max = retry_after_max
        self.max_wait = max_wait
        self._exponential = wait_exponential(multiplier=min_wait, max=max_wait)
        self._jitter = wait_random(0, min_wait)
        self._now = now or _utc_now

    def __call__(self, retry_state: RetryCallState) -> float:
        """Return the seconds to wait before the next attempt.

        :param retry_state: tenacity's state of the call.
        :return: seconds.
        """
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        retry_after = exc.retry_after(self._now()) if isinstance(exc, ServiceFailure) else None
        if retry_after is not None:
            return float(min(retry_after, self.retry_after_max))
        return float(min(self.max_wait, self._exponential(retry_state) + self._jitter(retry_state)))


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def build_retrying(
    config: CapillaryConnectionConfig,
    *,
    before_sleep: Callable[[RetryCallState], None],
    sleep: Callable[[float], None],
    now: Callable[[], datetime] | None = None,
) -> Retrying:
    """Build the retry controller of one call: ``max_retries + 1`` attempts at most.

    Use it as ``for attempt in build_retrying(...): with attempt: ...``.

    :param config: the resolved connection (retry settings).
    :param before_sleep: called before each wait (logs "attempt n of N failed").
    :param sleep: waits (``time.sleep``; tests record instead).
    :param now: the current time, for ``Retry-After`` dates.
    :return: a tenacity ``Retrying`` that re-raises the last error when attempts run out.
    """
    return Retrying(
        stop=stop_after_attempt(config.max_retries + 1),
        wait=RetryAfterOrBackoff(
            min_wait=config.retry_min_wait,
            max_wait=config.retry_max_wait,
            retry_after_max=config.retry_after_max,
            now=now,
        ),
        retry=retry_if_exception(
            lambda exc: is_retryable(
                exc,
                retry_on_500=config.retry_on_500,
                retry_integrity_errors=config.retry_integrity_errors,
            )
        ),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
