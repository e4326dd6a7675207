"""verification.rules: one answer of the storage -> wait / done / fail (which error)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from airflow_capillary.verification.records import ExpectedFile, expected_files
from airflow_capillary.verification.rules import AnswerJudge, Verdict, content_range_total
from tests.verification.records import PNG, POLICY, make_record

SIZE = len(PNG)
SHA = hashlib.sha256(PNG).hexdigest()
WHERE = "'hero.png' (namespace rewards)"
AGAIN = "; upload it again (re-run the upload task)"
EXPIRED = "; the secure URL lives one hour: re-run the upload task to get a fresh one"
TRUNCATED = "(Capillary stored a placeholder or a truncated file)"
EXPIRED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message><X-Amz-Expires>3600</X-Amz-Expires></Error>"
)
PLACEHOLDER = f"{WHERE} is served with 0 bytes, but its upload record says {SIZE} bytes {TRUNCATED}{AGAIN}"


def expected() -> ExpectedFile:
    return expected_files([make_record()], "size", POLICY)[0]


def judge(
    status: int, headers: dict[str, str], check: str = "size", body: bytes = b"", chunk: int = 100
) -> Verdict:
    """Drive an AnswerJudge the way the probe does; ``body`` is only read when the judge asks."""
    answer = AnswerJudge(expected(), check, retry_after_cap=120.0)
    verdict = answer.on_headers(status, httpx.Headers(headers))
    if verdict is not None:
        return verdict
    for start in range(0, len(body), chunk):
        if not answer.feed(body[start : start + chunk]):
            break
    return answer.finish()


PNG_206 = {"Content-Range": f"bytes 0-0/{SIZE}", "Content-Type": "image/png", "Content-Length": "1"}
CASES = [
    # (id, status, headers, body, decision, kind, message, retry_after, transient)
    (
        "206-total-matches",
        206,
        PNG_206,
        b"",
        "done",
        None,
        f"{WHERE}: served with {SIZE} bytes of image/png",
        None,
        False,
    ),
    (
        "200-range-ignored",
        200,
        {"Content-Length": str(SIZE), "Content-Type": "image/png"},
        b"",
        "done",
        None,
        f"{WHERE}: served with {SIZE} bytes of image/png",
        None,
        False,
    ),
    (
        "200-chunked-counts-body",
        200,
        {"Content-Type": "image/png"},
        PNG,
        "done",
        None,
        f"{WHERE}: served intact ({SIZE} bytes)",
        None,
        False,
    ),
    (
        "type-with-params",
        206,
        {**PNG_206, "Content-Type": "Image/PNG; charset=binary"},
        b"",
        "done",
        None,
        f"{WHERE}: served with {SIZE} bytes of image/png",
        None,
        False,
    ),
    (
        "206-placeholder",
        206,
        {**PNG_206, "Content-Range": "bytes 0-0/0"},
        b"",
        "fail",
        "verification",
        PLACEHOLDER,
        None,
        False,
    ),
    (
        "416-empty-object",
        416,
        {"Content-Range": "bytes */0"},
        b"",
        "fail",
        "verification",
        PLACEHOLDER,
        None,
        False,
    ),
    ("416-no-content-range", 416, {}, b"", "fail", "verification", PLACEHOLDER, None, False),
    (
        "206-bigger",
        206,
        {**PNG_206, "Content-Range": "bytes 0-0/99999"},
        b"",
        "fail",
        "verification",
        f"{WHERE} is served with 99999 bytes, but its upload record says {SIZE} bytes "
        f"(Capillary stored a different file){AGAIN}",
        None,
        False,
    ),
    (
        "206-unknown-total",
        206,
        {**PNG_206, "Content-Range": "bytes 0-0/*"},
        b"",
        "fail",
        "verification",
        f"{WHERE} is served with a Content-Range of 'bytes 0-0/*' (no total size){AGAIN}",
        None,
        False,
    ),
    (
        "wrong-type",
        206,
        {**PNG_206, "Content-Type": "text/html"},
        b"",
        "fail",
        "verification",
        f"{WHERE} is served as text/html, but its upload record says image/png{AGAIN}",
        None,
        False,
    ),
    (
        "no-type",
        206,
        {"Content-Range": f"bytes 0-0/{SIZE}"},
        b"",
        "fail",
        "verification",
        f"{WHERE} is served as no content type, but its upload record says image/png{AGAIN}",
        None,
        False,
    ),
    (
        "404-waits-uncounted",
        404,
        {},
        b"",
        "wait",
        None,
        f"{WHERE}: the storage answered HTTP 404; waiting",
        None,
        False,
    ),
    (
        "429-retry-after",
        429,
        {"Retry-After": "7"},
        b"",
        "wait",
        None,
        f"{WHERE}: the storage answered HTTP 429; waiting",
        7.0,
        True,
    ),
    (
        "503-retry-after-capped",
        503,
        {"Retry-After": "500"},
        b"",
        "wait",
        None,
        f"{WHERE}: the storage answered HTTP 503; waiting",
        120.0,
        True,
    ),
    ("500", 500, {}, b"", "wait", None, f"{WHERE}: the storage answered HTTP 500; waiting", None, True),
    ("408", 408, {}, b"", "wait", None, f"{WHERE}: the storage answered HTTP 408; waiting", None, True),
    (
        "403-expired",
        403,
        {"Content-Type": "application/xml"},
        EXPIRED_XML,
        "fail",
        "expired",
        f"{WHERE}: the storage refused its secure URL (HTTP 403 AccessDenied: Request has expired){EXPIRED}",
        None,
        False,
    ),
    (
        "403-no-body",
        403,
        {},
        b"",
        "fail",
        "expired",
        f"{WHERE}: the storage refused its secure URL (HTTP 403){EXPIRED}",
        None,
        False,
    ),
    (
        "400",
        400,
        {},
        b"<Error><Code>InvalidArgument</Code><Message>bad</Message></Error>",
        "fail",
        "rejected",
        f"{WHERE}: the storage answered HTTP 400 InvalidArgument: bad instead of the file",
        None,
        False,
    ),
    (
        "204",
        204,
        {},
        b"",
        "fail",
        "verification",
        f"{WHERE}: the storage answered HTTP 204 instead of the file",
        None,
        False,
    ),
    (
        "3xx-not-followed",
        302,
        {},
        b"",
        "fail",
        "rejected",
        f"{WHERE}: the storage answered HTTP 302 instead of the file",
        None,
        False,
    ),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "decision", "kind", "message", "retry_after", "transient"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_size_mode_outcomes(status, headers, body, decision, kind, message, retry_after, transient):
    assert judge(status, headers, body=body) == Verdict(
        decision, message, kind=kind, status_code=status, retry_after=retry_after, transient=transient
    )


SHA_CASES = [
    (
        "intact",
        200,
        {"Content-Length": str(SIZE), "Content-Type": "image/png"},
        PNG,
        "done",
        None,
        f"{WHERE}: served intact (sha256 {SHA[:12]}...)",
    ),
    (
        "chunked-intact",
        200,
        {"Content-Type": "image/png"},
        PNG,
        "done",
        None,
        f"{WHERE}: served intact (sha256 {SHA[:12]}...)",
    ),
    (
        "same-size-other-bytes",
        200,
        {"Content-Type": "image/png"},
        PNG[::-1],
        "fail",
        "verification",
        f"{WHERE} is served with sha256 {hashlib.sha256(PNG[::-1]).hexdigest()}, but the uploaded "
        f"bytes had sha256 {SHA}; the stored file is corrupt: upload it again (re-run the upload task)",
    ),
    (
        "length-says-truncated",
        200,
        {"Content-Length": "10", "Content-Type": "image/png"},
        PNG,
        "fail",
        "verification",
        f"{WHERE} is served with 10 bytes, but its upload record says {SIZE} bytes {TRUNCATED}{AGAIN}",
    ),
    (
        "body-truncated",
        200,
        {"Content-Type": "image/png"},
        PNG[:-4],
        "fail",
        "verification",
        f"{WHERE} is served with {SIZE - 4} bytes, but its upload record says {SIZE} bytes "
        f"{TRUNCATED}{AGAIN}",
    ),
    (
        "unasked-206",
        206,
        PNG_206,
        b"",
        "fail",
        "verification",
        f"{WHERE} is served with a partial answer (HTTP 206) to a request for the whole file{AGAIN}",
    ),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "decision", "kind", "message"),
    [case[1:] for case in SHA_CASES],
    ids=[case[0] for case in SHA_CASES],
)
def test_sha256_mode_outcomes(status, headers, body, decision, kind, message):
    assert judge(status, headers, check="sha256", body=body) == Verdict(
        decision, message, kind=kind, status_code=status
    )


def test_error_body_read_is_bounded():
    answer = AnswerJudge(expected(), "size", 120.0)
    assert answer.on_headers(400, httpx.Headers()) is None
    assert answer.feed(b"x" * 1000) is True
    assert answer.feed(b"x" * 1048) is False


@pytest.mark.parametrize(
    ("value", "total"),
    [("bytes 0-0/1234", 1234), ("bytes */0", 0), ("bytes 0-0/*", None), ("garbage", None), (None, None)],
    ids=["range", "unsatisfied", "unknown", "garbage", "absent"],
)
def test_content_range_total(value, total):
    assert content_range_total(value) == total


def feed_all(check: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
    """Feed ``body`` in one chunk the way the probe does; return the verdict and what was kept."""
    answer = AnswerJudge(expected(), check, retry_after_cap=120.0)
    assert answer.on_headers(status, httpx.Headers(headers or {"Content-Type": "image/png"})) is None
    wants_more = answer.feed(body)
    return answer.finish(), wants_more


@pytest.mark.parametrize("check", ["size", "sha256"])
def test_a_body_longer_than_the_record_stops_one_byte_past_it(check):
    verdict, wants_more = feed_all(check, PNG + b"x" * (8 * 1024 * 1024))
    assert wants_more is False
    assert verdict == Verdict(
        "fail",
        f"{WHERE} is served with more than {SIZE} bytes, but its upload record says {SIZE} bytes (Capillary "
        f"stored a different file){AGAIN}",
        kind="verification",
        status_code=200,
    )


def test_reading_stops_at_the_expected_size_plus_one_byte_across_chunks():
    answer = AnswerJudge(expected(), "sha256", retry_after_cap=120.0)
    answer.on_headers(200, httpx.Headers({"Content-Type": "image/png"}))
    assert answer.feed(PNG[:-1]) is True
    assert answer.feed(PNG[-1:]) is True  # exactly the expected size: a last byte may still come
    assert answer.feed(b"more") is False
    assert answer.finish().message.startswith(f"{WHERE} is served with more than {SIZE} bytes")


def test_the_storages_error_text_is_one_line_bounded_and_without_the_urls_credentials():
    file = expected()
    signature = file.url.rsplit("X-Amz-Signature=", 1)[1]
    body = (
        f"<Error><Code>AccessDenied</Code><Message>Denied {signature}\n"
        "[2026-01-01 00:00:00] INFO - task succeeded\x1b[0m</Message></Error>"
    ).encode()
    answer = AnswerJudge(file, "size", retry_after_cap=120.0)
    assert answer.on_headers(403, httpx.Headers()) is None
    answer.feed(body)
    assert answer.finish().message == (
        f"{WHERE}: the storage refused its secure URL (HTTP 403 AccessDenied: Denied *** "
        f"[2026-01-01 00:00:00] INFO - task succeeded [0m){EXPIRED}"
    )
    long = b"<Error><Code>" + b"C" * 150 + b"</Code><Message>" + b"M" * 150 + b"</Message></Error>"
    answer = AnswerJudge(file, "size", retry_after_cap=120.0)
    answer.on_headers(400, httpx.Headers())
    answer.feed(long)
    assert answer.finish().message == (
        f"{WHERE}: the storage answered HTTP 400 {'C' * 150}: {'M' * 48}...(truncated) instead of the file"
    )
