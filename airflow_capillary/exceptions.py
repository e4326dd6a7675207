"""Exceptions raised by the Capillary provider.

Every failure is an :class:`CapillaryError` (an :class:`~airflow.exceptions.AirflowException`),
one subclass per category, so that callers branch on types and attributes, never on message
text. Every attribute that holds text from the service is already redacted: no credential,
token or pre-signed URL survives in an exception.
"""

from __future__ import annotations

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
        self.status_code = status_code
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
    """Capillary could not be reached or kept failing (connection errors, timeouts, 429, 5xx) after every retry."""


class CapillaryIntegrityError(CapillaryError):
    """Capillary's answer cannot be trusted: ``status`` "false", ``code`` not 200, a stored size that
    differs from what was sent, a malformed or incomplete body."""


class CapillaryVerificationError(CapillaryIntegrityError):
    """A served file does not match its upload record (size, content type or sha256)."""


class CapillarySecureUrlExpiredError(CapillaryError):
    """A ``secure_file_path`` is expired or its signature was refused (HTTP 403 from the storage)."""


__all__ = [
    "CapillaryAuthError",
    "CapillaryConfigError",
    "CapillaryError",
    "CapillaryIntegrityError",
    "CapillaryInvalidInputError",
    "CapillaryRequestRejectedError",
    "CapillarySecureUrlExpiredError",
    "CapillaryServiceUnavailableError",
    "CapillaryVerificationError",
]
