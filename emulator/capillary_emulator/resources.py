"""Running out of file descriptors: the default connection cap, and one line instead of a storm.

:func:`default_max_connections` sizes the connection cap (``serving``) from the process's
descriptor limit. :func:`warn_out_of_resources` logs at most one warning line every
:data:`WARN_INTERVAL` seconds (with a count of the ones it held back); the application answers a
request that ran out of descriptors 503 through it. :class:`EmulatorServer` is ``uvicorn.Server``
with a loop exception handler that does the same for asyncio's
"socket.accept() out of system resource", which it otherwise logs with a traceback for every
pending connection (about 2000 of them for 300 connections at a limit of 64).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

__all__ = ["RESERVED_FDS", "EmulatorServer", "default_max_connections", "warn_out_of_resources"]

logger = logging.getLogger("capillary_emulator")

#: Seconds between two warnings about running out of file descriptors.
WARN_INTERVAL = 10.0
#: Descriptors kept free for the process itself (interpreter, SQLite, stored files, downloads).
RESERVED_FDS = 40
#: Largest default connection cap.
MAX_DEFAULT_CONNECTIONS = 1024
#: ``OSError`` numbers that mean "out of file descriptors or memory".
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def default_max_connections() -> int:
    """Return the connection cap that keeps the process within its file-descriptor limit.

    Each connection costs one descriptor and its request up to one more (a body being received, a
    file being served); the server accepts at most as many connections per loop iteration as the
    cap (its ``backlog``), which costs up to a third descriptor each until refused ones are
    closed; :data:`RESERVED_FDS` stay for the rest.

    :return: ``(soft limit - RESERVED_FDS) // 3``, between 1 and :data:`MAX_DEFAULT_CONNECTIONS`.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return MAX_DEFAULT_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_DEFAULT_CONNECTIONS
    return max(1, min(MAX_DEFAULT_CONNECTIONS, (soft - RESERVED_FDS) // 3))


class _Warnings:
    """One warning line per interval about running out of resources, with a count of the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -WARN_INTERVAL
        self._suppressed = 0

    def warn(self, exc: BaseException, where: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < WARN_INTERVAL:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        more = f" ({suppressed} more since the last warning)" if suppressed else ""
        logger.warning("capillary emulator: %s: %s%s", where, exc, more)


_warnings = _Warnings()


def warn_out_of_resources(exc: BaseException, where: str = "a request failed") -> None:
    """Log that the process ran out of file descriptors (or memory), at most once per interval.

    :param exc: the ``OSError``.
    :param where: what failed.
    """
    _warnings.warn(exc, where)


def _quiet_resource_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: out-of-descriptor errors in one line, the rest as asyncio does.

    :param loop: the loop.
    :param context: what asyncio reports.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
        warn_out_of_resources(exc, str(context.get("message", "out of system resources")))
        return
    if isinstance(exc, (OSError, ValueError)) and "_start_serving" in repr(context.get("handle")):
        # asyncio retries accept() 1 s after running out of descriptors; when the server has
        # closed its socket meanwhile, the retry fails on the closed descriptor: nothing to report.
        logger.debug("capillary emulator: accept retry after the listening socket closed: %s", exc)
        return
    loop.default_exception_handler(context)


class EmulatorServer(uvicorn.Server):
    """``uvicorn.Server`` whose event loop reports running out of file descriptors in one line."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until told to stop (see ``uvicorn.Server.serve``).

        :param sockets: the bound listening sockets.
        """
        asyncio.get_running_loop().set_exception_handler(_quiet_resource_errors)
        await super().serve(sockets=sockets)
