"""The per-upload cost cuts (issue 14) keep their behaviour: each shortcut gives what the full path gives.

- the origin check's fast path for plain URLs reads the origin httpx reads (or refuses as it does);
- ``looks_like_credential``'s ASCII path agrees with the per-character definition;
- a pre-signed URL's session values are examined once per process, not once per upload;
- a small image goes out in one block, framing included, and the pools send 64 KiB blocks;
- without a lineage reader, an upload builds no lineage URIs.
"""

from __future__ import annotations

import hashlib
import io
import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3 import HTTPConnectionPool

from airflow_capillary import _redact, lineage
from airflow_capillary._validation import validate_file_name
from airflow_capillary.exceptions import CapillaryIntegrityError, CapillaryInvalidInputError
from airflow_capillary.hooks._body import UploadBody, build_body
from airflow_capillary.hooks._deadline import SEND_BLOCK_BYTES, _deadline_pool
from airflow_capillary.models import parse_last_modified
from airflow_capillary.verification import storage
from airflow_capillary.verification.storage import _DEFAULT_PORTS, _Origin, _parse
from tests.hooks.recorder import PNG, Recorder, file_part

# -- the origin check ------------------------------------------------------------------------


def _parse_with_httpx(url: str) -> _Origin | None:
    """The origin as the full parser (httpx, the sensor's client) reads it; ``None``: refused."""
    if storage._UNSAFE_RE.search(url):
        return None
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    scheme = parsed.scheme.lower()
    host = parsed.raw_host.decode("ascii", errors="replace").lower().rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host or parsed.userinfo:
        return None
    return _Origin(scheme, host.strip("[]"), parsed.port or _DEFAULT_PORTS[scheme])


def _origin(url: str) -> _Origin | None:
    parsed = _parse(url)
    return parsed if isinstance(parsed, _Origin) else None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://b.s3.amazonaws.com/k.png?X-Amz-Signature=s", _Origin("https", "b.s3.amazonaws.com", 443)),
        ("HTTP://Host.Example.:8080/x", _Origin("http", "host.example", 8080)),
        ("https://host..:8/", _Origin("https", "host", 8)),
        ("https://host:/p", _Origin("https", "host", 443)),
        ("https://host:0/p", _Origin("https", "host", 443)),
        ("https://host?q#f", _Origin("https", "host", 443)),
        ("https://[::1]:9/", _Origin("https", "::1", 9)),
        ("https://a.com@b.com/", None),
        ("https://a.com%2e.b.com/", _Origin("https", "a.com%2e.b.com", 443)),
        ("https://./x", None),
        ("ftp://host/x", None),
    ],
)
def test_plain_and_odd_urls_have_the_origin_httpx_reads(url: str, expected: _Origin | None) -> None:
    assert _origin(url) == expected
    assert _parse_with_httpx(url) == expected


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["https://", "http://", "HTTPS://", "ftp://", ""]),
    st.text(alphabet="aZ09.-:/?#@[]%é_~\\ ", max_size=16),
)
def test_the_fast_path_never_reads_another_origin_than_httpx(scheme: str, rest: str) -> None:
    assert _origin(scheme + rest) == _parse_with_httpx(scheme + rest)


# -- credentials ---------------------------------------------------------------------------------


def _looks_like_credential_per_character(value: str) -> bool:
    if len(value) < _redact.MIN_CREDENTIAL_CHARS or not value.isprintable():
        return False
    if any(c.isspace() for c in value):
        return False
    return sum(any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit)) >= 2


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ9-_/+= \t\u00e9\u00c9\u0661\u2003\x00"), min_size=10, max_size=24))
def test_looks_like_credential_agrees_with_its_per_character_definition(value: str) -> None:
    assert _redact.looks_like_credential(value) is _looks_like_credential_per_character(value)


def test_a_session_value_is_examined_once_for_a_whole_batch(mocker: Any) -> None:
    mocker.patch.object(_redact, "_registered", set())
    mocker.patch.object(_redact, "_not_credentials", set())
    examined = mocker.spy(_redact, "looks_like_credential")
    registered = mocker.patch.object(_redact, "register_secret")
    token = "IQoJb3JpZ2luX2VjEJr%2F" + "A" * 40 + "z9"
    for n in range(50):
        _redact.register_url_credentials(
            f"https://b.s3.amazonaws.com/{n}.png?X-Amz-Credential=short&X-Amz-Security-Token={token}"
            f"&X-Amz-Signature=sig{n}"
        )
    # The token once, "short" (not a credential) once; signatures are per URL and never examined.
    assert [c.args[0] for c in examined.call_args_list] == ["short", "IQoJb3JpZ2luX2VjEJr/" + "A" * 40 + "z9"]
    assert [c.args[0] for c in registered.call_args_list] == ["IQoJb3JpZ2luX2VjEJr/" + "A" * 40 + "z9", token]


def test_the_not_credential_cache_is_bounded(mocker: Any) -> None:
    mocker.patch.object(_redact, "_not_credentials", set())
    mocker.patch.object(_redact, "_MAX_NOT_CREDENTIALS", 3)
    examined = mocker.spy(_redact, "looks_like_credential")
    for n in range(5):
        _redact.register_url_credentials(f"https://h/x?X-Amz-Credential=v{n}")
    for n in range(5):
        _redact.register_url_credentials(f"https://h/x?X-Amz-Credential=v{n}")
    assert _redact._not_credentials == {"v0", "v1", "v2"}
    # The second pass examines only what did not fit.
    assert [c.args[0] for c in examined.call_args_list] == [f"v{n}" for n in range(5)] + ["v3", "v4"]


