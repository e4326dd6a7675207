"""Kills mutmut survivors in ``airflow_capillary/hooks/_config.py``: exact messages, the base URL rule."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.hooks._config import CapillaryConnectionConfig


def resolve(extra: dict[str, Any] | None = None, **kwargs: Any) -> CapillaryConnectionConfig:
    params: dict[str, Any] = {"host": "https://eucrm.example", "login": "till", "password": "pw"}
    params.update(kwargs)
    return CapillaryConnectionConfig.resolve("my_conn", extra=extra, **params)


def message(extra: dict[str, Any] | None = None, **kwargs: Any) -> str:
    with pytest.raises(CapillaryConfigError) as info:
        resolve(extra, **kwargs)
    assert info.value.conn_id == "my_conn"
    return str(info.value)


@pytest.mark.parametrize(
    ("auth_type", "login", "password", "expected"),
    [
        ("basic", "", "pw", "login is empty: auth_type basic needs the till username"),
        ("oauth", None, "pw", "login is empty: auth_type oauth needs the OAuth client key"),
        ("basic", "till", "", "password is empty: auth_type basic needs the password"),
        ("oauth", "key", None, "password is empty: auth_type oauth needs the OAuth client secret"),
    ],
    ids=["basic-login", "oauth-login", "basic-password", "oauth-password"],
)
def test_missing_credential_messages_are_exact(
    auth_type: str, login: str | None, password: str | None, expected: str
) -> None:
    got = message({"auth_type": auth_type}, login=login, password=password)
    assert got == f"connection 'my_conn': {expected}"


def test_md5_digest_may_be_upper_case_but_must_be_hex_of_32() -> None:
    upper = "5F4DCC3B5AA765D61D8327DEB882CF99"
    assert resolve({"md5_prehashed": "true"}, password=upper).password == upper
    assert message({"md5_prehashed": True}, password="g" * 32) == (
        "connection 'my_conn': password is not a 32-character MD5 hex digest although md5_prehashed is set"
    )
    # OAuth never checks the digest.
    assert resolve({"auth_type": "oauth", "md5_prehashed": True}, password="secret").password == "secret"


def test_retry_wait_order_message_is_exact() -> None:
    overrides = {"retry_min_wait": "3", "retry_max_wait": 2.5}
    assert message(overrides=overrides) == (
        "connection 'my_conn': retry_min_wait (3.0) is larger than retry_max_wait (2.5)"
    )
    # Equal waits are fine.
    cfg = resolve(overrides={"retry_min_wait": 2, "retry_max_wait": 2})
    assert (cfg.retry_min_wait, cfg.retry_max_wait) == (2.0, 2.0)


def test_token_url_strips_only_trailing_slashes() -> None:
    cfg = resolve({"oauth_url": "https://api.example/TOKENX//"})
    assert cfg.token_url == "https://api.example/TOKENX"
    assert resolve(host="https://gw.example/X").token_url == "https://gw.example/X/v3/oauth/token/generate"


def test_url_joins_base_url_and_path() -> None:
    assert resolve(host="https://gw.example/prefix").url("/v2/files") == "https://gw.example/prefix/v2/files"


def test_unknown_arguments_are_listed_sorted_with_every_known_one() -> None:
    got = message(overrides={"zeta": 1, "retries": 3})
    known = (
        "allow_empty, check_content, max_connections, max_file_size, max_rate_limit_wait, max_retries, "
        "namespace, rate_limit_per_minute, retry_after_max, retry_integrity_errors, retry_max_wait, "
        "retry_min_wait, retry_on_500, timeout"
    )
    assert got == f"connection 'my_conn': unknown hook argument(s) retries, zeta; known: {known}"


def test_every_misplaced_value_is_named_in_one_message() -> None:
    got = message({"max_retries": "2", "token_url": "x"}, overrides={"verify": False, "bogus": 1})
    assert got == (
        "connection 'my_conn': "
        "extra 'token_url' is named 'oauth_url' (Airflow's UI would mask the value of 'token_url'); "
        "verify is a fact of the connection, not a hook argument: set the extra 'verify' of the connection; "
        "extra 'max_retries' moved to the task: "
        "pass max_retries= to CapillaryFileHook or UploadImageOperator; "
        "unknown hook argument(s) bogus; known: allow_empty, check_content, max_connections, max_file_size, "
        "max_rate_limit_wait, max_retries, namespace, rate_limit_per_minute, retry_after_max, "
        "retry_integrity_errors, retry_max_wait, retry_min_wait, retry_on_500, timeout"
    )


def test_blank_extras_fall_back_to_defaults_and_arguments_beat_extras() -> None:
    cfg = resolve({"namespace": "  ", "timeout": "", "oauth_url": None}, overrides={"max_retries": None})
    assert (cfg.namespace, cfg.timeout, cfg.max_retries) == ("rewards", (60.0, 60.0), 5)
    assert cfg.token_url == "https://eucrm.example/v3/oauth/token/generate"
    cfg = resolve({"namespace": "from_extra"}, overrides={"namespace": "from_arg", "timeout": "4"})
    assert (cfg.namespace, cfg.timeout) == ("from_arg", (4.0, 4.0))
    assert resolve({"namespace": "from_extra"}).namespace == "from_extra"


def test_empty_host_message_is_exact() -> None:
    assert message(host="") == (
        "connection 'my_conn': host is empty: set it to the cluster URL, e.g. https://eucrm.cc.capillarytech.com"
    )


@pytest.mark.parametrize(
    ("host", "schema", "port", "base_url"),
    [
        ("https://gw.example/PATHX/", None, None, "https://gw.example/PATHX"),
        ("  https://gw.example//  ", None, None, "https://gw.example"),
        ("127.0.0.1", "http", None, "http://127.0.0.1"),
        ("127.0.0.1", "HTTP", None, "http://127.0.0.1"),
        ("127.0.0.1", "https", None, "https://127.0.0.1"),
        ("127.0.0.1", None, 0, "https://127.0.0.1"),
        ("http://127.0.0.1/p", None, 81, "http://127.0.0.1:81/p"),
    ],
    ids=["strip-slash-only", "spaces", "schema-http", "schema-upper", "schema-https", "port-0", "port-path"],
)
def test_base_url_is_built_exactly(host: str, schema: str | None, port: int | None, base_url: str) -> None:
    assert resolve(host=host, schema=schema, port=port).base_url == base_url


@pytest.mark.parametrize(
    "host",
    ["https://h.example/?a=1", "https://h.example/#frag", "https://u@h.example"],
    ids=["query", "fragment", "user"],
)
def test_query_fragment_or_userinfo_in_host_is_refused(host: str) -> None:
    assert (
        message(host=host) == "connection 'my_conn': host must not carry credentials, a query or a fragment"
    )


def test_host_without_hostname_is_refused() -> None:
    assert message(host="https://:8080") == (
        "connection 'my_conn': host must be an http:// or https:// URL, got 'https://:8080'"
    )
