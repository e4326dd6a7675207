"""The hook against a hostile server (issue 10, findings 1-6), over real loopback sockets.

Each test scripts a :class:`~tests.hostile.HostileServer` as the service (and often a second one
as "elsewhere"), runs the public hook API, and asserts the exact provider error, what each origin
received, and that no credential reached a message, a log line or the masker.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryIntegrityError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hooks.conftest import TASK_SETTINGS, FakeClock, LogRecorder
from tests.hooks.recorder import PNG, upload_answer
from tests.hostile import Answer, HostileServer, Huge, Redirect, Trickle, nested_json

pytestmark = pytest.mark.integration

UPLOAD = "/api_gateway/file-service/rewards/test.png"
TOKEN = "/v3/oauth/token/generate"
CLIENT_SECRET = "client-Secret-42-hostile"
#: A token shaped like a real one (a JWT), so that the masker takes it.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJob3N0aWxlIn0.aG9zdGlsZS1zaWduYXR1cmU"
SIGNED = "X-Amz-Security-Token=SeSsIoN0token0value0123&X-Amz-Signature=5e1f0a0b0c0d0e0f0a1b2c3d4e5f6a7b"


def what(name: str = "test.png") -> str:
    return f"uploading '{name}' to namespace 'rewards' (connection 'capillary_default')"


def masked_strings(mask_secret: Any) -> list[str]:
    """The strings given to Airflow's masker (Airflow itself also gives it the connection's extras)."""
    return [c.args[0] for c in mask_secret.call_args_list if isinstance(c.args[0], str)]


def token_answer(token: str = JWT) -> Answer:
    return Answer.json({"data": {"accessToken": token, "ttlSeconds": 300}, "errors": None})


@pytest.fixture
def hook_on(set_conn: Callable[..., None]) -> Callable[..., CapillaryFileHook]:
    """A hook whose connection points at a hostile server: no retry waits, log lines recorded."""

    def make(server: HostileServer, **extra: Any) -> CapillaryFileHook:
        task = {"max_retries": 0, **{name: extra.pop(name) for name in list(extra) if name in TASK_SETTINGS}}
        password = CLIENT_SECRET if extra.get("auth_type") == "oauth" else "s3cr3t-Passw0rd"
        set_conn(host=server.origin, password=password, **extra)
        hook = CapillaryFileHook(**task)
        log = LogRecorder()
        hook._log = log  # type: ignore[assignment]
        hook.lines = log.lines  # type: ignore[attr-defined]
        clock = FakeClock()  # retry and rate-limit waits are recorded, not slept
        hook._clock, hook._sleep = clock, clock.sleep
        return hook

    return make


# -- finding 1: redirects ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_token_request_never_follows_a_redirect(hostile_servers, hook_on, status):
    service, elsewhere = hostile_servers(2)
    service.route(
        TOKEN, Redirect(elsewhere.url(f"/steal?{SIGNED}"), status=status, body=CLIENT_SECRET.encode())
    )
    hook = hook_on(service, auth_type="oauth", max_retries=2)
    with pytest.raises(CapillaryAuthError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == (
        f"{what()}: OAuth token endpoint {service.url(TOKEN)} answered HTTP {status}, a redirect to "
        f"{elsewhere.origin}: not followed, the client secret is sent to the token URL only"
    )
    assert (info.value.status_code, info.value.body) == (status, None)
    assert elsewhere.requests == []
    assert [r.path for r in service.requests] == [TOKEN]  # refused at once: no retry, no upload
    assert "SeSsIoN0token" not in str(info.value)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", ["file", "placeholder"])
def test_an_upload_never_follows_a_redirect_to_another_origin(hostile_servers, hook_on, status, kind):
    service, elsewhere = hostile_servers(2)
    service.route(UPLOAD, Redirect(elsewhere.url(f"/landed?{SIGNED}"), status=status))
    hook = hook_on(service, max_retries=2)
    upload = (lambda: hook.upload_file(PNG, file_name="test.png")) if kind == "file" else None
    with pytest.raises(CapillaryRequestRejectedError) as info:
        upload() if upload is not None else hook.create_placeholder("test.png")
    assert info.value.message == (
        f"{what()}: HTTP {status}, a redirect to {elsewhere.origin}: not followed, it leaves the "
        "service's origin"
    )
    assert elsewhere.requests == []
    assert len(service.requests) == 1  # not retried


def test_an_upload_follows_a_redirect_within_the_origin_and_logs_no_signature(
    hostile_server, hook_on, caplog
):
    """Same origin: followed (the body is sent again); urllib3's DEBUG line does not show the query."""
    hostile_server.route(UPLOAD, Redirect(f"/moved?{SIGNED}", status=307))
    hostile_server.route("/moved", Answer.json(upload_answer()))
    hook = hook_on(hostile_server)
    caplog.set_level(logging.DEBUG)
    result = hook.upload_file(PNG, file_name="test.png")
    assert result.sent_size == len(PNG)
    first, second = hostile_server.requests
    assert (second.method, second.path, second.query) == ("POST", "/moved", SIGNED)
    assert first.body == second.body
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith(f'{hostile_server.origin} "POST /moved?') for line in lines), lines
    assert not [line for line in lines if "SeSsIoN0token" in line or "5e1f0a0b0c0d" in line]


