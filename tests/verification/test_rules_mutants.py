"""Kills mutmut survivors of verification/rules.py (and of the record checks that moved to records.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import httpx
import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.verification.records import ExpectedFile, expected_files, flatten_files
from airflow_capillary.verification.rules import AnswerJudge, Verdict
from tests.verification.records import PNG, POLICY, make_record

SIZE = len(PNG)
SHA = hashlib.sha256(PNG).hexdigest()
WHERE = "'hero.png' (namespace rewards)"
AGAIN = "; upload it again (re-run the upload task)"


def expected(body: bytes = PNG) -> ExpectedFile:
    return expected_files([make_record(body=body)], "size", POLICY)[0]


def judge(
    status: int,
    headers: Mapping[str, str],
    check: str = "size",
    body: bytes = b"",
    file: ExpectedFile | None = None,
) -> Verdict:
    answer = AnswerJudge(file or expected(), check, retry_after_cap=120.0)
    verdict = answer.on_headers(status, headers)
    if verdict is not None:
        return verdict
    if body:
        answer.feed(body)
    return answer.finish()


def test_an_empty_object_answered_416_with_a_zero_total_is_done() -> None:
    file = expected(b"")
    assert file.size == 0
    for headers in ({"Content-Range": "bytes */0"}, httpx.Headers({"Content-Range": "bytes */0"})):
        assert judge(416, headers, file=file) == Verdict(
            "done", "'hero.png' (namespace rewards): served with 0 bytes", status_code=416
        )


# Plain dicts, spelled as the storage spells its headers: the judge reads the canonical names.
DICT_CASES = [
    (
        "416-bigger-total",
        416,
        {"Content-Range": "bytes */99999"},
        Verdict(
            "fail",
            f"{WHERE} is served with 99999 bytes, but its upload record says {SIZE} bytes "
            f"(Capillary stored a different file){AGAIN}",
            kind="verification",
            status_code=416,
        ),
    ),
    (
        "206-total",
        206,
        {"Content-Range": "bytes 0-0/5", "Content-Type": "image/png"},
        Verdict(
            "fail",
            f"{WHERE} is served with 5 bytes, but its upload record says {SIZE} bytes "
            f"(Capillary stored a placeholder or a truncated file){AGAIN}",
            kind="verification",
            status_code=206,
        ),
    ),
    (
        "206-unknown-total",
        206,
        {"Content-Range": "bytes 0-0/*", "Content-Type": "image/png"},
        Verdict(
            "fail",
            f"{WHERE} is served with a Content-Range of 'bytes 0-0/*' (no total size){AGAIN}",
            kind="verification",
            status_code=206,
        ),
    ),
    (
        "200-length",
        200,
        {"Content-Length": "7", "Content-Type": "image/png"},
        Verdict(
            "fail",
            f"{WHERE} is served with 7 bytes, but its upload record says {SIZE} bytes "
            f"(Capillary stored a placeholder or a truncated file){AGAIN}",
            kind="verification",
            status_code=200,
        ),
    ),
    (
        "200-done",
        200,
        {"Content-Length": str(SIZE), "Content-Type": "image/png"},
        Verdict("done", f"{WHERE}: served with {SIZE} bytes of image/png", status_code=200),
    ),
    (
        "429-retry-after",
        429,
        {"Retry-After": "7"},
        Verdict(
            "wait",
            f"{WHERE}: the storage answered HTTP 429; waiting",
            status_code=429,
            retry_after=7.0,
            transient=True,
        ),
    ),
    (
        "type-with-two-params",
        206,
        {"Content-Range": f"bytes 0-0/{SIZE}", "Content-Type": "image/png; charset=binary; q=1"},
        Verdict("done", f"{WHERE}: served with {SIZE} bytes of image/png", status_code=206),
    ),
]


@pytest.mark.parametrize(
    ("status", "headers", "verdict"), [c[1:] for c in DICT_CASES], ids=[c[0] for c in DICT_CASES]
)
def test_headers_are_read_by_their_canonical_names(
    status: int, headers: dict[str, str], verdict: Verdict
) -> None:
    assert judge(status, headers) == verdict
    assert judge(status, httpx.Headers(headers)) == verdict


def test_status_bounds() -> None:
    # 600 is past the 5xx range: not a wait, but an answer that is not the file.
    assert judge(600, {}) == Verdict(
        "fail",
        f"{WHERE}: the storage answered HTTP 600 instead of the file",
        kind="rejected",
        status_code=600,
    )
    assert judge(599, {}) == Verdict(
        "wait", f"{WHERE}: the storage answered HTTP 599; waiting", status_code=599, transient=True
    )
    # 300 is a redirect left unfollowed: rejected, as 302 is; 299 is a success that is not the file.
    assert judge(300, {}) == Verdict(
        "fail",
        f"{WHERE}: the storage answered HTTP 300 instead of the file",
        kind="rejected",
        status_code=300,
    )
    assert judge(299, {}) == Verdict(
        "fail",
        f"{WHERE}: the storage answered HTTP 299 instead of the file",
        kind="verification",
        status_code=299,
    )


def test_which_statuses_need_the_error_body() -> None:
    def on_headers(status: int) -> Verdict | None:
        return AnswerJudge(expected(), "size", 120.0).on_headers(status, {})

    # A 5xx waits at once (its body is not read), as 416 in size mode is judged at once.
    assert on_headers(500) == Verdict(
        "wait", f"{WHERE}: the storage answered HTTP 500; waiting", status_code=500, transient=True
    )
    assert on_headers(416) == Verdict(
        "fail",
        f"{WHERE} is served with 0 bytes, but its upload record says {SIZE} bytes "
        f"(Capillary stored a placeholder or a truncated file){AGAIN}",
        kind="verification",
        status_code=416,
    )
    assert on_headers(499) is None
    assert on_headers(417) is None
    assert on_headers(400) is None


def test_an_error_body_without_code_or_message_adds_nothing() -> None:
    assert judge(400, {}, body=b"<html>Bad Request</html>") == Verdict(
        "fail",
        f"{WHERE}: the storage answered HTTP 400 instead of the file",
        kind="rejected",
        status_code=400,
    )


def test_an_error_body_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    body = b"<Error><Code>Access\xffDenied</Code><Message>caf\xe9</Message></Error>"
    assert judge(403, {}, body=body) == Verdict(
        "fail",
        f"{WHERE}: the storage refused its secure URL (HTTP 403 Access\ufffdDenied: caf\ufffd); "
        "the secure URL lives one hour: re-run the upload task to get a fresh one",
        kind="expired",
        status_code=403,
    )


def test_a_problem_record_names_its_file_on_the_error() -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        expected_files([make_record(secure_file_path="ftp://x/y")], "size", POLICY)
    assert str(info.value) == (
        "files[0] ('hero.png', namespace rewards) has a secure_file_path that is not an http(s) URL"
    )
    assert (info.value.file_name, info.value.namespace) == ("hero.png", "rewards")
    with pytest.raises(CapillaryInvalidInputError) as info:
        expected_files([make_record(sha256="")], "sha256", POLICY)
    assert str(info.value) == (
        "files[0] ('hero.png', namespace rewards) has no sha256 of the uploaded bytes: use check='size', "
        "or upload with this provider (it records the sha256 of what it sends)"
    )
    assert (info.value.file_name, info.value.namespace) == ("hero.png", "rewards")


def test_an_http_url_reaches_the_origin_policy() -> None:
    url = "HTTP://bucket.s3.amazonaws.com/rewards/a.png?X-Amz-Signature=5ig"
    with pytest.raises(CapillaryInvalidInputError) as info:
        expected_files([make_record(url=url)], "size", POLICY)
    assert str(info.value).startswith(
        "files[0] ('hero.png', namespace rewards) has a secure_file_path outside the storage origin policy"
    )


def test_an_upper_case_sha256_is_accepted_and_lowered() -> None:
    [file] = expected_files([make_record(sha256=SHA.upper())], "sha256", POLICY)
    assert file.sha256 == SHA


def test_the_size_is_capillarys_when_nothing_was_sent() -> None:
    [file] = expected_files([make_record(sent_size=0)], "size", POLICY)
    assert file.size == SIZE


def test_a_string_is_refused_with_the_whole_hint() -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        flatten_files("[{'name': 'a.png'}]")
    assert str(info.value) == (
        "files rendered to a string, not upload records: pass the upload task's output "
        "(e.g. upload.output) or set render_template_as_native_obj=True on the DAG"
    )


def test_a_content_length_of_non_ascii_digits_leaves_it_to_the_body() -> None:
    answer = AnswerJudge(expected(), "size", 120.0)
    assert answer.on_headers(200, {"Content-Length": "\u00b2", "Content-Type": "image/png"}) is None
    answer.feed(PNG)
    assert answer.finish() == Verdict("done", f"{WHERE}: served intact ({SIZE} bytes)", status_code=200)


@pytest.mark.parametrize(
    ("recorded", "message"),
    [
        ("", f"{WHERE}: served with {SIZE} bytes of image/png"),
        ("Image/PNG; charset=binary", f"{WHERE}: served with {SIZE} bytes of image/png"),
    ],
    ids=["not-recorded", "recorded-with-case-and-parameters"],
)
def test_the_recorded_type_is_compared_as_a_media_type_when_there_is_one(recorded: str, message: str) -> None:
    [file] = expected_files([make_record(content_type=recorded)], "size", POLICY)
    headers = {"Content-Range": f"bytes 0-0/{SIZE}", "Content-Type": "image/png"}
    assert judge(206, headers, file=file) == Verdict("done", message, status_code=206)
