"""Sensor that proves uploaded images are really served, intact, before anything publishes them.

Capillary answers 200 even when it stored only a placeholder; :class:`CapillaryFileSensor` fetches
each file's pre-signed ``secure_file_path`` and checks what the storage serves against the upload
record (size and content type, or the sha256 of the whole body).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_capillary._redact import redact_records, redact_text, register_url_credentials
from airflow_capillary._verify import (
    ERROR_KINDS,
    VERIFY_MODES,
    AnswerJudge,
    ExpectedFile,
    Verdict,
    expected_files,
    judge_transport_error,
    request_headers,
)
from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError, CapillaryInvalidInputError
from airflow_capillary.triggers._state import Failure, VerificationState
from airflow_capillary.triggers.file_service import (
    CHUNK_SIZE,
    DEFAULT_RETRY_AFTER_MAX,
    EVENT_STATUSES,
    CapillaryFileTrigger,
    client_options,
    httpx_client_kwargs,
)

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import AirflowSensorTimeout  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - Airflow 3.1
    from airflow.exceptions import AirflowSensorTimeout  # type: ignore[attr-defined,no-redef,unused-ignore]

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_capillary.hooks.file_service import CapillaryFileHook

#: Query parameters of a secure URL registered with Airflow's secrets masker (shared per session).


class CapillaryFileSensor(BaseSensorOperator):
    """Wait until every uploaded file is served by its secure URL with the expected content.

    Each file's ``secure_file_path`` (a pre-signed URL; no Capillary credentials are sent) is
    fetched with ``GET`` and ``Range: bytes=0-0`` (size mode) or a full ``GET`` (sha256 mode).
    Done when every file answers 200/206 with the recorded size (``Content-Length`` or the
    ``Content-Range`` total) and content type, and in sha256 mode the body's sha256. Only files
    not verified yet are fetched again on later pokes (within one try: in ``reschedule`` mode each
    poke starts over).

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
    :param verify: ``"size"`` (size and content type from the headers) or ``"sha256"`` (also
        stream each whole body and compare its sha256 with the record's).
    :param deferrable: poke once on the worker, then wait in the triggerer
        (:class:`~airflow_capillary.triggers.file_service.CapillaryFileTrigger`).
    :param max_consecutive_failures: fail a file after this many transient failures in a row
        (connection errors, 429, 5xx; a 404 does not count); ``None`` for no bound.
    :param max_concurrency: files fetched at once.
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
        ``include_secure_url``).
    """

    template_fields: Sequence[str] = ("files", "capillary_conn_id")
    ui_color = "#d5ecf2"

    def __init__(
        self,
        *,
        files: Any,
        capillary_conn_id: str = "capillary_default",
        verify: str = "size",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_failures: int | None = 10,
        max_concurrency: int = 8,
        include_secure_url: bool = False,
        poke_interval: timedelta | float = 30,
        timeout: timedelta | float = 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if verify not in VERIFY_MODES:
            raise CapillaryConfigError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}")
        if max_consecutive_failures is not None and (
            isinstance(max_consecutive_failures, bool) or max_consecutive_failures < 1
        ):
            raise CapillaryConfigError(
                f"max_consecutive_failures must be an integer >= 1 or None, not {max_consecutive_failures!r}"
            )
        if isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise CapillaryConfigError(f"max_concurrency must be an integer >= 1, not {max_concurrency!r}")
        self.files = files
        self.include_secure_url = include_secure_url
        self.capillary_conn_id = capillary_conn_id
        self.verify = verify
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self.max_concurrency = max_concurrency
        self._records: list[Mapping[str, Any]] = []
        self._single = False
        self._state: VerificationState | None = None
        self._flattened: tuple[list[Mapping[str, Any]], bool] | None = None

    @cached_property
    def hook(self) -> CapillaryFileHook:
        """The Capillary hook, used only for the connection's HTTP settings."""
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        return CapillaryFileHook(self.capillary_conn_id)

    @cached_property
    def client_options(self) -> dict[str, Any]:
        """JSON-safe HTTP settings (verify, timeout, proxies, Retry-After cap) of the connection."""
        return client_options(self.hook.config)

    def execute(self, context: Context) -> Any:
        """Check the records, then poke (or poke once and defer).

        :param context: the task context.
        :return: the verified records (see the class docstring).
        """
        started = time.time()
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
                deadline=started + self.timeout,
                verify=self.verify,
                conn_id=self.capillary_conn_id,
                poll_interval=self.poke_interval,
                max_consecutive_failures=self.max_consecutive_failures,
                verified=sorted(self._state.verified),
                client_options=self.client_options,
                max_concurrency=self.max_concurrency,
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
        files = expected_files(records, self.verify)
        self._records = records
        self._state = VerificationState(files, self.max_consecutive_failures)
        if self._flattened is None:  # not rendered by Airflow (e.g. execute() called directly)
            for file in files:
                register_url_credentials(file.url)
        self.log.info(
            "verifying %d file(s) in %s mode (connection %s)", len(files), self.verify, self.capillary_conn_id
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Fetch every file not verified yet and apply :mod:`airflow_capillary._verify`.

        :param context: the task context.
        :return: done (with the verified records as XCom value) or not yet.
        :raises CapillaryError: a file failed (see the class docstring for the types).
        """
        if self._state is None:
            self._prepare()
        assert self._state is not None
        state = self._state
        pending = state.pending
        cap = float(self.client_options.get("retry_after_max") or DEFAULT_RETRY_AFTER_MAX)
        with httpx.Client(**httpx_client_kwargs(self.client_options, asynchronous=False)) as client:
            if len(pending) == 1:
                results = [(pending[0], probe_sync(client, pending[0], self.verify, cap))]
            else:
                with ThreadPoolExecutor(min(self.max_concurrency, len(pending))) as pool:
                    verdicts = pool.map(lambda f: probe_sync(client, f, self.verify, cap), pending)
                    results = list(zip(pending, verdicts, strict=True))
        waiting = state.apply(results)
        if state.failure is not None:
            raise state.failure.to_exception(self.capillary_conn_id)
        if state.done:
            self.log.info("all %d file(s) are served intact", len(state.files))
            return PokeReturnValue(True, self._output(state.records(self._records)))
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
            kind = event.get("kind")
            if kind not in ERROR_KINDS or not isinstance(event.get("message"), str):
                raise CapillaryError(f"unexpected error event from CapillaryFileTrigger: {_describe(event)}")
            failure = Failure(
                kind=kind,
                message=event["message"],
                file_name=event.get("file_name"),
                namespace=event.get("namespace"),
                status_code=event.get("status_code"),
            )
            raise failure.to_exception(self.capillary_conn_id)
        records = event.get("records")
        if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
            raise CapillaryError(f"unexpected success event from CapillaryFileTrigger: {_describe(event)}")
        # The output is the sensor's own records (``files``, rendered again on resume: no extra
        # state to carry, and ``dag.test()`` drops the deferral's kwargs when it runs a trigger
        # inline). The event's copies have their URLs redacted: Airflow logs and stores events.
        own, self._single = self._flattened or flatten_files(self.files)
        if len(records) != len(own):
            raise CapillaryError(
                f"success event from CapillaryFileTrigger for {len(records)} record(s), "
                f"the sensor has {len(own)}"
            )
        self.log.info("all %d file(s) are served intact", len(own))
        return self._output(own)

    def _output(self, records: list[dict[str, Any]] | list[Mapping[str, Any]]) -> Any:
        out = [dict(r) if self.include_secure_url else {**r, "secure_file_path": None} for r in records]
        return out[0] if self._single and len(out) == 1 else out


def probe_sync(client: httpx.Client, expected: ExpectedFile, verify: str, retry_after_cap: float) -> Verdict:
    """Fetch one secure URL and judge the answer (the synchronous twin of ``probe_async``).

    :param client: the shared client.
    :param expected: the file.
    :param verify: ``"size"`` or ``"sha256"``.
    :param retry_after_cap: longest ``Retry-After`` honoured.
    :return: the final verdict (never ``read_body``).
    """
    judge = AnswerJudge(expected, verify, retry_after_cap)
    try:
        with client.stream("GET", expected.url, headers=request_headers(verify)) as response:
            verdict = judge.on_headers(response.status_code, response.headers)
            if verdict is not None:
                return verdict
            for chunk in response.iter_bytes(CHUNK_SIZE):
                if not judge.feed(chunk):
                    break
            return judge.finish()
    except httpx.HTTPError as exc:
        return judge_transport_error(expected, exc)


def flatten_files(files: Any) -> tuple[list[Mapping[str, Any]], bool]:
    """Flatten the sensor's ``files`` into a list of records.

    Accepts one record, a list of records, or the lazy sequence a mapped upload task returns
    (whose items are records or lists of records).

    :param files: the rendered ``files`` argument.
    :return: the records in input order, and whether the input was a single record.
    :raises CapillaryInvalidInputError: not records (e.g. a string from non-native templating).
    """
    if isinstance(files, Mapping):
        return [files], True
    if isinstance(files, (str, bytes)):
        raise CapillaryInvalidInputError(
            "files rendered to a string, not upload records: pass the upload task's output "
            "(e.g. upload.output) or set render_template_as_native_obj=True on the DAG"
        )
    records: list[Mapping[str, Any]] = []
    _flatten_into(files, records, "files")
    return records, False


def _flatten_into(value: Any, out: list[Mapping[str, Any]], where: str) -> None:
    if isinstance(value, Mapping):
        out.append(value)
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        for position, item in enumerate(value):
            _flatten_into(item, out, f"{where}[{position}]")
    else:
        raise CapillaryInvalidInputError(
            f"{where} is a {type(value).__name__}, not an upload record (a dict from UploadImageOperator)"
        )


def _describe(event: Any) -> str:
    text = redact_text(repr(event))
    return text if len(text) <= 300 else text[:300] + "...(truncated)"
