"""Resolution of a ``capillary`` connection: hook argument > extra > default, coercion, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.hooks._config import DEFAULTS, CapillaryConnectionConfig
from airflow_capillary.hooks.file_service import CapillaryFileHook


def resolve(extra: dict[str, Any] | None = None, **kwargs: Any) -> CapillaryConnectionConfig:
    params: dict[str, Any] = {"host": "https://eucrm.example", "login": "till", "password": "pw"}
    params.update(kwargs)
    return CapillaryConnectionConfig.resolve("my_conn", extra=extra, **params)


MD5 = "5f4dcc3b5aa765d61d8327deb882cf99"


def uri(extra: dict[str, str], host: str = "http://127.0.0.1:8080") -> str:
    return f"capillary://till:{MD5}@{quote(host, safe='')}/?{urlencode(extra)}"


def test_defaults():
    cfg = resolve()
    assert cfg.base_url == "https://eucrm.example"
    assert cfg.auth_type == "basic"
    assert cfg.password_is_md5 is False
    assert cfg.token_url == "https://eucrm.example/v3/oauth/token/generate"
    assert cfg.token_header == "X-CAP-API-OAUTH-TOKEN"
    assert cfg.namespace == "rewards"
    assert cfg.timeout == (60.0, 60.0)
    assert cfg.verify is True
    assert cfg.proxies == {}
    assert cfg.headers == {}
    assert cfg.server_timezone == "Asia/Kolkata"
    assert cfg.upload_encoding == "multipart"
    assert cfg.file_field == "file"
    assert cfg.max_retries == 5
    assert (cfg.retry_min_wait, cfg.retry_max_wait, cfg.retry_after_max) == (1.0, 30.0, 120.0)
    assert cfg.retry_on_500 is False
    assert cfg.retry_integrity_errors is True
    assert cfg.max_file_size is None
    assert cfg.check_content is True
    assert cfg.allow_empty is False
    assert cfg.max_connections == 16
    assert cfg.test_path is None


def test_password_and_headers_are_not_in_repr():
    cfg = resolve({"headers": {"X-Api-Key": "hdr-secret"}}, password="very-secret-pw")
    assert "very-secret-pw" not in repr(cfg)
    assert "hdr-secret" not in repr(cfg)


# (extra value as typed JSON, the same as a URI string, expected resolved value)
COERCIONS = [
    ("password_is_md5", True, "true", True),
    ("password_is_md5", False, "0", False),
    ("retry_on_500", True, "yes", True),
    ("check_content", False, "off", False),
    ("allow_empty", True, "1", True),
    ("timeout", 5, "5", (5.0, 5.0)),
    ("timeout", 2.5, "2.5", (2.5, 2.5)),
    ("timeout", [3, 30], "[3, 30]", (3.0, 30.0)),
    ("max_retries", 0, "0", 0),
    ("max_retries", 7, "7", 7),
    ("retry_after_max", 10, "10", 10.0),
    ("max_file_size", 1048576, "1048576", 1048576),
    ("max_connections", 4, "4", 4),
    ("verify", False, "false", False),
    (
        "headers",
        {"X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"},
        '{"X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"}',
        {"X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"},
    ),
    (
        "proxies",
        {"https": "http://127.0.0.1:3128"},
        '{"https": "http://127.0.0.1:3128"}',
        {"https": "http://127.0.0.1:3128"},
    ),
    ("upload_encoding", "raw", "RAW", "raw"),
    ("auth_type", "oauth", "OAuth", "oauth"),
    ("namespace", "loyalty", "loyalty", "loyalty"),
    ("server_timezone", "UTC", "Europe/Berlin", None),
    ("file_field", "image", "image", "image"),
    ("test_path", "/health", "/health", "/health"),
]


@pytest.mark.parametrize(
    ("field", "typed", "text", "expected"), COERCIONS, ids=[f"{c[0]}-{i}" for i, c in enumerate(COERCIONS)]
)
def test_json_and_uri_forms_coerce_alike(set_conn, field, typed, text, expected):
    set_conn("json_conn", host="http://127.0.0.1:8080", login="till", password=MD5, **{field: typed})
    set_conn("uri_conn", uri=uri({field: text}))
    from_json = getattr(CapillaryFileHook("json_conn").config, field)
    from_uri = getattr(CapillaryFileHook("uri_conn").config, field)
    if expected is None:  # values differ on purpose: just both accepted
        assert (from_json, from_uri) == (typed, text)
    else:
        assert from_json == expected
        assert from_uri == expected


BAD_VALUES = [
    ("auth_type", "kerberos", "auth_type must be one of basic, oauth, got 'kerberos'"),
    ("password_is_md5", "maybe", "password_is_md5 must be true or false, got 'maybe'"),
    ("timeout", "0", r"timeout must be a number > 0 or a \[connect, read\] pair of them, got '0'"),
    ("timeout", "-1", "timeout must be a number > 0"),
    ("timeout", "soon", "timeout must be a number > 0"),
    ("timeout", "[1, 2, 3]", "timeout must be a number > 0"),
    ("timeout", True, "timeout must be a number > 0"),
    ("verify", "/no/such/ca.pem", "verify is neither true/false nor an existing CA bundle path"),
    ("verify", 3, "verify must be true, false or a CA bundle path, got 3"),
    ("proxies", "not json", "proxies must be a JSON object of strings, got text that is not JSON"),
    ("headers", '["a"]', "headers must be an object of string keys and string values, got list"),
    ("headers", '{"X-Num": 1}', "headers must be an object of string keys and string values, got dict"),
    (
        "server_timezone",
        "Mars/Olympus",
        "server_timezone is invalid: 'Mars/Olympus' is not an IANA time zone",
    ),
    ("upload_encoding", "base64", "upload_encoding must be one of multipart, raw, got 'base64'"),
    ("file_field", 'fi"le', "file_field must be a form field name"),
    ("max_retries", "-1", "max_retries must be an integer >= 0, got '-1'"),
    ("max_retries", "2.5", "max_retries must be an integer >= 0, got '2.5'"),
    ("retry_min_wait", "-1", r"retry_min_wait must be a number >= 0, got '-1'"),
    ("retry_after_max", "forever", "retry_after_max must be a number >= 0"),
    ("retry_on_500", "2", "retry_on_500 must be true or false, got '2'"),
    ("max_file_size", "0", "max_file_size must be an integer >= 1, got '0'"),
    ("max_connections", "0", "max_connections must be an integer >= 1, got '0'"),
    ("namespace", "a/b", "namespace is invalid: namespace 'a/b' is not a plain path segment"),
    ("token_header", "X Token", "token_header must be an HTTP header name"),
    ("token_url", "ftp://x/token", "token_url must be an http:// or https:// URL"),
    ("test_path", "health", "test_path must be a path starting with '/'"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"), BAD_VALUES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_VALUES)]
)
def test_bad_values_name_connection_and_field(field, value, message):
    with pytest.raises(CapillaryConfigError, match=f"^connection 'my_conn': {message}") as info:
        resolve({field: value})
    assert info.value.conn_id == "my_conn"


def test_bad_uri_value_names_connection_and_field(set_conn):
    set_conn("uri_conn", uri=uri({"max_retries": "many"}))
    with pytest.raises(CapillaryConfigError, match=r"^connection 'uri_conn': max_retries must be an integer"):
        _ = CapillaryFileHook("uri_conn").config


def test_retry_min_wait_above_max_wait():
    with pytest.raises(
        CapillaryConfigError, match=r"retry_min_wait \(5.0\) is larger than retry_max_wait \(2.0\)"
    ):
        resolve({"retry_min_wait": 5, "retry_max_wait": 2})


def test_ca_bundle_path_is_kept(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert resolve({"verify": str(ca)}).verify == str(ca)


def test_missing_credentials_name_the_field():
    with pytest.raises(
        CapillaryConfigError, match="connection 'my_conn': login is empty: auth_type basic needs"
    ):
        resolve(login=None)
    with pytest.raises(
        CapillaryConfigError, match="password is empty: auth_type oauth needs the OAuth client secret"
    ):
        resolve({"auth_type": "oauth"}, password="")


def test_md5_password_must_look_like_md5():
    assert resolve({"password_is_md5": True}, password="0" * 32).password == "0" * 32
    with pytest.raises(CapillaryConfigError, match="password is not a 32-character MD5 hex digest"):
        resolve({"password_is_md5": True}, password="plain")


@pytest.mark.parametrize(
    ("host", "schema", "port", "base_url"),
    [
        ("https://eucrm.cc.capillarytech.com", None, None, "https://eucrm.cc.capillarytech.com"),
        ("https://eucrm.cc.capillarytech.com/", None, None, "https://eucrm.cc.capillarytech.com"),
        ("eucrm.cc.capillarytech.com", None, None, "https://eucrm.cc.capillarytech.com"),
        ("eucrm.cc.capillarytech.com", "", None, "https://eucrm.cc.capillarytech.com"),
        ("eucrm.cc.capillarytech.com", "rewards", None, "https://eucrm.cc.capillarytech.com"),
        ("127.0.0.1", "http", 8080, "http://127.0.0.1:8080"),
        ("127.0.0.1", "HTTPS", 8443, "https://127.0.0.1:8443"),
        ("http://127.0.0.1:8080", None, None, "http://127.0.0.1:8080"),
        ("http://127.0.0.1", None, 9000, "http://127.0.0.1:9000"),
        ("http://127.0.0.1:8080", None, 9000, "http://127.0.0.1:8080"),
        ("https://gw.example/prefix/", None, None, "https://gw.example/prefix"),
    ],
    ids=[
        "https",
        "trailing-slash",
        "no-scheme",
        "empty-schema",
        "other-schema",
        "schema-http-port",
        "schema-https-port",
        "scheme-in-host",
        "port-field",
        "host-port-wins",
        "path-prefix",
    ],
)
def test_base_url_rule(host, schema, port, base_url):
    assert resolve(host=host, schema=schema, port=port).base_url == base_url


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (None, "host is empty"),
        ("  ", "host is empty"),
        ("ftp://files.example", "host must be an http"),
        ("https://user:pw@files.example", "host must not carry credentials"),
        ("http://[::1", "host is not a valid URL"),
    ],
    ids=["none", "blank", "ftp", "userinfo", "broken"],
)
def test_bad_hosts(host, message):
    with pytest.raises(CapillaryConfigError, match=f"connection 'my_conn': {message}"):
        resolve(host=host)


def test_uri_form_with_percent_encoded_scheme(set_conn):
    set_conn(uri="capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A8080/?auth_type=basic")
    cfg = CapillaryFileHook().config
    assert (cfg.conn_id, cfg.base_url, cfg.login, cfg.password) == (
        "capillary_default",
        "http://127.0.0.1:8080",
        "demo",
        "demo-password",
    )


def test_hook_argument_beats_extra_beats_default(set_conn):
    set_conn(namespace="from_extra", timeout=7, max_retries=2)
    hook = CapillaryFileHook(namespace="from_arg", max_connections=3, retry_on_500=True)
    cfg = hook.config
    assert cfg.namespace == "from_arg"
    assert cfg.timeout == (7.0, 7.0)  # extra, no argument
    assert cfg.max_retries == 2
    assert cfg.max_connections == 3
    assert cfg.retry_on_500 is True
    assert cfg.file_field == DEFAULTS["file_field"]


def test_hook_arguments_are_validated_like_extras(set_conn):
    set_conn()
    with pytest.raises(
        CapillaryConfigError, match="connection 'capillary_default': timeout must be a number > 0"
    ):
        _ = CapillaryFileHook(timeout=-5).config


def test_unknown_hook_setting_is_refused_without_io():
    with pytest.raises(CapillaryConfigError, match="CapillaryFileHook got unknown setting\\(s\\) retries;"):
        CapillaryFileHook(retries=3)


@pytest.mark.parametrize(
    ("alias", "field", "value", "expected"),
    [
        ("md5_prehashed", "password_is_md5", "true", True),
        (
            "oauth_url",
            "token_url",
            "https://api.example/v3/oauth/token/generate",
            "https://api.example/v3/oauth/token/generate",
        ),
        ("oauth_access_header", "token_header", "X-Token", "X-Token"),
    ],
    ids=["md5_prehashed", "oauth_url", "oauth_access_header"],
)
def test_form_aliases(alias, field, value, expected):
    password = "0" * 32
    assert getattr(resolve({alias: value}, password=password), field) == expected
    assert getattr(resolve(None, password=password, overrides={alias: value}), field) == expected


def test_alias_conflict_is_an_error():
    with pytest.raises(CapillaryConfigError, match="token_header is given twice with different values"):
        resolve({"token_header": "X-A", "oauth_access_header": "X-B"})
    assert resolve({"token_header": "X-A", "oauth_access_header": "X-A"}).token_header == "X-A"


def test_extras_json_string_from_connection(set_conn, monkeypatch):
    conn = {
        "conn_type": "capillary",
        "host": "http://127.0.0.1:1",
        "login": "a",
        "password": "b",
        "extra": json.dumps({"auth_type": "oauth", "oauth_url": "http://127.0.0.1:2/token"}),
    }
    monkeypatch.setenv("AIRFLOW_CONN_STR_EXTRA", json.dumps(conn))
    cfg = CapillaryFileHook("str_extra").config
    assert (cfg.auth_type, cfg.token_url) == ("oauth", "http://127.0.0.1:2/token")
