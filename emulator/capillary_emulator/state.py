"""Settings and shared state of one emulator instance (used by the routes and the Python API)."""

from __future__ import annotations

import math
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from capillary_emulator.auth import Authenticator
from capillary_emulator.clock import Clock, SystemClock
from capillary_emulator.defaults import DEFAULT_OAUTH_CLIENTS, DEFAULT_USERS
from capillary_emulator.faults import DEFAULT_RANDOM_KINDS, Fault, FaultPlan
from capillary_emulator.ratelimit import RateLimiter, parse_rate
from capillary_emulator.requestlog import RequestLog
from capillary_emulator.signing import UrlSigner, load_or_create_key
from capillary_emulator.store import FileStore

if TYPE_CHECKING:
    from capillary_emulator.serving import ConnectionRegistry

__all__ = ["RUNTIME_SETTINGS", "EmulatorSettings", "EmulatorState", "new_control_token"]

#: Settings that ``configure`` may change while the emulator runs.
RUNTIME_SETTINGS = (
    "token_ttl",
    "url_expiry",
    "latency",
    "max_body_bytes",
    "rate_limit",
    "rate_limit_burst",
    "rate_limit_retry_after",
    "request_log_size",
    "fault_rate",
    "fault_seed",
    "fault_kinds",
    "fault_retry_after",
    "fault_timeout",
)


def new_control_token() -> str:
    """Return a fresh control token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def _positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass
class EmulatorSettings:
    """Behaviour of an emulator.

    :param users: basic users, name to plain password.
    :param oauth_clients: OAuth clients, key to secret.
    :param token_ttl: lifetime of access tokens, seconds (``ttlSeconds``).
    :param url_expiry: validity of ``secureFilePath`` URLs, seconds (``X-Amz-Expires``).
    :param latency: seconds added to every API and download request (``asyncio.sleep``: concurrent
        requests are not serialised).
    :param max_body_bytes: largest accepted upload body; larger ones get 413. ``None``: no limit.
    :param rate_limit: requests per API key before 429 with ``Retry-After`` (see ``ratelimit``):
        a number per second or a text such as ``"2/s"`` or ``"100/min"`` (stored per second);
        ``None``: no limit.
    :param rate_limit_burst: requests a key may send at once; ``None`` for ``max(1, ceil(rate))``.
    :param rate_limit_retry_after: the ``Retry-After`` of every rate-limit 429, seconds; ``None``
        for the seconds until the key's bucket holds a request again.
    :param request_log_size: request log entries kept (oldest dropped first).
    :param timezone: zone of ``last_modified``.
    :param bucket: the emulated S3 bucket.
    :param org_id: organisation id in ``s3_token``.
    :param file_field: preferred multipart field name of the file.
    :param fault_rate: probability of a random fault per upload (see ``faults``).
    :param fault_seed: seed of the random faults.
    :param fault_kinds: random fault kinds to draw from.
    :param fault_retry_after: ``Retry-After`` of random 429/503 faults.
    :param fault_timeout: delay of random ``timeout`` faults, seconds.
    :param max_connections: open connections served at once; more are answered 503 and closed.
        ``None``: derived from the file-descriptor limit (see ``serving``). Fixed at start.
    :param header_timeout: seconds a connection has to deliver a complete request head after it
        opened or after its previous answer (idle keep-alive connections close then too).
    :param body_timeout: seconds the server waits for the next piece of a request body (408).
    :param max_header_bytes: largest request head (431 above).
    """

    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    oauth_clients: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OAUTH_CLIENTS))
    token_ttl: int = 300
    url_expiry: int = 3600
    latency: float = 0.0
    max_body_bytes: int | None = None
    rate_limit: float | str | None = None
    rate_limit_burst: int | None = None
    rate_limit_retry_after: int | None = None
    request_log_size: int = 10_000
    timezone: str = "Asia/Kolkata"
    bucket: str = "emulator-solutions"
    org_id: str = "100606"
    file_field: str = "file"
    fault_rate: float = 0.0
    fault_seed: int | None = None
    fault_kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS
    fault_retry_after: str = "1"
    fault_timeout: float = 3.0
    max_connections: int | None = None
    header_timeout: float = 30.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.token_ttl < 1 or self.url_expiry < 1:
            raise ValueError("token_ttl and url_expiry must be >= 1 second")
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency!r}")
        if self.max_body_bytes is not None and self.max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, got {self.max_body_bytes!r}")
        self.rate_limit = parse_rate(self.rate_limit)
        _positive_int("rate_limit_burst", self.rate_limit_burst, optional=True)
        _positive_int("rate_limit_retry_after", self.rate_limit_retry_after, optional=True)
        _positive_int("request_log_size", self.request_log_size)
        _positive_int("max_connections", self.max_connections, optional=True)
        _positive_int("max_header_bytes", self.max_header_bytes)
        _positive_number("header_timeout", self.header_timeout)
        _positive_number("body_timeout", self.body_timeout)

    def public_dict(self) -> dict[str, Any]:
        """Return the settings without secrets (user names and client keys only)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["users"] = sorted(self.users)
        data["oauth_clients"] = sorted(self.oauth_clients)
        data["fault_kinds"] = list(self.fault_kinds)
        return data


