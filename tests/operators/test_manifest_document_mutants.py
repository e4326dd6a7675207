"""Kills mutmut survivors of operators/_manifest_document.py: exact document problems, UTC entries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.operators._manifest_document import decode, entry_of
from tests.operators.fakes import uploaded_file

LABEL = "/m/rewards.json"
TAIL = (
    ". Nothing was uploaded: a manifest that cannot be used is never taken as empty (that would upload every "
    "file again as a new version); fix it, or move it away to start over"
)
ENTRY: dict[str, Any] = {
    "sha256": "a" * 64,
    "size": 3,
    "file_handle": "h",
    "version": 1,
    "latest_version": 1,
    "content_type": "image/png",
    "s3_token": "t",
    "s3_url": "s3://b/t",
    "last_modified": "2026-01-01T00:00:00+00:00",
    "uploaded_at": "2026-01-01T00:00:00.000000+00:00",
    "source": "/d/a.png",
}


def problem(document: Any) -> str:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(CapillaryInvalidInputError) as info:
        decode(data, LABEL)
    text = str(info.value)
    assert text.startswith(f"manifest {LABEL!r} ")
    assert text.endswith(TAIL)
    return text[len(f"manifest {LABEL!r} ") : -len(TAIL)]


def entries(**items: Any) -> dict[str, Any]:
    return {"format": 1, "entries": items}


def test_a_document_of_another_json_type() -> None:
    assert problem(b"true") == "is not a JSON object but a boolean"
    assert problem(b"3") == "is not a JSON object but a number"
    assert problem(b"[]") == "is not a JSON object but a list"


def test_unknown_keys_are_all_named() -> None:
    assert problem({"format": 1, "entries": {}, "b": 1, "a": 2}) == "has unknown key(s) 'a', 'b'"


@pytest.mark.parametrize("key", ["/a.png", "rewards/", "rewards/a/b.png"])
def test_a_key_needs_a_namespace_and_a_name(key: str) -> None:
    assert (
        problem(entries(**{key: ENTRY}))
        == f"has 1 problem in its entries: key {key!r} is not 'namespace/name'"
    )


def test_two_problems_and_unknown_fields() -> None:
    bad = {**ENTRY, "last_modified": 5, "zeta": 1, "alpha": 2}
    assert problem(entries(**{"rewards/a.png": bad})) == (
        "has 2 problems in its entries: 'rewards/a.png': 'last_modified' must be an ISO 8601 date-time "
        "with a UTC offset, got 5; 'rewards/a.png' has unknown field(s) 'alpha', 'zeta'"
    )


@pytest.mark.parametrize(("count", "more"), [(10, ""), (11, "; and 1 more")])
def test_problems_are_listed_up_to_ten(count: int, more: str) -> None:
    document = entries(**{f"rewards/{i:02d}.png": 0 for i in range(count)})
    listed = "; ".join(f"'rewards/{i:02d}.png' is a number, not an object" for i in range(10))
    assert problem(document) == f"has {count} problems in its entries: {listed}{more}"


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone other than UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_entry_is_written_in_utc_whatever_the_local_time_zone(kolkata: None) -> None:
    entry = entry_of(
        uploaded_file("a.png", 3, sha256="a" * 64),
        source="/d/a.png",
        uploaded_at=datetime(2026, 11, 26, 20, 0, 0, 5, tzinfo=timezone.utc),
    )
    assert (entry["last_modified"], entry["uploaded_at"]) == (
        "2026-11-26T04:10:59+00:00",
        "2026-11-26T20:00:00.000005+00:00",
    )