def test_httpcore_and_httpx_debug_lines_do_not_show_a_redirects_signature(hostile_servers, caplog):
    """The sensor and trigger fetch secure URLs with httpx: its DEBUG lines name the Location."""
    storage, elsewhere = hostile_servers(2)
    storage.route("/file.png", Redirect(elsewhere.url(f"/file.png?{SIGNED}"), status=302))
    import airflow_capillary._redact  # noqa: F401 - installs the filters on import

    caplog.set_level(logging.DEBUG)
    with httpx.Client() as client:
        client.get(storage.url(f"/file.png?{SIGNED}"), follow_redirects=True)
    lines = [
        record.getMessage() for record in caplog.records if record.name.startswith(("httpx", "httpcore"))
    ]
    assert any("Location" in line for line in lines), lines  # httpcore did log the headers
    assert not [line for line in lines if "SeSsIoN0token" in line or "5e1f0a0b0c0d" in line]


# -- finding 2: nesting that makes json recurse --------------------------------------------------


@pytest.mark.parametrize(
    ("route", "status", "error", "message"),
    [
        (UPLOAD, 200, CapillaryIntegrityError, "HTTP 200 with a body that is not JSON"),
        (UPLOAD, 400, CapillaryRequestRejectedError, "HTTP 400"),
        (UPLOAD, 503, CapillaryServiceUnavailableError, "HTTP 503"),
        (
            TOKEN,
            200,
            CapillaryAuthError,
            "OAuth token endpoint {token_url} refused client key 'till.user': "
            "HTTP 200, no access token in the answer",
        ),
        (
            TOKEN,
            400,
            CapillaryAuthError,
            "OAuth token endpoint {token_url} refused client key 'till.user': "
            "HTTP 400, no access token in the answer",
        ),
    ],
    ids=["upload-200", "upload-400", "upload-503", "token-200", "token-400"],
)
def test_deeply_nested_json_is_a_provider_error(hostile_server, hook_on, route, status, error, message):
    hostile_server.route(TOKEN, token_answer())
    hostile_server.route(route, nested_json(200_000, status=status))
    hook = hook_on(hostile_server, auth_type="oauth", retry_integrity_errors=False)
    with pytest.raises(error) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{what()}: {message.format(token_url=hostile_server.url(TOKEN))}"
    assert info.value.body == "[" * 500 + "...(truncated)"


