"""Sensor that proves uploaded images are really served, intact, before anything publishes them.

Capillary answers 200 even when it stored only a placeholder; :class:`CapillaryFileSensor` fetches
each file's pre-signed ``secure_file_path`` and checks what the storage serves against the upload
record (size and content type, or the sha256 of the whole body). The rules, the requests and the
progress live in :mod:`airflow_capillary.verification`; this module is the Airflow side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_capillary._redact import redact_records, redact_text, register_url_credentials
from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError, CapillaryInvalidInputError
from airflow_capillary.triggers.file_service import EVENT_STATUSES, CapillaryFileTrigger
from airflow_capillary.verification.records import CHECKS, expected_files, flatten_files, needs_check
from airflow_capillary.verification.rounds import Failure, VerificationState
from airflow_capillary.verification.storage import ClientSettings

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import AirflowSensorTimeout  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.exceptions import AirflowSensorTimeout  # type: ignore[attr-defined,no-redef,unused-ignore]

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_capillary.hooks.file_service import CapillaryFileHook

__all__ = ["CapillaryFileSensor"]


class CapillaryFileSensor(BaseSensorOperator):
    """Wait until every uploaded file is served by its secure URL with the expected content.

    Each file's ``secure_file_path`` (a pre-signed URL; no Capillary credentials are sent) is
    fetched with ``GET`` and ``Range: bytes=0-0`` (size check) or a full ``GET`` (sha256 check).
    Done when every file answers 200/206 with the recorded size (``Content-Length`` or the
    ``Content-Range`` total) and content type, and with the sha256 check the body's sha256. Only
    files not verified yet are fetched again on later pokes (within one try: in ``reschedule``
    mode each poke starts over).

    Keeps waiting on 404, 408, 425, 429, 5xx and connection errors (honouring ``Retry-After``);
    fails at once with :class:`~airflow_capillary.exceptions.CapillarySecureUrlExpiredError` on a
    403 (the secure URL lives one hour: re-run the upload task), with
    :class:`~airflow_capillary.exceptions.CapillaryVerificationError` on a size, type or checksum
    mismatch, and with :class:`~airflow_capillary.exceptions.CapillaryInvalidInputError` on a
    record without ``secure_file_path`` (upload with ``include_secure_url=True``).

    :param files: one upload record (a dict pushed by ``UploadImageOperator``), a list of them, or
        the output of mapped upload tasks (lists are flattened); an ``XComArg`` works. (templated)
    :param capillary_conn_id: connection whose TLS, timeout and proxy settings apply to the
        storage requests (its credentials are never sent there). (templated)
    :param check: ``"size"`` (size and content type from the headers) or ``"sha256"`` (also
        stream each whole body and compare its sha256 with the record's).
    :param deferrable: poke once on the worker, then wait in the triggerer
        (:class:`~airflow_capillary.triggers.file_service.CapillaryFileTrigger`).
    :param max_consecutive_failures: fail a file after this many transient failures in a row
        (connection errors, 429, 5xx; a 404 does not count); ``None`` for no bound.
    :param max_workers: files fetched at once (the operator's name for its parallelism).
    :param include_secure_url: keep ``secure_file_path`` in the records pushed to XCom. Off by
        default: once verified, what publishing needs is the handle, while the URL is a
        credential for about an hour that every downstream task would otherwise show in its
        rendered fields; when off, ``secure_file_path`` is ``None`` in the output.
    :param poke_interval: seconds between pokes (default 30).
    :param timeout: seconds before the sensor gives up (default 3600: a secure URL lives one hour,
        so waiting longer can only end in a 403).
    :param kwargs: other :class:`~airflow.sdk.BaseSensorOperator` arguments (``mode``, ...).
    :return: (XCom) the verified records, in input order: one record (a dict) for a single-record
        ``files``, else a list; the same in both modes (``secure_file_path`` is ``None`` unless
        ``include_secure_url``). A record with ``"action": "unchanged"`` (an operator with a
        manifest did not upload it in this run) is passed through as it is, without a request: it
        was verified when it was uploaded.
    """

    template_fields: Sequence[str] = ("files", "capillary_conn_id")
    ui_color = "#d5ecf2"

    def __init__(
        self,
        *,
        files: Any,
        capillary_conn_id: str = "capillary_default",
        check: str = "size",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_failures: int | None = 10,
        max_workers: int = 8,
        include_secure_url: bool = False,
        poke_interval: timedelta | float = 30,
        timeout: timedelta | float = 3600,
        **kwargs: Any,
    ) -> None:
        for old, new in (("verify", "check"), ("max_concurrency", "max_workers")):
            if old in kwargs:
                raise CapillaryConfigError(f"CapillaryFileSensor: {old} was renamed {new}")
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if check not in CHECKS:
            raise CapillaryConfigError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
        if max_consecutive_failures is not None and (
            isinstance(max_consecutive_failures, bool) or max_consecutive_failures < 1
        ):
            raise CapillaryConfigError(
                f"max_consecutive_failures must be an integer >= 1 or None, not {max_consecutive_failures!r}"
            )
        if isinstance(max_workers, bool) or max_workers < 1:
            raise CapillaryConfigError(f"max_workers must be an integer >= 1, not {max_workers!r}")
        self.files = files
        self.include_secure_url = include_secure_url
        self.capillary_conn_id = capillary_conn_id
        self.check = check
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self.max_workers = max_workers
        self._records: list[Mapping[str, Any]] = []
        self._single = False
        self._state: VerificationState | None = None
        self._flattened: tuple[list[Mapping[str, Any]], bool] | None = None
        self._deadline: float | None = None  # the timeout, as wall-clock time, once executing

    @cached_property
    def hook(self) -> CapillaryFileHook:
        """The Capillary hook, used only for the connection's HTTP settings."""
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        return CapillaryFileHook(self.capillary_conn_id)

    @cached_property
    def client_settings(self) -> ClientSettings:
        """Origin policy, TLS, timeout, proxy and ``Retry-After`` settings of the connection (no
        credentials)."""
        return ClientSettings.from_hook(self.hook)

    def execute(self, context: Context) -> Any:
        """Check the records, then poke (or poke once and defer).

        :param context: the task context.
        :return: the verified records (see the class docstring).
        """
        started = time.time()
        self._deadline = started + self.timeout
        self._prepare()
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        assert self._state is not None
        self.defer(
            trigger=CapillaryFileTrigger(
                records=[dict(r) for r in self._records],
                deadline=self._deadline,
                check=self.check,
                conn_id=self.capillary_conn_id,
                poll_interval=self.poke_interval,
                max_consecutive_failures=self.max_consecutive_failures,
                verified=sorted(self._state.verified),
                max_workers=self.max_workers,
                not_before=time.time() + self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render ``files``, keep the records for the checks, and leave ``files`` holding copies
        whose secure URLs are redacted: Airflow stores and shows the rendered fields, and a
        pre-signed URL is a credential. The URLs' session credentials are also registered with
        the secrets masker, for any log line.

        :param context: the task context.
        :param jinja_env: the Jinja environment.
        """
        super().render_template_fields(context, jinja_env)
        try:
            self._flattened = flatten_files(self.files)
        except CapillaryInvalidInputError:
            self._flattened = None  # execute() reports it
            return
        for record in self._flattened[0]:
            register_url_credentials(record.get("secure_file_path"))
        self.files = redact_records(self.files)

    def _prepare(self) -> None:
        records, self._single = self._flattened or flatten_files(self.files)
        files = expected_files(records, self.check, self.client_settings.policy)
        self._records = records
        self._state = VerificationState(files, self.check, self.max_consecutive_failures)
        if self._flattened is None:  # not rendered by Airflow (e.g. execute() called directly)
            for file in files:
                register_url_credentials(file.url)
        self.log.info(
            "verifying %d file(s) with the %s check (connection %s); %d unchanged, passed through",
            len(files),
            self.check,
            self.capillary_conn_id,
            len(records) - len(files),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Fetch every file not verified yet: one round of :mod:`airflow_capillary.verification.rounds`,
        cut at the sensor's timeout (a request still in flight then is a wait, and Airflow fails the
        sensor with its timeout).

        :param context: the task context.
        :return: done (with the verified records as XCom value) or not yet.
        :raises CapillaryError: a file failed (see the class docstring for the types).
        """
        if self._state is None:
            self._prepare()
        assert self._state is not None
        state = self._state
        waiting = (
            state.run_round_sync(self.client_settings, self.max_workers, self._deadline)
            if state.pending
            else []
        )
        if state.failure is not None:
            raise state.failure.to_exception(self.capillary_conn_id)
        if state.done:
            self.log.info("all %d file(s) are served intact", len(state.files))
            return PokeReturnValue(True, self._output(self._records))
        self.log.info(
            "%d of %d file(s) not verified yet: %s",
            len(state.pending),
            len(state.files),
            "; ".join(waiting[:5]),
        )
        return PokeReturnValue(False)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        interval = super()._get_next_poke_interval(started_at, run_duration, poke_count)
        retry_after = self._state.retry_after if self._state is not None else None
        if retry_after is None or retry_after <= interval:
            return interval
        self.log.info("the storage asked to wait %.1f s (Retry-After)", retry_after)
        return max(interval, min(retry_after, self.timeout - run_duration()))

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger fired: return the records or raise the matching error.

        :param context: the task context.
        :param event: the trigger's event payload.
        :return: the verified records (see the class docstring).
        :raises CapillaryError: the trigger reported an error (type by ``kind``), or the event is
            not one the trigger sends.
        :raises AirflowSensorTimeout: the trigger's deadline passed.
        """
        status = event.get("status") if isinstance(event, Mapping) else None
        if status not in EVENT_STATUSES:
            raise CapillaryError(f"unexpected event from CapillaryFileTrigger: {_describe(event)}")
        assert isinstance(event, Mapping)
        if status == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {event.get('message', '')}")
        if status == "error":
            failure = Failure.from_event(event)
            if failure is None:
                raise CapillaryError(f"unexpected error event from CapillaryFileTrigger: {_describe(event)}")
            raise failure.to_exception(self.capillary_conn_id)
        verified = event.get("verified")
        if isinstance(verified, bool) or not isinstance(verified, int):
            raise CapillaryError(f"unexpected success event from CapillaryFileTrigger: {_describe(event)}")
        # The output is the sensor's own records (``files``, rendered again on resume: no extra
        # state to carry, and ``dag.test()`` drops the deferral's kwargs when it runs a trigger
        # inline); the event only says how many the trigger verified.
        own, self._single = self._flattened or flatten_files(self.files)
        checked = sum(needs_check(record, index) for index, record in enumerate(own))
        if verified != checked:
            raise CapillaryError(
                f"success event from CapillaryFileTrigger for {verified} record(s), the sensor has {checked}"
            )
        self.log.info("all %d file(s) are served intact", checked)
        return self._output(own)

    def _output(self, records: Sequence[Mapping[str, Any]]) -> Any:
        out = [dict(r) if self.include_secure_url else {**r, "secure_file_path": None} for r in records]
        return out[0] if self._single and len(out) == 1 else out


def _describe(event: Any) -> str:
    text = redact_text(repr(event))
    return text if len(text) <= 300 else text[:300] + "...(truncated)"
