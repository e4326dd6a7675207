"""verification.storage: the origin policy (which secure URLs may be fetched) and the client settings."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.verification.storage import (
    DEFAULT_STORAGE_HOSTS,
    ClientSettings,
    OriginPolicy,
    client_kwargs,
    origin_of,
)
from tests.verification.records import POLICY

EMULATOR = OriginPolicy(
    "http://127.0.0.1:8080/prefix",
    (
        "http://minio.local:9000",
        "https://*.blob.example.com",
        "https://[::1]:8443",
        "https://cdn.example.com",
    ),
)
ALLOWED = (
    "allowed: http://127.0.0.1:8080, https://*.amazonaws.com, http://minio.local:9000, "
    "https://*.blob.example.com, https://[::1]:8443, https://cdn.example.com; add hosts with the connection "
    "extra storage_hosts)"
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/_s3/rewards/a.png?X-Amz-Signature=abc",
        "https://bucket.s3.amazonaws.com/rewards/a.png?X-Amz-Signature=abc",
        "https://s3.eu-west-1.amazonaws.com/bucket/a.png",
        "https://BUCKET.S3.AMAZONAWS.COM./a.png",
        "https://bucket.s3.amazonaws.com:443/a.png",
        "https://a.b.blob.example.com/a.png",
        "http://minio.local:9000/bucket/a.png",
        "https://[::1]:8443/a.png",
        "https://cdn.example.com/a.png",
    ],
    ids=[
        "own",
        "s3",
        "s3-path-style",
        "case-and-dot",
        "explicit-443",
        "wildcard",
        "http-host",
        "ipv6",
        "host",
    ],
)
def test_allowed_urls(url):
    assert EMULATOR.refusal(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "http://127.0.0.1:8081/x?sig=s3cr3t",
            f"http://127.0.0.1:8081 is not an allowed storage origin ({ALLOWED}",
        ),
        ("https://127.0.0.1:8080/x", f"https://127.0.0.1:8080 is not an allowed storage origin ({ALLOWED}"),
        (
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.169.254 is not an allowed storage origin (",
        ),
        (
            "http://bucket.s3.amazonaws.com/a.png",
            "http://bucket.s3.amazonaws.com is not an allowed storage origin",
        ),
        ("https://amazonaws.com/a.png", "https://amazonaws.com is not an allowed storage origin"),
        (
            "https://amazonaws.com.evil.test/a",
            "https://amazonaws.com.evil.test is not an allowed storage origin",
        ),
        ("https://evilamazonaws.com/a", "https://evilamazonaws.com is not an allowed storage origin"),
        ("https://bucket.s3.amazonaws.com:8443/a", "https://bucket.s3.amazonaws.com:8443 is not an allowed"),
        ("https://blob.example.com/a", "https://blob.example.com is not an allowed storage origin"),
        ("https://minio.local:9000/a", "https://minio.local:9000 is not an allowed storage origin"),
        ("http://localhost:8080/x", "http://localhost:8080 is not an allowed storage origin"),
        ("https://bucket.s3.amazonaws.com@127.0.0.1:8080/x", "it is a URL with user info"),
        ("https://user:pw@bucket.s3.amazonaws.com/x", "it is a URL with user info"),
        (
            "https://127.0.0.2\\@bucket.s3.amazonaws.com/",
            "it is a URL with spaces, control characters or backslashes",
        ),
        (
            "https://bucket.s3.amazonaws.com/a\r\nHost: x",
            "it is a URL with spaces, control characters or backslash",
        ),
        ("ftp://bucket.s3.amazonaws.com/a", "it is not an http(s) URL with a host"),
        ("https:///a", "it is not an http(s) URL with a host"),
        ("http://[::1/a", "it is not a valid URL"),
    ],
    ids=[
        "other-port",
        "own-host-other-scheme",
        "metadata",
        "s3-over-http",
        "apex",
        "suffix-trick",
        "no-dot",
        "s3-other-port",
        "wildcard-apex",
        "http-host-over-https",
        "other-name-same-address",
        "userinfo-trick",
        "userinfo",
        "backslash",
        "crlf",
        "ftp",
        "no-host",
        "invalid",
    ],
)
def test_refused_urls_name_the_origin_never_the_path_or_query(url, reason):
    refusal = EMULATOR.refusal(url)
    assert refusal is not None
    assert refusal.startswith(reason)
    assert "sig=" not in refusal
    assert "/x" not in refusal.split("(allowed")[0]


def test_default_policy_is_the_connections_origin_and_s3_over_https():
    assert DEFAULT_STORAGE_HOSTS == ("https://*.amazonaws.com",)
    assert POLICY.allowed == "https://eucrm.cc.capillarytech.com, https://*.amazonaws.com"


@pytest.mark.parametrize(
    ("source", "target", "refusal"),
    [
        ("https://bucket.s3.amazonaws.com/a", "https://other.s3.amazonaws.com/b?sig=1", None),
        ("http://127.0.0.1:8080/a", "http://minio.local:9000/b", None),
        (
            "https://cdn.example.com/a",
            "http://minio.local:9000/b?sig=1",
            "a redirect from https to http (http://minio.local:9000) is never followed",
        ),
        (
            "http://127.0.0.1:8080/a",
            "http://127.0.0.1:9999/b?sig=1",
            f"http://127.0.0.1:9999 is not an allowed storage origin ({ALLOWED}",
        ),
    ],
    ids=["allowed", "http-to-http", "downgrade", "outside"],
)
def test_redirect_refusal(source, target, refusal):
    assert EMULATOR.redirect_refusal(source, target) == refusal


def test_origin_of_keeps_only_scheme_host_and_port():
    assert origin_of("https://user:pw@Bucket.S3.amazonaws.com:443/a.png?X-Amz-Signature=abc") == (
        "https://bucket.s3.amazonaws.com"
    )
    assert origin_of("http://[::1]:8080/x") == "http://[::1]:8080"
    assert origin_of("no url") == "an unreadable URL"


@pytest.mark.parametrize(
    ("own", "hosts", "message"),
    [
        ("ftp://x", (), r"^the connection's host is not an http\(s\) URL with a host: no storage origin"),
        ("https://eucrm.example.com", ("*",), r"^storage_hosts: '\*' is not a host pattern"),
        (
            "https://eucrm.example.com",
            ("https://a.com/path",),
            r"^storage_hosts: 'https://a.com/path' is not a",
        ),
    ],
    ids=["own-not-http", "bare-star", "with-path"],
)
def test_bad_policy_is_a_config_error(own, hosts, message):
    with pytest.raises(CapillaryConfigError, match=message):
        OriginPolicy(own, hosts)


CONN: dict[str, Any] = {
    "conn_type": "capillary",
    "host": "http://127.0.0.1:8080",
    "login": "till.user",
    "password": "till-password",
}


def test_client_settings_come_from_the_connection(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    extra = {
        "timeout": [3, 40],
        "verify": str(bundle),
        "proxies": {"https": "http://proxy-user:proxy-Pass-42@proxy:3128"},
        "storage_hosts": ["*.blob.example.com", "http://minio.local:9000"],
    }
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps({**CONN, "extra": extra}))
    settings = ClientSettings.from_hook(CapillaryFileHook())
    assert settings == ClientSettings(
        OriginPolicy("http://127.0.0.1:8080", ("https://*.blob.example.com", "http://minio.local:9000")),
        verify=str(bundle),
        timeout=(3.0, 40.0),
        proxies={"https": "http://proxy-user:proxy-Pass-42@proxy:3128"},
        retry_after_max=120.0,
    )
    assert settings.policy.refusal("https://a.blob.example.com/x") is None
    assert "proxy-Pass-42" not in repr(settings)


def test_client_kwargs_follow_no_redirect(tmp_path):
    kwargs = client_kwargs(
        ClientSettings(POLICY, verify=False, timeout=(3.0, 40.0), proxies={"https": "http://proxy:3128"})
    )
    assert kwargs["verify"] is False
    assert kwargs["timeout"] == httpx.Timeout(40.0, connect=3.0)
    assert kwargs["follow_redirects"] is False  # the round follows them, each checked
    assert list(kwargs["mounts"]) == ["https://"]
    assert isinstance(kwargs["mounts"]["https://"], httpx.AsyncHTTPTransport)
    assert "mounts" not in client_kwargs(ClientSettings(POLICY))
    with pytest.raises(CapillaryConfigError, match=r"^verify: the CA bundle '.*missing.pem' does not exist"):
        client_kwargs(ClientSettings(POLICY, verify=str(tmp_path / "missing.pem")))


def test_httpcore_debug_lines_never_show_a_location_signature(caplog):
    client_kwargs(ClientSettings(POLICY))  # installs the filters
    location = "https://bucket.s3.amazonaws.com/a.png?X-Amz-Security-Token=tok3n-V4lue&X-Amz-Signature=5ig"
    with caplog.at_level(logging.DEBUG, logger="httpcore.http11"):
        logging.getLogger("httpcore.http11").debug(
            "receive_response_headers.complete return_value=%r", (b"HTTP/1.1", 302, [(b"Location", location)])
        )
    assert "X-Amz-Signature=***" in caplog.text
    assert "5ig" not in caplog.text
    assert "tok3n-V4lue" not in caplog.text
