"""Kills mutmut survivors in ``airflow_capillary/hooks/_coerce.py``: each kind's values and exact problems."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from airflow_capillary.hooks._coerce import Invalid, coerce, without_userinfo
from airflow_capillary.settings import BY_NAME


def ok(name: str, value: Any) -> Any:
    return coerce(value, BY_NAME[name])


def problem(name: str, value: Any) -> str:
    with pytest.raises(Invalid) as info:
        coerce(value, BY_NAME[name])
    return str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@h:1/a://b", "http://***@h:1/a://b"),
        ("http://h/p", "http://h/p"),
        ("h", "h"),
        ("a@b@c", "***@c"),
    ],
)
def test_without_userinfo(url: str, shown: str) -> None:
    assert without_userinfo(url) == shown


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (" Yes ", True),
        ("Y", True),
        ("on", True),
        ("TRUE", True),
        ("1", True),
        ("n", False),
        ("No", False),
        ("OFF", False),
        ("0", False),
        ("false", False),
    ],
)
def test_boolean_values(value: Any, expected: bool) -> None:
    assert ok("allow_empty", value) is expected


@pytest.mark.parametrize("value", [2, -1, 0.5, 1.0, None, "", "maybe", [1]])
def test_boolean_refusals(value: Any) -> None:
    assert problem("allow_empty", value) == f"must be true or false, got {value!r}"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("retry_min_wait", 0, 0.0),
        ("retry_min_wait", "0", 0.0),
        ("retry_min_wait", " 2.5\n", 2.5),
        ("retry_min_wait", 1e300, 1e300),
        ("retry_min_wait", "1e-3", 0.001),
        ("retry_min_wait", "\x1c5\x1f", 5.0),  # str.strip removes separators float() refuses
        ("rate_limit_per_minute", 0.001, 0.001),
        ("rate_limit_per_minute", "7", 7.0),
        ("max_rate_limit_wait", 1, 1.0),
    ],
)
def test_number_values(name: str, value: Any, expected: float) -> None:
    got = ok(name, value)
    assert got == expected
    assert type(got) is float


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("retry_min_wait", -0.001, "must be a number >= 0, got -0.001"),
        ("retry_min_wait", "-1", "must be a number >= 0, got '-1'"),
        ("retry_min_wait", True, "must be a number >= 0, got True"),
        ("retry_min_wait", None, "must be a number >= 0, got None"),
        ("retry_min_wait", [1], "must be a number >= 0, got [1]"),
        ("retry_min_wait", "nan", "must be a number >= 0, got 'nan'"),
        ("retry_min_wait", float("nan"), "must be a number >= 0, got nan"),
        ("retry_min_wait", "inf", "must be a number >= 0, got 'inf'"),
        ("retry_min_wait", float("inf"), "must be a number >= 0, got inf"),
        ("retry_min_wait", "-inf", "must be a number >= 0, got '-inf'"),
        ("retry_min_wait", "", "must be a number >= 0, got ''"),
        ("rate_limit_per_minute", 0, "must be a number > 0, got 0"),
        ("rate_limit_per_minute", -5, "must be a number > 0, got -5"),
        ("max_rate_limit_wait", 0.0, "must be a number > 0, got 0.0"),
    ],
)
def test_number_refusals(name: str, value: Any, expected: str) -> None:
    assert problem(name, value) == expected


def _setting(name: str, **changes: Any) -> Any:
    return dataclasses.replace(BY_NAME[name], **changes)


def test_number_minimum_other_than_zero() -> None:
    five = _setting("retry_min_wait", minimum=5.0)
    assert coerce(5, five) == 5.0
    with pytest.raises(Invalid) as info:
        coerce(4.5, five)
    assert str(info.value) == "must be a number >= 5, got 4.5"
    five_exclusive = _setting("retry_min_wait", minimum=5.0, exclusive=True)
    assert coerce(5.5, five_exclusive) == 5.5
    with pytest.raises(Invalid) as info:
        coerce(5, five_exclusive)
    assert str(info.value) == "must be a number > 5, got 5"
    with pytest.raises(Invalid) as info:
        coerce(0.2, _setting("retry_min_wait", minimum=0.25))
    assert str(info.value) == "must be a number >= 0.25, got 0.2"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("max_retries", 0, 0),
        ("max_retries", "0", 0),
        ("max_retries", 3.0, 3),
        ("max_retries", " 12 ", 12),
        ("max_file_size", 1, 1),
        ("max_file_size", "1", 1),
        ("max_connections", 2, 2),
    ],
)
def test_integer_values(name: str, value: Any, expected: int) -> None:
    got = ok(name, value)
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("max_retries", -1, "must be an integer >= 0, got -1"),
        ("max_retries", 1.5, "must be an integer >= 0, got 1.5"),
        ("max_retries", "x", "must be an integer >= 0, got 'x'"),
        ("max_retries", True, "must be an integer >= 0, got True"),
        ("max_file_size", 0, "must be an integer >= 1, got 0"),
        ("max_file_size", 0.5, "must be an integer >= 1, got 0.5"),
        ("max_connections", "0", "must be an integer >= 1, got '0'"),
    ],
)
def test_integer_refusals(name: str, value: Any, expected: str) -> None:
    assert problem(name, value) == expected


def test_choice() -> None:
    assert ok("upload_encoding", " RAW ") == "raw"
    assert ok("auth_type", "OAuth") == "oauth"
    assert problem("upload_encoding", 1) == "must be one of multipart, raw, got 1"
    assert problem("auth_type", "token") == "must be one of basic, oauth, got 'token'"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("oauth_access_header", "X-Cap_Token.1~!#$%&'*+^`|", "X-Cap_Token.1~!#$%&'*+^`|"),
        ("file_field", "image file", "image file"),
        ("test_path", "/", "/"),
        ("test_path", "/v2/files?x=1", "/v2/files?x=1"),
    ],
)
def test_patterns_accept(name: str, value: str, expected: str) -> None:
    assert coerce(value, BY_NAME[name] if name in BY_NAME else _by_extra(name)) == expected


def _by_extra(extra: str) -> Any:
    (setting,) = [s for s in BY_NAME.values() if s.extra_name == extra]
    return setting


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("oauth_access_header", "X:Token", "must be an HTTP header name, got 'X:Token'"),
        ("oauth_access_header", "", "must be an HTTP header name, got ''"),
        ("oauth_access_header", 5, "must be an HTTP header name, got 5"),
        ("file_field", "a\\b", "must be a form field name, got 'a\\\\b'"),
        ("file_field", "a\nb", "must be a form field name, got 'a\\nb'"),
        ("file_field", "", "must be a form field name, got ''"),
        ("test_path", "/a b", "must be a path starting with '/', got '/a b'"),
        ("test_path", None, "must be a path starting with '/', got None"),
    ],
)
def test_patterns_refuse(name: str, value: Any, expected: str) -> None:
    with pytest.raises(Invalid) as info:
        coerce(value, _by_extra(name))
    assert str(info.value) == expected


def test_checked_kinds() -> None:
    assert ok("namespace", "loyalty") == "loyalty"
    assert ok("server_timezone", "UTC") == "UTC"
    assert (
        problem("server_timezone", "Mars/Olympus")
        == "is invalid: 'Mars/Olympus' is not an IANA time zone name"
    )
    assert problem("server_timezone", 5) == "is invalid: 5 is not an IANA time zone name"
    assert problem("server_timezone", "../etc") == "is invalid: '../etc' is not an IANA time zone name"
    assert problem("namespace", "a/b") == (
        "is invalid: namespace 'a/b' is not a plain path segment "
        "(letters, digits, '_', '.', '-'; at most 128 characters; no '..')"
    )


def test_string_dicts() -> None:
    assert ok("headers", '{"A": "b"}') == {"A": "b"}
    assert ok("headers", {}) == {}
    value = {"k": "v"}
    got = ok("proxies", value)
    assert got == value
    assert got is not value
    assert problem("headers", "{") == "must be a JSON object of strings, got text that is not JSON"
    assert problem("headers", 3) == "must be an object of string keys and string values, got int"
    assert problem("headers", '"text"') == "must be an object of string keys and string values, got str"
    assert problem("headers", {1: "v"}) == "must be an object of string keys and string values, got dict"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, (5.0, 5.0)),
        ("5", (5.0, 5.0)),
        (" [1, 2.5]", (1.0, 2.5)),
        ((3, "4"), (3.0, 4.0)),
        (0.001, (0.001, 0.001)),
    ],
)
def test_timeout_values(value: Any, expected: tuple[float, float]) -> None:
    assert ok("timeout", value) == expected


@pytest.mark.parametrize("value", [0, "-1", [1], [1, 0], [0, 1], [1, 2, 3], "[1, x]", [], None, "inf", True])
def test_timeout_refusals(value: Any) -> None:
    assert (
        problem("timeout", value) == f"must be a number > 0 or a [connect, read] pair of them, got {value!r}"
    )


def test_verify(tmp_path: Path) -> None:
    assert ok("verify", True) is True
    assert ok("verify", False) is False
    assert ok("verify", " YES ") is True
    assert ok("verify", "off") is False
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert ok("verify", str(ca)) == str(ca)
    assert problem("verify", 1) == "must be true, false or a CA bundle path, got 1"
    assert problem("verify", None) == "must be true, false or a CA bundle path, got None"
    missing = str(tmp_path / "no.pem")
    assert problem("verify", missing) == f"is neither true/false nor an existing CA bundle path: {missing!r}"


@pytest.mark.parametrize("value", ["http://h", "https://h.example:8443/t", "https://h:0/t", "HTTPS://h/t"])
def test_url_values(value: str) -> None:
    assert ok("token_url", value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ftp://h/t", "must be an http:// or https:// URL"),
        ("https:///t", "must be an http:// or https:// URL"),
        ("https://h:x/t", "must be an http:// or https:// URL"),
        ("https://h:99999/t", "must be an http:// or https:// URL"),
        ("http://[::1", "must be an http:// or https:// URL"),
        (None, "must be an http:// or https:// URL"),
        (5, "must be an http:// or https:// URL"),
        ("https://k@h/t", "must not carry credentials"),
    ],
)
def test_url_refusals(value: Any, expected: str) -> None:
    assert problem("token_url", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        (
            "a.example  b.example,,c.example\n",
            ("https://a.example", "https://b.example", "https://c.example"),
        ),
        (' ["A.example:1"]', ("https://a.example:1",)),
        (("http://h:65535", " *.x.example "), ("http://h:65535", "https://*.x.example")),
        (["[::1]:8443"], ("https://[::1]:8443",)),
        (["h:00443"], ("https://h:443",)),
        ([], ()),
    ],
)
def test_hosts_values(value: Any, expected: tuple[str, ...]) -> None:
    assert ok("storage_hosts", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("h:0", "entry 'h:0' is not a host pattern"),
        ("h:65536", "entry 'h:65536' is not a host pattern"),
        ("a.example, u:pw@b.example", "entry '***@b.example' is not a host pattern"),
        ("-a.example", "entry '-a.example' is not a host pattern"),
    ],
)
def test_hosts_refusals(value: Any, expected: str) -> None:
    suffix = " (host, *.domain or host:port for https; http://host:port for http)"
    assert problem("storage_hosts", value) == expected + suffix


def test_hosts_shapes() -> None:
    assert problem("storage_hosts", "[x") == "must be a JSON list of host patterns, got text that is not JSON"
    assert problem("storage_hosts", 5) == "must be a list of host patterns, got int"
    assert problem("storage_hosts", ["a", 1]) == "must be a list of host patterns, got list"
