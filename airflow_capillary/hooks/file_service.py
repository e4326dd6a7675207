"""Hook for Capillary's file service: upload images, create placeholders, test the connection.

One upload, as a reader follows it: :meth:`CapillaryFileHook.upload` is one tenacity loop
(``for attempt in Retrying(...)``); each attempt builds a fresh body
(:mod:`~airflow_capillary.hooks._body`), sends it through :func:`exchange` (the one request
function: deadline, redirects within the origin only, bounded read of the answer) and judges the
answer (:mod:`~airflow_capillary.hooks._answer`). Configuration is resolved once
(:mod:`~airflow_capillary.hooks._config`), authentication lives in auth objects
(:mod:`~airflow_capillary.hooks._auth`). A hook is safe to share across threads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import requests
from airflow.exceptions import AirflowNotFoundException
from airflow.sdk import BaseHook
from requests.auth import AuthBase
from tenacity import RetryCallState

from airflow_capillary import _validation as v
from airflow_capillary._redact import redact_text, register_secret
from airflow_capillary.exceptions import (
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
)
from airflow_capillary.hooks._answer import (
    MAX_ANSWER_BYTES,
    Answer,
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
from airflow_capillary.hooks._retry import ServiceFailure, build_retrying
from airflow_capillary.hooks._session import attempt_deadline, attempt_seconds, build_session
from airflow_capillary.hooks._source import PreparedUpload, UploadSource, resolve_source
from airflow_capillary.models import UploadedFile
from airflow_capillary.verification.storage import OriginPolicy

__all__ = ["CapillaryFileHook", "PreparedUpload", "exchange"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def exchange(
    session: requests.Session,
    timeout: tuple[float, float],
    method: str,
    url: str,
    *,
    auth: AuthBase | None,
    follow_redirects: bool = True,
    limit: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> Answer:
    """Send one request and read its answer, the whole exchange bounded in time and size.

    Connecting, sending and receiving the whole answer must end within the larger timeout plus
    :data:`~airflow_capillary.hooks._session.ATTEMPT_MARGIN`; at most ``limit`` bytes of the
    answer are read. Redirects are followed within the origin only (see
    :class:`~airflow_capillary.hooks._session.CapillarySession`), and not at all without
    ``follow_redirects``.

    :param session: the hook's session.
    :param timeout: ``(connect, read)`` seconds.
    :param method: the HTTP method.
    :param url: the URL.
    :param auth: the auth object, or ``None``.
    :param follow_redirects: follow same-origin redirects.
    :param limit: most bytes of the answer to read.
    :param kwargs: more arguments of :meth:`requests.Session.request` (``data``, ``json``, ``headers``).
    :return: the answer.
    :raises requests.RequestException: no answer (``requests.Timeout`` once the deadline passed).
    """
    with attempt_deadline(attempt_seconds(timeout)) as deadline:
        try:
            with session.request(
                method,
                url,
                auth=auth,
                timeout=timeout,
                stream=True,
                allow_redirects=follow_redirects,
                **kwargs,
            ) as response:
                return Answer.read(response, limit)
        except Exception:
            if deadline.expired:  # whatever the shut-down socket raised, the cause is the deadline
                raise deadline.error() from None
            raise


class _Client(NamedTuple):
    """What a hook builds on first use, together, under its lock."""

    config: CapillaryConnectionConfig
    session: requests.Session
    auth: CapillaryAuth
    proxy_secrets: tuple[str, ...]
    storage: OriginPolicy


class CapillaryFileHook(BaseHook):
    """Talks to Capillary's file service through a ``capillary`` connection.

    Settings resolve in this order: hook argument, connection extra, default (see
    :class:`~airflow_capillary.hooks._config.CapillaryConnectionConfig`). No I/O happens in
    ``__init__``; the connection is read on first use.

    :param capillary_conn_id: the Airflow connection id.
    :param namespace: default namespace (overrides the ``namespace`` extra).
    :param timeout: seconds, or a ``(connect, read)`` pair (overrides the ``timeout`` extra). It
        bounds each request as a whole: connecting (within ``connect``), sending the file and
        receiving the whole answer must end within the larger of the two plus 1 s, however
        slowly a server sends; each wait for data is also bounded by ``read``. Raise it for
        large files over slow links.
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
    #: The current time, for ``Retry-After`` dates (replaced in tests).
    _now: Callable[[], datetime] = staticmethod(lambda: datetime.now(timezone.utc))

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
        self._lock = threading.Lock()
        self._client: _Client | None = None

    # -- what is built on first use ----------------------------------------------------------

    @property
    def config(self) -> CapillaryConnectionConfig:
        """The resolved connection (read once).

        :raises CapillaryConfigError: the connection is not defined, or a field is missing or wrong.
        """
        return self._ensure_client().config

    @property
    def session(self) -> requests.Session:
        """The hook's one HTTP session (connection pool shared by all threads)."""
        return self._ensure_client().session

    @property
    def auth(self) -> CapillaryAuth:
        """The hook's one auth object (Basic header, or the shared OAuth token cache)."""
        return self._ensure_client().auth

    def _ensure_client(self) -> _Client:
        """Build the configuration, session and auth object once (under the lock), then reuse them."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._build_client(self._read_config())
            return self._client

    def _read_config(self) -> CapillaryConnectionConfig:
        try:
            conn = self.get_connection(self.capillary_conn_id)
        except AirflowNotFoundException:
            raise CapillaryConfigError(
                f"connection {self.capillary_conn_id!r} is not defined (define it in the UI, with "
                f"'airflow connections add' or as AIRFLOW_CONN_{self.capillary_conn_id.upper()})",
                conn_id=self.capillary_conn_id,
            ) from None
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

    @staticmethod
    def _build_client(cfg: CapillaryConnectionConfig) -> _Client:
        session = build_session(cfg)
        auth: CapillaryAuth
        if cfg.auth_type == "oauth":

            def post_token(url: str, payload: dict[str, str]) -> Answer:
                return exchange(
                    session, cfg.timeout, "POST", url, auth=None, follow_redirects=False,
                    json=payload, headers=_JSON_HEADERS,
                )  # fmt: skip

            auth = CapillaryOAuth(
                key=cfg.login,
                secret=cfg.password,
                token_url=cfg.token_url,
                token_header=cfg.token_header,
                post=post_token,
            )
        else:
            auth = CapillaryBasicAuth(cfg.login, cfg.password, password_is_md5=cfg.password_is_md5)
        return _Client(cfg, session, auth, _proxy_secrets(cfg.proxies), OriginPolicy.from_config(cfg))

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
        where = f"namespace {prepared.namespace!r} (connection {cfg.conn_id!r})"
        what = f"uploading {prepared.file_name!r} to {where}"
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
        self.log.info(
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

        :return: ``(ok, message)``; the message starts with ``ok``, ``inconclusive``,
            ``credentials refused``, ``cannot reach``, ``service unavailable`` or
            ``invalid configuration`` (a connection that is not defined, or a wrong field).
        """
        try:
            client = self._ensure_client()
            cfg = client.config
            url = cfg.url(cfg.test_path or v.upload_path(cfg.namespace, "").rstrip("/"))
            if isinstance(client.auth, CapillaryOAuth):
                client.auth.token()
            answer = exchange(
                client.session, cfg.timeout, "GET", url, auth=client.auth, follow_redirects=False, limit=0
            )
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

    def _upload_once(self, client: _Client, prepared: PreparedUpload) -> UploadedFile:
        """Send the upload once and judge the answer; an OAuth 401 gets one resend with a new token."""
        token = client.auth.token() if isinstance(client.auth, CapillaryOAuth) else None
        answer, body = self._post_upload(client, prepared)
        if answer.status_code == 401 and isinstance(client.auth, CapillaryOAuth):
            client.auth.invalidate(token)  # revoked before its end: fetch another, send once more
            client.auth.token()
            answer, body = self._post_upload(client, prepared)
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

    def _post_upload(self, client: _Client, prepared: PreparedUpload) -> tuple[Answer, UploadBody | None]:
        """POST a new body (``None`` for a placeholder) and read the answer."""
        cfg = client.config
        body: UploadBody | None = None
        headers: dict[str, str] = {}
        if not prepared.placeholder:
            body, headers = build_body(
                prepared.opener,
                prepared.size,
                file_name=prepared.file_name,
                content_type=prepared.content_type,
                encoding=cfg.upload_encoding,
                field=cfg.file_field,
                label=prepared.source_label,
            )
        try:
            # An empty body goes as b"" (Content-Length: 0), not as a 0-length stream (chunked).
            data = body if body is not None and len(body) else b""
            answer = exchange(
                client.session,
                cfg.timeout,
                "POST",
                prepared.url,
                auth=client.auth,
                data=data,
                headers=headers,
            )
        finally:
            if body is not None:
                body.close()
        return answer, body

    # -- helpers -----------------------------------------------------------------------------

    def _secrets(self, client: _Client) -> tuple[str, ...]:
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


def _proxy_secrets(proxies: dict[str, str]) -> tuple[str, ...]:
    """The credentials in proxy URLs (``user:password``, the password, their Basic encoding), masked.

    :param proxies: the connection's proxies.
    :return: the values to redact from messages (the password is registered with the masker).
    """
    found: list[str] = []
    for proxy in proxies.values():
        try:
            parts = urlsplit(proxy)
        except ValueError:
            continue
        if parts.password:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            found += [
                userinfo,
                unquote(parts.password),
                parts.password,
                base64.b64encode(userinfo.encode()).decode(),
            ]
            register_secret(unquote(parts.password))
    return tuple(found)
