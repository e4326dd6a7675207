"""Hook for Capillary's file service: upload images, create placeholders, test the connection.

One upload, as a reader follows it: :meth:`CapillaryFileHook.upload` is one tenacity loop
(``for attempt in Retrying(...)``); each attempt builds a fresh body (:mod:`._body`), sends it
with the one request function (:func:`._session.exchange`: a deadline, redirects within the
origin only, a bounded read) and judges the answer (:mod:`._answer`). Whether to try again is
decided in one place (:func:`._retry.is_retryable`); the error message is built once, when the
loop gives up. A hook is safe to share across threads.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import requests
from airflow.sdk import BaseHook
from requests.auth import AuthBase
from tenacity import RetryCallState

from airflow_capillary import _validation as v
from airflow_capillary._redact import redact_text
from airflow_capillary.exceptions import CapillaryConfigError, CapillaryError
from airflow_capillary.hooks._answer import (
    Answer,
    check_upload_answer,
    failure,
    given_up,
    probe_failure,
    probe_verdict,
)
from airflow_capillary.hooks._auth import CapillaryAuth, TokenAuth
from airflow_capillary.hooks._body import UploadBody, upload_body
from airflow_capillary.hooks._client import Client, build_client
from airflow_capillary.hooks._config import DEFAULTS, SETTINGS, CapillaryConnectionConfig
from airflow_capillary.hooks._deadline import SEND_BLOCK_BYTES
from airflow_capillary.hooks._form import connection_form_widgets, ui_field_behaviour
from airflow_capillary.hooks._rate_limit import RateLimitStats
from airflow_capillary.hooks._retry import ServiceFailure, build_retrying
from airflow_capillary.hooks._session import exchange
from airflow_capillary.hooks._upload_source import (
    PreparedUpload,
    UploadSource,
    prepare_placeholder,
    prepare_upload,
)
from airflow_capillary.lineage import report_upload
from airflow_capillary.models import UploadedFile

__all__ = ["CapillaryFileHook", "PreparedUpload"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class CapillaryFileHook(BaseHook):
    """Talks to Capillary's file service through a ``capillary`` connection.

    The connection holds facts about the service, the arguments the task's policy (defaults: the
    table :data:`airflow_capillary.settings.TABLE`). No I/O in ``__init__``; the connection is read
    on first use.

    :param capillary_conn_id: the Airflow connection id.
    :param namespace: default namespace (overrides the ``namespace`` extra).
    :param timeout: seconds, or ``(connect, read)`` (overrides the extra). Connecting (within
        ``connect``), sending the file and receiving the whole answer end within the larger plus
        1 s, however slowly a server sends. Raise it for large files over slow links.
    :param rate_limit_per_minute: the API key's limit (overrides the extra; ``None``: none).
    :param max_retries: retries after the first attempt.
    :param retry_min_wait: first backoff wait in seconds; it doubles each retry, with jitter.
    :param retry_max_wait: longest backoff wait in seconds.
    :param retry_after_max: longest ``Retry-After`` honoured, in seconds.
    :param retry_on_500: retry HTTP 500 as well as 429 and 502/503/504.
    :param retry_integrity_errors: upload again after an untrustworthy answer (each upload
        creates a version).
    :param check_content: the magic bytes must agree with the file extension.
    :param allow_empty: accept 0-byte files.
    :param max_file_size: refuse larger files (bytes) before sending them; ``None``: no limit.
    :param max_connections: size of the HTTP connection pool (and the most requests in flight).
    :param max_rate_limit_wait: seconds of pauses on 429s before one counts as a failure.
    :param unknown: refused: a setting that is not a hook argument (a fact of the connection, say).
    :raises CapillaryConfigError: an argument has an unknown name.
    """

    conn_name_attr = "capillary_conn_id"
    default_conn_name = "capillary_default"
    conn_type = "capillary"
    hook_name = "Capillary File Service"

    #: Waits between attempts and for the rate limiter, on the monotonic clock (tests replace both).
    _sleep: Callable[[float], None] = staticmethod(time.sleep)
    _clock: Callable[[], float] = staticmethod(time.monotonic)
    #: The current time, for ``Retry-After`` dates (replaced in tests).
    _now: Callable[[], datetime] = staticmethod(lambda: datetime.now(timezone.utc))

    def __init__(
        self,
        capillary_conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        rate_limit_per_minute: float | None = None,
        max_retries: int | None = DEFAULTS["max_retries"],
        retry_min_wait: float | None = DEFAULTS["retry_min_wait"],
        retry_max_wait: float | None = DEFAULTS["retry_max_wait"],
        retry_after_max: float | None = DEFAULTS["retry_after_max"],
        retry_on_500: bool | None = DEFAULTS["retry_on_500"],
        retry_integrity_errors: bool | None = DEFAULTS["retry_integrity_errors"],
        check_content: bool | None = DEFAULTS["check_content"],
        allow_empty: bool | None = DEFAULTS["allow_empty"],
        max_file_size: int | None = DEFAULTS["max_file_size"],
        max_connections: int | None = DEFAULTS["max_connections"],
        max_rate_limit_wait: float | None = DEFAULTS["max_rate_limit_wait"],
        **unknown: Any,
    ) -> None:
        # Every keyword but the connection id is a setting: resolved, validated and coerced with
        # the connection in _config (None: not given).
        given = {name: value for name, value in locals().items() if name in SETTINGS}
        super().__init__()
        if unknown:
            raise CapillaryConfigError(
                f"CapillaryFileHook got unknown setting(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(SETTINGS))}",
                conn_id=capillary_conn_id,
            )
        self.capillary_conn_id = capillary_conn_id
        self._overrides: dict[str, Any] = given
        self._lock = threading.Lock()
        self._client: Client | None = None

    # -- what is built on first use ----------------------------------------------------------

    @property
    def config(self) -> CapillaryConnectionConfig:
        """The resolved connection and task policy (read once; :class:`CapillaryConfigError` if wrong)."""
        return self._ensure_client().config

    @property
    def session(self) -> requests.Session:
        """The hook's one HTTP session (connection pool shared by all threads)."""
        return self._ensure_client().session

    @property
    def auth(self) -> CapillaryAuth:
        """The hook's one auth object (Basic header, or the shared OAuth token cache)."""
        return self._ensure_client().auth

    @property
    def rate_limit_stats(self) -> RateLimitStats:
        """What the rate limiter did so far: 429s absorbed, time paused and waited, current rate."""
        return self._ensure_client().limiter.stats

    def _ensure_client(self) -> Client:
        """Build the configuration, session and auth object once (under the lock), then reuse them."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = build_client(
                    self.get_connection, self.capillary_conn_id, self._overrides,
                    clock=lambda: self._clock(), sleep=lambda seconds: self._sleep(seconds),
                )  # fmt: skip
            return self._client

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the connection form fields for Airflow 3.1 (3.2+ reads ``conn-fields`` instead).

        :return: field name -> wtforms field, derived from ``get_provider_info()``.
        """
        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the form's hidden fields, labels and placeholders for Airflow 3.1.

        :return: ``hidden_fields``, ``relabeling`` and ``placeholders`` from ``get_provider_info()``.
        """
        return ui_field_behaviour()

    def get_conn(self) -> requests.Session:
        """Return the hook's session (Airflow's generic hook interface)."""
        return self.session

    # -- public API --------------------------------------------------------------------------

    def prepare_upload(
        self,
        source: UploadSource,
        *,
        file_name: str | None = None,
        namespace: str | None = None,
        content_type: str | None = None,
    ) -> PreparedUpload:
        """Validate an upload without any network call.

        Checks the namespace, the source (exists, regular, readable), the file name, the size
        (``allow_empty``, ``max_file_size``) and the magic bytes (``check_content``).

        :param source: a local path, ``ObjectStoragePath``, bytes or binary file object.
        :param file_name: the name in Capillary (default: the source's base name; required
            for bytes and nameless streams).
        :param namespace: the namespace (default: the connection's).
        :param content_type: the content type to send (default: from the extension).
        :return: the prepared upload.
        :raises CapillaryInvalidInputError: an input is wrong (message names file, namespace
            and connection).
        """
        return prepare_upload(
            self.config, source, file_name=file_name, namespace=namespace, content_type=content_type
        )

    def upload(self, prepared: PreparedUpload) -> UploadedFile:
        """Send a prepared upload, retrying as configured, and check Capillary's answer.

        A retried upload is sent again in full from the start of the source. An answer that
        fails the integrity checks (``status`` not "true", ``code`` not 200, malformed, larger
        than 1 MiB or incomplete JSON, a stored ``fileSize`` different from the bytes sent) is
        retried too when ``retry_integrity_errors`` is on (the default); every such re-upload
        creates a new version of the file in Capillary, so a file may end with more than one.

        :param prepared: from :meth:`prepare_upload` or :meth:`create_placeholder`.
        :return: the stored file (with the size and sha256 of what was sent).
        :raises CapillaryAuthError: credentials refused (HTTP 401/403 or the token endpoint).
        :raises CapillaryRequestRejectedError: another 4xx, or a redirect off the service's origin.
        :raises CapillaryServiceUnavailableError: unreachable, too slow, or 429/5xx after every retry.
        :raises CapillaryIntegrityError: the answer failed the integrity checks (after retries).
        """
        client = self._ensure_client()
        cfg = client.config
        what = f"uploading {prepared.file_name!r} to namespace {prepared.namespace!r}"
        what += f" (connection {cfg.conn_id!r})"
        started = time.monotonic()
        attempts = 0
        retrying = build_retrying(
            cfg, before_sleep=lambda state: self._log_retry(state, what), sleep=self._sleep, now=self._now
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    result = self._upload_once(client, prepared)
        except (ServiceFailure, CapillaryError, requests.RequestException) as exc:
            raise given_up(
                exc,
                what=what,
                url=prepared.url,
                attempts=attempts,
                secrets=self._secrets(client),
                conn_id=cfg.conn_id,
                file_name=prepared.file_name,
                namespace=prepared.namespace,
            ) from None
        # DEBUG: a catalogue logs its progress lines instead; one line per file through Airflow's
        # logging stack (and its masker) would cost more CPU than the rest of the upload's bookkeeping.
        self.log.debug(
            "uploaded %s to namespace %s as version %d (%d bytes, sha256 %s) in %.2fs",
            result.name,
            result.namespace,
            result.version,
            result.sent_size,
            result.sha256,
            time.monotonic() - started,
        )
        if result.secure_url_refused:
            self.log.warning(
                "the secureFilePath of %s is kept but will not be fetched: %s",
                result.name,
                result.secure_url_refused,
            )
        report_upload(self, prepared, result, base_url=cfg.base_url)
        return result

    def upload_file(
        self,
        source: UploadSource,
        *,
        file_name: str | None = None,
        namespace: str | None = None,
        content_type: str | None = None,
    ) -> UploadedFile:
        """Validate and upload one image (:meth:`prepare_upload` then :meth:`upload`).

        :param source: a local path, ``ObjectStoragePath``, bytes or binary file object.
        :param file_name: the name in Capillary (default: the source's base name).
        :param namespace: the namespace (default: the connection's).
        :param content_type: the content type (default: from the extension).
        :return: the stored file.
        :raises CapillaryError: see :meth:`prepare_upload` and :meth:`upload`.
        """
        prepared = self.prepare_upload(
            source, file_name=file_name, namespace=namespace, content_type=content_type
        )
        return self.upload(prepared)

    def create_placeholder(self, file_name: str, *, namespace: str | None = None) -> UploadedFile:
        """Create a placeholder (the documented POST without a file).

        The stored size is not checked: the service's answer for a placeholder is not documented.

        :param file_name: the name in Capillary (with an image extension).
        :param namespace: the namespace (default: the connection's).
        :return: the placeholder's record.
        :raises CapillaryError: as :meth:`upload`.
        """
        return self.upload(prepare_placeholder(self.config, file_name, namespace))

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection without side effects (no upload, no placeholder).

        OAuth: a token is generated. Then an authenticated ``GET`` of the namespace URL (or
        the ``test_path`` extra) probes the file service. Capillary documents no read
        endpoint, so the verdict is an inference: 401/403 means "credentials refused", a
        connection error or timeout "cannot reach", any other answer (404/405 included) "ok".

        :return: ``(ok, message)``; the message starts with ``ok``, ``inconclusive``,
            ``credentials refused``, ``cannot reach``, ``service unavailable`` or
            ``invalid configuration`` (a connection that is not defined, or a wrong field).
        """
        try:
            client = self._ensure_client()
            cfg = client.config
            url = cfg.url(cfg.test_path or v.upload_path(cfg.namespace, "").rstrip("/"))
            auth = client.auth.for_request()  # OAuth: a token is generated
            answer = exchange(
                client.session, cfg.timeout, "GET", url, auth=auth, limiter=client.limiter,
                follow_redirects=False, limit=0,
            )  # fmt: skip
            return probe_verdict(url, cfg.auth_type, answer.status_code)
        except Exception as exc:
            base_url = self._client.config.base_url if self._client is not None else self.capillary_conn_id
            return False, probe_failure(exc, base_url, self._redact)

    def close(self) -> None:
        """Close the session's pooled connections (a later call reads the connection again)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.session.close()

    # -- one attempt -------------------------------------------------------------------------

    def _upload_once(self, client: Client, prepared: PreparedUpload) -> UploadedFile:
        """Send the upload once and judge the answer; an OAuth 401 gets one resend with a new token."""
        auth = client.auth.for_request()  # an OAuth token is fetched now, before the upload's turn
        answer, body = self._post_upload(client, prepared, auth)
        if answer.status_code == 401 and isinstance(auth, TokenAuth):
            client.auth.invalidate(auth.token)  # revoked before its end: fetch another, send once more
            answer, body = self._post_upload(client, prepared, client.auth.for_request())
        if not 200 <= answer.status_code < 300:
            raise failure(answer, conn_id=client.config.conn_id, secrets=self._secrets(client))
        return check_upload_answer(
            answer,
            expected_size=prepared.size,
            sent_size=body.content_sent if body is not None else 0,
            sha256=body.sha256 if body is not None else _EMPTY_SHA256,
            placeholder=prepared.placeholder,
            server_timezone=client.config.server_timezone,
            storage=client.storage,
            secrets=self._secrets(client),
        )

    def _post_upload(
        self, client: Client, prepared: PreparedUpload, auth: AuthBase
    ) -> tuple[Answer, UploadBody | None]:
        """POST a new body (``None`` for a placeholder) and read the answer."""
        cfg = client.config
        body, headers = upload_body(prepared, encoding=cfg.upload_encoding, field=cfg.file_field)
        data: UploadBody | bytes = body if body is not None and len(body) else b""  # b"": not chunked
        if body is not None and 0 < len(body) <= SEND_BLOCK_BYTES:
            # One block either way: as bytes, urllib3 sends it without its streaming loop.
            data = body.read(len(body))
        try:
            answer = exchange(
                client.session, cfg.timeout, "POST", prepared.url, auth=auth, limiter=client.limiter,
                data=data, headers=headers,
            )  # fmt: skip
        finally:
            if body is not None:
                body.close()
        return answer, body

    # -- helpers -----------------------------------------------------------------------------

    def _secrets(self, client: Client) -> tuple[str, ...]:
        return (*client.proxy_secrets, *client.auth.secrets())

    def _redact(self, text: str) -> str:
        client = self._client
        return redact_text(text, self._secrets(client) if client is not None else ())

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, requests.RequestException) else str(exc)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        self.log.warning(
            "attempt %d of %d failed: %s, retrying in %.1fs",
            state.attempt_number,
            self.config.max_retries + 1,
            self._redact(f"{what}: {reason}"),
            wait,
        )
