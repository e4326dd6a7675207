"""Reading Capillary's answers: a bounded read, what a failed status means, whether a 200 holds.

:meth:`Answer.read` reads an answer as a stream and stops at :data:`MAX_ANSWER_BYTES` (a real
answer is about 1.5 KB; a hostile one may be endless). Everything else is a pure function of the
:class:`Answer` (plus what was sent). Every text taken from an answer is redacted before it
reaches a message, and no message says what was being done: the hook adds that once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

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
from airflow_capillary.hooks._retry import ServiceFailure, is_service_failure
from airflow_capillary.models import UploadedFile
from airflow_capillary.verification.storage import OriginPolicy, origin_of

__all__ = [
    "MAX_ANSWER_BYTES",
    "Answer",
    "capillary_message",
    "check_upload_answer",
    "failure",
    "given_up",
    "probe_failure",
    "probe_verdict",
]

#: Most bytes of an answer read (upload, token and error answers alike); the rest is never read.
MAX_ANSWER_BYTES = 1024 * 1024

_READ_CHUNK = 64 * 1024

#: What :meth:`Answer.json` returns for a body that is not JSON.
NOT_JSON: Any = object()


@dataclasses.dataclass(frozen=True)
class Answer:
    """An HTTP answer, its body read up to a limit.

    :param status_code: the HTTP status.
    :param headers: the answer's headers (case-insensitive).
    :param body: the body, at most the limit it was read with.
    :param complete: ``False`` when the body went on past the limit (the rest was not read).
    :param url: the URL that answered.
    """

    status_code: int
    headers: Mapping[str, str] = dataclasses.field(repr=False)
    body: bytes = dataclasses.field(repr=False)
    complete: bool = True
    url: str = ""

    @classmethod
    def read(cls, response: requests.Response, limit: int = MAX_ANSWER_BYTES) -> Answer:
        """Read ``response``'s body as a stream, stopping after ``limit`` bytes.

        :param response: an answer requested with ``stream=True``; the caller closes it.
        :param limit: the most bytes to keep (0: read nothing).
        :return: the answer.
        """
        chunks: list[bytes] = []
        size = 0
        complete = True
        if limit > 0:
            for chunk in response.iter_content(_READ_CHUNK):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    complete = False
                    break
        body = b"".join(chunks)
        return cls(response.status_code, response.headers, body[:limit], complete, response.url or "")

    def json(self) -> Any:
        """Parse the body as JSON.

        :return: the value, or :data:`NOT_JSON` for any body that does not decode (not UTF-8,
            not JSON, nested too deeply for the parser, cut at the limit).
        """
        if not self.complete:
            return NOT_JSON
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return NOT_JSON

    def redacted_body(self, secrets: Iterable[str] = ()) -> str | None:
        """The body for an exception: a bounded prefix, redacted.

        :param secrets: values to mask as well.
        :return: the text.
        """
        return redact_body(self.body, secrets)

    def redirect_origin(self) -> str | None:
        """Where a redirect points, as ``scheme://host[:port]`` only (never the path or query).

        :return: the origin, ``"an unreadable URL"``, or ``None`` for no ``Location``.
        """
        location = self.headers.get("Location")
        if not location:
            return None
        try:
            return origin_of(urljoin(self.url, location))
        except ValueError:
            return "an unreadable URL"


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


def said(answer: Answer, secrets: Iterable[str] = ()) -> str:
    """Return ``", Capillary said: ..."`` for a JSON answer carrying a message, else ``""``.

    :param answer: the answer.
    :param secrets: values to mask.
    :return: the suffix for an error message.
    """
    text = capillary_message(answer.json())
    return f", Capillary said: {redact_text(text, secrets)}" if text else ""


def failure(answer: Answer, *, conn_id: str, secrets: Iterable[str] = ()) -> Exception:
    """Map a non-2xx answer to the exception to raise (whether to retry is not decided here).

    :param answer: the answer.
    :param conn_id: the connection id.
    :param secrets: values to mask in the message and body.
    :return: :class:`ServiceFailure` (429/5xx), :class:`CapillaryAuthError` (401/403), else
        :class:`CapillaryRequestRejectedError` (a redirect names where it pointed: it was not
        followed because it left the service's origin).
    """
    secrets = tuple(secrets)
    status = answer.status_code
    body = answer.redacted_body(secrets)
    message = f"HTTP {status}{said(answer, secrets)}"
    if is_service_failure(status):
        retry_after = answer.headers.get("Retry-After")
        return ServiceFailure(message, status_code=status, retry_after=retry_after, body=body)
    if status in (401, 403):
        return CapillaryAuthError(message, status_code=status, body=body, conn_id=conn_id)
    origin = answer.redirect_origin() if 300 <= status < 400 else None
    if origin is not None:
        message = f"HTTP {status}, a redirect to {origin}: not followed, it leaves the service's origin"
    return CapillaryRequestRejectedError(message, status_code=status, body=body, conn_id=conn_id)


def check_upload_answer(
    answer: Answer,
    *,
    expected_size: int,
    sent_size: int,
    sha256: str,
    placeholder: bool,
    server_timezone: str,
    storage: OriginPolicy,
    secrets: Iterable[str] = (),
) -> UploadedFile:
    """Check a 2xx answer of the upload endpoint and build the result.

    :param answer: the answer.
    :param expected_size: the bytes the upload was to send.
    :param sent_size: the bytes actually read from the body before the answer came.
    :param sha256: hex sha256 of those bytes.
    :param placeholder: a placeholder was requested (the stored size is then not checked,
        Capillary does not document it).
    :param server_timezone: zone of ``last_modified``.
    :param storage: the storage origin policy: a ``secureFilePath`` outside it is kept, flagged
        in ``secure_url_refused``.
    :param secrets: values to mask.
    :return: the stored file.
    :raises CapillaryIntegrityError: the body is too large, not JSON or not an object,
        ``status`` is not "true", ``code`` is not 200, a field is missing or mistyped, the answer
        came before the whole file was sent, or ``fileSize`` differs from the bytes sent.
    """
    secrets = tuple(secrets)

    def bad(problem: str) -> CapillaryIntegrityError:
        return CapillaryIntegrityError(
            problem, status_code=answer.status_code, body=answer.redacted_body(secrets)
        )

    if sent_size != expected_size:
        raise bad(f"Capillary answered after reading {sent_size} of {expected_size} bytes")
    if not answer.complete:
        raise bad(
            f"HTTP {answer.status_code} with a body larger than {MAX_ANSWER_BYTES} bytes (not read further)"
        )
    payload = answer.json()
    if payload is NOT_JSON:
        raise bad(f"HTTP {answer.status_code} with a body that is not JSON")
    if not isinstance(payload, dict):
        raise bad("the answer is not a JSON object")
    if str(payload.get("status")).strip().lower() != "true":
        raise bad(f"Capillary answered status {payload.get('status')!r}{said(answer, secrets)}")
    if str(payload.get("code")).strip() != "200":
        raise bad(f"Capillary answered code {payload.get('code')!r}{said(answer, secrets)}")
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
    refused = storage.refusal(result.secure_file_path) if result.secure_file_path else None
    return dataclasses.replace(result, secure_url_refused=refused) if refused else result


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

    The message is built here, once: what was being done, the error, the attempts made.

    :param exc: the last error: :class:`ServiceFailure` (429/5xx ->
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
    if isinstance(exc, ServiceFailure):
        return CapillaryServiceUnavailableError(
            f"{what}: {exc.message}{tries}", status_code=exc.status_code, body=exc.body, **ids
        )
    if isinstance(exc, CapillaryError):
        return type(exc)(f"{what}: {exc.message}{tries}", status_code=exc.status_code, body=exc.body, **ids)
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
    if isinstance(exc, ServiceFailure):
        return f"service unavailable: {exc}"
    if isinstance(exc, requests.RequestException):
        return f"cannot reach {base_url}: {redact(str(exc))}"
    return f"{type(exc).__name__}: {redact(str(exc))}"
