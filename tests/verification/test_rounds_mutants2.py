"""Kills mutmut survivors of verification/rounds.py (and of the client settings that moved to storage.py)."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace

import certifi
import httpx
import pytest

from airflow_capillary.exceptions import CapillaryVerificationError
from airflow_capillary.verification import rounds
from airflow_capillary.verification.records import expected_files
from airflow_capillary.verification.rounds import Failure, VerificationState
from airflow_capillary.verification.rules import Verdict
from airflow_capillary.verification.storage import ClientSettings, OriginPolicy, client_kwargs
from tests.verification.records import PNG, POLICY, make_record
from tests.verification.storage import Storage

A, B = expected_files([make_record("a.png"), make_record("b.png")], "size", POLICY)
HINT = "check that the storage is reachable from Airflow (proxy, TLS settings of the connection)"


def busy(retry_after: float | None = None) -> Verdict:
    return Verdict("wait", "'x': HTTP 503; waiting", status_code=503, retry_after=retry_after, transient=True)


def test_six_failures_name_five_others_and_no_more() -> None:
    files = expected_files([make_record(f"f{i}.png") for i in range(7)], "size", POLICY)
    for count, more in ((6, ""), (7, " (and 1 more)")):
        state = VerificationState(files[:count], "size", None)
        state.apply([(f, Verdict("fail", f"{f.name} bad", kind="rejected")) for f in files[:count]])
        assert state.failure == Failure(
            "rejected",
            f"f0.png bad. {count - 1} other file(s) failed too: f1.png bad; f2.png bad; f3.png bad; "
            f"f4.png bad; f5.png bad{more}",
            "f0.png",
            "rewards",
        )


def test_a_failure_without_a_kind_is_a_verification_failure() -> None:
    state = VerificationState([A], "size", None)
    state.apply([(A, Verdict("fail", "odd", status_code=299))])
    assert state.failure == Failure("verification", "odd", "a.png", "rewards", 299)


def test_running_out_of_failures() -> None:
    assert rounds._exhausted(busy(), 3) == Verdict(
        "fail",
        f"'x': HTTP 503; giving up after 3 consecutive failures: {HINT}",
        kind="unavailable",
        status_code=503,
    )
    # A file out of failures does not stop the round: the next file is still counted and reported.
    state = VerificationState([A, B], "size", max_consecutive_failures=1)
    assert state.apply([(A, busy()), (B, busy(7.0))]) == []
    assert state.failures == {0: 1, 1: 1}
    state = VerificationState([A, B], "size", max_consecutive_failures=2)
    state.failures[0] = 1
    assert state.apply([(A, busy()), (B, busy(7.0))]) == ["'x': HTTP 503; waiting"]
    assert state.failures == {0: 2, 1: 1}
    assert state.retry_after == 7.0
    assert state.failure == Failure(
        "unavailable",
        f"'x': HTTP 503; giving up after 2 consecutive failures: {HINT}",
        "a.png",
        "rewards",
        503,
    )


def test_a_verified_file_forgets_its_failures() -> None:
    state = VerificationState([A], "size", max_consecutive_failures=5)
    state.apply([(A, busy())])
    assert state.failures == {0: 1}
    state.apply([(A, Verdict("done", "ok"))])
    assert state.failures == {}


def test_short_retry_afters_and_no_retry_after() -> None:
    state = VerificationState([A], "size", None)
    assert state.retry_after is None
    assert state.next_wait(0.0) == 0.0
    state.apply([(A, busy(0.5))])
    assert state.retry_after == 0.5
    assert state.next_wait(0.0) == 0.5


def test_failure_from_exception_keeps_every_attribute() -> None:
    exc = CapillaryVerificationError("bad", file_name="a.png", namespace="rewards", status_code=206)
    assert Failure.from_exception(exc) == Failure("verification", "bad", "a.png", "rewards", 206)


def test_a_body_longer_than_the_record_is_judged_once_reading_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage(monkeypatch)
    storage.script(
        "hero.png", httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG + b"x" * 10)
    )
    [file] = expected_files([make_record()], "sha256", POLICY)
    state = VerificationState([file], "sha256", None)
    assert state.run_round_sync(ClientSettings(POLICY), 1) == []
    assert state.failure == Failure(
        "verification",
        f"'hero.png' (namespace rewards) is served with more than {len(PNG)} bytes, but its upload record "
        f"says {len(PNG)} bytes (Capillary stored a different file); upload it again (re-run the "
        "upload task)",
        "hero.png",
        "rewards",
        200,
    )


def test_client_settings_from_the_hooks_config() -> None:
    config = SimpleNamespace(
        base_url="https://eucrm.cc.capillarytech.com",
        storage_hosts=["minio.local:9000"],
        verify=False,
        timeout=(3, 40),
        proxies={"https": "http://proxy:3128"},
        retry_after_max=30,
    )
    assert ClientSettings.from_hook(SimpleNamespace(config=config)) == ClientSettings(  # type: ignore[arg-type]
        OriginPolicy("https://eucrm.cc.capillarytech.com", ("minio.local:9000",)),
        verify=False,
        timeout=(3.0, 40.0),
        proxies={"https": "http://proxy:3128"},
        retry_after_max=30.0,
    )


def one_certificate(tmp_path: Path) -> Path:
    pem = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    bundle = tmp_path / "one.pem"
    bundle.write_text(pem[pem.index("-----BEGIN CERTIFICATE-----") : pem.index(end) + len(end)] + "\n")
    return bundle


def test_client_kwargs_verify(tmp_path: Path) -> None:
    assert client_kwargs(ClientSettings(POLICY))["verify"] is True
    assert client_kwargs(ClientSettings(POLICY, verify=True))["verify"] is True
    bundle = client_kwargs(ClientSettings(POLICY, verify=str(one_certificate(tmp_path))))["verify"]
    assert isinstance(bundle, ssl.SSLContext)
    assert bundle.cert_store_stats()["x509_ca"] == 1
    folder = tmp_path / "certs"
    folder.mkdir()
    directory = client_kwargs(ClientSettings(POLICY, verify=str(folder)))["verify"]
    assert isinstance(directory, ssl.SSLContext)
    assert directory.cert_store_stats()["x509_ca"] == 0  # a folder is looked up lazily


def test_client_kwargs_proxies() -> None:
    kwargs = client_kwargs(
        ClientSettings(
            POLICY, verify=False, proxies={"all://": "http://proxy:3128", "https": "http://p2:8080"}
        )
    )
    mounts = kwargs["mounts"]
    assert list(mounts) == ["all://", "https://"]
    pool = mounts["all://"]._pool
    assert (pool._proxy_url.host, pool._proxy_url.port) == (b"proxy", 3128)
    assert pool._ssl_context.verify_mode == ssl.CERT_NONE
    assert mounts["https://"]._pool._proxy_url.host == b"p2"


def test_a_round_with_no_time_left_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage(monkeypatch)
    storage.script("a.png", httpx.Response(206))
    monkeypatch.setattr(rounds.time, "time", lambda: 1_000.0)
    state = VerificationState([A], "size", None)
    assert state.run_round_sync(ClientSettings(POLICY), 1, deadline=1_000.0) == [
        "'a.png' (namespace rewards): no whole answer before the deadline; waiting"
    ]
    assert storage.requests == []


def test_the_secrets_of_a_followed_redirect_are_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage(monkeypatch)
    target = "https://bucket.s3.amazonaws.com/rewards/100606/moved.png?X-Amz-Signature=S3C0ND5IG"
    storage.script("hero.png", httpx.Response(307, headers={"Location": target}))
    body = b"<Error><Code>AccessDenied</Code><Message>no S3C0ND5IG here</Message></Error>"
    storage.script("moved.png", httpx.Response(403, content=body))
    [file] = expected_files([make_record()], "size", POLICY)
    state = VerificationState([file], "size", None)
    state.run_round_sync(ClientSettings(POLICY), 1)
    assert [str(r.url) for r in storage.requests][1] == target
    assert state.failure is not None
    assert state.failure.message == (
        "'hero.png' (namespace rewards): the storage refused its secure URL (HTTP 403 AccessDenied: no *** "
        "here); the secure URL lives one hour: re-run the upload task to get a fresh one"
    )