# -- finding 3: no bound on the answer's size ------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("route", "status", "error", "message"),
    [
        (
            UPLOAD,
            200,
            CapillaryIntegrityError,
            "HTTP 200 with a body larger than 1048576 bytes (not read further)",
        ),
        (UPLOAD, 503, CapillaryServiceUnavailableError, "HTTP 503"),
        (
            TOKEN,
            200,
            CapillaryAuthError,
            "OAuth token endpoint {token_url} refused client key 'till.user': HTTP 200, "
            "a body larger than 1048576 bytes (not read further)",
        ),
    ],
    ids=["upload-200", "upload-503", "token-200"],
)
def test_a_huge_answer_is_cut_at_one_mib(hostile_server, hook_on, route, status, error, message, chunked):
    size = 64 * 1024 * 1024
    hostile_server.route(TOKEN, token_answer())
    hostile_server.route(route, Huge(size, chunked=chunked, status=status, prefix=b'{"message": "'))
    hook = hook_on(hostile_server, auth_type="oauth", retry_integrity_errors=False)
    with pytest.raises(error) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{what()}: {message.format(token_url=hostile_server.url(TOKEN))}"
    assert info.value.body == '{"message": "' + "a" * 487 + "...(truncated)"


_RSS_CLIENT = textwrap.dedent(
    """
    import json, os, resource, sys, threading
    os.environ["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = json.dumps(
        {"conn_type": "capillary", "host": sys.argv[1], "login": "till.user", "password": "pw-123456"}
    )
    from airflow_capillary.exceptions import CapillaryError
    from airflow_capillary.hooks.file_service import CapillaryFileHook

    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def max_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    hook = CapillaryFileHook(max_retries=0, retry_integrity_errors=False)
    png = b"\\x89PNG\\r\\n\\x1a\\n" + bytes(43)
    try:  # warm-up: imports, connection, session, one small answer
        hook.upload_file(png, file_name="warm.png")
    except CapillaryError:
        pass
    before, high_water = rss(), max_rss()
    peak, done = before, threading.Event()

    def sample() -> None:  # as benchmarks/client.py: every 5 ms, and ru_maxrss when it rose
        global peak
        while not done.wait(0.005):
            peak = max(peak, rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        hook.upload_file(png, file_name="test.png")
        outcome = "uploaded"
    except CapillaryError as exc:
        outcome = type(exc).__name__
    done.set()
    sampler.join()
    if max_rss() > high_water:
        peak = max(peak, max_rss())
    print(json.dumps({"outcome": outcome, "growth": peak - before}))
    """
)


def test_a_300_mb_answer_costs_no_memory(hostile_server, tmp_path):
    """Peak RSS of a client process (measured as benchmarks/cases/memory.py does) for a 300 MB answer."""
    hostile_server.route("/api_gateway/file-service/rewards/warm.png", Answer.json({"status": "false"}))
    hostile_server.route(UPLOAD, Huge(300 * 1024 * 1024, prefix=b'{"message": "'))
    script = tmp_path / "client.py"
    script.write_text(_RSS_CLIENT)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(script), hostile_server.origin], capture_output=True, text=True, timeout=300
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "CapillaryIntegrityError"
    # Reading 300 MB and redacting it cost 900 MB of RSS; the cap keeps the growth to a few MB.
    assert result["growth"] < 16 * 1024 * 1024, result
    # Time is part of the behaviour here (over a minute before): generous, it includes the start-up.
    assert elapsed < 60, elapsed


# -- finding 4: a deadline for the whole exchange --------------------------------------------------


@pytest.mark.parametrize(
    ("route", "trickle"),
    [
        (UPLOAD, Trickle(total=40, chunk=1, interval=0.3)),
        (UPLOAD, Trickle(total=40, chunk=1, interval=0.3, whole_answer=True)),
        (TOKEN, Trickle(total=40, chunk=1, interval=0.3)),
    ],
    ids=["upload-body", "upload-status-line-and-headers", "token"],
)
def test_a_trickling_answer_ends_at_the_deadline(hostile_server, hook_on, route, trickle):
    """One byte every 0.3 s held a ``timeout=2`` attempt for 38 s; now timeout + 1 s bounds it."""
    hostile_server.route(TOKEN, token_answer())
    hostile_server.route(route, trickle)
    hook = hook_on(hostile_server, auth_type="oauth", timeout=2)
    started = time.monotonic()
    with pytest.raises(CapillaryServiceUnavailableError) as info:
        hook.upload_file(PNG, file_name="test.png")
    elapsed = time.monotonic() - started
    port = hostile_server.port
    assert info.value.message == (
        f"{what()}: cannot reach 127.0.0.1:{port}: "
        "Timeout: no complete answer within 3s (the timeout plus 1s)"
    )
    # Time is the behaviour: the deadline is 3 s (12 s for the whole trickle); generous for a loaded machine.
    assert 2.9 <= elapsed < 8, elapsed


