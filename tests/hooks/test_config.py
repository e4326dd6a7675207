"""Resolution of a ``capillary`` connection: hook argument > extra > default, coercion, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from airflow_capillary import settings
from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.hooks._config import DEFAULTS, CapillaryConnectionConfig
from airflow_capillary.hooks.file_service import CapillaryFileHook


def resolve(
    extra: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, **kwargs: Any
) -> CapillaryConnectionConfig:
    params: dict[str, Any] = {"host": "https://eucrm.example", "login": "till", "password": "pw"}
    params.update(kwargs)
    return CapillaryConnectionConfig.resolve("my_conn", extra=extra, overrides=overrides, **params)


def given(field: str, value: Any) -> dict[str, Any]:
    """``resolve`` keywords that give ``field`` where it belongs: a connection extra or a hook argument."""
    setting = settings.BY_NAME.get(field)
    if setting is not None and setting.scope == "task":
        return {"overrides": {field: value}}
    return {"extra": {field: value}}


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
    assert cfg.rate_limit_per_minute is None
    assert cfg.verify is True
    assert cfg.proxies == {}
    assert cfg.headers == {}
    assert cfg.storage_hosts == ()
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


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("http://user:pr0xy-pass@proxy.example:3128", "http://***@proxy.example:3128"),
        ("user:pr0xy-pass@proxy.example:3128", "***@proxy.example:3128"),
        ("http://user:pr0xy/p@ss@proxy.example:3128", "http://***@proxy.example:3128"),
        ("socks5h://pr0xy-pass@proxy.example", "socks5h://***@proxy.example"),
        ("http://proxy.example:3128", "http://proxy.example:3128"),
    ],
    ids=["scheme", "no-scheme", "slash-and-at-in-password", "socks-user-only", "no-credentials"],
)
def test_proxy_credentials_are_not_in_repr_or_str(set_conn, proxy, shown):
    """Issue 10 finding 5: ``repr(hook.config)`` showed ``http://user:pass@proxy``."""
    set_conn(proxies={"https": proxy})
    cfg = CapillaryFileHook().config
    assert cfg.proxies == {"https": proxy}  # requests still gets the credentials
    for text in (repr(cfg), str(cfg), f"{cfg}", repr([cfg])):
        assert "pr0xy" not in text
        assert f"proxies={{'https': {shown!r}}}" in text


def test_repr_lists_every_other_setting():
    cfg = resolve({"proxies": {"http": "http://u:p@proxy:1"}, "storage_hosts": ["cdn.example"]})
    text = repr(cfg)
    assert text.startswith("CapillaryConnectionConfig(conn_id='my_conn', base_url='https://eucrm.example', ")
    shown = [f.name for f in dataclasses.fields(cfg) if f"{f.name}=" in text]
    assert shown == [f.name for f in dataclasses.fields(cfg) if f.name not in ("password", "headers")]
    assert "storage_hosts=('https://cdn.example',)" in text


# (extra value as typed JSON, the same as a URI string, expected resolved value)
COERCIONS = [
    ("md5_prehashed", True, "true", True),
    ("md5_prehashed", False, "0", False),
    ("timeout", 5, "5", (5.0, 5.0)),
    ("timeout", 2.5, "2.5", (2.5, 2.5)),
    ("timeout", [3, 30], "[3, 30]", (3.0, 30.0)),
    ("rate_limit_per_minute", 100, "100", 100.0),
    ("rate_limit_per_minute", 33.5, "33.5", 33.5),
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
    (
        "storage_hosts",
        ["*.Blob.example.com", "http://127.0.0.1:9000"],
        "*.blob.example.com, http://127.0.0.1:9000",
        ("https://*.blob.example.com", "http://127.0.0.1:9000"),
    ),
    (
        "storage_hosts",
        ["cdn.example:8443", "[::1]"],
        '["cdn.example:8443", "[::1]"]',
        ("https://cdn.example:8443", "https://[::1]"),
    ),
    ("upload_encoding", "raw", "RAW", "raw"),
    ("auth_type", "oauth", "OAuth", "oauth"),
    ("namespace", "loyalty", "loyalty", "loyalty"),
    ("server_timezone", "UTC", "Europe/Berlin", None),
    ("file_field", "image", "image", "image"),
    ("test_path", "/health", "/health", "/health"),
    ("oauth_access_header", "X-Token", "X-Token", "X-Token"),
    (
        "oauth_url",
        "https://api.example/v3/oauth/token/generate/",
        "https://api.example/v3/oauth/token/generate",
        "https://api.example/v3/oauth/token/generate",
    ),
]


