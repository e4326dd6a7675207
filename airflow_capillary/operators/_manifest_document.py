"""The sync manifest's document: format 1, its checks, its stable encoding, the merge rule, and the
conversions between an entry and an upload (its result, the XCom record of an unchanged file).

Pure: no I/O. The document::

    {
      "entries": {
        "rewards/coffee-voucher.png": {
          "content_type": "image/png", "file_handle": "11639e03-...", "last_modified": "...+00:00",
          "latest_version": 1, "s3_token": "rewards/100606/....png", "s3_url": "s3://.../....png",
          "sha256": "95b256a0...", "size": 2074, "source": "/data/rewards/coffee-voucher.png",
          "uploaded_at": "2026-11-26T20:11:47.123456+00:00", "version": 1
        }
      },
      "format": 1
    }

is written with sorted keys, two-space indents and one trailing newline, so that it diffs well.
It never holds a secure URL: an unknown field, ``secure_file_path`` included, makes it invalid.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_capillary.operators._manifest_store import invalid_manifest

if TYPE_CHECKING:
    from airflow_capillary.models import UploadedFile

__all__ = [
    "EMPTY_DOCUMENT",
    "FORMAT",
    "ManifestEntry",
    "decode",
    "encode",
    "entry_key",
    "entry_of",
    "merge",
    "unchanged_record",
]

#: The document format this provider reads and writes.
FORMAT = 1
#: How many bad entries one message lists.
MAX_LISTED_PROBLEMS = 10


class ManifestEntry(TypedDict):
    """One uploaded file, keyed ``"{namespace}/{name}"`` in the document."""

    sha256: str
    size: int
    file_handle: str
    version: int
    latest_version: int
    content_type: str
    s3_token: str
    s3_url: str
    last_modified: str
    uploaded_at: str
    source: str


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_instant(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


#: Field -> (check, what the check wants, for the message).
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sha256": (
        lambda v: isinstance(v, str) and _SHA256_RE.fullmatch(v) is not None,
        "64 lowercase hex digits",
    ),
    "size": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "file_handle": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "version": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "latest_version": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "content_type": (lambda v: isinstance(v, str), "a string"),
    "s3_token": (lambda v: isinstance(v, str), "a string"),
    "s3_url": (lambda v: isinstance(v, str), "a string"),
    "last_modified": (_is_instant, "an ISO 8601 date-time with a UTC offset"),
    "uploaded_at": (_is_instant, "an ISO 8601 date-time with a UTC offset"),
    "source": (lambda v: isinstance(v, str), "a string"),
}


def entry_key(namespace: str, name: str) -> str:
    """Return the document key of a file (neither part may hold ``/``: the hook refuses it).

    :param namespace: the namespace.
    :param name: the name in Capillary.
    :return: ``"{namespace}/{name}"``.
    """
    return f"{namespace}/{name}"


def encode(entries: Mapping[str, ManifestEntry]) -> bytes:
    """Serialise entries as the stable document (sorted keys, two-space indents, final newline).

    The bytes are exactly ``json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)``
    plus a newline, written directly for this fixed shape: with ``indent`` the stdlib encoder is the
    pure-Python one (0.3 s for 2,000 entries, at every checkpoint).

    :param entries: key to entry (flat objects of strings and integers).
    :return: UTF-8 JSON.
    """
    if not entries:
        return b'{\n  "entries": {},\n  "format": 1\n}\n'
    blocks = []
    for key in sorted(entries):
        entry: Mapping[str, Any] = entries[key]
        lines = [f"      {_scalar(name)}: {_scalar(entry[name])}" for name in sorted(entry)]
        body = "{\n" + ",\n".join(lines) + "\n    }" if lines else "{}"
        blocks.append(f"    {_scalar(key)}: {body}")
    text = '{\n  "entries": {\n' + ",\n".join(blocks) + f'\n  }},\n  "format": {FORMAT}\n}}\n'
    return text.encode("utf-8")


def _scalar(value: Any) -> str:
    """JSON text of a string or an integer, as ``json.dumps(..., ensure_ascii=False)`` writes it."""
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
    raise TypeError(f"a manifest entry holds only strings and integers, not {type(value).__name__}")


#: The document of a first run.
EMPTY_DOCUMENT = encode({})


def decode(data: bytes, label: str) -> dict[str, ManifestEntry]:
    """Parse and check a stored document.

    :param data: its bytes.
    :param label: the manifest's location, for messages.
    :return: key to entry.
    :raises CapillaryInvalidInputError: it is empty, not UTF-8, not JSON, of another format, or
        an entry is malformed (every problem is listed, up to :data:`MAX_LISTED_PROBLEMS`).
    """
    if not data.strip():
        raise invalid_manifest(label, "is empty (a manifest is never empty: it holds at least its format)")
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise invalid_manifest(label, f"is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise invalid_manifest(
            label, f"is not valid JSON: truncated or corrupt ({exc.msg}: {where})"
        ) from None
    if not isinstance(document, dict):
        raise invalid_manifest(label, f"is not a JSON object but a {_json_type(document)}")
    if "format" not in document:
        raise invalid_manifest(label, "has no 'format' (not a manifest of this provider)")
    if document["format"] != FORMAT or isinstance(document["format"], bool):
        raise invalid_manifest(
            label, f"has format {document['format']!r}; this version of the provider reads format {FORMAT}"
        )
    unknown = sorted(set(document) - {"format", "entries"})
    if unknown:
        raise invalid_manifest(label, f"has unknown key(s) {', '.join(map(repr, unknown))}")
    entries = document.get("entries")
    if not isinstance(entries, dict):
        raise invalid_manifest(label, f"'entries' must be an object, got {_json_type(entries)}")
    problems = [problem for key, entry in entries.items() for problem in _entry_problems(key, entry)]
    if problems:
        count = len(problems)
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f"; and {count - MAX_LISTED_PROBLEMS} more" if count > MAX_LISTED_PROBLEMS else ""
        raise invalid_manifest(
            label, f"has {count} problem{'s' * (count > 1)} in its entries: {listed}{more}"
        )
    return entries


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _entry_problems(key: str, entry: Any) -> list[str]:
    namespace, slash, name = key.partition("/")
    if not (namespace and slash and name) or "/" in name:
        return [f"key {key!r} is not 'namespace/name'"]
    if not isinstance(entry, dict):
        return [f"{key!r} is a {_json_type(entry)}, not an object"]
    problems = [f"{key!r} has no {field!r}" for field in _FIELDS if field not in entry]
    problems += [
        f"{key!r}: {field!r} must be {wanted}, got {entry[field]!r}"
        for field, (check, wanted) in _FIELDS.items()
        if field in entry and not check(entry[field])
    ]
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        problems.append(f"{key!r} has unknown field(s) {', '.join(map(repr, unknown))}")
    return problems


def merge(
    stored: Mapping[str, ManifestEntry], changes: Mapping[str, ManifestEntry]
) -> dict[str, ManifestEntry]:
    """Merge this writer's new entries into the stored ones, entry by entry: the newer upload wins.

    :param stored: the document as read just before writing (other writers' entries included).
    :param changes: the entries this writer recorded since its last write.
    :return: the merged entries (``stored`` wins a tie).
    """
    merged = dict(stored)
    for key, entry in changes.items():
        current = merged.get(key)
        if current is None or _instant(entry["uploaded_at"]) > _instant(current["uploaded_at"]):
            merged[key] = entry
    return merged


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def entry_of(result: UploadedFile, *, source: str, uploaded_at: datetime) -> ManifestEntry:
    """Build the entry of a successful upload from Capillary's answer (never its secure URL).

    :param result: the hook's result.
    :param source: the source label.
    :param uploaded_at: when the answer arrived.
    :return: the entry; ``sha256`` and ``size`` are those of the bytes sent.
    """
    return ManifestEntry(
        sha256=result.sha256,
        size=result.sent_size,
        file_handle=result.file_handle,
        version=result.version,
        latest_version=result.latest_version,
        content_type=result.content_type,
        s3_token=result.s3_token,
        s3_url=result.s3_url,
        last_modified=result.last_modified.astimezone(timezone.utc).isoformat(),
        uploaded_at=uploaded_at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
        source=source,
    )


def unchanged_record(entry: ManifestEntry, *, namespace: str, name: str, source: str) -> dict[str, Any]:
    """Build the XCom record of a file that was not uploaded because its entry matches it.

    Same keys, in the same order, as an uploaded record (``UploadedFile.to_dict()``, ``source``,
    ``action``); what only an upload answer tells is ``None`` (``acl``, ``code``, ``status``,
    ``secure_file_path`` and any other field the manifest does not keep), and ``sent_size`` is 0.

    :param entry: its manifest entry.
    :param namespace: the namespace.
    :param name: the name in Capillary.
    :param source: the source label of this run.
    :return: the record, ``action`` ``"unchanged"``.
    """
    from airflow_capillary.models import UploadedFile

    known: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "version": entry["version"],
        "latest_version": entry["latest_version"],
        "file_size": entry["size"],
        "file_handle": entry["file_handle"],
        "content_type": entry["content_type"],
        "s3_token": entry["s3_token"],
        "s3_url": entry["s3_url"],
        "last_modified": entry["last_modified"],
        "message": f"not uploaded: unchanged since {entry['uploaded_at']}",
        "sent_size": 0,
        "sha256": entry["sha256"],
    }
    record = {field.name: known.get(field.name) for field in dataclasses.fields(UploadedFile)}
    return {**record, "source": source, "action": "unchanged"}
