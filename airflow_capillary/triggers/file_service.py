"""Deferrable side of :class:`~airflow_capillary.sensors.file_service.CapillaryFileSensor`.

:class:`CapillaryFileTrigger` runs in the triggerer: it runs rounds of
:mod:`airflow_capillary.verification.rounds` (the same requests and rules as the sensor's poke)
until every file is verified, one fails, or the deadline passes. It never uploads anything.

Its keyword arguments are stored in Airflow's metadata database (``trigger.kwargs``, encrypted
with the deployment's Fernet key) and hold the upload records, secure URLs included: those URLs
are already in XCom, come from the same database, and expire after about an hour. They hold no
connection setting: the triggerer reads the connection (TLS, timeouts, proxies) itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_capillary._redact import redact_records, redact_text, register_url_credentials
from airflow_capillary.exceptions import CapillaryError
from airflow_capillary.verification.records import expected_files
from airflow_capillary.verification.rounds import Failure, VerificationState
from airflow_capillary.verification.storage import ClientSettings

__all__ = ["EVENT_STATUSES", "CapillaryFileTrigger"]

#: Statuses of the one event the trigger yields.
EVENT_STATUSES = frozenset({"success", "error", "timeout"})


class CapillaryFileTrigger(BaseTrigger):
    """Wait until every uploaded file is served intact by its secure URL.

    Fires exactly one event:

    * ``{"status": "success", "verified": n}``: all ``n`` records are verified;
    * ``{"status": "error", "kind": ..., "message": ..., "file_name": ..., "namespace": ...,
      "status_code": ...}``: ``kind`` is a key of
      :data:`airflow_capillary.verification.rounds.ERROR_KINDS`;
    * ``{"status": "timeout", "message": ...}``: the deadline passed.

    :param records: the upload records (``UploadedFile.to_dict()`` dicts), flattened.
    :param deadline: wall-clock deadline, epoch seconds (absolute, so that a restarted trigger
        keeps it).
    :param check: ``"size"`` (ranged ``GET``, headers only) or ``"sha256"`` (whole body hashed).
    :param conn_id: the Capillary connection whose TLS, timeout and proxy settings apply (read in
        the triggerer).
    :param poll_interval: seconds between rounds (longer when the storage sends ``Retry-After``).
    :param max_consecutive_failures: fail a file after this many transient failures in a row;
        ``None`` for no bound.
    :param verified: indices of records already verified by the sensor before deferring.
    :param max_workers: files fetched at once.
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
        check: str = "size",
        conn_id: str = "capillary_default",
        poll_interval: float = 30.0,
        max_consecutive_failures: int | None = 10,
        verified: Sequence[int] = (),
        max_workers: int = 8,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.records = [dict(record) for record in records]
        self.deadline = float(deadline)
        self.check = check
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.max_consecutive_failures = max_consecutive_failures
        self.verified = sorted(int(i) for i in verified)
        self.max_workers = max(1, int(max_workers))
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
                "check": self.check,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "max_consecutive_failures": self.max_consecutive_failures,
                "verified": self.verified,
                "max_workers": self.max_workers,
                "not_before": self.not_before,
            },
        )

    def __repr__(self) -> str:
        """Like Airflow's, with the secure URLs redacted (Airflow logs a trigger's repr).

        :return: ``<classpath key=value, ...>``.
        """
        classpath, kwargs = self.serialize()
        return self.repr(classpath, {**kwargs, "records": redact_records(kwargs["records"])})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Run rounds every ``poll_interval`` until all files pass, one fails, or the deadline
        passes (it also cuts a round in progress: a slow or endless answer ends with it).

        :return: an async iterator of exactly one :class:`TriggerEvent`.
        """
        for record in self.records:  # this process's masker, for the triggerer's own log lines
            register_url_credentials(record.get("secure_file_path"))
        try:
            event = await self._verify_all()
        except CapillaryError as exc:
            event = Failure.from_exception(exc).to_event()
        except Exception as exc:
            text = redact_text(
                f"{type(exc).__name__}: {exc}", [r.get("secure_file_path") for r in self.records]
            )
            event = Failure("internal", f"the trigger failed unexpectedly: {text}").to_event()
        yield TriggerEvent(event)

    def _client_settings(self) -> ClientSettings:
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        return ClientSettings.from_hook(CapillaryFileHook(self.conn_id))

    async def _verify_all(self) -> dict[str, Any]:
        # The connection is read here, in the triggerer, in a thread (it may ask the supervisor).
        settings = await asyncio.to_thread(self._client_settings)
        files = expected_files(self.records, self.check, settings.policy)
        state = VerificationState(files, self.check, self.max_consecutive_failures, self.verified)
        async with settings.client() as client:
            waiting: list[str] = []
            if self.not_before is not None:
                delay = min(self.not_before, self.deadline) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            while True:
                if state.done:
                    self.log.info("all %d file(s) are served intact", len(files))
                    return {"status": "success", "verified": len(files)}
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    names = ", ".join(repr(f.name) for f in state.pending[:10])
                    last = f"last answers: {'; '.join(waiting[:5])}" if waiting else "no check ran before it"
                    return {
                        "status": "timeout",
                        "message": f"{len(state.pending)} file(s) not verified before the sensor's "
                        f"timeout: {names}; {last}",
                    }
                waiting = await state.run_round(client, settings, self.max_workers, self.deadline)
                if state.failure is not None:
                    return state.failure.to_event()
                if state.done:
                    continue
                wait = state.next_wait(self.poll_interval, self.deadline - time.time())
                self.log.info(
                    "%d of %d file(s) not verified yet; next check in %.1f s: %s",
                    len(state.pending),
                    len(files),
                    wait,
                    "; ".join(waiting[:5]),
                )
                await asyncio.sleep(wait)
