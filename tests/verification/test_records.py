"""verification.records: the sensor's input shapes, which records are fetched, and what each must be."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence

import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.verification.records import ExpectedFile, expected_files, flatten_files, needs_check
from tests.verification.records import PNG, POLICY, make_record, unchanged

SIZE = len(PNG)
SHA = hashlib.sha256(PNG).hexdigest()


def test_expected_files_take_what_was_sent():
    record = make_record(content_type="image/jpeg", name="a.jpg")
    assert expected_files([record], "sha256", POLICY) == [
        ExpectedFile(0, "a.jpg", "rewards", SIZE, "image/jpeg", SHA, record["secure_file_path"])
    ]


@pytest.mark.parametrize(
    ("records", "check", "message"),
    [
        (
            [make_record(url=None)],
            "size",
            r"^files\[0\] \('hero.png', namespace rewards\) has no secure_file_path: "
            r"upload with include_secure_url=True \(the default of UploadImageOperator\)",
        ),
        (
            [make_record(), {"name": "x"}],
            "size",
            r"^files\[1\] is not an upload record: upload record is missing ",
        ),
        (
            [make_record(sha256="")],
            "sha256",
            r"^files\[0\] \('hero.png', namespace rewards\) has no sha256 of the "
            r"uploaded bytes: use check='size'",
        ),
        (
            [make_record(secure_file_path="ftp://x/y")],
            "size",
            r"has a secure_file_path that is not an http\(s\) URL",
        ),
        ([], "size", r"^files is empty: there is nothing to verify$"),
        ([make_record()], "md5", r"^check must be one of size, sha256, not 'md5'$"),
    ],
    ids=["no-secure-url", "not-a-record", "no-sha256", "not-http", "empty", "bad-mode"],
)
def test_expected_files_reject_bad_records_before_any_request(records, check, message):
    with pytest.raises(CapillaryInvalidInputError, match=message):
        expected_files(records, check, POLICY)


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/?X-Amz-Signature=5ig",
            "http://169.254.169.254",
        ),
        (
            "https://bucket.s3.amazonaws.com@10.0.0.1/rewards/a.png?X-Amz-Signature=5ig",
            "it is a URL with user info",
        ),
        (
            "http://bucket.s3.amazonaws.com/rewards/a.png?X-Amz-Signature=5ig",
            "http://bucket.s3.amazonaws.com",
        ),
    ],
    ids=["metadata-service", "userinfo-trick", "s3-over-http"],
)
def test_a_secure_url_outside_the_origin_policy_is_refused_naming_the_file_and_origin(url, refused):
    with pytest.raises(CapillaryInvalidInputError) as info:
        expected_files([make_record("a.png"), make_record(url=url)], "size", POLICY)
    message = str(info.value)
    assert message.startswith(
        "files[1] ('hero.png', namespace rewards) has a secure_file_path outside the storage origin "
        f"policy, not fetched: {refused}"
    )
    assert not [part for part in ("5ig", "/rewards/", "meta-data") if part in message]
    assert (info.value.file_name, info.value.namespace) == ("hero.png", "rewards")


def test_a_secure_url_the_hook_flagged_is_refused_even_when_this_policy_allows_it():
    flagged = make_record(
        secure_url_refused="https://x.s3.amazonaws.com is outside the upload's policy\nforged"
    )
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^files\[0\] \('hero.png', namespace rewards\) has a secure_file_path outside the storage "
        r"origin policy, not fetched: https://x.s3.amazonaws.com is outside the upload's policy forged$",
    ):
        expected_files([flagged], "size", POLICY)


class LazyRecords(Sequence):
    """Stands in for the LazyXComSequence of a mapped upload task."""

    def __init__(self, items: list) -> None:
        self._items = items

    def __getitem__(self, index):
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator:
        return iter(self._items)


def test_flatten_files_shapes():
    a, b, c = make_record("a.png"), make_record("b.png"), make_record("c.png")
    assert flatten_files(a) == ([a], True)
    assert flatten_files([a, b]) == ([a, b], False)
    assert flatten_files(LazyRecords([[a, b], c])) == ([a, b, c], False)
    assert flatten_files((a,)) == ([a], False)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            "[{'name': 'a.png'}]",
            r"^files rendered to a string, not upload records: pass the upload task's output",
        ),
        ([make_record(), 3], r"^files\[1\] is a int, not an upload record"),
        ([[make_record(), None]], r"^files\[0\]\[1\] is a NoneType, not an upload record"),
        (None, r"^files is a NoneType, not an upload record"),
    ],
    ids=["string", "int-item", "nested-none", "none"],
)
def test_flatten_files_rejects(files, message):
    with pytest.raises(CapillaryInvalidInputError, match=message):
        flatten_files(files)


def test_unchanged_records_are_not_fetched_and_the_others_keep_their_input_position():
    new, same, changed, plain = (
        make_record("a.png", action="new"),
        unchanged("b.png"),
        make_record("c.png", action="changed"),
        make_record("d.png"),
    )
    files = expected_files([new, same, changed, plain], "size", POLICY)
    assert [(f.index, f.name) for f in files] == [(0, "a.png"), (2, "c.png"), (3, "d.png")]
    assert [needs_check(r) for r in (new, same, changed, plain)] == [True, False, True, True]


def test_only_unchanged_records_means_nothing_to_fetch():
    assert expected_files([unchanged("a.png"), unchanged("b.png")], "sha256", POLICY) == []


@pytest.mark.parametrize("action", ["deleted", "", "Unchanged", 1])
def test_an_unknown_action_is_refused_before_any_request(action):
    with pytest.raises(
        CapillaryInvalidInputError,
        match=rf"^files\[1\] has an unknown action {re.escape(repr(action))}: it is one of new, changed, "
        r"unchanged$",
    ):
        expected_files([make_record("a.png"), make_record("b.png", action=action)], "size", POLICY)
