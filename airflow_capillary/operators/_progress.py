"""Progress reporting for batch uploads: a log line at intervals and a final summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["InfoLogger", "UploadProgress", "format_bytes", "format_duration"]


class InfoLogger(Protocol):
    """What the progress reporter needs of a logger (stdlib or the task SDK's structlog)."""

    def info(self, msg: Any, /, *args: Any) -> Any:
        """Log ``msg % args`` at INFO."""


def format_bytes(size: float) -> str:
    """Format a byte count with binary units.

    :param size: number of bytes.
    :return: e.g. ``"512 B"``, ``"1.5 KiB"``, ``"12.3 MiB"``.
    """
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TiB"


def format_duration(seconds: float) -> str:
    """Format a duration for a log line.

    :param seconds: the duration.
    :return: e.g. ``"0.4s"``, ``"12s"``, ``"3m29s"``, ``"1h02m03s"``.
    """
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class UploadProgress:
    """Count finished uploads and log progress at most once per ``interval``.

    :param total_files: number of files in the batch.
    :param total_bytes: their total size in bytes.
    :param interval: minimum seconds between two progress lines; ``0`` disables them (the
        final summary is still logged).
    :param log: where to log.
    :param clock: monotonic clock, injectable for tests.
    :param unchanged: with a sync manifest, the number of files skipped as unchanged: the lines
        then count new and changed uploads and the unchanged files ("12 uploaded (3 new,
        9 changed), 4,988 unchanged"); ``None`` without a manifest.
    :param rate_limit: returns the hook's rate-limit stats (``RateLimitStats``, or None): once the
        limit showed (a 429, a pause, or a configured rate), each progress line and the summary
        are followed by a line with the 429s, the time waited on the limit and the current rate.
    """

    def __init__(
        self,
        *,
        total_files: int,
        total_bytes: int,
        interval: float,
        log: InfoLogger,
        clock: Callable[[], float] = time.monotonic,
        unchanged: int | None = None,
        rate_limit: Callable[[], Any] | None = None,
    ) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.interval = interval
        self.log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_line = self._started
        self.unchanged = unchanged
        self._rate_limit = rate_limit
        self.done = 0
        self.failed = 0
        self.bytes_done = 0
        #: Successful uploads by action (``new`` / ``changed``), with a manifest.
        self.actions: dict[str, int] = {"new": 0, "changed": 0}

    def advance(self, *, size: int, ok: bool, action: str | None = None) -> None:
        """Record one finished file and log a progress line if the interval has passed.

        :param size: bytes of the file (counted only when it uploaded).
        :param ok: whether it uploaded.
        :param action: ``new`` or ``changed``, with a manifest.
        """
        with self._lock:
            self.done += 1
            if ok:
                self.bytes_done += size
                if action is not None:
                    self.actions[action] += 1
            else:
                self.failed += 1
        self.tick()

    def tick(self) -> None:
        """Log a progress line if the interval has passed and the batch is not finished."""
        now = self._clock()
        with self._lock:
            if self.interval <= 0 or self.done >= self.total_files or now - self._last_line < self.interval:
                return
            self._last_line = now
            elapsed = max(now - self._started, 1e-9)
            done, failed, bytes_done = self.done, self.failed, self.bytes_done
            new, changed = self.actions["new"], self.actions["changed"]
        rate = done / elapsed
        byte_rate = bytes_done / elapsed
        if bytes_done and self.total_bytes:
            eta = format_duration(max(self.total_bytes - bytes_done, 0) / byte_rate)
        elif done:
            eta = format_duration((self.total_files - done) / rate)
        else:
            eta = "unknown"
        if self.unchanged is not None:
            self.log.info(
                "Progress: %s/%s uploads (%s new, %s changed, %s failed), %s unchanged, %s of %s, "
                "%.1f files/s, %s/s, ETA %s",
                *(f"{n:,}" for n in (done, self.total_files, new, changed, failed, self.unchanged)),
                format_bytes(bytes_done),
                format_bytes(self.total_bytes),
                rate,
                format_bytes(byte_rate),
                eta,
            )
        else:
            self.log.info(
                "Progress: %d/%d files (%d failed), %s of %s, %.1f files/s, %s/s, ETA %s",
                done,
                self.total_files,
                failed,
                format_bytes(bytes_done),
                format_bytes(self.total_bytes),
                rate,
                format_bytes(byte_rate),
                eta,
            )
        self._log_rate_limit()

    def _log_rate_limit(self) -> None:
        """Log the rate limit's line once the limit showed (see the ``rate_limit`` parameter)."""
        stats = self._rate_limit() if self._rate_limit is not None else None
        if stats is None or not (stats.rate_limited or stats.paused_seconds or stats.rate_per_minute):
            return
        self.log.info(
            "Rate limit: %s answers of 429 (or 503 with Retry-After), %s paused, %s waited in all, "
            "rate now %s",
            f"{stats.rate_limited:,}",
            format_duration(stats.paused_seconds),
            format_duration(stats.waited_seconds),
            "unpaced" if stats.rate_per_minute is None else f"{stats.rate_per_minute:.1f}/min",
        )

    def summary(self) -> None:
        """Log the final summary line."""
        elapsed = max(self._clock() - self._started, 1e-9)
        uploaded = self.done - self.failed
        if self.unchanged is not None:
            self.log.info(
                "%s uploaded (%s new, %s changed), %s unchanged, %s failed; %s in %s, %.1f files/s, %s/s",
                *(f"{n:,}" for n in (uploaded, self.actions["new"], self.actions["changed"], self.unchanged)),
                f"{self.failed:,}",
                format_bytes(self.bytes_done),
                format_duration(elapsed),
                uploaded / elapsed,
                format_bytes(self.bytes_done / elapsed),
            )
        else:
            self.log.info(
                "Uploaded %d of %d files (%s) in %s, %.1f files/s, %s/s; %d failed",
                self.done - self.failed,
                self.total_files,
                format_bytes(self.bytes_done),
                format_duration(elapsed),
                (self.done - self.failed) / elapsed,
                format_bytes(self.bytes_done / elapsed),
                self.failed,
            )
        self._log_rate_limit()
