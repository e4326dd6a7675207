"""Hook for Capillary's file service: upload images, create placeholders, test the connection.

Configuration is resolved once (:mod:`~airflow_capillary.hooks._config`), authentication
lives in auth objects (:mod:`~airflow_capillary.hooks._auth`), and every request goes through
one private function, :meth:`CapillaryFileHook._request`, which owns retries, timeouts and
the checks of the answer. A hook is safe to share across threads.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, TypeVar

import requests
from airflow.sdk import BaseHook
from tenacity import RetryCallState

from airflow_capillary import _validation as v
from airflow_capillary._redact import redact_text
from airflow_capillary.exceptions import (
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
)
from airflow_capillary.hooks._answer import (
    check_upload_answer,
    failure,
    given_up,
    probe_failure,
    probe_verdict,
)
from airflow_capillary.hooks._auth import CapillaryAuth, CapillaryBasicAuth, CapillaryOAuth
from airflow_capillary.hooks._body import UploadBody, build_body
from airflow_capillary.hooks._config import SETTINGS, CapillaryConnectionConfig
from airflow_capillary.hooks._form import connection_form_widgets, ui_field_behaviour
from airflow_capillary.hooks._retry import TransientHTTPError, build_retrying
from airflow_capillary.hooks._session import build_session
from airflow_capillary.hooks._source import PreparedUpload, UploadSource, resolve_source
from airflow_capillary.models import UploadedFile

T = TypeVar("T")

__all__ = ["CapillaryFileHook", "PreparedUpload"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class CapillaryFileHook(BaseHook):
    """Talks to Capillary's file service through a ``capillary`` connection.

    Settings resolve in this order: hook argument, connection extra, default (see
    :class:`~airflow_capillary.hooks._config.CapillaryConnectionConfig`). No I/O happens in
    ``__init__``; the connection is read on first use.

    :param capillary_conn_id: the Airflow connection id.
    :param namespace: default namespace (overrides the ``namespace`` extra).
    :param timeout: seconds, or a ``(connect, read)`` pair (overrides the ``timeout`` extra).
    :param max_retries: retries after the first attempt (overrides the ``max_retries`` extra).
    :param max_connections: HTTP connection pool size (default 16).
    :param overrides: any other connection extra by name (e.g. ``retry_on_500=True``).
    :raises CapillaryConfigError: an override has an unknown name.
    """

    conn_name_attr = "capillary_conn_id"
    default_conn_name = "capillary_default"
    conn_type = "capillary"
    hook_name = "Capillary File Service"

    #: Called to wait between attempts (replaced in tests).
    _sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(
        self,
        capillary_conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        max_retries: int | None = None,
        max_connections: int | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(overrides) - SETTINGS)
        if unknown:
            raise CapillaryConfigError(
                f"CapillaryFileHook got unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(SETTINGS))}",
                conn_id=capillary_conn_id,
            )
        self.capillary_conn_id = capillary_conn_id
        self._overrides: dict[str, Any] = {
            "namespace": namespace,
            "timeout": timeout,
            "max_retries": max_retries,
            "max_connections": max_connections,
            **overrides,
        }
        self._lock = threading.RLock()

    @cached_property
    def config(self) -> CapillaryConnectionConfig:
        """The resolved connection (read once).

        :raises CapillaryConfigError: a field is missing or wrong.
        """
        conn = self.get_connection(self.capillary_conn_id)
        try:  # Airflow logs an unparsable extra and returns {}: every extra would silently default.
            json.loads(conn.extra or "{}")
        except json.JSONDecodeError as exc:  # the position only: the text may hold credentials
            raise CapillaryConfigError(
                f"connection {self.capillary_conn_id!r}: extra is not valid JSON ({exc.msg} at character "
                f"{exc.pos})",
                conn_id=self.capillary_conn_id,
            ) from None
        return CapillaryConnectionConfig.resolve(
            self.capillary_conn_id,
            host=conn.host,
            login=conn.login,
            password=conn.password,
            schema=conn.schema,
            port=conn.port,
            extra=conn.extra_dejson,
            overrides=self._overrides,
        )

    @cached_property
    def session(self) -> requests.Session:
        """The hook's one HTTP session (connection pool shared by all threads)."""
        with self._lock:
            if "session" not in self.__dict__:
                self.__dict__["session"] = build_session(self.config)
            return self.__dict__["session"]

    @cached_property
    def auth(self) -> CapillaryAuth:
        """The hook's one auth object (Basic header, or the shared OAuth token cache)."""
        with self._lock:
            if "auth" not in self.__dict__:
                cfg = self.config
                if cfg.auth_type == "oauth":
                    auth: CapillaryAuth = CapillaryOAuth(
                        key=cfg.login,
                        secret=cfg.password,
                        token_url=cfg.token_url,
                        token_header=cfg.token_header,
                        post=self.session.post,
                        timeout=cfg.timeout,
                    )
                else:
                    auth = CapillaryBasicAuth(cfg.login, cfg.password, password_is_md5=cfg.password_is_md5)
                self.__dict__["auth"] = auth
            return self.__dict__["auth"]

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
        """Return the hook's session (Airflow's generic hook interface).

        :return: the session.
        """
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

        Checks the namespace, the source (exists, regular, readable), the file name (a plain
        image file name), the size (``allow_empty``, ``max_file_size``) and, unless
        ``check_content`` is off, that the magic bytes agree with the extension.

        :param source: a local path, ``ObjectStoragePath``, bytes or binary file object.
        :param file_name: the name in Capillary (default: the source's base name; required
            for bytes and nameless streams).
        :param namespace: the namespace (default: the connection's).
        :param content_type: the content type to send (default: from the extension).
        :return: the prepared upload.
        :raises CapillaryInvalidInputError: an input is wrong (message names file, namespace
            and connection).
        """
        cfg = self.config
        ns = namespace or cfg.namespace
        with self._input_context(file_name, ns):
            v.validate_namespace(ns)
            src = resolve_source(source)
            name = file_name if file_name is not None else src.default_name
            if name is None:
                raise CapillaryInvalidInputError(f"file_name is required to upload {src.label}")
        with self._input_context(name, ns):
            v.validate_file_name(name)
            ctype = v.validate_content_type(content_type) if content_type else v.content_type_for(name)
            v.check_size(name, src.size, allow_empty=cfg.allow_empty, max_file_size=cfg.max_file_size)
            if cfg.check_content and src.size:
                v.check_content_matches(name, src.head())
        return PreparedUpload(
            file_name=name,
            namespace=ns,
            content_type=ctype,
            size=src.size,
            source_label=src.label,
            url=cfg.url(v.upload_path(ns, name)),
            opener=src.opener,
        )

    def upload(self, prepared: PreparedUpload) -> UploadedFile:
        """Send a prepared upload, retrying as configured, and check Capillary's answer.

        A retried upload is sent again in full from the start of the source. An answer that
        fails the integrity checks (``status`` not "true", ``code`` not 200, malformed or
        incomplete JSON, a stored ``fileSize`` different from the bytes sent) is retried too
        when ``retry_integrity_errors`` is on (the default); every such re-upload creates a
        new version of the file in Capillary, so a file may end with more than one version.

        :param prepared: from :meth:`prepare_upload` or :meth:`create_placeholder`.
        :return: the stored file (with the size and sha256 of what was sent).
        :raises CapillaryAuthError: credentials refused (HTTP 401/403 or the token endpoint).
        :raises CapillaryRequestRejectedError: another 4xx.
        :raises CapillaryServiceUnavailableError: unreachable or 429/5xx after every retry.
        :raises CapillaryIntegrityError: the answer failed the integrity checks (after retries).
        """
        what = self._describe("uploading", prepared.file_name, prepared.namespace)
        started = time.monotonic()
        result = self._request(
            "POST",
            prepared.url,
            what=what,
            body=lambda: self._build_body(prepared),
            check=lambda response, body: check_upload_answer(
                response,
                what=what,
                expected_size=prepared.size,
                sent_size=body.content_sent if body is not None else 0,
                sha256=body.sha256 if body is not None else _EMPTY_SHA256,
                placeholder=prepared.placeholder,
                server_timezone=self.config.server_timezone,
                secrets=self.auth.secrets(),
            ),
            context={"file_name": prepared.file_name, "namespace": prepared.namespace},
        )
        self.log.info(
            "uploaded %s to namespace %s as version %d (%d bytes, sha256 %s) in %.2fs",
            result.name,
            result.namespace,
            result.version,
            result.sent_size,
            result.sha256,
            time.monotonic() - started,
        )
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
        ns = namespace or self.config.namespace
        with self._input_context(file_name, ns):
            v.validate_namespace(ns)
            v.validate_file_name(file_name)
        prepared = PreparedUpload(
            file_name=file_name,
            namespace=ns,
            content_type=v.content_type_for(file_name),
            size=0,
            source_label="<placeholder>",
            url=self.config.url(v.upload_path(ns, file_name)),
            placeholder=True,
        )
        return self.upload(prepared)

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection without side effects (no upload, no placeholder).

        OAuth: a token is generated. Then an authenticated ``GET`` of the namespace URL (or
        the ``test_path`` extra) probes the file service. Capillary documents no read
        endpoint, so the verdict is an inference: 401/403 means "credentials refused", a
        connection error or timeout "cannot reach", any other answer (404/405 included) "ok".

        :return: ``(ok, message)``; the message starts with ``ok``, ``credentials refused``,
            ``cannot reach``, ``service unavailable`` or ``invalid configuration``.
        """
        try:
            cfg = self.config
            url = cfg.url(cfg.test_path or v.upload_path(cfg.namespace, "").rstrip("/"))
            if isinstance(self.auth, CapillaryOAuth):
                self.auth.token()
            with self.session.get(
                url, auth=self.auth, timeout=cfg.timeout, allow_redirects=False
            ) as response:
                return probe_verdict(url, cfg.auth_type, response.status_code)
        except Exception as exc:
            base_url = self.config.base_url if "config" in self.__dict__ else self.capillary_conn_id
            return False, probe_failure(exc, base_url, self._redact)

    def close(self) -> None:
        """Close the session's pooled connections (a later call opens a new session)."""
        with self._lock:
            session = self.__dict__.pop("session", None)
            self.__dict__.pop("auth", None)
        if session is not None:
            session.close()

    # -- the one request function ------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Callable[[], tuple[UploadBody | None, dict[str, str]]],
        check: Callable[[requests.Response, UploadBody | None], T],
        context: dict[str, str],
    ) -> T:
        """Send a request with retries, and map failures to the provider's exceptions.

        Each attempt builds a new body (``body()``), so nothing sent is ever a half-read
        stream. An OAuth 401 drops the token and resends once with a fresh one.
        """
        cfg = self.config
        total = cfg.max_retries + 1
        retrying = build_retrying(
            cfg, before_sleep=lambda state: self._log_retry(state, total, what), sleep=self._sleep
        )
        try:
            return retrying(self._attempt, method, url, what, body, check)
        except (TransientHTTPError, CapillaryError, requests.RequestException) as exc:
            raise given_up(
                exc,
                what=what,
                url=url,
                attempts=retrying.statistics.get("attempt_number", 1),
                secrets=self.auth.secrets(),
                conn_id=cfg.conn_id,
                **context,
            ) from None

    def _attempt(
        self,
        method: str,
        url: str,
        what: str,
        body: Callable[[], tuple[UploadBody | None, dict[str, str]]],
        check: Callable[[requests.Response, UploadBody | None], T],
    ) -> T:
        response, data = self._send(method, url, body)
        if response.status_code == 401 and isinstance(self.auth, CapillaryOAuth):
            self.auth.invalidate(response.request.headers.get(self.auth.token_header))
            response.close()
            response, data = self._send(method, url, body)
        with response:
            if 200 <= response.status_code < 300:
                return check(response, data)
            raise failure(
                response,
                what=what,
                conn_id=self.config.conn_id,
                retry_on_500=self.config.retry_on_500,
                secrets=self.auth.secrets(),
            )

    def _send(
        self, method: str, url: str, body: Callable[[], tuple[UploadBody | None, dict[str, str]]]
    ) -> tuple[requests.Response, UploadBody | None]:
        data, headers = body()
        try:
            # An empty body goes as b"" (Content-Length: 0), not as a 0-length stream (chunked).
            response = self.session.request(
                method,
                url,
                data=data if data is not None and len(data) else b"",
                headers=headers,
                auth=self.auth,
                timeout=self.config.timeout,
            )
        except UnicodeError as exc:  # requests decodes a redirect's Location header as UTF-8
            raise requests.exceptions.InvalidURL(f"redirected to a non-UTF-8 Location: {exc}") from None
        finally:
            if data is not None:
                data.close()
        return response, data

    # -- helpers -----------------------------------------------------------------------------

    def _build_body(self, prepared: PreparedUpload) -> tuple[UploadBody | None, dict[str, str]]:
        """Build a new body for one attempt (``None`` for a placeholder) and its headers."""
        if prepared.placeholder:
            return None, {}
        return build_body(
            prepared.opener,
            prepared.size,
            file_name=prepared.file_name,
            content_type=prepared.content_type,
            encoding=self.config.upload_encoding,
            field=self.config.file_field,
            label=prepared.source_label,
        )

    def _describe(self, verb: str, file_name: str, namespace: str) -> str:
        return f"{verb} {file_name!r} to namespace {namespace!r} (connection {self.capillary_conn_id!r})"

    def _redact(self, text: str) -> str:
        secrets = self.auth.secrets() if "auth" in self.__dict__ else ()
        return redact_text(text, secrets)

    def _log_retry(self, state: RetryCallState, total: int, what: str) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, requests.RequestException) else str(exc)
        if not reason.startswith(what):
            reason = f"{what}: {reason}"
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        self.log.warning(
            "attempt %d of %d failed: %s, retrying in %.1fs",
            state.attempt_number,
            total,
            self._redact(reason),
            wait,
        )

    @contextmanager
    def _input_context(self, file_name: str | None, namespace: str | None) -> Iterator[None]:
        try:
            yield
        except CapillaryInvalidInputError as exc:
            raise CapillaryInvalidInputError(
                f"{exc.message} (file {file_name!r}, namespace {namespace!r}, "
                f"connection {self.capillary_conn_id!r})",
                conn_id=self.capillary_conn_id,
                file_name=file_name,
                namespace=namespace,
            ) from None