@pytest.mark.parametrize(
    ("extra", "typed", "text", "expected"), COERCIONS, ids=[f"{c[0]}-{i}" for i, c in enumerate(COERCIONS)]
)
def test_json_and_uri_extras_coerce_alike(set_conn, extra, typed, text, expected):
    set_conn("json_conn", host="http://127.0.0.1:8080", login="till", password=MD5, **{extra: typed})
    set_conn("uri_conn", uri=uri({extra: text}))
    (attribute,) = [s.name for s in settings.TABLE if s.extra_name == extra]
    from_json = getattr(CapillaryFileHook("json_conn").config, attribute)
    from_uri = getattr(CapillaryFileHook("uri_conn").config, attribute)
    if expected is None:  # values differ on purpose: just both accepted
        assert (from_json, from_uri) == (typed, text)
    else:
        assert from_json == expected
        assert from_uri == expected


# (hook argument, typed value, the same as text (a templated operator argument), expected)
ARGUMENT_COERCIONS = [
    ("retry_on_500", True, "yes", True),
    ("check_content", False, "off", False),
    ("allow_empty", True, "1", True),
    ("retry_integrity_errors", False, "false", False),
    ("max_retries", 0, "0", 0),
    ("max_retries", 7, "7", 7),
    ("retry_min_wait", 0.5, "0.5", 0.5),
    ("retry_max_wait", 2, "2", 2.0),
    ("retry_after_max", 10, "10", 10.0),
    ("max_file_size", 1048576, "1048576", 1048576),
    ("max_connections", 4, "4", 4),
    ("timeout", [3, 30], "[3, 30]", (3.0, 30.0)),
    ("rate_limit_per_minute", 120, "120", 120.0),
    ("namespace", "loyalty", "loyalty", "loyalty"),
]


@pytest.mark.parametrize(
    ("field", "typed", "text", "expected"),
    ARGUMENT_COERCIONS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(ARGUMENT_COERCIONS)],
)
def test_hook_arguments_coerce_typed_and_text_alike(set_conn, field, typed, text, expected):
    set_conn()
    assert getattr(CapillaryFileHook(**{field: typed}).config, field) == expected
    assert getattr(CapillaryFileHook(**{field: text}).config, field) == expected


