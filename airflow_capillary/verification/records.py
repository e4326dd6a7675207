"""What the sensor's records promise: which of them are fetched, and what each served file must be.

The sensor's ``files`` arrive as one record, a list, or the lazy sequence of a mapped upload task
(:func:`flatten_files`). Every record is checked before any request (:func:`expected_files`): an
``unchanged`` one (an operator with a manifest did not upload it in this run; it was verified when
it was) passes through untouched; every other one must be an upload record with a secure URL
inside the storage origin policy, and becomes an :class:`ExpectedFile`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_capillary.exceptions import CapillaryIntegrityError, CapillaryInvalidInputError
from airflow_capillary.models import UploadedFile

if TYPE_CHECKING:
    from airflow_capillary.verification.storage import OriginPolicy

__all__ = [
    "ACTIONS",
    "CHECKS",
    "REFUSED_FIELD",
    "TEXT_LIMIT",
    "ExpectedFile",
    "expected_files",
    "flatten_files",
    "needs_check",
    "one_line",
]

#: What the sensor checks: ``"size"`` (size and type from the headers) or ``"sha256"`` (the body).
CHECKS: tuple[str, ...] = ("size", "sha256")
#: A record's ``action`` (from an operator with a manifest): ``unchanged`` ones were not uploaded
#: by this run and are not fetched (they were verified when uploaded). No ``action``: uploaded.
ACTIONS: tuple[str, ...] = ("new", "changed", "unchanged")
#: Record field in which the hook flags a secure URL outside the origin policy (the reason).
REFUSED_FIELD = "secure_url_refused"
#: Longest text of a message that comes from elsewhere (the storage, a record's flag).
TEXT_LIMIT = 200
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclasses.dataclass(frozen=True)
class ExpectedFile:
    """What one served file must look like.

    :param index: position of the record among the records to verify.
    :param name: file name in Capillary.
    :param namespace: Capillary namespace.
    :param size: expected size in bytes (bytes sent, else Capillary's ``fileSize``).
    :param content_type: expected media type (empty: not checked).
    :param sha256: hex sha256 of the uploaded bytes (empty: unknown).
    :param url: the pre-signed ``secure_file_path`` (a credential: never log it unredacted).
    """

    index: int
    name: str
    namespace: str
    size: int
    content_type: str
    sha256: str
    url: str = dataclasses.field(repr=False)

    @property
    def label(self) -> str:
        """``'name' (namespace ns)``, for messages."""
        return f"{self.name!r} (namespace {self.namespace})"


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


def expected_files(
    records: Sequence[Mapping[str, Any]], check: str, policy: OriginPolicy
) -> list[ExpectedFile]:
    """Check every record before any request, and say what each served file must look like.

    :param records: the flattened records.
    :param check: ``"size"`` or ``"sha256"``.
    :param policy: the storage origins that may be fetched.
    :return: one :class:`ExpectedFile` per record that :func:`needs_check`, in order (``index`` is
        the position in ``records``).
    :raises CapillaryInvalidInputError: an unknown check, an empty input, an unknown ``action``, a
        record that is not an upload record, has no secure URL, one outside the origin policy (or
        flagged so by the hook), or (sha256 check) no sha256.
    """
    if check not in CHECKS:
        raise CapillaryInvalidInputError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
    if not records:
        raise CapillaryInvalidInputError("files is empty: there is nothing to verify")
    result = []
    for index, record in enumerate(records):
        if not needs_check(record, index):
            continue
        try:
            uploaded = UploadedFile.from_dict(record)
        except (CapillaryIntegrityError, TypeError) as exc:
            raise CapillaryInvalidInputError(f"files[{index}] is not an upload record: {exc}") from exc
        problem = _problem(uploaded, record, check, policy)
        if problem is not None:
            raise CapillaryInvalidInputError(
                f"files[{index}] ({uploaded.name!r}, namespace {uploaded.namespace}) {problem}",
                file_name=uploaded.name,
                namespace=uploaded.namespace,
            )
        result.append(
            ExpectedFile(
                index=index,
                name=uploaded.name,
                namespace=uploaded.namespace,
                size=uploaded.sent_size or uploaded.file_size,
                content_type=uploaded.content_type,
                sha256=uploaded.sha256.lower(),
                url=uploaded.secure_file_path or "",
            )
        )
    return result


def _problem(
    uploaded: UploadedFile, record: Mapping[str, Any], check: str, policy: OriginPolicy
) -> str | None:
    url = uploaded.secure_file_path
    if not url:
        return (
            "has no secure_file_path: upload with include_secure_url=True (the default of "
            "UploadImageOperator) so that the sensor can fetch the file"
        )
    if not url.lower().startswith(("https://", "http://")):
        return "has a secure_file_path that is not an http(s) URL"
    refusal = str(record.get(REFUSED_FIELD) or policy.refusal(url) or "")
    if refusal:
        return f"has a secure_file_path outside the storage origin policy, not fetched: {one_line(refusal)}"
    if check == "sha256" and not re.fullmatch(r"[0-9a-fA-F]{64}", uploaded.sha256 or ""):
        return (
            "has no sha256 of the uploaded bytes: use check='size', or upload with this provider (it "
            "records the sha256 of what it sends)"
        )
    return None


def needs_check(record: Mapping[str, Any], index: int = 0) -> bool:
    """Whether a record is fetched: every one but an ``unchanged`` one (see :data:`ACTIONS`).

    :param record: the record.
    :param index: its position, for the message.
    :return: true unless ``action`` is ``"unchanged"``.
    :raises CapillaryInvalidInputError: ``action`` is not one of :data:`ACTIONS`.
    """
    action = record.get("action")
    if action is not None and action not in ACTIONS:
        raise CapillaryInvalidInputError(
            f"files[{index}] has an unknown action {one_line(repr(action), 50)}: it is one of "
            + ", ".join(ACTIONS)
        )
    return action != "unchanged"


def one_line(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` on one line (no control characters), cut to ``limit`` characters.

    :param text: text that comes from elsewhere (e.g. a hostile storage).
    :param limit: the longest text kept.
    :return: the text, safe for one log line.
    """
    text = " ".join(_CONTROL_RE.sub(" ", text).split())
    return text if len(text) <= limit else text[:limit] + "...(truncated)"
