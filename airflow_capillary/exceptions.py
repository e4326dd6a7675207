"""Exceptions raised by the Capillary provider.

Every failure is an :class:`CapillaryError` (an :class:`~airflow.exceptions.AirflowException`),
one subclass per category, so that callers branch on types and attributes, never on message
text. Every attribute that holds text from the service is already redacted: no credential,
token or pre-signed URL survives in an exception.
"""

from __future__ import annotations

from typing import NamedTuple

from airflow.exceptions import AirflowException


class CapillaryError(AirflowException):
    """Base class of every error raised by this provider.

    :param message: what went wrong, naming the input, file, namespace or connection.
    :param status_code: the HTTP status of the response that caused it, if any.
    :param body: the response body, redacted and truncated, if any.
    :param conn_id: the Airflow connection in use, if any.
    :param file_name: the name of the file in Capillary, if the error concerns one.
    :param namespace: the Capillary namespace, if the error concerns one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        conn_id: str | None = None,
        file_name: str | None = None,
        namespace: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Shadows AirflowException's class-level HTTP status (used by Airflow's own API server) with
        # the status Capillary answered; a task error never reaches that API as a response.
        self.status_code = status_code  # type: ignore[assignment]
        self.body = body
        self.conn_id = conn_id
        self.file_name = file_name
        self.namespace = namespace

    def __reduce__(self) -> tuple[object, ...]:
        # Keep keyword attributes through pickling (Airflow pickles task failures).
        return (
            _rebuild,
            (
                type(self),
                self.message,
                {
                    "status_code": self.status_code,
                    "body": self.body,
                    "conn_id": self.conn_id,
                    "file_name": self.file_name,
                    "namespace": self.namespace,
                },
            ),
        )


def _rebuild(cls: type[CapillaryError], message: str, kwargs: dict[str, object]) -> CapillaryError:
    return cls(message, **kwargs)  # type: ignore[arg-type]


class CapillaryConfigError(CapillaryError):
    """The Airflow connection or a hook/operator argument is misconfigured (names the field)."""


class CapillaryInvalidInputError(CapillaryError):
    """An input (file, name, namespace, source, argument) is invalid; raised before any network call."""


class CapillaryAuthError(CapillaryError):
    """Capillary refused the credentials (HTTP 401/403, or the OAuth token endpoint said no)."""


class CapillaryRequestRejectedError(CapillaryError):
    """Capillary rejected the request with a 4xx status that is not retried (400, 404, 413, ...)."""


class CapillaryServiceUnavailableError(CapillaryError):
    """Capillary could not be reached, or kept failing, after every retry.

    Connection errors, timeouts, 429 and 502/503/504 (500 when configured) are retried first.
    """


class CapillaryIntegrityError(CapillaryError):
    """Capillary's answer cannot be trusted.

    ``status`` "false", ``code`` not 200, a stored size that differs from what was sent, or a
    malformed or incomplete body.
    """


class CapillaryVerificationError(CapillaryIntegrityError):
    """A served file does not match its upload record (size, content type or sha256)."""


class CapillarySecureUrlExpiredError(CapillaryError):
    """A ``secure_file_path`` is expired or its signature was refused (HTTP 403 from the storage)."""


class FailedUpload(NamedTuple):
    """One file of a batch that did not upload.

    :param source: the source label (local path or URI).
    :param file_name: the name it was to have in Capillary.
    :param error: the exception type and its (redacted) message, e.g.
        ``"CapillaryServiceUnavailableError: ... after 5 attempts"``.
    """

    source: str
    file_name: str
    error: str


class CapillaryBatchError(CapillaryError):
    """Some files of a batch upload failed after every retry (the others were uploaded).

    :param message: the summary, listing each failed file and its cause.
    :param failures: every failed file, in source order.
    :param uploaded_count: how many files of the batch did upload.
    :param kwargs: the attributes of :class:`CapillaryError`.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: tuple[FailedUpload, ...] | list[FailedUpload] = (),
        uploaded_count: int = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.failures = tuple(FailedUpload(*failure) for failure in failures)
        self.uploaded_count = uploaded_count

    def __reduce__(self) -> tuple[object, ...]:
        kwargs = {
            "status_code": self.status_code,
            "body": self.body,
            "conn_id": self.conn_id,
            "file_name": self.file_name,
            "namespace": self.namespace,
            "failures": [tuple(failure) for failure in self.failures],
            "uploaded_count": self.uploaded_count,
        }
        return (_rebuild, (type(self), self.message, kwargs))


__all__ = [
    "CapillaryAuthError",
    "CapillaryBatchError",
    "CapillaryConfigError",
    "CapillaryError",
    "CapillaryIntegrityError",
    "CapillaryInvalidInputError",
    "CapillaryRequestRejectedError",
    "CapillarySecureUrlExpiredError",
    "CapillaryServiceUnavailableError",
    "CapillaryVerificationError",
    "FailedUpload",
]