BAD_VALUES = [
    ("auth_type", "kerberos", "auth_type must be one of basic, oauth, got 'kerberos'"),
    ("md5_prehashed", "maybe", "md5_prehashed must be true or false, got 'maybe'"),
    ("timeout", "0", r"timeout must be a number > 0 or a \[connect, read\] pair of them, got '0'"),
    ("timeout", "-1", "timeout must be a number > 0"),
    ("timeout", "soon", "timeout must be a number > 0"),
    ("timeout", "[1, 2, 3]", "timeout must be a number > 0"),
    ("timeout", True, "timeout must be a number > 0"),
    ("rate_limit_per_minute", "0", "rate_limit_per_minute must be a number > 0, got '0'"),
    ("rate_limit_per_minute", "fast", "rate_limit_per_minute must be a number > 0, got 'fast'"),
    ("verify", "/no/such/ca.pem", "verify is neither true/false nor an existing CA bundle path"),
    ("verify", 3, "verify must be true, false or a CA bundle path, got 3"),
    ("proxies", "not json", "proxies must be a JSON object of strings, got text that is not JSON"),
    ("headers", '["a"]', "headers must be an object of string keys and string values, got list"),
    ("headers", '{"X-Num": 1}', "headers must be an object of string keys and string values, got dict"),
    (
        "storage_hosts",
        "[not json",
        "storage_hosts must be a JSON list of host patterns, got text that is not",
    ),
    ("storage_hosts", {"a": "b"}, "storage_hosts must be a list of host patterns, got dict"),
    ("storage_hosts", [1], "storage_hosts must be a list of host patterns, got list"),
    (
        "storage_hosts",
        "cdn.example/path",
        r"storage_hosts entry 'cdn.example/path' is not a host pattern \(host",
    ),
    ("storage_hosts", "ftp://cdn.example", "storage_hosts entry 'ftp://cdn.example' is not a host pattern"),
    ("storage_hosts", "cdn.example:70000", "storage_hosts entry 'cdn.example:70000' is not a host pattern"),
    ("storage_hosts", "*", r"storage_hosts entry '\*' is not a host pattern"),
    (
        "storage_hosts",
        "u:s3cret@cdn.example",
        r"storage_hosts entry '\*\*\*@cdn.example' is not a host pattern",
    ),
    (
        "server_timezone",
        "Mars/Olympus",
        "server_timezone is invalid: 'Mars/Olympus' is not an IANA time zone",
    ),
    ("upload_encoding", "base64", "upload_encoding must be one of multipart, raw, got 'base64'"),
    ("file_field", 'fi"le', "file_field must be a form field name"),
    ("namespace", "a/b", "namespace is invalid: namespace 'a/b' is not a plain path segment"),
    ("oauth_access_header", "X Token", "oauth_access_header must be an HTTP header name"),
    ("oauth_url", "ftp://x/token", "oauth_url must be an http:// or https:// URL$"),
    ("oauth_url", "https://x:port/token", "oauth_url must be an http:// or https:// URL$"),
    ("oauth_url", 5, "oauth_url must be an http:// or https:// URL$"),
    ("oauth_url", "https://key:s3cret@api.example/token", "oauth_url must not carry credentials$"),
    ("test_path", "health", "test_path must be a path starting with '/'"),
    ("max_retries", "-1", "max_retries must be an integer >= 0, got '-1'"),
    ("max_retries", "2.5", "max_retries must be an integer >= 0, got '2.5'"),
    ("retry_min_wait", "-1", r"retry_min_wait must be a number >= 0, got '-1'"),
    ("retry_after_max", "forever", "retry_after_max must be a number >= 0"),
    ("retry_on_500", "2", "retry_on_500 must be true or false, got '2'"),
    ("max_file_size", "0", "max_file_size must be an integer >= 1, got '0'"),
    ("max_connections", "0", "max_connections must be an integer >= 1, got '0'"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"), BAD_VALUES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_VALUES)]
)
def test_bad_values_name_connection_and_field(field, value, message):
    with pytest.raises(CapillaryConfigError, match=f"^connection 'my_conn': {message}") as info:
        resolve(**given(field, value))
    assert info.value.conn_id == "my_conn"
    assert "s3cret" not in str(info.value)


def test_bad_uri_value_names_connection_and_field(set_conn):
    set_conn("uri_conn", uri=uri({"timeout": "soon"}))
    with pytest.raises(CapillaryConfigError, match=r"^connection 'uri_conn': timeout must be a number > 0"):
        _ = CapillaryFileHook("uri_conn").config


def test_retry_min_wait_above_max_wait():
    with pytest.raises(
        CapillaryConfigError, match=r"retry_min_wait \(5.0\) is larger than retry_max_wait \(2.0\)"
    ):
        resolve(overrides={"retry_min_wait": 5, "retry_max_wait": 2})


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
    assert resolve({"md5_prehashed": True}, password="0" * 32).password == "0" * 32
    with pytest.raises(
        CapillaryConfigError,
        match="password is not a 32-character MD5 hex digest although md5_prehashed is set",
    ):
        resolve({"md5_prehashed": True}, password="plain")


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
        ("ftp://files.example", "host must be an http:// or https:// URL, got 'ftp://files.example'$"),
        ("https://user:pw@files.example", "host must not carry credentials"),
        ("https://:pw@files.example", "host must not carry credentials"),
        ("http://[::1", r"host is not a valid URL \(broken \[ \] around an IPv6 address\)$"),
        (
            "https://files.example:99999",
            r"host is not a valid URL \(its port is not a number from 0 to 65535\)$",
        ),
        ("https://till:s3cret/pw@files.example", r"host is not a valid URL \(its port is not a number"),
    ],
    ids=["none", "blank", "ftp", "userinfo", "password-only", "broken", "port", "slash-in-password"],
)
def test_bad_hosts(host, message):
    with pytest.raises(CapillaryConfigError, match=f"connection 'my_conn': {message}") as info:
        resolve(host=host)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("ftp://till:s3cret-pw@files.example", "ftp://***@files.example"),
        ("ftp://till:s3cret/pw@x@files.example/p", "ftp://***@files.example/p"),
        ("file://s3cret-pw@/etc/passwd", "file://***@/etc/passwd"),
    ],
    ids=["ftp", "slash-and-at-in-password", "file"],
)
def test_non_http_host_error_does_not_echo_userinfo(host, shown):
    """Issue 10 finding 5: the error for a non-http(s) host echoed the host with its userinfo."""
    with pytest.raises(CapillaryConfigError) as info:
        resolve(host=host)
    assert str(info.value) == f"connection 'my_conn': host must be an http:// or https:// URL, got {shown!r}"
    assert "s3cret" not in repr(info.value)


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
    set_conn(namespace="from_extra", timeout=7, rate_limit_per_minute=100)
    hook = CapillaryFileHook(
        namespace="from_arg", max_connections=3, retry_on_500=True, rate_limit_per_minute=50
    )
    cfg = hook.config
    assert cfg.namespace == "from_arg"
    assert cfg.timeout == (7.0, 7.0)  # extra, no argument
    assert cfg.rate_limit_per_minute == 50.0
    assert cfg.max_connections == 3
    assert cfg.retry_on_500 is True
    assert cfg.max_retries == DEFAULTS["max_retries"] == 5
    assert cfg.file_field == DEFAULTS["file_field"]


