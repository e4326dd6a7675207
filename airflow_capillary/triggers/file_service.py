"""Deferrable side of :class:`~airflow_capillary.sensors.file_service.CapillaryFileSensor`.

:class:`CapillaryFileTrigger` runs in the triggerer: it fetches each file's pre-signed
``secure_file_path`` with ``httpx.AsyncClient`` (no Capillary credentials: the URL carries its own
signature) and applies the same rules as the sensor's poke (:mod:`airflow_capillary._verify`).
It never uploads anything.

Note: trigger arguments are stored in Airflow's metadata database (``trigger.kwargs``, encrypted
with the deployment's Fernet key). They hold the upload records, secure URLs included; those URLs
are already in XCom, come from the same database, and expire after about an hour.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_capillary._redact import redact_records, redact_text, redact_url, register_url_credentials
from airflow_capillary._verify import (
    ERROR_KINDS,
    AnswerJudge,
    ExpectedFile,
    Verdict,
    expected_files,
    judge_transport_error,
    request_headers,
)
from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError
from airflow_capillary.triggers._state import Failure, VerificationState

if TYPE_CHECKING:
    from airflow_capillary.hooks._config import CapillaryConnectionConfig

#: Size of the chunks in which a body is hashed.
CHUNK_SIZE = 256 * 1024
#: Default longest ``Retry-After`` honoured (the connection's ``retry_after_max``).
DEFAULT_RETRY_AFTER_MAX = 120.0
#: Statuses of the one event the trigger yields.
EVENT_STATUSES = frozenset({"success", "error", "timeout"})


def client_options(config: CapillaryConnectionConfig) -> dict[str, Any]:
    """JSON-safe HTTP settings of a Capillary connection that matter to fetching a secure URL.

    Only TLS verification, timeouts, proxies and the ``Retry-After`` cap: the connection's
    credentials and static headers are for Capillary's API, never for the storage.

    :param config: the connection's settings (``CapillaryFileHook(conn_id).config``).
    :return: ``{"verify": bool | str, "timeout": [connect, read], "proxies": dict | None,
        "retry_after_max": float}``.
    """
    connect, read = config.timeout
    return {
        "verify": config.verify,
        "timeout": [float(connect), float(read)],
        "proxies": dict(config.proxies) if config.proxies else None,
        "retry_after_max": float(config.retry_after_max),
    }


class _RedactUrlFilter(logging.Filter):
    """Redact the pre-signed URL in httpx's own ``HTTP Request: GET <url> ...`` INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrlFilter) for f in logger.filters):
        logger.addFilter(_RedactUrlFilter())


