"""The progress of a verification, and one round of requests to the storage.

A verification runs in rounds: each round fetches every file not verified yet, at most
``max_workers`` at once, judges each answer with :class:`~airflow_capillary.verification.rules.AnswerJudge`
and records the verdicts in a :class:`VerificationState` (verified files, consecutive failures per
file, the longest ``Retry-After``, the first failure). The sensor runs one round per poke
(:meth:`VerificationState.run_round_sync`); the trigger runs rounds until every file is verified,
one fails, or its deadline passes. Both use the same asynchronous client
(:class:`ClientSettings`), so the request, its redirects and the read of the body are written once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import ssl
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from airflow_capillary._redact import redact_url
from airflow_capillary.exceptions import (
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
)
from airflow_capillary.verification.rules import (
    AnswerJudge,
    ExpectedFile,
    Verdict,
    judge_transport_error,
    request_headers,
)

if TYPE_CHECKING:
    from airflow_capillary.hooks.file_service import CapillaryFileHook

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_RETRY_AFTER_MAX",
    "ERROR_KINDS",
    "ClientSettings",
    "Failure",
    "VerificationState",
    "client_kwargs",
    "kind_of",
    "probe",
    "run_sync",
]

T = TypeVar("T")

#: Size of the chunks in which a body is hashed.
CHUNK_SIZE = 256 * 1024
#: Default longest ``Retry-After`` honoured (the connection's ``retry_after_max``).
DEFAULT_RETRY_AFTER_MAX = 120.0
#: Error kinds carried by trigger events and the exception each one raises. :func:`kind_of` walks
#: it in order and takes the first class the exception is an instance of, so a subclass comes
#: before its base and ``internal`` (the base of them all) comes last.
ERROR_KINDS: dict[str, type[CapillaryError]] = {
    "expired": CapillarySecureUrlExpiredError,
    "verification": CapillaryVerificationError,
    "unavailable": CapillaryServiceUnavailableError,
    "rejected": CapillaryRequestRejectedError,
    "invalid": CapillaryInvalidInputError,
    "config": CapillaryConfigError,
    "internal": CapillaryError,
}


def kind_of(exc: CapillaryError) -> str:
    """The error kind of an exception, by ``isinstance`` through :data:`ERROR_KINDS`.

    :param exc: a provider error.
    :return: the first kind whose class ``exc`` is an instance of (``internal`` at worst).
    """
    return next(kind for kind, cls in ERROR_KINDS.items() if isinstance(exc, cls))


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why verification failed, in a form that survives a trigger event (JSON-safe).

    :param kind: a key of :data:`ERROR_KINDS`.
    :param message: what failed and what to do (no URL).
    :param file_name: the first failing file.
    :param namespace: its namespace.
    :param status_code: the HTTP status, if any.
    """

    kind: str
    message: str
    file_name: str | None = None
    namespace: str | None = None
    status_code: int | None = None

    @classmethod
    def from_exception(cls, exc: CapillaryError) -> Failure:
        """The failure an exception stands for.

        :param exc: a provider error.
        :return: the failure, its kind by :func:`kind_of`.
        """
        return cls(kind_of(exc), exc.message, exc.file_name, exc.namespace, exc.status_code)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Failure | None:
        """Read an ``error`` event back.

        :param event: the event payload.
        :return: the failure, or ``None`` when the payload is not one :meth:`to_event` writes.
        """
        kind, message = event.get("kind"), event.get("message")
        if kind not in ERROR_KINDS or not isinstance(message, str):
            return None
        return cls(kind, message, event.get("file_name"), event.get("namespace"), event.get("status_code"))

    def to_exception(self, conn_id: str | None = None) -> CapillaryError:
        """Build the matching exception.

        :param conn_id: the connection in use, for the exception's attributes.
        :return: an instance of ``ERROR_KINDS[kind]`` (:class:`CapillaryError` for an unknown kind).
        """
        cls = ERROR_KINDS.get(self.kind, CapillaryError)
        return cls(
            self.message,
            status_code=self.status_code,
            conn_id=conn_id,
            file_name=self.file_name,
            namespace=self.namespace,
        )

    def to_event(self) -> dict[str, Any]:
        """The payload of an ``error`` trigger event.

        :return: ``{"status": "error", "kind", "message", "file_name", "namespace", "status_code"}``.
        """
        return {"status": "error", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """How the storage behind the secure URLs is reached: the connection's TLS, timeout and proxy
    settings and its ``Retry-After`` cap. Never its credentials or static headers: they are for
    Capillary's API, not for the storage.

    :param verify: TLS verification: a bool or the path of a CA bundle.
    :param timeout: ``(connect, read)`` in seconds.
    :param proxies: requests-style proxies (may hold credentials: kept out of ``repr``).
    :param retry_after_max: longest ``Retry-After`` honoured, in seconds.
    """

    verify: bool | str = True
    timeout: tuple[float, float] = (60.0, 60.0)
    proxies: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX

    @classmethod
    def from_hook(cls, hook: CapillaryFileHook) -> ClientSettings:
        """The settings of the hook's connection.

        :param hook: the hook (only its resolved ``config`` is read).
        :return: the settings.
        :raises CapillaryConfigError: the connection is misconfigured.
        """
        config = hook.config
        connect, read = config.timeout
        return cls(
            verify=config.verify,
            timeout=(float(connect), float(read)),
            proxies=dict(config.proxies or {}),
            retry_after_max=float(config.retry_after_max),
        )

    def client(self) -> httpx.AsyncClient:
        """A new client with these settings (see :func:`client_kwargs`).

        :return: the client; close it (``async with``).
        :raises CapillaryConfigError: ``verify`` names a CA bundle that does not exist here.
        """
        return httpx.AsyncClient(**client_kwargs(self))


class _RedactUrlFilter(logging.Filter):
    """Redact the pre-signed URL in httpx's own ``HTTP Request: GET <url> ...`` INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def client_kwargs(settings: ClientSettings) -> dict[str, Any]:
    """Keyword arguments of the ``httpx.AsyncClient`` for ``settings``.

    Also makes sure httpx's own request log line never shows a signature (see ``redact_url``).

    :param settings: the settings.
    :return: ``verify``, ``timeout``, ``follow_redirects`` and, with proxies, ``mounts``.
    :raises CapillaryConfigError: ``verify`` names a CA bundle that does not exist here.
    """
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrlFilter) for f in logger.filters):
        logger.addFilter(_RedactUrlFilter())
    verify: bool | ssl.SSLContext = True
    value = settings.verify
    if isinstance(value, str):
        if not os.path.exists(value):
            raise CapillaryConfigError(
                f"verify: the CA bundle {value!r} does not exist on this machine (with deferrable=True "
                "the triggerer needs it too)"
            )
        verify = (
            ssl.create_default_context(capath=value)
            if os.path.isdir(value)
            else ssl.create_default_context(cafile=value)
        )
    else:
        verify = bool(value)
    connect, read = settings.timeout
    kwargs: dict[str, Any] = {
        "verify": verify,
        "timeout": httpx.Timeout(read, connect=connect),
        "follow_redirects": True,
    }
    if settings.proxies:
        kwargs["mounts"] = {
            (key if "://" in key else f"{key}://"): httpx.AsyncHTTPTransport(proxy=url, verify=verify)
            for key, url in settings.proxies.items()
            if url
        }
    return kwargs


async def probe(
    client: httpx.AsyncClient, expected: ExpectedFile, check: str, retry_after_cap: float
) -> Verdict:
    """Fetch one secure URL and judge the answer.

    :param client: the round's client.
    :param expected: the file.
    :param check: ``"size"`` or ``"sha256"``.
    :param retry_after_cap: longest ``Retry-After`` honoured.
    :return: the final verdict.
    """
    judge = AnswerJudge(expected, check, retry_after_cap)
    try:
        async with client.stream("GET", expected.url, headers=request_headers(check)) as response:
            verdict = judge.on_headers(response.status_code, response.headers)
            if verdict is not None:
                return verdict
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                if not judge.feed(chunk):
                    break
            return judge.finish()
    except httpx.HTTPError as exc:
        return judge_transport_error(expected, exc)


class VerificationState:
    """Progress of one sensor or trigger: which files are verified, and consecutive failures.

    :param files: the files to verify.
    :param check: ``"size"`` or ``"sha256"``.
    :param max_consecutive_failures: fail a file after this many transient failures in a row
        (connection errors, timeouts, 408/425/429, 5xx); ``None`` for no bound. A 404 is a plain
        wait: it does not count, and resets the count (the storage did answer).
    :param verified: indices already verified (e.g. by the sensor's first poke, before deferring).
    """

    def __init__(
        self,
        files: Sequence[ExpectedFile],
        check: str,
        max_consecutive_failures: int | None,
        verified: Iterable[int] = (),
    ) -> None:
        self.files = list(files)
        self.check = check
        self.max_consecutive_failures = max_consecutive_failures
        self.verified: set[int] = set(verified)
        self.failures: dict[int, int] = {}
        self.retry_after: float | None = None
        self.failure: Failure | None = None

    @property
    def pending(self) -> list[ExpectedFile]:
        """Files not verified yet, in input order."""
        return [f for f in self.files if f.index not in self.verified]

    @property
    def done(self) -> bool:
        """Whether every file is verified."""
        return not self.pending

    async def run_round(
        self, client: httpx.AsyncClient, settings: ClientSettings, max_workers: int
    ) -> list[str]:
        """Fetch every pending file (at most ``max_workers`` at once) and record the verdicts.

        :param client: the client (from :meth:`ClientSettings.client`).
        :param settings: the client's settings (the ``Retry-After`` cap).
        :param max_workers: files fetched at once.
        :return: the messages of the files still waiting (see :meth:`apply`).
        """
        semaphore = asyncio.Semaphore(max_workers)

        async def one(expected: ExpectedFile) -> tuple[ExpectedFile, Verdict]:
            async with semaphore:
                return expected, await probe(client, expected, self.check, settings.retry_after_max)

        return self.apply(await asyncio.gather(*(one(f) for f in self.pending)))

    def run_round_sync(self, settings: ClientSettings, max_workers: int) -> list[str]:
        """:meth:`run_round` with a client of its own, from synchronous code (the sensor's poke).

        :param settings: the client settings.
        :param max_workers: files fetched at once.
        :return: the messages of the files still waiting.
        """

        async def round_() -> list[str]:
            async with settings.client() as client:
                return await self.run_round(client, settings, max_workers)

        return run_sync(round_())

    def apply(self, results: Sequence[tuple[ExpectedFile, Verdict]]) -> list[str]:
        """Record the verdicts of one round.

        Sets :attr:`failure` when a file failed or ran out of consecutive failures (every failing
        file of the round is named; the error type is the first one's), and :attr:`retry_after`
        to the longest ``Retry-After`` of the round.

        :param results: each pending file with its verdict.
        :return: the messages of the files still waiting, for one log line.
        """
        self.retry_after = None
        failed: list[tuple[ExpectedFile, Verdict]] = []
        waiting: list[str] = []
        for expected, verdict in sorted(results, key=lambda item: item[0].index):
            if verdict.decision == "done":
                self.verified.add(expected.index)
                self.failures.pop(expected.index, None)
            elif verdict.decision == "fail":
                failed.append((expected, verdict))
            else:
                count = self.failures.get(expected.index, 0) + 1 if verdict.transient else 0
                self.failures[expected.index] = count
                limit = self.max_consecutive_failures
                if limit is not None and count >= limit:
                    failed.append((expected, _exhausted(verdict, count)))
                    continue
                waiting.append(verdict.message)
                if verdict.retry_after is not None:
                    self.retry_after = max(self.retry_after or 0.0, verdict.retry_after)
        if failed:
            self.failure = _combine(failed)
        return waiting

    def next_wait(self, poll_interval: float, remaining: float | None = None) -> float:
        """Seconds before the next round: the poll interval, longer if the storage asked.

        :param poll_interval: the sensor's poke interval.
        :param remaining: seconds left before the deadline, if any (the wait never passes it).
        :return: a non-negative number of seconds.
        """
        wait = max(poll_interval, self.retry_after or 0.0)
        if remaining is not None:
            wait = min(wait, remaining)
        return max(0.0, wait)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code.

    :param coroutine: the coroutine.
    :return: its result (in a thread of its own when this thread already runs an event loop).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _exhausted(verdict: Verdict, count: int) -> Verdict:
    return Verdict(
        "fail",
        f"{verdict.message.removesuffix('; waiting')}; giving up after {count} consecutive failures: "
        "check that the storage is reachable from Airflow (proxy, TLS settings of the connection)",
        kind="unavailable",
        status_code=verdict.status_code,
    )


def _combine(failed: Sequence[tuple[ExpectedFile, Verdict]]) -> Failure:
    first_file, first = failed[0]
    message = first.message
    if len(failed) > 1:
        others = "; ".join(v.message for _, v in failed[1:6])
        more = f" (and {len(failed) - 6} more)" if len(failed) > 6 else ""
        message = f"{message}. {len(failed) - 1} other file(s) failed too: {others}{more}"
    return Failure(
        kind=first.kind or "verification",
        message=message,
        file_name=first_file.name,
        namespace=first_file.namespace,
        status_code=first.status_code,
    )
