"""Typed results of the Capillary file service.

:class:`UploadedFile` is what :meth:`CapillaryFileHook.upload_file
<airflow_capillary.hooks.file_service.CapillaryFileHook.upload_file>` returns, and its
:meth:`~UploadedFile.to_dict` is the record that the operator pushes to XCom and the
sensor reads back with :meth:`~UploadedFile.from_dict`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any

import pendulum

from airflow_capillary.exceptions import CapillaryIntegrityError

__all__ = ["LAST_MODIFIED_FORMAT", "UploadedFile", "parse_last_modified"]

#: Fields a record may lack (``None``): the URL is dropped from some XComs, the flag is newer.
_OPTIONAL_IN_RECORDS = frozenset({"secure_file_path", "secure_url_refused"})

#: Format of ``file.last_modified`` in Capillary's answer (local time of the service, no zone).
LAST_MODIFIED_FORMAT = "%Y-%m-%d %H:%M:%S"
#: The same format with two-digit fields, as the service writes it (strptime also reads "2024-1-5").
_LAST_MODIFIED_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    """One file stored by Capillary's file service, as its upload answer describes it.

    Field names are the documented response fields in snake_case, with Python types.

    :param name: ``file.name``, the name in Capillary.
    :param namespace: ``file.namespace`` (e.g. ``rewards``).
    :param version: ``file.version``, the version this upload created.
    :param latest_version: ``file.latest_version``.
    :param acl: ``file.acl`` (e.g. ``PRIVATE``).
    :param file_size: ``file.fileSize`` in bytes (a string in the answer, an int here).
    :param file_handle: ``file.file_handle``, the handle rewards refer to.
    :param content_type: ``file.content_type`` (MIME type).
    :param s3_token: ``file.s3_token``, ``{namespace}/{org id}/{uuid}.{ext}``.
    :param s3_url: ``file.s3_url``, ``s3://{bucket}/{s3_token}``.
    :param last_modified: ``file.last_modified`` converted from the service's zone to UTC.
    :param secure_file_path: ``secureFilePath``, a pre-signed HTTPS URL valid for about an
        hour; a credential, kept out of ``repr``.
    :param code: ``code`` of the answer (always 200 for a result).
    :param status: ``status`` of the answer as a bool (always ``True`` for a result).
    :param message: ``message`` of the answer.
    :param sent_size: number of bytes this client sent (checked equal to ``file_size``).
    :param sha256: hex sha256 of the bytes this client sent.
    :param secure_url_refused: why ``secure_file_path`` is outside the connection's storage
        origin policy (it names the origin, never the query), or ``None``: the URL is kept, and
        the sensor refuses to fetch it.
    """

    name: str
    namespace: str
    version: int
    latest_version: int
    acl: str
    file_size: int
    file_handle: str
    content_type: str
    s3_token: str
    s3_url: str
    last_modified: datetime
    secure_file_path: str | None = dataclasses.field(repr=False)
    code: int = 200
    status: bool = True
    message: str = ""
    sent_size: int = 0
    sha256: str = ""
    secure_url_refused: str | None = None

    @classmethod
    def from_response(
        cls,
        body: Mapping[str, Any],
        *,
        server_timezone: str,
        sent_size: int,
        sha256: str,
    ) -> UploadedFile:
        """Build a result from a parsed 200 answer of the upload endpoint.

        Only checks shape and types; the caller decides whether ``status``, ``code`` and the
        size are acceptable.

        :param body: the JSON body.
        :param server_timezone: IANA zone in which the service writes ``last_modified``.
        :param sent_size: number of bytes sent.
        :param sha256: hex sha256 of the bytes sent.
        :return: the typed result.
        :raises CapillaryIntegrityError: a field is missing or has the wrong type.
        """
        file = body.get("file")
        if not isinstance(file, Mapping):
            raise CapillaryIntegrityError("Capillary's answer has no 'file' object")
        return cls(
            name=_str(file, "name"),
            namespace=_str(file, "namespace"),
            version=_int(file, "version"),
            latest_version=_int(file, "latest_version"),
            acl=_str(file, "acl"),
            file_size=_int(file, "fileSize"),
            file_handle=_str(file, "file_handle"),
            content_type=_str(file, "content_type"),
            s3_token=_str(file, "s3_token"),
            s3_url=_str(file, "s3_url"),
            last_modified=parse_last_modified(_str(file, "last_modified"), server_timezone),
            secure_file_path=_optional_str(body, "secureFilePath"),
            code=_int(body, "code"),
            status=str(body.get("status")).strip().lower() == "true",
            message=str(body.get("message") or ""),
            sent_size=sent_size,
            sha256=sha256,
        )

    def to_dict(self, *, include_secure_url: bool = True) -> dict[str, Any]:
        """Return a JSON-safe dict for XCom: snake_case keys, ``last_modified`` as ISO 8601 UTC.

        :param include_secure_url: keep ``secure_file_path`` (a credential valid for about an
            hour); when false it is ``None``.
        :return: the record.
        """
        record = dataclasses.asdict(self)
        record["last_modified"] = self.last_modified.astimezone(timezone.utc).isoformat()
        if not include_secure_url:
            record["secure_file_path"] = None
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> UploadedFile:
        """Rebuild a result from :meth:`to_dict` output (extra keys such as ``source`` are ignored).

        :param record: the record, e.g. read from XCom.
        :return: the typed result.
        :raises CapillaryIntegrityError: a field is missing or has the wrong type.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in record and n not in _OPTIONAL_IN_RECORDS)
        if missing:
            raise CapillaryIntegrityError(f"upload record is missing {', '.join(missing)}")
        values = {k: v for k, v in record.items() if k in names}
        last_modified = values["last_modified"]
        if isinstance(last_modified, str):
            try:
                values["last_modified"] = datetime.fromisoformat(last_modified)
            except ValueError as exc:
                raise CapillaryIntegrityError(
                    f"upload record has an invalid last_modified {last_modified!r}"
                ) from exc
        for name in _OPTIONAL_IN_RECORDS:
            values.setdefault(name, None)
        return cls(**values)


def parse_last_modified(value: str, server_timezone: str) -> datetime:
    """Parse Capillary's ``last_modified`` (``YYYY-MM-DD HH:MM:SS`` in the service's zone) to UTC.

    :param value: the text from the answer.
    :param server_timezone: IANA zone of the service (``Asia/Kolkata`` by default).
    :return: a timezone-aware datetime in UTC.
    :raises CapillaryIntegrityError: the text is not in the documented format.
    """
    try:
        exact = _LAST_MODIFIED_RE.fullmatch(value)
        if exact is not None:  # the documented form, without strptime's cost (same result)
            year, month, day, hour, minute, second = map(int, exact.groups())
            local = datetime(year, month, day, hour, minute, second)
        else:
            local = datetime.strptime(value, LAST_MODIFIED_FORMAT)
    except ValueError as exc:
        raise CapillaryIntegrityError(
            f"Capillary's answer has last_modified {value!r}, expected 'YYYY-MM-DD HH:MM:SS'"
        ) from exc
    return local.replace(tzinfo=_zone(server_timezone)).astimezone(timezone.utc)


@functools.lru_cache(maxsize=8)
def _zone(name: str) -> tzinfo:
    """The zone called ``name``, read once (``pendulum.from_format`` cost 0.2 ms an upload)."""
    return pendulum.timezone(name)


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise CapillaryIntegrityError(f"Capillary's answer has no string field {key!r}")
    return value


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool):
        raise CapillaryIntegrityError(f"Capillary's answer has a non-integer {key!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise CapillaryIntegrityError(f"Capillary's answer has no integer field {key!r}")
