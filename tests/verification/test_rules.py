"""verification.rules: a record -> what must be served; one answer -> wait / done / fail (which error)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import httpx
import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.verification.rules import (
    AnswerJudge,
    ExpectedFile,
    Verdict,
    content_range_total,
    expected_files,
    flatten_files,
    judge_transport_error,
    request_headers,
)
from tests.verification.records import PNG, SIGNATURE, make_record

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
    return expected_files([make_record()], "size")[0]


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


def test_request_headers_ask_one_byte_in_size_mode_only():
    assert request_headers("size") == {"Range": "bytes=0-0"}
    assert request_headers("sha256") == {}


@pytest.mark.parametrize(
    ("exc", "decision", "kind", "transient"),
    [
        (httpx.ConnectTimeout("timed out"), "wait", None, True),
        (httpx.ReadTimeout("timed out"), "wait", None, True),
        (httpx.ConnectError("[Errno 111] Connection refused"), "wait", None, True),
        (httpx.RemoteProtocolError("peer closed connection"), "wait", None, True),
        (httpx.ProxyError("407"), "wait", None, True),
        (
            httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"),
            "fail",
            "rejected",
            False,
        ),
        (httpx.TooManyRedirects("Exceeded maximum allowed redirects."), "fail", "rejected", False),
    ],
    ids=["connect-timeout", "read-timeout", "refused", "reset", "proxy", "scheme", "redirects"],
)
def test_transport_errors(exc, decision, kind, transient):
    verdict = judge_transport_error(expected(), exc)
    assert (verdict.decision, verdict.kind, verdict.transient) == (decision, kind, transient)
    assert verdict.message.startswith(f"{WHERE}: ")
    assert type(exc).__name__ in verdict.message


def test_transport_error_message_never_carries_the_url():
    file = expected()
    verdict = judge_transport_error(file, httpx.ConnectError(f"cannot reach {file.url}"))
    assert SIGNATURE not in verdict.message
    assert verdict.message == f"{WHERE}: ConnectError: cannot reach ***; waiting"


@pytest.mark.parametrize(
    ("value", "total"),
    [("bytes 0-0/1234", 1234), ("bytes */0", 0), ("bytes 0-0/*", None), ("garbage", None), (None, None)],
    ids=["range", "unsatisfied", "unknown", "garbage", "absent"],
)
def test_content_range_total(value, total):
    assert content_range_total(value) == total


def test_expected_files_take_what_was_sent():
    record = make_record(content_type="image/jpeg", name="a.jpg")
    assert expected_files([record], "sha256") == [
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
        expected_files(records, check)


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