# -- sending ---------------------------------------------------------------------------------------


def test_a_small_image_goes_out_in_one_block_with_its_framing() -> None:
    content = bytes(range(256)) * 200  # 51,200 bytes
    body, headers = build_body(
        lambda: io.BytesIO(content),
        len(content),
        file_name="a.png",
        content_type="image/png",
        encoding="multipart",
        field="file",
        label="a.png",
    )
    boundary = headers["Content-Type"].partition("boundary=")[2]
    first = body.read(SEND_BLOCK_BYTES)
    assert first.startswith(f"--{boundary}\r\n".encode())
    assert first.endswith(content + f"\r\n--{boundary}--\r\n".encode())
    assert len(first) == len(body)
    assert body.read(SEND_BLOCK_BYTES) == b""


def test_a_large_image_fills_every_block_but_the_last() -> None:
    content = b"x" * (3 * SEND_BLOCK_BYTES)
    body = UploadBody(lambda: io.BytesIO(content), len(content), preamble=b"P" * 10, epilogue=b"E" * 10)
    sizes = [len(block) for block in iter(lambda: body.read(SEND_BLOCK_BYTES), b"")]
    assert sizes == [SEND_BLOCK_BYTES] * 3 + [20]


def test_the_pools_send_64_kib_blocks() -> None:
    pool = _deadline_pool(HTTPConnectionPool("127.0.0.1", 9, blocksize=16384))
    assert SEND_BLOCK_BYTES == 65536
    assert pool.conn_kw["blocksize"] == SEND_BLOCK_BYTES
    assert pool._new_conn().blocksize == SEND_BLOCK_BYTES


# -- lineage -----------------------------------------------------------------------------------------


def test_without_a_lineage_reader_an_upload_builds_no_uris(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoOpCollector:
        def add_output_asset(self, **kwargs: Any) -> None:
            raise AssertionError("a no-op collector was given an asset")

    def no_uri(*args: Any) -> str:
        raise AssertionError("a URI was built")

    monkeypatch.setattr(lineage, "hook_lineage_collector", NoOpCollector)
    monkeypatch.setattr(lineage, "capillary_uri", no_uri)
    prepared = SimpleNamespace(source_label="/data/a.png", placeholder=False)
    result = SimpleNamespace(namespace="rewards", name="a.png", file_handle="h", version=1)
    with caplog.at_level(logging.DEBUG, logger="airflow_capillary.lineage"):
        lineage.report_upload(object(), prepared, result, base_url="https://x.example")  # type: ignore[arg-type]
    assert caplog.records == []


def test_the_real_no_op_collector_is_the_one_recognised() -> None:
    assert type(lineage.hook_lineage_collector()).__name__ == "NoOpCollector"


# -- answer parsing and validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05 10:20:30", "2024-03-05T04:50:30+00:00"),  # the documented form: the fast path
        ("2024-3-5 10:20:30", "2024-03-05T04:50:30+00:00"),  # strptime's looser form still reads
    ],
)
def test_last_modified_reads_the_same_on_both_paths(text: str, expected: str) -> None:
    assert parse_last_modified(text, "Asia/Kolkata").isoformat() == expected


@pytest.mark.parametrize("text", ["2024-13-05 10:20:30", "2024-02-30 10:20:30", "2024-03-05 10:20:60"])
def test_an_impossible_last_modified_is_refused_on_the_fast_path(text: str) -> None:
    with pytest.raises(CapillaryIntegrityError) as info:
        parse_last_modified(text, "UTC")
    assert (
        info.value.message == f"Capillary's answer has last_modified {text!r}, expected 'YYYY-MM-DD HH:MM:SS'"
    )


@pytest.mark.parametrize("name", ["a\x07.png", "a\u2028b.png", "a\x85.png", "a\ud800.png"])
def test_control_characters_are_refused_in_ascii_and_beyond(name: str) -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        validate_file_name(name)
    assert info.value.message == f"file name {name!r} contains a control character"


def test_printable_names_pass_in_ascii_and_beyond() -> None:
    assert [validate_file_name(n) for n in ("a b.png", "café ☕.png")] == ["a b.png", "café ☕.png"]


class _BodyTypes(Recorder):
    """Records the type of each request's body as requests handed it to the transport."""

    def __init__(self) -> None:
        super().__init__()
        self.types: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.types.append(type(request.body).__name__)
        return super().send(request, *args, **kwargs)


@pytest.mark.parametrize(
    ("extra", "sent_as"),
    [(0, "bytes"), (SEND_BLOCK_BYTES - len(PNG) - 300, "bytes"), (SEND_BLOCK_BYTES, "UploadBody")],
    ids=["small", "one-block", "streamed"],
)
def test_an_image_of_one_block_goes_out_as_bytes_a_larger_one_streamed(
    make_hook: Any, extra: int, sent_as: str
) -> None:
    content = PNG + bytes(extra)
    recorder = _BodyTypes()
    hook, _ = make_hook(recorder=recorder)
    result = hook.upload_file(content, file_name="test.png")
    assert recorder.types == [sent_as]
    assert file_part(recorder.sent[0])[1] == content
    assert (result.sent_size, result.sha256) == (len(content), hashlib.sha256(content).hexdigest())