def test_the_deadline_is_per_attempt_and_retried(hostile_server, hook_on):
    hostile_server.route(UPLOAD, [Trickle(total=40, interval=0.3), Answer.json(upload_answer())])
    hook = hook_on(hostile_server, timeout=1, max_retries=1)
    result = hook.upload_file(PNG, file_name="test.png")
    assert result.sent_size == len(PNG)
    assert len(hostile_server.requests) == 2
    assert hook.lines[0].startswith(
        f"attempt 1 of 2 failed: {what()}: "
        "Timeout: no complete answer within 2s (the timeout plus 1s), retrying in"
    )


# -- finding 5: secrets of proxies ------------------------------------------------------------------


def test_proxy_credentials_never_reach_a_message_or_a_log_line(hostile_servers, hook_on, mocker):
    masked = mocker.patch("airflow.sdk.log.mask_secret")
    service, proxy = hostile_servers(2)
    password = "pr0xy-Passw0rd-9"
    userinfo = f"proxy.user:{password}"
    basic = base64.b64encode(userinfo.encode()).decode()
    echo = json.dumps({"message": f"refused {userinfo} and {password} and {basic}"}).encode()
    proxy.route(UPLOAD, Answer(503, echo))
    proxies = {"http": f"http://{userinfo}@127.0.0.1:{proxy.port}"}
    hook = hook_on(service, proxies=proxies, max_retries=1)
    with pytest.raises(CapillaryServiceUnavailableError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert len(proxy.requests) == 2  # the proxy was used, with its credentials
    assert proxy.requests[0].headers["proxy-authorization"] == f"Basic {basic}"
    assert service.requests == []
    texts = [str(info.value), info.value.body or "", *hook.lines]
    assert [t for t in texts if password in t or basic in t or userinfo in t] == []
    assert (
        info.value.message
        == f"{what()}: HTTP 503, Capillary said: refused *** and *** and *** (after 2 attempts)"
    )
    assert password in masked_strings(masked)


def test_an_unreachable_proxy_is_named_without_its_credentials(hostile_servers, hook_on):
    service, proxy = hostile_servers(2)
    port = proxy.port
    proxy.close()  # nothing listens there any more
    hook = hook_on(service, proxies={"http": f"http://proxy.user:pr0xy-Passw0rd-9@127.0.0.1:{port}"})
    with pytest.raises(CapillaryServiceUnavailableError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message.startswith(f"{what()}: cannot reach 127.0.0.1:{service.port}: ProxyError: ")
    assert "pr0xy-Passw0rd-9" not in str(info.value)
    assert "proxy.user:" not in str(info.value)


def test_no_credential_in_the_repr_of_anything_the_hook_returns_or_holds(hostile_servers, hook_on):
    service, proxy = hostile_servers(2)
    secure = f"https://bucket.s3.amazonaws.com/rewards/x.png?{SIGNED}"
    proxy.route(UPLOAD, Answer.json(upload_answer(secureFilePath=secure)))
    proxy.route(TOKEN, token_answer())
    proxies = {"http": f"http://proxy.user:pr0xy-Passw0rd-9@127.0.0.1:{proxy.port}"}
    hook = hook_on(service, auth_type="oauth", proxies=proxies)
    prepared = hook.prepare_upload(PNG, file_name="test.png")
    result = hook.upload(prepared)
    assert result.secure_file_path == secure
    texts = [repr(result), repr(prepared), repr(hook.config), repr(hook.auth), repr(hook)]
    for text in texts:
        for secret in ("SeSsIoN0token", "5e1f0a0b0c0d", "pr0xy-Passw0rd-9", CLIENT_SECRET, JWT):
            assert secret not in text, text


# -- finding 6: the masker cannot be turned against the logs -----------------------------------------


def test_an_answer_cannot_make_the_masker_hide_an_ordinary_word(hostile_server, hook_on, mocker):
    masked = mocker.patch("airflow.sdk.log.mask_secret")
    secure = (
        "https://bucket.s3.amazonaws.com/rewards/x.png?X-Amz-Security-Token=rewards"
        "&X-Amz-Credential=uploaded&AWSAccessKeyId=namespace&X-Amz-Signature=abc"
    )
    hostile_server.route(UPLOAD, Answer.json(upload_answer(secureFilePath=secure)))
    hostile_server.route(TOKEN, token_answer("version"))
    hook = hook_on(hostile_server, auth_type="oauth")
    result = hook.upload_file(PNG, file_name="test.png")
    assert result.secure_file_path == secure
    assert masked_strings(masked) == [CLIENT_SECRET]


def test_real_looking_answer_credentials_are_masked(hostile_server, hook_on, mocker):
    """S1 of issue 11: the upload answer's session credentials reach the masker (token and credential)."""
    masked = mocker.patch("airflow.sdk.log.mask_secret")
    token = "IQoJb3JpZ2luX2VjEHoaCWV1LXdlc3QtMSJHMEUCIQD" + str(time.monotonic_ns())
    credential = f"ASIAXKEP2EMB{time.monotonic_ns() % 10**8:08d}/20240508/eu-west-1/s3/aws4_request"
    secure = (
        f"https://bucket.s3.amazonaws.com/rewards/x.png?X-Amz-Security-Token={token.replace('/', '%2F')}"
        f"&X-Amz-Credential={credential.replace('/', '%2F')}&X-Amz-Signature=0123abcd"
    )
    hostile_server.route(UPLOAD, Answer.json(upload_answer(secureFilePath=secure)))
    hostile_server.route(TOKEN, token_answer(JWT))
    hook = hook_on(hostile_server, auth_type="oauth")
    hook.upload_file(PNG, file_name="test.png")
    registered = masked_strings(masked)
    assert registered[:2] == [CLIENT_SECRET, JWT]
    assert token in registered
    assert credential in registered
    assert credential.replace("/", "%2F") in registered


# -- finding 7, the hook's part: a secure URL outside the storage origin policy ---------------------


@pytest.mark.parametrize(
    ("secure", "refused"),
    [
        ("https://bucket.s3.eu-west-1.amazonaws.com/rewards/x.png?X-Amz-Signature=abc", None),
        ("{origin}/_s3/bucket/rewards/x.png?X-Amz-Signature=abc", None),
        (
            "http://169.254.169.254/latest/meta-data?X-Amz-Signature=abc",
            "http://169.254.169.254 is not an allowed storage origin",
        ),
        (
            "http://bucket.s3.amazonaws.com/x.png?X-Amz-Signature=abc",
            "http://bucket.s3.amazonaws.com is not an allowed storage origin",
        ),
        ("https://user:pw@bucket.s3.amazonaws.com/x.png", "it is a URL with user info"),
    ],
    ids=["s3-https", "own-origin", "metadata-service", "s3-over-http", "user-info"],
)
def test_a_secure_url_outside_the_storage_policy_is_kept_and_flagged(
    hostile_server, hook_on, secure, refused
):
    secure = secure.format(origin=hostile_server.origin)
    hostile_server.route(UPLOAD, Answer.json(upload_answer(secureFilePath=secure)))
    hook = hook_on(hostile_server)
    result = hook.upload_file(PNG, file_name="test.png")
    assert result.secure_file_path == secure
    record = result.to_dict()
    assert record["secure_url_refused"] == result.secure_url_refused
    assert type(result).from_dict(record) == result
    if refused is None:
        assert result.secure_url_refused is None
        assert not [line for line in hook.lines if "will not be fetched" in line]
        return
    assert result.secure_url_refused is not None
    assert result.secure_url_refused.startswith(refused)
    assert "X-Amz-Signature" not in result.secure_url_refused
    assert hook.lines[-1] == (
        f"the secureFilePath of test.png is kept but will not be fetched: {result.secure_url_refused}"
    )
    assert "abc" not in hook.lines[-1]
    assert "pw" not in hook.lines[-1]
