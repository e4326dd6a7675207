"""Unit tests of the sync manifest's document: exact encoding, every check with its message, the merge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.operators._manifest_document import (
    EMPTY_DOCUMENT,
    ManifestEntry,
    decode,
    encode,
    entry_key,
    merge,
)

LABEL = "/data/manifests/rewards.json"
SHA = "95b256a0795a18b3e71765d4b516bcae51a8acda00dab3a1d674f79173e1111e"
NOT_UPLOADED = (
    ". Nothing was uploaded: a manifest that cannot be used is never taken as empty (that would upload "
    "every file again as a new version); fix it, or move it away to start over"
)


def entry(**changes: Any) -> ManifestEntry:
    base: dict[str, Any] = {
        "sha256": SHA,
        "size": 2074,
        "file_handle": "11639e03-9157-4333-ad10-d5d4622b9544",
        "version": 1,
        "latest_version": 1,
        "content_type": "image/png",
        "s3_token": "rewards/100606/b4694d77.png",
        "s3_url": "s3://emulator-solutions/rewards/100606/b4694d77.png",
        "last_modified": "2026-11-26T20:11:47+00:00",
        "uploaded_at": "2026-11-26T20:11:47.123456+00:00",
        "source": "/data/rewards/coffee-voucher.png",
    }
    base.update(changes)
    return base  # type: ignore[return-value]


def document(entries: Any, **top: Any) -> bytes:
    return json.dumps({"format": 1, "entries": entries, **top}).encode()


def test_entry_key() -> None:
    assert entry_key("rewards", "coffee-voucher.png") == "rewards/coffee-voucher.png"


def test_encoding_is_stable_sorted_and_indented() -> None:
    fields = (
        '      "content_type": "image/png",\n'
        '      "file_handle": "11639e03-9157-4333-ad10-d5d4622b9544",\n'
        '      "last_modified": "2026-11-26T20:11:47+00:00",\n'
        '      "latest_version": 1,\n'
        '      "s3_token": "rewards/100606/b4694d77.png",\n'
        '      "s3_url": "s3://emulator-solutions/rewards/100606/b4694d77.png",\n'
        f'      "sha256": "{SHA}",\n'
        '      "size": {size},\n'
        '      "source": "/data/rewards/coffee-voucher.png",\n'
        '      "uploaded_at": "2026-11-26T20:11:47.123456+00:00",\n'
        '      "version": 1\n'
    )
    expected = (
        '{\n  "entries": {\n'
        '    "promo/a.png": {\n' + fields.replace("{size}", "1") + "    },\n"
        '    "rewards/b.png": {\n' + fields.replace("{size}", "2074") + "    }\n"
        '  },\n  "format": 1\n}\n'
    )
    assert encode({"rewards/b.png": entry(), "promo/a.png": entry(size=1)}).decode() == expected
    # Insertion order does not matter: the same entries always give the same bytes.
    assert encode({"promo/a.png": entry(size=1), "rewards/b.png": entry()}).decode() == expected


def test_empty_document_and_non_ascii_names() -> None:
    assert EMPTY_DOCUMENT == b'{\n  "entries": {},\n  "format": 1\n}\n'
    encoded = encode({"rewards/café.png": entry()})
    assert '"rewards/café.png"'.encode() in encoded
    assert decode(encoded, LABEL) == {"rewards/café.png": entry()}


def test_round_trip() -> None:
    entries = {"rewards/a.png": entry(), "rewards/b.jpg": entry(version=3, latest_version=3)}
    assert decode(encode(entries), LABEL) == entries
    assert decode(EMPTY_DOCUMENT, LABEL) == {}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty (a manifest is never empty: it holds at least its format)"),
        (b"  \n", "is empty (a manifest is never empty: it holds at least its format)"),
        (b'{"format": 1, "entries": {"rewards/a.png": {"sha2', "is not valid JSON: truncated or corrupt "
         "(Unterminated string starting at: line 1 column 45)"),
        (b"\xff\xfe{}", "is not UTF-8 text (byte 0)"),
        (b"not json", "is not valid JSON: truncated or corrupt (Expecting value: line 1 column 1)"),
        (b"[1, 2]", "is not a JSON object but a list"),
        (b'{"entries": {}}', "has no 'format' (not a manifest of this provider)"),
        (b'{"format": 2, "entries": {}}', "has format 2; this version of the provider reads format 1"),
        (b'{"format": "1", "entries": {}}', "has format '1'; this version of the provider reads format 1"),
        (b'{"format": true, "entries": {}}', "has format True; this version of the provider reads format 1"),
        (b'{"format": 1}', "'entries' must be an object, got null"),
        (b'{"format": 1, "entries": []}', "'entries' must be an object, got list"),
        (document({}, updated="today"), "has unknown key(s) 'updated'"),
    ],
    ids=[
        "empty", "blank", "truncated", "not-utf8", "not-json", "list", "no-format", "format-2",
        "format-string", "format-bool", "no-entries", "entries-list", "unknown-key",
    ],
)  # fmt: skip
def test_bad_documents(data: bytes, problem: str) -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        decode(data, LABEL)
    assert str(info.value) == f"manifest {LABEL!r} {problem}{NOT_UPLOADED}"


@pytest.mark.parametrize(
    ("entries", "problems"),
    [
        ({"rewards/a.png": {k: v for k, v in entry().items() if k != "file_handle"}},
         "'rewards/a.png' has no 'file_handle'"),
        ({"rewards/a.png": entry(file_handle="")},
         "'rewards/a.png': 'file_handle' must be a non-empty string, got ''"),
        ({"rewards/a.png": entry(size="2074")},
         "'rewards/a.png': 'size' must be an integer >= 0, got '2074'"),
        ({"rewards/a.png": entry(size=True)}, "'rewards/a.png': 'size' must be an integer >= 0, got True"),
        ({"rewards/a.png": entry(version=0)}, "'rewards/a.png': 'version' must be an integer >= 1, got 0"),
        ({"rewards/a.png": entry(sha256=SHA.upper())},
         f"'rewards/a.png': 'sha256' must be 64 lowercase hex digits, got '{SHA.upper()}'"),
        ({"rewards/a.png": entry(uploaded_at="yesterday")},
         "'rewards/a.png': 'uploaded_at' must be an ISO 8601 date-time with a UTC offset, got 'yesterday'"),
        ({"rewards/a.png": entry(last_modified="2026-11-26 20:11:47")},
         "'rewards/a.png': 'last_modified' must be an ISO 8601 date-time with a UTC offset, "
         "got '2026-11-26 20:11:47'"),
        ({"rewards/a.png": {**entry(), "secure_file_path": "https://s3.example/a.png?X-Amz-Signature=x"}},
         "'rewards/a.png' has unknown field(s) 'secure_file_path'"),
        ({"a.png": entry()}, "key 'a.png' is not 'namespace/name'"),
        ({"rewards/sub/a.png": entry()}, "key 'rewards/sub/a.png' is not 'namespace/name'"),
        ({"rewards/a.png": "handle-1"}, "'rewards/a.png' is a string, not an object"),
    ],
    ids=[
        "no-handle", "empty-handle", "size-string", "size-bool", "version-0", "sha-upper", "uploaded-at",
        "last-modified", "secure-url", "key-no-namespace", "key-two-slashes", "entry-string",
    ],
)  # fmt: skip
def test_bad_entries(entries: dict[str, Any], problems: str) -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        decode(document(entries), LABEL)
    assert str(info.value) == f"manifest {LABEL!r} has 1 problem in its entries: {problems}{NOT_UPLOADED}"


def test_every_problem_is_counted_and_at_most_ten_listed() -> None:
    entries = {f"rewards/{i:02d}.png": entry(size=-1) for i in range(12)}
    entries["rewards/00.png"] = {"source": "x"}  # type: ignore[typeddict-item]
    with pytest.raises(CapillaryInvalidInputError) as info:
        decode(document(entries), LABEL)
    message = str(info.value)
    assert message.startswith(
        f"manifest {LABEL!r} has 21 problems in its entries: 'rewards/00.png' has no 'sha256'; "
        "'rewards/00.png' has no 'size'; "
    )
    assert message.endswith("'rewards/00.png' has no 'uploaded_at'; and 11 more" + NOT_UPLOADED)


def test_merge_keeps_both_sides_and_the_newer_upload_wins() -> None:
    old = entry(uploaded_at="2026-11-26T20:00:00.000000+00:00", version=1)
    new = entry(uploaded_at="2026-11-26T21:00:00.000000+00:00", version=2)
    # The same instant written in another zone is compared as an instant, not as text.
    same_as_old = entry(uploaded_at="2026-11-27T01:30:00.000000+05:30", version=7)
    stored = {"rewards/a.png": old, "rewards/b.png": new, "rewards/c.png": old, "rewards/other.png": old}
    changes = {"rewards/a.png": new, "rewards/b.png": old, "rewards/c.png": same_as_old, "rewards/d.png": old}
    assert merge(stored, changes) == {
        "rewards/a.png": new,  # ours is newer
        "rewards/b.png": new,  # theirs is newer
        "rewards/c.png": old,  # a tie keeps what is stored
        "rewards/d.png": old,  # only ours
        "rewards/other.png": old,  # only theirs
    }
    assert stored["rewards/a.png"] is old  # inputs untouched


@pytest.mark.parametrize(
    "entries",
    [
        {},
        {"rewards/a.png": entry()},
        {f"rewards/{i:04d}.png": entry(size=i, version=i + 1) for i in range(50)},
        {'promo/"quoted" \\ back\tslash\u2028é.png': entry(source='/data/ümlaut "q" \x01.png')},
    ],
    ids=["empty", "one", "fifty", "escapes"],
)
def test_encoding_is_byte_for_byte_the_standard_indented_json(entries: dict[str, Any]) -> None:
    standard = json.dumps({"format": 1, "entries": entries}, indent=2, sort_keys=True, ensure_ascii=False)
    assert encode(entries) == (standard + "\n").encode()


@pytest.mark.parametrize("value", [True, 1.5, None, [1]], ids=["bool", "float", "null", "list"])
def test_encoding_refuses_what_an_entry_never_holds(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^a manifest entry holds only strings and integers, not "):
        encode({"rewards/a.png": entry(size=value)})
