"""Fault injection: scripted next responses, random faults and a rate limiter.

A :class:`Fault` describes what the emulator does with the next request(s) of one kind instead of
(or before) its normal behaviour. Faults are queued with ``CapillaryEmulator.push_fault`` or
``POST /_emulator/faults`` and consumed first-in first-out by the first request they match.

Actions:

``respond``
    Answer ``status`` with ``headers`` and ``body`` (default body: a JSON error
    ``{"code": status, "status": "false", "message": <reason>}``). Nothing is stored.
``reset``
    Drop the TCP connection (RST) in the middle of the request: for an upload after reading part of
    the body, for a download after sending the headers and part of the bytes. The client sees a
    connection error, never an HTTP answer. Nothing is stored.
``delay``
    Handle the request normally, but wait ``delay`` seconds before answering (the upload is stored
    first): with a client read timeout below ``delay`` this is a read timeout *after* the service
    stored the file.
``malformed_json``
    Store the upload, then answer 200 with a truncated JSON document.
``status_false``
    Answer 200 with the documented shape but ``"status": "false"`` and ``"code": 500``; nothing stored.
``placeholder``
    Store a 0-byte placeholder instead of the body and answer 200 with ``fileSize`` ``"0"``.
``truncate``
    Store only the first half of the body and answer 200 with that smaller ``fileSize``.

``delay`` also applies to the other actions: the emulator waits that long before acting.
``store`` overrides whether an upload is stored before the fault answer (``None``: the action's
default above). ``times`` is how many requests the fault applies to (``None``: until reset).

Random faults (``fault_rate`` > 0): each upload that no scripted fault matched gets, with
probability ``fault_rate``, a fault drawn uniformly (from a ``random.Random(fault_seed)``) among
``fault_kinds`` (default :data:`DEFAULT_RANDOM_KINDS`): ``503`` and ``429`` (with ``Retry-After``),
``500``, ``reset``, ``timeout`` (a ``delay`` fault of ``fault_timeout`` seconds), ``malformed_json``,
``status_false``, ``placeholder`` and, on request, ``truncate``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

ACTIONS = ("respond", "reset", "delay", "malformed_json", "status_false", "placeholder", "truncate")
MATCHES = ("upload", "token", "download", "any")
RANDOM_KINDS = (
    "503",
    "429",
    "500",
    "reset",
    "timeout",
    "malformed_json",
    "status_false",
    "placeholder",
    "truncate",
)
DEFAULT_RANDOM_KINDS = tuple(kind for kind in RANDOM_KINDS if kind != "truncate")
#: Whether an upload is stored before the fault's answer, per action (``store=None``).
DEFAULT_STORE = {
    "respond": False,
    "reset": False,
    "delay": True,
    "malformed_json": True,
    "status_false": False,
    "placeholder": True,
    "truncate": True,
}


def _default_headers() -> dict[str, str]:
    return {"Retry-After": "1"}


@dataclass
class Fault:
    """One scripted misbehaviour of the emulator.

    :param status: HTTP status for ``action="respond"``.
    :param headers: response headers for ``action="respond"``.
    :param body: response body for ``action="respond"``: a ``str`` (sent as is), a ``dict`` or
        ``list`` (sent as JSON), or ``None`` for the default JSON error.
    :param delay: seconds to wait before acting (for ``delay``: before the normal answer).
    :param action: one of :data:`ACTIONS` (see the module documentation).
    :param times: how many matching requests this fault applies to; ``None`` for every one until
        the emulator is reset.
    :param match: which requests it applies to: ``upload``, ``token``, ``download`` or ``any``.
    :param store: whether an upload is stored before answering; ``None`` for the action's default.
    :raises ValueError: for an unknown action or match, a negative delay or ``times`` < 1.
    """

    status: int = 503
    headers: dict[str, str] = field(default_factory=_default_headers)
    body: str | dict[str, Any] | list[Any] | None = None
    delay: float = 0.0
    action: str = "respond"
    times: int | None = 1
    match: str = "upload"
    store: bool | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if self.match not in MATCHES:
            raise ValueError(f"unknown fault match {self.match!r}; expected one of {', '.join(MATCHES)}")
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"fault status must be an HTTP status, got {self.status!r}")
        if self.delay < 0:
            raise ValueError(f"fault delay must be >= 0, got {self.delay!r}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault times must be >= 1 or None, got {self.times!r}")

    @property
    def stores(self) -> bool:
        """Whether an upload hit by this fault is stored (before the fault's answer)."""
        return DEFAULT_STORE[self.action] if self.store is None else self.store

    @property
    def kind(self) -> str:
        """Short label for logs: the action, or the status for ``respond``."""
        return str(self.status) if self.action == "respond" else self.action

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe form accepted by :meth:`from_dict` and ``POST /_emulator/faults``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from its dict form.

        :param data: keys among the dataclass fields.
        :return: the fault.
        :raises ValueError: for unknown keys or invalid values.
        """
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def random_fault(kind: str, *, retry_after: str = "1", timeout_delay: float = 3.0) -> Fault:
    """Build the fault for one random fault kind.

    :param kind: one of :data:`RANDOM_KINDS`.
    :param retry_after: ``Retry-After`` value for ``503`` and ``429``.
    :param timeout_delay: delay of the ``timeout`` kind, in seconds.
    :return: a one-shot upload fault.
    :raises ValueError: for an unknown kind.
    """
    if kind in ("503", "429"):
        return Fault(status=int(kind), headers={"Retry-After": retry_after})
    if kind == "500":
        return Fault(status=500, headers={})
    if kind == "timeout":
        return Fault(action="delay", delay=timeout_delay, headers={})
    if kind in RANDOM_KINDS:
        return Fault(action=kind, headers={})
    raise ValueError(f"unknown random fault kind {kind!r}; expected one of {', '.join(RANDOM_KINDS)}")


class FaultPlan:
    """Thread-safe queue of scripted faults plus the optional random-fault mode.

    :param fault_rate: probability (0..1) of a random fault on each unscripted upload.
    :param fault_seed: seed of the random generator (reproducible runs).
    :param fault_kinds: random fault kinds to draw from.
    :param retry_after: ``Retry-After`` of random 429/503 answers.
    :param timeout_delay: delay of random ``timeout`` faults.
    """

    def __init__(
        self,
        *,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        fault_kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS,
        retry_after: str = "1",
        timeout_delay: float = 3.0,
    ) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self.configure_random(fault_rate=fault_rate, fault_seed=fault_seed, fault_kinds=fault_kinds)
        self.retry_after = retry_after
        self.timeout_delay = timeout_delay

    def configure_random(
        self,
        *,
        fault_rate: float,
        fault_seed: int | None,
        fault_kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS,
    ) -> None:
        """(Re)configure the random-fault mode.

        :param fault_rate: probability (0..1) of a random fault per unscripted upload.
        :param fault_seed: seed of the random generator.
        :param fault_kinds: kinds to draw from (see :data:`RANDOM_KINDS`).
        :raises ValueError: for a rate outside 0..1 or an unknown kind.
        """
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within 0..1, got {fault_rate!r}")
        bad = [kind for kind in fault_kinds if kind not in RANDOM_KINDS]
        if bad or not fault_kinds:
            raise ValueError(
                f"unknown random fault kind(s) {bad!r}; expected some of {', '.join(RANDOM_KINDS)}"
            )
        with self._lock:
            self.fault_rate = fault_rate
            self.fault_seed = fault_seed
            self.fault_kinds = tuple(fault_kinds)
            self._random = random.Random(fault_seed)

    def push(self, faults: list[Fault]) -> None:
        """Append scripted faults to the queue.

        :param faults: faults, applied in order (copied: the caller's objects are not consumed).
        """
        with self._lock:
            self._queue.extend(replace(fault) for fault in faults)

    def pending(self) -> list[Fault]:
        """Return the scripted faults not consumed yet."""
        with self._lock:
            return list(self._queue)

    def clear(self) -> None:
        """Drop every scripted fault and restart the random generator from its seed."""
        with self._lock:
            self._queue.clear()
            self._random = random.Random(self.fault_seed)

    def take(self, kind: str) -> Fault | None:
        """Return the fault for the next request of ``kind``, if any, consuming it.

        :param kind: ``upload``, ``token`` or ``download``.
        :return: the first queued fault matching ``kind`` (or ``any``); else, for uploads, maybe a
            random fault; else ``None``.
        """
        with self._lock:
            for fault in self._queue:
                if fault.match in (kind, "any"):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._queue.remove(fault)
                    return fault
            if kind != "upload" or self.fault_rate <= 0.0 or self._random.random() >= self.fault_rate:
                return None
            chosen = self._random.choice(self.fault_kinds)
        return random_fault(chosen, retry_after=self.retry_after, timeout_delay=self.timeout_delay)


class RateLimiter:
    """Token bucket: ``rate`` requests per second with a burst of ``max(1, rate)``.

    :param rate: allowed requests per second; ``None`` or 0 disables the limit.
    """

    def __init__(self, rate: float | None) -> None:
        self._lock = threading.Lock()
        self.set_rate(rate)

    def set_rate(self, rate: float | None) -> None:
        """Change the rate and refill the bucket.

        :param rate: allowed requests per second; ``None`` or 0 disables the limit.
        :raises ValueError: for a negative rate.
        """
        if rate is not None and rate < 0:
            raise ValueError(f"rate limit must be >= 0, got {rate!r}")
        with self._lock:
            self.rate = rate or None
            self._capacity = max(1.0, rate or 1.0)
            self._tokens = self._capacity
            self._updated = time.monotonic()

    def acquire(self) -> int | None:
        """Take one token.

        :return: ``None`` when allowed, else the whole seconds to wait (the ``Retry-After`` value).
        """
        with self._lock:
            if self.rate is None:
                return None
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return max(1, math.ceil((1.0 - self._tokens) / self.rate))
