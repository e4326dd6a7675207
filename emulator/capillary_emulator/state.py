"""Settings and shared state of one emulator instance (used by the routes and the Python API)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from capillary_emulator.auth import Authenticator
from capillary_emulator.defaults import DEFAULT_OAUTH_CLIENTS, DEFAULT_USERS
from capillary_emulator.faults import DEFAULT_RANDOM_KINDS, Fault, FaultPlan, RateLimiter
from capillary_emulator.signing import UrlSigner, load_or_create_key
from capillary_emulator.store import FileStore

#: Request log entries kept (oldest dropped first).
REQUEST_LOG_SIZE = 100_000
#: Settings that ``configure`` may change while the emulator runs.
RUNTIME_SETTINGS = (
    "token_ttl",
    "url_expiry",
    "latency",
    "max_body_bytes",
    "rate_limit",
    "fault_rate",
    "fault_seed",
    "fault_kinds",
    "fault_retry_after",
    "fault_timeout",
)


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
    :param rate_limit: uploads per second before 429 with ``Retry-After``; ``None``: no limit.
    :param timezone: zone of ``last_modified``.
    :param bucket: the emulated S3 bucket.
    :param org_id: organisation id in ``s3_token``.
    :param file_field: preferred multipart field name of the file.
    :param fault_rate: probability of a random fault per upload (see ``faults``).
    :param fault_seed: seed of the random faults.
    :param fault_kinds: random fault kinds to draw from.
    :param fault_retry_after: ``Retry-After`` of random 429/503 faults.
    :param fault_timeout: delay of random ``timeout`` faults, seconds.
    """

    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    oauth_clients: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OAUTH_CLIENTS))
    token_ttl: int = 300
    url_expiry: int = 3600
    latency: float = 0.0
    max_body_bytes: int | None = None
    rate_limit: float | None = None
    timezone: str = "Asia/Kolkata"
    bucket: str = "emulator-solutions"
    org_id: str = "100606"
    file_field: str = "file"
    fault_rate: float = 0.0
    fault_seed: int | None = None
    fault_kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS
    fault_retry_after: str = "1"
    fault_timeout: float = 3.0

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.token_ttl < 1 or self.url_expiry < 1:
            raise ValueError("token_ttl and url_expiry must be >= 1 second")
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency!r}")
        if self.max_body_bytes is not None and self.max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, got {self.max_body_bytes!r}")

    def public_dict(self) -> dict[str, Any]:
        """Return the settings without secrets (user names and client keys only)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["users"] = sorted(self.users)
        data["oauth_clients"] = sorted(self.oauth_clients)
        data["fault_kinds"] = list(self.fault_kinds)
        return data


class RequestLog:
    """Thread-safe log of the requests received (control endpoints excluded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def start(
        self, *, kind: str, method: str, path: str, query: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Record a request as it arrives; the handler fills in the rest of the returned entry.

        :param kind: ``upload``, ``token`` or ``download``.
        :param method: HTTP method.
        :param path: decoded path.
        :param query: raw query string.
        :param headers: request headers (lower-case names; sent as received, secrets included).
        :return: the live entry.
        """
        entry: dict[str, Any] = {
            "kind": kind,
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "time": time.time(),
            "status": None,
            "fault": None,
            "body_size": 0,
            "body_sha256": None,
            "file_size": None,
            "file_sha256": None,
            "principal": None,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Return copies of the entries, oldest first."""
        with self._lock:
            return [dict(entry) for entry in self._entries]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


class EmulatorState:
    """Everything the routes share: settings, storage, keys, auth, faults and logs.

    :param settings: the behaviour.
    :param data_dir: the data directory; ``None`` for a temporary one, deleted by :meth:`close`.
    """

    def __init__(self, settings: EmulatorSettings, data_dir: Path | None = None) -> None:
        self.settings = settings
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
        self.limiter = RateLimiter(settings.rate_limit)
        self.log = RequestLog()

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
        self.limiter.set_rate(candidate.rate_limit)
        self.auth.token_ttl = candidate.token_ttl
        self.settings = candidate

    def reset(self) -> None:
        """Delete stored files and forget faults, request and token logs (keys and settings stay)."""
        self.faults.clear()
        self.store.reset()
        self.log.clear()
        self.auth.reset()
        self.limiter.set_rate(self.settings.rate_limit)

    def close(self) -> None:
        """Close the index; delete the data directory when it was temporary."""
        self.store.close()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