class EmulatorState:
    """Everything the routes share: settings, storage, keys, auth, faults and logs.

    :param settings: the behaviour.
    :param data_dir: the data directory; ``None`` for a temporary one, deleted by :meth:`close`.
    :param clock: the clock of the rate limiter and the latency (default: the system clock).
    :param control_token: the secret the control endpoints require; ``None`` to generate one.
    """

    def __init__(
        self,
        settings: EmulatorSettings,
        data_dir: Path | None = None,
        *,
        clock: Clock | None = None,
        control_token: str | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.control_token = control_token or new_control_token()
        self._owns_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="capillary-emulator-")) if data_dir is None else data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.zone = ZoneInfo(settings.timezone)
        key = load_or_create_key(self.data_dir)
        self.store = FileStore(self.data_dir, bucket=settings.bucket, org_id=settings.org_id)
        self.signer = UrlSigner(key)
        self.auth = Authenticator(
            key, users=settings.users, oauth_clients=settings.oauth_clients, token_ttl=settings.token_ttl
        )
        self.faults = FaultPlan(
            fault_rate=settings.fault_rate,
            fault_seed=settings.fault_seed,
            fault_kinds=settings.fault_kinds,
            retry_after=settings.fault_retry_after,
            timeout_delay=settings.fault_timeout,
        )
        self.limiter = RateLimiter(
            settings.rate_limit,
            burst=settings.rate_limit_burst,
            retry_after=settings.rate_limit_retry_after,
            clock=self.clock,
        )
        self.log = RequestLog(settings.request_log_size)
        #: The open connections, once a server serves this state (see ``serving``).
        self.connections: ConnectionRegistry | None = None

    def push_faults(self, faults: list[Fault]) -> None:
        """Queue scripted faults.

        :param faults: in the order they apply.
        """
        self.faults.push(faults)

    def configure(self, **changes: Any) -> None:
        """Change runtime settings (see :data:`RUNTIME_SETTINGS`).

        :param changes: setting names and new values.
        :raises ValueError: for a setting that cannot change at run time or an invalid value.
        """
        unknown = set(changes) - set(RUNTIME_SETTINGS)
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))} at run time")
        if "fault_kinds" in changes:
            changes["fault_kinds"] = tuple(changes["fault_kinds"])
        candidate = EmulatorSettings(
            **{**{f.name: getattr(self.settings, f.name) for f in fields(self.settings)}, **changes}
        )
        self.faults.configure_random(
            fault_rate=candidate.fault_rate,
            fault_seed=candidate.fault_seed,
            fault_kinds=candidate.fault_kinds,
        )
        self.faults.retry_after = candidate.fault_retry_after
        self.faults.timeout_delay = candidate.fault_timeout
        self.limiter.configure(
            candidate.rate_limit,
            burst=candidate.rate_limit_burst,
            retry_after=candidate.rate_limit_retry_after,
        )
        if candidate.request_log_size != self.log.size:
            self.log.resize(candidate.request_log_size)
        self.auth.token_ttl = candidate.token_ttl
        self.settings = candidate

    def reset(self) -> None:
        """Delete stored files and forget faults, request and token logs (keys and settings stay)."""
        self.faults.clear()
        self.store.reset()
        self.log.clear()
        self.auth.reset()
        self.limiter.reset()

    def stats(self) -> dict[str, Any]:
        """Return counters that the bounded request log cannot lose.

        :return: ``{"requests": {kind: {status: n}}, "rate_limit": {api key: {"admitted": n,
            "limited": n}}, "rate_limit_settings": {"rate", "per_minute", "burst", "retry_after"},
            "connections": {"open": n, "refused": n, "max": n}}`` (status ``"none"``: the
            connection was dropped instead of answered; ``connections`` is ``None`` before serving).
        """
        connections = self.connections
        return {
            "requests": self.log.counts(),
            "rate_limit": self.limiter.counts(),
            "rate_limit_settings": self.limiter.settings(),
            "connections": None
            if connections is None
            else {
                "open": len(connections),
                "refused": connections.refused,
                "max": connections.max_connections,
            },
        }

    def close(self) -> None:
        """Close the index; delete the data directory when it was temporary."""
        self.store.close()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