def httpx_client_kwargs(options: Mapping[str, Any], *, asynchronous: bool) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient`` from :func:`client_options`.

    Also makes sure httpx's own request log line never shows a signature (see :func:`redact_url`).

    :param options: the JSON-safe settings.
    :param asynchronous: build async transports for proxies.
    :return: ``verify``, ``timeout``, ``follow_redirects`` and, with proxies, ``mounts``.
    :raises CapillaryConfigError: ``verify`` names a CA bundle that does not exist here.
    """
    _install_log_redaction()
    verify: bool | ssl.SSLContext = True
    value = options.get("verify", True)
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
    connect, read = options.get("timeout") or (60.0, 60.0)
    kwargs: dict[str, Any] = {
        "verify": verify,
        "timeout": httpx.Timeout(read, connect=connect),
        "follow_redirects": True,
    }
    proxies = options.get("proxies")
    if proxies:
        transport = httpx.AsyncHTTPTransport if asynchronous else httpx.HTTPTransport
        kwargs["mounts"] = {
            (key if "://" in key else f"{key}://"): transport(proxy=url, verify=verify)
            for key, url in proxies.items()
            if url
        }
    return kwargs


class CapillaryFileTrigger(BaseTrigger):
    """Wait until every uploaded file is served intact by its secure URL.

    Fires exactly one event:

    * ``{"status": "success", "records": [...]}``: every record, in input order;
    * ``{"status": "error", "kind": ..., "message": ..., "file_name": ..., "namespace": ...,
      "status_code": ...}``: ``kind`` is a key of :data:`airflow_capillary._verify.ERROR_KINDS`;
    * ``{"status": "timeout", "message": ..., "pending": [names]}``: the deadline passed.

    :param records: the upload records (``UploadedFile.to_dict()`` dicts), flattened.
    :param deadline: wall-clock deadline, epoch seconds (absolute, so that a restarted trigger
        keeps it).
    :param verify: ``"size"`` (ranged ``GET``, headers only) or ``"sha256"`` (whole body hashed).
    :param conn_id: the Capillary connection the settings came from (for messages only).
    :param poll_interval: seconds between rounds (longer when the storage sends ``Retry-After``).
    :param max_consecutive_failures: fail a file after this many transient failures in a row;
        ``None`` for no bound.
    :param verified: indices of records already verified by the sensor before deferring.
    :param client_options: HTTP settings from :func:`client_options`.
    :param max_concurrency: files fetched at once.
    :param not_before: wall-clock time (epoch seconds) of the first check; the sensor passes one
        poke interval after its own check on the worker, which it just made. Airflow 3.3.2 can
        fail a deferred task whose trigger fires before the scheduler has seen the worker exit
        (apache/airflow#66374), so an immediate second check is both useless and risky.
    """

    def __init__(
        self,
        *,
        records: Sequence[Mapping[str, Any]],
        deadline: float,
        verify: str = "size",
        conn_id: str = "capillary_default",
        poll_interval: float = 30.0,
        max_consecutive_failures: int | None = 10,
        verified: Sequence[int] = (),
        client_options: Mapping[str, Any] | None = None,
        max_concurrency: int = 8,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.records = [dict(record) for record in records]
        self.deadline = float(deadline)
        self.verify = verify
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.max_consecutive_failures = max_consecutive_failures
        self.verified = sorted(int(i) for i in verified)
        self.client_options = dict(client_options or {})
        self.max_concurrency = max(1, int(max_concurrency))
        self.not_before = float(not_before) if not_before is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and JSON-safe keyword arguments.

        :return: ``("airflow_capillary.triggers.file_service.CapillaryFileTrigger", kwargs)``.
        """
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "records": self.records,
                "deadline": self.deadline,
                "verify": self.verify,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "max_consecutive_failures": self.max_consecutive_failures,
                "verified": self.verified,
                "client_options": self.client_options,
                "max_concurrency": self.max_concurrency,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Fetch the pending files every ``poll_interval`` until all pass, one fails, or the deadline.

        :return: an async iterator of exactly one :class:`TriggerEvent`.
        """
        for record in self.records:  # this process's masker, for the triggerer's own log lines
            register_url_credentials(record.get("secure_file_path"))
        try:
            event = await self._verify_all()
        except CapillaryError as exc:
            kind = next((k for k, cls in ERROR_KINDS.items() if type(exc) is cls), "internal")
            event = Failure(kind, exc.message, exc.file_name, exc.namespace).to_event()
        except Exception as exc:
            text = redact_text(
                f"{type(exc).__name__}: {exc}", [r.get("secure_file_path") for r in self.records]
            )
            event = Failure("internal", f"the trigger failed unexpectedly: {text}").to_event()
        yield TriggerEvent(event)

    async def _verify_all(self) -> dict[str, Any]:
        files = expected_files(self.records, self.verify)
        state = VerificationState(files, self.max_consecutive_failures, self.verified)
        semaphore = asyncio.Semaphore(self.max_concurrency)
        options = self.client_options
        cap = float(options.get("retry_after_max") or DEFAULT_RETRY_AFTER_MAX)
        async with httpx.AsyncClient(**httpx_client_kwargs(options, asynchronous=True)) as client:

            async def check(expected: ExpectedFile) -> tuple[ExpectedFile, Verdict]:
                async with semaphore:
                    return expected, await probe_async(client, expected, self.verify, cap)

            waiting: list[str] = []
            if self.not_before is not None:
                delay = min(self.not_before, self.deadline) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            while True:
                pending = state.pending
                if pending:
                    waiting = state.apply(await asyncio.gather(*(check(f) for f in pending)))
                    if state.failure is not None:
                        return state.failure.to_event()
                if state.done:
                    self.log.info("all %d file(s) are served intact", len(files))
                    # URLs redacted: the triggerer logs events, and Airflow stores them.
                    return {"status": "success", "records": redact_records(state.records(self.records))}
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    names = ", ".join(repr(f.name) for f in state.pending[:10])
                    return {
                        "status": "timeout",
                        "message": f"{len(state.pending)} file(s) not verified before the sensor's "
                        f"timeout: {names}; last answers: {'; '.join(waiting[:5])}",
                        "pending": [f.name for f in state.pending],
                    }
                wait = state.next_wait(self.poll_interval, remaining)
                self.log.info(
                    "%d of %d file(s) not verified yet; next check in %.1f s: %s",
                    len(state.pending),
                    len(files),
                    wait,
                    "; ".join(waiting[:5]),
                )
                await asyncio.sleep(wait)


async def probe_async(
    client: httpx.AsyncClient, expected: ExpectedFile, verify: str, retry_after_cap: float
) -> Verdict:
    """Fetch one secure URL and judge the answer.

    :param client: the shared client.
    :param expected: the file.
    :param verify: ``"size"`` or ``"sha256"``.
    :param retry_after_cap: longest ``Retry-After`` honoured.
    :return: the final verdict (never ``read_body``).
    """
    judge = AnswerJudge(expected, verify, retry_after_cap)
    try:
        async with client.stream("GET", expected.url, headers=request_headers(verify)) as response:
            verdict = judge.on_headers(response.status_code, response.headers)
            if verdict is not None:
                return verdict
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                if not judge.feed(chunk):
                    break
            return judge.finish()
    except httpx.HTTPError as exc:
        return judge_transport_error(expected, exc)