def test_none_arguments_mean_not_given(set_conn):
    set_conn(namespace="from_extra")
    cfg = CapillaryFileHook(namespace=None, timeout=None, max_retries=None).config
    assert (cfg.namespace, cfg.timeout, cfg.max_retries) == ("from_extra", (60.0, 60.0), 5)


def test_hook_arguments_are_validated_like_extras(set_conn):
    set_conn()
    with pytest.raises(
        CapillaryConfigError, match="connection 'capillary_default': timeout must be a number > 0"
    ):
        _ = CapillaryFileHook(timeout=-5).config


def test_unknown_hook_setting_is_refused_without_io():
    with pytest.raises(CapillaryConfigError, match="CapillaryFileHook got unknown setting\\(s\\) retries;"):
        CapillaryFileHook(retries=3)


@pytest.mark.parametrize("setting", settings.TASK_SETTINGS, ids=lambda s: s.name)
def test_task_policy_extra_is_refused_and_says_where_it_went(set_conn, setting):
    value: Any = "1" if setting.kind != "boolean" else "true"
    hint = (
        "pass max_connections= to CapillaryFileHook (UploadImageOperator sets it from max_workers)"
        if setting.name == "max_connections"
        else f"pass {setting.name}= to CapillaryFileHook or UploadImageOperator"
    )
    message = f"connection 'uri_conn': extra '{setting.name}' moved to the task: {hint}"
    set_conn("uri_conn", uri=uri({setting.name: value}))
    with pytest.raises(CapillaryConfigError) as info:
        _ = CapillaryFileHook("uri_conn").config
    assert str(info.value) == message
    assert info.value.conn_id == "uri_conn"
    # The same value as a hook argument is what the message asks for, and it is accepted.
    set_conn("uri_conn", uri=uri({}))
    assert getattr(CapillaryFileHook("uri_conn", **{setting.name: value}).config, setting.name) in (1, True)


def test_every_moved_extra_is_named_in_one_error(set_conn):
    set_conn(max_retries=2, retry_min_wait=0.1, namespace="ok")
    with pytest.raises(CapillaryConfigError) as info:
        _ = CapillaryFileHook().config
    assert str(info.value) == (
        "connection 'capillary_default': "
        "extra 'max_retries' moved to the task: pass max_retries= to CapillaryFileHook or "
        "UploadImageOperator; extra 'retry_min_wait' moved to the task: pass retry_min_wait= to "
        "CapillaryFileHook or UploadImageOperator"
    )


@pytest.mark.parametrize("blank", [None, "", "  "], ids=["null", "empty", "spaces"])
def test_blank_moved_extra_is_not_a_value(blank):
    """An unset field saved by a form carries nothing to move."""
    assert resolve({"max_retries": blank}).max_retries == 5


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("password_is_md5", "md5_prehashed"),
        ("token_url", "oauth_url"),
        ("token_header", "oauth_access_header"),
    ],
)
def test_masked_extra_names_are_refused_and_name_the_replacement(old, new):
    with pytest.raises(CapillaryConfigError) as info:
        resolve({old: "x"})
    assert str(info.value) == (
        f"connection 'my_conn': extra {old!r} is named {new!r} (Airflow's UI would mask the value of {old!r})"
    )


@pytest.mark.parametrize(
    "setting", [s for s in settings.TABLE if s.scope == "connection"], ids=lambda s: s.name
)
def test_connection_fact_as_hook_argument_is_refused(setting):
    for name in {setting.name, setting.extra_name}:
        with pytest.raises(CapillaryConfigError) as info:
            resolve(overrides={name: "x"})
        assert str(info.value) == (
            f"connection 'my_conn': {setting.extra_name} is a fact of the connection, not a hook argument: "
            f"set the extra {setting.extra_name!r} of the connection"
        )


def test_connection_facts_are_not_hook_keywords():
    with pytest.raises(CapillaryConfigError, match=r"CapillaryFileHook got unknown setting\(s\) verify;"):
        CapillaryFileHook(verify=False)


def test_unknown_override_name_is_refused_by_the_config():
    with pytest.raises(
        CapillaryConfigError,
        match=r"^connection 'my_conn': unknown hook argument\(s\) retries; known: allow_empty,",
    ):
        resolve(overrides={"retries": 3})


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
