"""Reading Capillary's answers: what a failed status means, and whether a 200 can be trusted.

Pure functions of a :class:`requests.Response` (plus what was sent), used by the hook's one
request function. Every text taken from a response is redacted before it reaches a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import requests

from airflow_capillary._redact import redact_body, redact_text, register_url_credentials
from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryIntegrityError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks._retry import TransientHTTPError, is_retryable, parse_retry_after
from airflow_capillary.models import UploadedFile


def capillary_message(body: Any) -> str:
    """Return Capillary's own error text from a parsed JSON body, redacted.

    :param body: the parsed body (anything; non-dicts give ``""``).
    :return: ``errors[].message`` (with codes) joined by ``; ``, else ``message``, else ``""``.
    """
    if not isinstance(body, dict):
        return ""
    messages = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict) and error.get("message"):
                code = error.get("code")
                text = str(error["message"])
                messages.append(f"{text} (code {code})" if code is not None else text)
    if not messages and isinstance(body.get("message"), str):
        messages.append(body["message"])
    return redact_text("; ".join(messages))


def said(response: requests.Response, secrets: Iterable[str] = ()) -> str:
    """Return ``", Capillary said: ..."`` for a JSON answer carrying a message, else ``""``.

    :param response: the answer.
    :param secrets: values to mask.
    :return: the suffix for an error message.
    """
    try:
        text = capillary_message(response.json())
    except ValueError:
        return ""
    return f", Capillary said: {redact_text(text, secrets)}" if text else ""


def failure(
    response: requests.Response,
    *,
    what: str,
    conn_id: str,
    retry_on_500: bool,
    secrets: Iterable[str] = (),
) -> Exception:
    """Map a non-2xx answer to the exception to raise.

    :param response: the answer.
    :param what: what was being done, e.g. ``uploading 'a.png' to namespace 'rewards' (...)``.
    :param conn_id: the connection id.
    :param retry_on_500: HTTP 500 counts as transient.
    :param secrets: values to mask in the message and body.
    :return: :class:`TransientHTTPError` (429/502/503/504, 500 if configured; retried),
        :class:`CapillaryAuthError` (401/403), :class:`CapillaryServiceUnavailableError`
        (other 5xx), else :class:`CapillaryRequestRejectedError`.
    """
    secrets = tuple(secrets)
    status = response.status_code
    body = redact_body(response.text, secrets)
    message = f"{what}: HTTP {status}{said(response, secrets)}"
    if is_retryable(response, retry_on_500=retry_on_500):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return TransientHTTPError(message, status_code=status, retry_after=retry_after, body=body)
    cls: type[CapillaryError]
    if status in (401, 403):
        cls = CapillaryAuthError
    elif status >= 500:
        cls = CapillaryServiceUnavailableError
    else:
        cls = CapillaryRequestRejectedError
    return cls(message, status_code=status, body=body, conn_id=conn_id)


def check_upload_answer(
    response: requests.Response,
    *,
    what: str,
    expected_size: int,
    sent_size: int,
    sha256: str,
    placeholder: bool,
    server_timezone: str,
    secrets: Iterable[str] = (),
) -> UploadedFile:
    """Check a 2xx answer of the upload endpoint and build the result.

    :param response: the answer.
    :param what: what was being done (for messages).
    :param expected_size: the bytes the upload was to send.
    :param sent_size: the bytes actually read from the body before the answer came.
    :param sha256: hex sha256 of those bytes.
    :param placeholder: a placeholder was requested (the stored size is then not checked,
        Capillary does not document it).
    :param server_timezone: zone of ``last_modified``.
    :param secrets: values to mask.
    :return: the stored file.
    :raises CapillaryIntegrityError: the body is not JSON or not an object, ``status`` is not
        "true", ``code`` is not 200, a field is missing or mistyped, the answer came before the
        whole file was sent, or ``fileSize`` differs from the bytes sent.
    """
    secrets = tuple(secrets)

    def bad(problem: str) -> CapillaryIntegrityError:
        body = redact_body(response.text, secrets)
        return CapillaryIntegrityError(f"{what}: {problem}", status_code=response.status_code, body=body)

    if sent_size != expected_size:
        raise bad(f"Capillary answered after reading {sent_size} of {expected_size} bytes")
    try:
        payload = response.json()
    except ValueError:
        raise bad(f"HTTP {response.status_code} with a body that is not JSON") from None
    if not isinstance(payload, dict):
        raise bad("the answer is not a JSON object")
    if str(payload.get("status")).strip().lower() != "true":
        raise bad(f"Capillary answered status {payload.get('status')!r}{said(response, secrets)}")
    if str(payload.get("code")).strip() != "200":
        raise bad(f"Capillary answered code {payload.get('code')!r}{said(response, secrets)}")
    register_url_credentials(payload.get("secureFilePath"))
    try:
        result = UploadedFile.from_response(
            payload, server_timezone=server_timezone, sent_size=sent_size, sha256=sha256
        )
    except CapillaryIntegrityError as exc:
        raise bad(exc.message) from None
    if not placeholder and result.file_size != sent_size:
        raise bad(
            f"Capillary stored {result.file_size} bytes but {sent_size} were sent "
            "(it kept a placeholder or truncated the data)"
        )
    return result


def given_up(
    exc: BaseException,
    *,
    what: str,
    url: str,
    attempts: int,
    secrets: Iterable[str],
    conn_id: str,
    file_name: str | None = None,
    namespace: str | None = None,
) -> CapillaryError:
    """Turn the error that ended a call into the provider exception to raise.

    :param exc: the last error: :class:`TransientHTTPError` (429/5xx after every retry ->
        :class:`CapillaryServiceUnavailableError`), a :class:`CapillaryError` (same type,
        with the identifiers filled in), or a ``requests`` transport error (->
        :class:`CapillaryServiceUnavailableError`, "cannot reach").
    :param what: what was being done.
    :param url: the request URL (its host is named for transport errors).
    :param attempts: how many attempts were made.
    :param secrets: values to mask.
    :param conn_id: the connection id.
    :param file_name: the file concerned, if any.
    :param namespace: the namespace concerned, if any.
    :return: the exception.
    """
    ids: dict[str, Any] = {"conn_id": conn_id, "file_name": file_name, "namespace": namespace}
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    if isinstance(exc, (TransientHTTPError, CapillaryError)):
        # Errors of the token endpoint do not name the file yet.
        text = exc.message if isinstance(exc, CapillaryError) else str(exc)
        message = f"{text}{tries}" if text.startswith(what) else f"{what}: {text}{tries}"
        cls = CapillaryServiceUnavailableError if isinstance(exc, TransientHTTPError) else type(exc)
        return cls(message, status_code=exc.status_code, body=exc.body, **ids)
    reason = redact_text(f"{type(exc).__name__}: {exc}", secrets)
    return CapillaryServiceUnavailableError(
        f"{what}: cannot reach {urlsplit(url).netloc}{tries}: {reason}", **ids
    )


def probe_verdict(url: str, auth_type: str, status: int) -> tuple[bool, str]:
    """Judge the answer to ``test_connection``'s authenticated, non-mutating probe.

    Capillary documents no read endpoint, so this is an inference: 401/403 means the
    credentials were refused, 5xx that the service is unavailable, a redirect that nothing can
    be concluded (it may come before authentication), anything else (404 and 405 included: the
    request got past authentication) that the connection works.

    :param url: the probed URL.
    :param auth_type: ``basic`` or ``oauth``.
    :param status: the HTTP status of the answer.
    :return: ``(ok, message)``.
    """
    if status in (401, 403):
        return False, f"credentials refused: {url} answered HTTP {status} for {auth_type} auth"
    if status >= 500:
        return False, f"service unavailable: {url} answered HTTP {status}"
    if 300 <= status < 400:
        return False, (
            f"inconclusive: {url} answered a redirect (HTTP {status}) before proving the credentials; "
            "set the connection's test_path extra to an authenticated path"
        )
    how = "token generated, " if auth_type == "oauth" else ""
    return True, f"ok: {how}{url} answered HTTP {status} to {auth_type} credentials"


def probe_failure(exc: BaseException, base_url: str, redact: Callable[[str], str]) -> str:
    """Describe why ``test_connection`` could not get an answer.

    :param exc: what was raised while resolving the connection, fetching a token or probing.
    :param base_url: the file-service URL (or the connection id when it could not be resolved).
    :param redact: masks credentials in the text.
    :return: a message starting with ``invalid configuration``, ``credentials refused``,
        ``service unavailable`` or ``cannot reach`` (else the exception type).
    """
    if isinstance(exc, CapillaryConfigError):
        return f"invalid configuration: {exc}"
    if isinstance(exc, CapillaryAuthError):
        return f"credentials refused: {redact(str(exc))}"
    if isinstance(exc, TransientHTTPError):
        return f"service unavailable: {exc}"
    if isinstance(exc, requests.RequestException):
        return f"cannot reach {base_url}: {redact(str(exc))}"
    return f"{type(exc).__name__}: {redact(str(exc))}"
