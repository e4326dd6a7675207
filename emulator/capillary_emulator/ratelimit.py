"""The service's rate limit: one token bucket per API key, answered with 429 and ``Retry-After``.

Capillary documents its limits per API key (100 requests per minute on demo and testing clusters,
brand-specific ones elsewhere). The emulator keys its buckets by who authenticated: ``basic:<user>``
for a Basic till user, ``oauth:<client key>`` for an OAuth client, both for uploads made with its
access tokens and for its token requests (``POST /v3/oauth/token/generate``). Requests that fail
authentication are answered 401 and spend nothing; downloads (S3) are not limited.

A bucket holds ``burst`` requests and refills at ``rate`` per second; a request finding it empty is
answered 429 with ``Retry-After``: the configured value, or else the whole seconds until the bucket
holds one request again (at least 1). The time comes from the emulator's clock (``clock``), so a
test that injects a :class:`~capillary_emulator.clock.ManualClock` decides when buckets refill.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

from capillary_emulator.clock import Clock, SystemClock

__all__ = ["RateLimiter", "parse_rate"]

_RATE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute))?")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}


def parse_rate(value: float | str | None) -> float | None:
    """Return a rate in requests per second.

    :param value: a number (per second), a text such as ``"2/s"``, ``"100/min"`` or ``"2.5"``, or
        ``None`` / ``0`` for no limit.
    :return: requests per second, or ``None`` for no limit.
    :raises ValueError: for a negative number or a text that is not a rate.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"a rate limit is a number or a text such as '100/min', got {value!r}")
    if isinstance(value, str):
        match = _RATE_RE.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"expected a rate such as 10/s or 100/min, got {value!r}")
        rate = float(match.group(1)) / _PER[match.group(2) or "s"]
    else:
        rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"a rate limit must be a finite number >= 0, got {value!r}")
    return rate or None


@dataclass
class _Bucket:
    tokens: float
    updated: float
    admitted: int = 0
    limited: int = 0


class RateLimiter:
    """Token buckets per API key.

    :param rate: requests per second (see :func:`parse_rate`); ``None`` or 0: no limit.
    :param burst: bucket size; ``None`` for ``max(1, ceil(rate))``.
    :param retry_after: the ``Retry-After`` of every 429 in seconds; ``None`` to compute it.
    :param clock: where time comes from (default: the system clock).
    :raises ValueError: for a negative rate, or a burst or ``retry_after`` below 1.
    """

    def __init__(
        self,
        rate: float | str | None = None,
        *,
        burst: int | None = None,
        retry_after: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock: Clock = clock or SystemClock()
        self._buckets: dict[str, _Bucket] = {}
        self.rate: float | None = None
        self.burst = 1
        self.retry_after: int | None = None
        self.configure(rate, burst=burst, retry_after=retry_after)

    def configure(
        self, rate: float | str | None, *, burst: int | None = None, retry_after: int | None = None
    ) -> None:
        """Change the limit; every bucket starts full again (the counts stay).

        :param rate: requests per second (see :func:`parse_rate`); ``None`` or 0: no limit.
        :param burst: bucket size; ``None`` for ``max(1, ceil(rate))``.
        :param retry_after: fixed ``Retry-After`` seconds; ``None`` to compute it.
        :raises ValueError: for a negative rate, or a burst or ``retry_after`` below 1.
        """
        parsed = parse_rate(rate)
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise ValueError(f"rate_limit_burst must be an integer >= 1, got {burst!r}")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1
        ):
            raise ValueError(f"rate_limit_retry_after must be an integer >= 1 (seconds), got {retry_after!r}")
        with self._lock:
            self.rate = parsed
            self.burst = burst if burst is not None else max(1, math.ceil(parsed or 1.0))
            self.retry_after = retry_after
            now = self._clock.monotonic()
            for bucket in self._buckets.values():
                bucket.tokens, bucket.updated = float(self.burst), now

    def acquire(self, key: str) -> int | None:
        """Spend one request of ``key``'s bucket.

        :param key: the API key, e.g. ``basic:demo`` or ``oauth:demo-key``.
        :return: ``None`` when admitted, else the ``Retry-After`` seconds of the 429.
        """
        with self._lock:
            now = self._clock.monotonic()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if self.rate is None:
                bucket.admitted += 1
                return None
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                bucket.admitted += 1
                return None
            bucket.limited += 1
            if self.retry_after is not None:
                return self.retry_after
            return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def counts(self) -> dict[str, dict[str, int]]:
        """Return, per API key, the requests ``admitted`` and ``limited`` (answered 429) so far."""
        with self._lock:
            return {
                key: {"admitted": bucket.admitted, "limited": bucket.limited}
                for key, bucket in sorted(self._buckets.items())
            }

    def settings(self) -> dict[str, Any]:
        """Return the limit in force: ``rate`` (per second), ``per_minute``, ``burst``, ``retry_after``."""
        with self._lock:
            return {
                "rate": self.rate,
                "per_minute": None if self.rate is None else self.rate * 60.0,
                "burst": self.burst,
                "retry_after": self.retry_after,
            }

    def reset(self) -> None:
        """Forget every bucket and count."""
        with self._lock:
            self._buckets.clear()
