"""UploadedFile's parsing of the documented answer, field by field (mutants of models.py that survived).

Each test here fails for a mutant ``make mutation`` found alive: a field left unparsed, a key
misspelled, a zone ignored, a message dropped. They go through the public surface only
(``UploadedFile.from_response``, ``to_dict``, ``from_dict``, ``parse_last_modified``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryIntegrityError
from airflow_capillary.models import UploadedFile, parse_last_modified

SECURE_URL = (
    "https://eucrm-solutions.s3-eu-west-1.amazonaws.com/rewards/100606/b21f3aea.png"
    "?X-Amz-Security-Token=SESSIONTOKEN&X-Amz-Date=20240508T034059Z&X-Amz-Expires=3600"
    "&X-Amz-Credential=ASIAXKEP2EMBVBC5UMM3&X-Amz-Signature=86c114267239ef98"
)

#: The documented example answer (the API page), with its own distinct value in every field.
DOCUMENTED: dict[str, Any] = {
    "code": 200,
    "status": "true",
    "message": "Successfully uploaded file",
    "file": {
        "name": "test.png",
        "namespace": "rewards",
        "version": 2,
        "acl": "PRIVATE",
        "fileSize": "51",
        "file_handle": "73e78929-1e07-4cc5-a738-b54470a7dc8c",
        "content_type": "image/png",
        "s3_token": "rewards/100606/b21f3aea-ad38-4634-82a4-db2aaa0b.png",
        "latest_version": 3,
        "last_modified": "2024-05-08 09:10:59",
        "s3_url": "s3://eucrm-solutions/rewards/100606/b21f3aea-ad38-4634-82a4-db2aaa0b.png",
    },
    "secureFilePath": SECURE_URL,
}

#: 09:10:59 in Asia/Kolkata (+05:30) is the X-Amz-Date of the same upload, 03:40:59Z.
DOCUMENTED_UTC = datetime(2024, 5, 8, 3, 40, 59, tzinfo=timezone.utc)


def answer(**top: Any) -> dict[str, Any]:
    """The documented answer with top-level keys replaced (a value of ``...`` deletes the key)."""
    body = copy.deepcopy(DOCUMENTED)
    for key, value in top.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return body


def with_file(**fields: Any) -> dict[str, Any]:
    """The documented answer with ``file`` fields replaced (``...`` deletes the field)."""
    body = copy.deepcopy(DOCUMENTED)
    for key, value in fields.items():
        if value is ...:
            del body["file"][key]
        else:
            body["file"][key] = value
    return body


def parse(body: dict[str, Any], zone: str = "Asia/Kolkata") -> UploadedFile:
    return UploadedFile.from_response(body, server_timezone=zone, sent_size=51, sha256="ab" * 32)


@pytest.fixture
def local_zone_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with the machine's local zone at +09:00, so "local time" can never pass for UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_documented_answer_parses_into_every_field(local_zone_tokyo: None) -> None:
    result = parse(answer())

    assert result == UploadedFile(
        name="test.png",
        namespace="rewards",
        version=2,
        latest_version=3,
        acl="PRIVATE",
        file_size=51,
        file_handle="73e78929-1e07-4cc5-a738-b54470a7dc8c",
        content_type="image/png",
        s3_token="rewards/100606/b21f3aea-ad38-4634-82a4-db2aaa0b.png",
        s3_url="s3://eucrm-solutions/rewards/100606/b21f3aea-ad38-4634-82a4-db2aaa0b.png",
        last_modified=DOCUMENTED_UTC,
        secure_file_path=SECURE_URL,
        code=200,
        status=True,
        message="Successfully uploaded file",
        sent_size=51,
        sha256="ab" * 32,
    )
    # Equality of aware datetimes ignores the zone: the value itself must be in UTC.
    assert result.last_modified.utcoffset() == timedelta(0)
    assert result.last_modified.isoformat() == "2024-05-08T03:40:59+00:00"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Asia/Kolkata", "2024-05-08T03:40:59+00:00"),
        ("UTC", "2024-05-08T09:10:59+00:00"),
        ("America/New_York", "2024-05-08T13:10:59+00:00"),
    ],
    ids=["kolkata", "utc", "new-york-dst"],
)
def test_last_modified_is_read_in_the_given_zone_and_returned_in_utc(
    local_zone_tokyo: None, zone: str, expected: str
) -> None:
    value = parse_last_modified("2024-05-08 09:10:59", zone)

    assert value.utcoffset() == timedelta(0)
    assert value.isoformat() == expected
    assert parse(answer(), zone).last_modified.isoformat() == expected


def test_last_modified_in_another_format_is_an_integrity_error_quoting_it() -> None:
    with pytest.raises(
        CapillaryIntegrityError,
        match=r"^Capillary's answer has last_modified '2024/05/08 09:10', expected 'YYYY-MM-DD HH:MM:SS'$",
    ):
        parse_last_modified("2024/05/08 09:10", "Asia/Kolkata")


@pytest.mark.parametrize(
    ("status", "expected"),
    [("true", True), (" TRUE ", True), (True, True), ("false", False), ("yes", False), (..., False)],
    ids=["true", "padded-upper", "json-bool", "false", "other-word", "missing"],
)
def test_status_is_true_only_for_the_word_true(status: Any, expected: bool) -> None:
    assert parse(answer(status=status)).status is expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [("Successfully uploaded file", "Successfully uploaded file"), (None, ""), ("", ""), (..., "")],
    ids=["text", "null", "empty", "missing"],
)
def test_message_is_the_answers_text_or_empty(message: Any, expected: str) -> None:
    assert parse(answer(message=message)).message == expected


@pytest.mark.parametrize(
    ("secure", "expected"),
    [(SECURE_URL, SECURE_URL), (..., None), (None, None), (42, None)],
    ids=["url", "missing", "null", "not-a-string"],
)
def test_secure_file_path_is_the_top_level_string_or_none(secure: Any, expected: str | None) -> None:
    assert parse(answer(secureFilePath=secure)).secure_file_path == expected


def test_a_secure_url_inside_file_is_not_taken_for_the_top_level_one() -> None:
    body = answer(secureFilePath=...)
    body["file"]["secureFilePath"] = SECURE_URL
    assert parse(body).secure_file_path is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (answer(file=...), r"^Capillary's answer has no 'file' object$"),
        (answer(file=["not", "an", "object"]), r"^Capillary's answer has no 'file' object$"),
        (answer(code=True), r"^Capillary's answer has a non-integer 'code'$"),
        (with_file(version="two"), r"^Capillary's answer has no integer field 'version'$"),
        (with_file(latest_version=...), r"^Capillary's answer has no integer field 'latest_version'$"),
        (with_file(fileSize="\u0665\u0661"), r"^Capillary's answer has no integer field 'fileSize'$"),
        (with_file(acl=None), r"^Capillary's answer has no string field 'acl'$"),
        (with_file(file_handle=7), r"^Capillary's answer has no string field 'file_handle'$"),
        (with_file(s3_url=...), r"^Capillary's answer has no string field 's3_url'$"),
    ],
    ids=[
        "no-file",
        "file-not-object",
        "bool-code",
        "word-version",
        "missing-latest",
        "non-ascii-digits",
        "null-acl",
        "int-handle",
        "missing-s3-url",
    ],
)
def test_shape_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(CapillaryIntegrityError, match=message):
        parse(body)


def test_integer_fields_accept_padded_digit_strings() -> None:
    result = parse(with_file(fileSize=" 51 ", version="2"))
    assert (result.file_size, result.version) == (51, 2)


def test_to_dict_writes_last_modified_in_utc_whatever_the_local_zone(local_zone_tokyo: None) -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    record = parse(answer()).to_dict()
    assert record["last_modified"] == "2024-05-08T03:40:59+00:00"

    shifted = UploadedFile.from_dict(
        {**record, "last_modified": datetime(2024, 5, 8, 9, 10, 59, tzinfo=kolkata)}
    )
    assert shifted.to_dict()["last_modified"] == "2024-05-08T03:40:59+00:00"


def test_to_dict_keeps_or_drops_the_secure_url() -> None:
    result = parse(answer())
    assert result.to_dict()["secure_file_path"] == SECURE_URL
    assert result.to_dict(include_secure_url=False)["secure_file_path"] is None
    assert "secure_file_path" not in repr(result)
    assert "X-Amz" not in repr(result)


def test_from_dict_rebuilds_to_dict_output_exactly() -> None:
    result = parse(answer())
    rebuilt = UploadedFile.from_dict({**result.to_dict(), "source": "/data/test.png"})

    assert rebuilt == result
    assert rebuilt.last_modified == DOCUMENTED_UTC
    assert rebuilt.last_modified.utcoffset() == timedelta(0)


def test_from_dict_without_the_secure_url_gives_none() -> None:
    record = parse(answer()).to_dict()
    del record["secure_file_path"]
    assert UploadedFile.from_dict(record).secure_file_path is None


def test_from_dict_lists_every_missing_field_sorted() -> None:
    record = parse(answer()).to_dict()
    for key in ("sha256", "acl", "code"):
        del record[key]
    with pytest.raises(CapillaryIntegrityError, match=r"^upload record is missing acl, code, sha256$"):
        UploadedFile.from_dict(record)


def test_from_dict_with_an_unreadable_last_modified_quotes_it() -> None:
    record = {**parse(answer()).to_dict(), "last_modified": "08/05/2024"}
    with pytest.raises(
        CapillaryIntegrityError, match=r"^upload record has an invalid last_modified '08/05/2024'$"
    ):
        UploadedFile.from_dict(record)
