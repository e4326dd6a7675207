"""The failure list of a batch error: the text for a missing error, the cut at 50 (_report.py survivors)."""

from __future__ import annotations

from airflow_capillary.operators._report import MAX_LISTED_FAILURES, describe, list_errors


def test_a_missing_error_is_described_as_unknown() -> None:
    assert describe(None) == "unknown error"
    assert list_errors([("/data/a.png", None)]) == "\n  - /data/a.png: unknown error"


def test_exactly_the_maximum_lists_every_failure_without_a_remainder_line() -> None:
    assert MAX_LISTED_FAILURES == 50
    items = [(f"/data/{n}.png", ValueError("bad")) for n in range(50)]

    text = list_errors(items)

    assert text.count("\n  - ") == 50
    assert text.endswith("\n  - /data/49.png: ValueError: bad")
    assert "more" not in text


def test_one_more_than_the_maximum_says_so() -> None:
    items = [(f"/data/{n}.png", ValueError("bad")) for n in range(51)]

    assert list_errors(items).endswith("\n  - /data/49.png: ValueError: bad\n  - ... and 1 more")
