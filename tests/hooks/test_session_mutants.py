"""Kills mutmut survivors in airflow_capillary/hooks/_session.py: the session's settings and header rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from urllib3.response import HTTPResponse

from airflow_capillary.hooks._deadline import DeadlineAdapter
from airflow_capillary.hooks._session import USER_AGENT, CapillarySession, same_origin
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hooks.recorder import PNG, Recorder, Reply
from tests.hooks.test_answer_mutants import Counting


def redirected(
    session: CapillarySession, old: str | None, new: str, headers: dict[str, str]
) -> dict[str, str]:
    """Run ``rebuild_auth`` for a redirect from ``old`` to ``new``; return the headers left."""
    original = requests.Request("GET", old or "https://svc.example/").prepare()
    original.url = old
    response = requests.Response()
    response.request = original
    prepared = requests.Request("GET", new, headers=headers).prepare()
    session.rebuild_auth(prepared, response)
    return dict(prepared.headers)


HEADERS = {"Authorization": "Basic x", "X-Custom-Thing": "c", "X-Api-Key": "k", "Accept": "a", "X-Trace": "t"}


def test_the_credential_headers_are_kept_lower_case() -> None:
    assert CapillarySession(("X-Custom-Thing",)).credential_headers == frozenset(
        {"x-custom-thing", "authorization"}
    )
    assert CapillarySession().max_redirects == 5


def test_credential_headers_are_dropped_when_a_redirect_leaves_the_origin() -> None:
    session = CapillarySession(("X-Custom-Thing",))
    assert redirected(session, "https://svc.example/a", "https://other.example/b", HEADERS) == {
        "Accept": "a",
        "X-Trace": "t",
    }
    assert redirected(session, "https://svc.example/a", "https://svc.example/b", HEADERS) == HEADERS
    assert redirected(session, "http://svc.example/a", "https://svc.example/b", HEADERS) == HEADERS


def test_a_redirect_from_no_url_keeps_nothing_but_plain_headers() -> None:
    session = CapillarySession(("X-Custom-Thing",))
    assert redirected(session, None, "https://svc.example/b", HEADERS) == {"Accept": "a", "X-Trace": "t"}


@pytest.mark.parametrize(
    ("old", "new"),
    [("http:///x", "http://xxxx/"), ("http://xxxx/", "http:///x"), ("https:///x", "https://xxxx/")],
)
def test_a_url_without_a_host_is_never_the_same_origin(old: str, new: str) -> None:
    assert same_origin(old, new) is False


def test_same_origin_ignores_the_case_of_hosts() -> None:
    assert same_origin("https://SVC.example/a", "https://svc.EXAMPLE:443/b") is True
    assert same_origin("http:///a", "http:///b") is True


def merged(
    session: CapillarySession,
    proxies: dict[str, str] | None,
    verify: bool | str | None,
    stream: bool | None = True,
) -> dict[str, object]:
    result = session.merge_environment_settings("https://svc.example/x", proxies, stream, verify, ("c", "k"))
    assert isinstance(result, dict)
    return result


def test_the_connections_verify_and_proxies_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = CapillarySession()
    session.verify = "/conn/ca.pem"
    session.proxies = {"https": "http://conn-proxy:2"}
    assert merged(session, None, None) == {
        "proxies": {"https": "http://conn-proxy:2"},
        "stream": True,
        "verify": "/conn/ca.pem",
        "cert": ("c", "k"),
    }
    assert merged(session, {"http": "http://req-proxy:3"}, "/req/ca.pem", stream=False) == {
        "proxies": {"https": "http://conn-proxy:2", "http": "http://req-proxy:3"},
        "stream": False,
        "verify": "/req/ca.pem",
        "cert": ("c", "k"),
    }
    session.verify = False
    assert merged(session, None, None)["verify"] is False
    session.verify = True
    session.proxies = {}
    assert merged(session, None, None) == {
        "proxies": {"https": "http://env-proxy:1"},
        "stream": True,
        "verify": "/env/ca.pem",
        "cert": ("c", "k"),
    }


def test_the_hooks_session(set_conn: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    set_conn(
        headers={"X-Team": "crm"},
        verify=False,
        proxies={"https": "http://proxy:3128"},
        oauth_access_header="X-Tok",
    )
    session = CapillaryFileHook(max_connections=2).session
    assert isinstance(session, CapillarySession)
    assert session.credential_headers == frozenset({"x-tok", "authorization"})
    https, http = session.get_adapter("https://svc.example/"), session.get_adapter("http://svc.example/")
    assert isinstance(https, DeadlineAdapter)
    assert http is https
    assert (https._pool_connections, https._pool_maxsize, https.max_retries.total) == (4, 2, 0)  # type: ignore[attr-defined]
    assert list(session.headers.items()) == [
        ("User-Agent", USER_AGENT),
        ("Accept-Encoding", session.headers["Accept-Encoding"]),
        ("Accept", "application/json"),
        ("Connection", "keep-alive"),
        ("X-Team", "crm"),
    ]
    assert (session.verify, session.proxies) == (False, {"https": "http://proxy:3128"})


@pytest.mark.parametrize(("status", "rate"), [(429, 54.6), (503, 60.0)])
def test_only_a_429_slows_the_rate_down(
    make_hook: Callable[..., tuple[CapillaryFileHook, Recorder]], status: int, rate: float
) -> None:
    hook, rec = make_hook([Reply(status, headers={"Retry-After": "2"})], rate_limit_per_minute=60)
    hook.upload_file(PNG, file_name="test.png")
    assert len(rec.sent) == 2
    stats = hook.rate_limit_stats
    assert (stats.rate_limited, stats.paused_seconds) == (1, 2.0)
    assert stats.rate_per_minute == pytest.approx(rate)


def test_a_followed_redirect_reads_a_bounded_part_of_its_body_and_closes_it() -> None:
    body = Counting(b"r" * 200_000)
    resp = requests.Response()
    resp.status_code = 307
    resp.headers = requests.structures.CaseInsensitiveDict({"Location": "/next"})
    resp.raw = HTTPResponse(body=body, headers={}, status=307, preload_content=False, decode_content=False)
    resp.url = "https://svc.example/first"
    assert CapillarySession().get_redirect_target(resp) == "/next"
    assert body.taken == 64 * 1024
    assert resp.raw.closed
    assert resp.content == b""
    assert body.taken == 64 * 1024


def test_a_redirect_elsewhere_is_not_followed_and_its_body_not_read() -> None:
    body = Counting(b"r" * 10)
    resp = requests.Response()
    resp.status_code = 302
    resp.headers = requests.structures.CaseInsensitiveDict({"Location": "https://other.example/next"})
    resp.raw = HTTPResponse(body=body, headers={}, status=302, preload_content=False, decode_content=False)
    resp.url = "https://svc.example/first"
    assert CapillarySession().get_redirect_target(resp) is None
    assert body.taken == 0
