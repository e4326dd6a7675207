"""Kills mutmut survivors in airflow_capillary/hooks/file_service.py (the hook's public methods)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from urllib3.response import HTTPResponse

from airflow_capillary.exceptions import (
    CapillaryConfigError,
    CapillaryIntegrityError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks._config import SETTINGS
from airflow_capillary.hooks.file_service import CapillaryFileHook
from tests.hooks.conftest import PASSWORD
from tests.hooks.recorder import BASE, PNG, Recorder, Reply, Sent, build_response, file_part, upload_answer

MakeHook = Callable[..., tuple[CapillaryFileHook, Recorder]]
WHAT = "uploading 'test.png' to namespace 'rewards' (connection 'capillary_default')"
SHA = hashlib.sha256(PNG).hexdigest()


class _Unreadable(io.RawIOBase):
    """A body that fails when anything reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise OSError("the body was read")


class UnreadReply(Reply):
    """A reply whose body must never be read."""

    def build(self, request: requests.PreparedRequest) -> requests.Response:
        response = build_response(request, self.status, {}, b"")
        response.raw = HTTPResponse(
            body=_Unreadable(), headers={}, status=self.status, preload_content=False, decode_content=False
        )
        return response


class ClosingRecorder(Recorder):
    """A recorder that counts its ``close()`` calls."""

    closed = 0

    def close(self) -> None:
        self.closed += 1


def bound_the_clock(hook: CapillaryFileHook) -> None:
    """Fail the test, instead of hanging, when the limiter would wait for ever (a sleep that stands still)."""
    clock = hook._clock
    calls = 0

    def bounded() -> float:
        nonlocal calls
        calls += 1
        assert calls < 1000, "the limiter waits for ever"
        return clock()

    hook._clock = bounded


def test_unknown_settings_are_refused_naming_them_and_the_known_ones() -> None:
    with pytest.raises(CapillaryConfigError) as info:
        CapillaryFileHook("my_conn", zeta=1, alpha=2)
    assert info.value.message == (
        f"CapillaryFileHook got unknown setting(s) alpha, zeta; known: {', '.join(sorted(SETTINGS))}"
    )
    assert info.value.conn_id == "my_conn"


def test_the_probe_strips_only_the_trailing_slash(make_hook: MakeHook) -> None:
    hook, rec = make_hook([Reply(404)], namespace="rewardX")
    probe = f"{BASE}/api_gateway/file-service/rewardX"
    assert hook.test_connection() == (True, f"ok: {probe} answered HTTP 404 to basic credentials")
    assert [(s.method, s.url, s.body) for s in rec.sent] == [("GET", probe, None)]


def test_the_probe_waits_out_a_rate_limit_through_the_limiter(make_hook: MakeHook) -> None:
    hook, rec = make_hook([Reply(429, headers={"Retry-After": "2"}), Reply(404)])
    bound_the_clock(hook)
    probe = f"{BASE}/api_gateway/file-service/rewards"
    assert hook.test_connection() == (True, f"ok: {probe} answered HTTP 404 to basic credentials")
    assert [s.url for s in rec.sent] == [probe, probe]
    assert hook.rate_limit_stats.rate_limited == 1


def test_the_probe_reads_no_body(make_hook: MakeHook) -> None:
    hook, _ = make_hook([UnreadReply(404)])
    probe = f"{BASE}/api_gateway/file-service/rewards"
    assert hook.test_connection() == (True, f"ok: {probe} answered HTTP 404 to basic credentials")


def test_the_probe_failure_is_redacted(make_hook: MakeHook) -> None:
    hook, _ = make_hook([requests.ConnectionError(f"refused {PASSWORD}")])
    assert hook.test_connection() == (False, f"cannot reach {BASE}: refused ***")


def test_a_probe_failure_before_the_client_exists_names_the_connection(
    set_conn: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn()
    hook = CapillaryFileHook()

    def boom(conn_id: str) -> Any:
        raise RuntimeError(f"boom {conn_id}")

    monkeypatch.setattr(hook, "get_connection", boom)
    assert hook.test_connection() == (False, "RuntimeError: boom capillary_default")


def test_close_closes_the_pooled_connections_and_a_later_use_reconnects(make_hook: MakeHook) -> None:
    rec = ClosingRecorder()
    hook, _ = make_hook(recorder=rec)
    first = hook.session
    hook.close()
    assert rec.closed == 2  # mounted for https:// and http://
    assert hook.session is not first
    hook.close()
    assert rec.closed == 2  # the new session has its own adapters


def test_placeholder_goes_to_the_given_namespace(make_hook: MakeHook) -> None:
    hook, rec = make_hook([Reply(json_body=upload_answer("later.png", 0, namespace="other"))])
    result = hook.create_placeholder("later.png", namespace="other")
    assert [(s.method, s.url) for s in rec.sent] == [
        ("POST", f"{BASE}/api_gateway/file-service/other/later.png")
    ]
    assert (result.name, result.namespace, result.sent_size, result.sha256) == (
        "later.png",
        "other",
        0,
        hashlib.sha256(b"").hexdigest(),
    )


def test_upload_file_passes_name_namespace_and_content_type(make_hook: MakeHook) -> None:
    hook, rec = make_hook()
    prepared = hook.prepare_upload(
        io.BytesIO(PNG), file_name="a.png", namespace="other", content_type="image/apng"
    )
    assert (prepared.file_name, prepared.namespace, prepared.content_type) == ("a.png", "other", "image/apng")
    hook.upload_file(PNG, file_name="b.png", namespace="third", content_type="image/apng")
    [sent] = rec.sent
    assert sent.url == f"{BASE}/api_gateway/file-service/third/b.png"
    head, data = file_part(sent)
    assert data == PNG
    assert b"Content-Type: image/apng" in head


def test_upload_logs_the_result_and_reports_lineage(
    make_hook: MakeHook, monkeypatch: pytest.MonkeyPatch, mocker: Any
) -> None:
    report = mocker.patch("airflow_capillary.hooks.file_service.report_upload")
    hook, _ = make_hook()
    prepared = hook.prepare_upload(PNG, file_name="test.png")
    monkeypatch.setattr(time, "monotonic", lambda: 500.0)
    result = hook.upload(prepared)
    monkeypatch.undo()
    assert hook.lines == [  # type: ignore[attr-defined]
        f"uploaded test.png to namespace rewards as version 1 (51 bytes, sha256 {SHA}) in 0.00s"
    ]
    assert (result.name, result.sent_size, result.sha256, result.secure_url_refused) == (
        "test.png",
        51,
        SHA,
        None,
    )
    report.assert_called_once_with(hook, prepared, result, base_url=BASE)


def test_a_refused_secure_url_is_kept_and_logged(make_hook: MakeHook) -> None:
    hook, _ = make_hook([Reply(json_body=upload_answer(secureFilePath="https://elsewhere.example/b.png"))])
    result = hook.upload_file(PNG, file_name="test.png")
    assert result.secure_file_path == "https://elsewhere.example/b.png"
    assert result.secure_url_refused is not None
    assert result.secure_url_refused.startswith("https://elsewhere.example is not an allowed storage origin")
    assert hook.lines[1:] == [  # type: ignore[attr-defined]
        f"the secureFilePath of test.png is kept but will not be fetched: {result.secure_url_refused}"
    ]


def test_giving_up_names_the_attempts_and_identifiers(make_hook: MakeHook) -> None:
    hook, rec = make_hook([Reply(503), Reply(503)], max_retries=1)
    with pytest.raises(CapillaryServiceUnavailableError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{WHAT}: HTTP 503 (after 2 attempts)"
    assert (info.value.conn_id, info.value.file_name, info.value.namespace, info.value.status_code) == (
        "capillary_default",
        "test.png",
        "rewards",
        503,
    )
    assert len(rec.sent) == 2


def test_giving_up_on_a_transport_error_masks_the_secrets(make_hook: MakeHook) -> None:
    hook, _ = make_hook([requests.ConnectionError(f"proxy said {PASSWORD}")], max_retries=0)
    with pytest.raises(CapillaryServiceUnavailableError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{WHAT}: cannot reach 127.0.0.1:8443: ConnectionError: proxy said ***"


@pytest.mark.parametrize("status", [300, 301])
def test_a_3xx_answer_to_an_upload_is_a_rejection(make_hook: MakeHook, status: int) -> None:
    hook, _ = make_hook([Reply(status, upload_answer())])
    with pytest.raises(CapillaryRequestRejectedError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{WHAT}: HTTP {status}, Capillary said: Successfully uploaded file"
    assert (info.value.conn_id, info.value.status_code) == ("capillary_default", status)


def test_a_2xx_other_than_200_is_judged_as_an_answer(make_hook: MakeHook) -> None:
    hook, _ = make_hook([Reply(201, upload_answer()), Reply(299, upload_answer())])
    assert hook.upload_file(PNG, file_name="test.png").sent_size == 51
    assert hook.upload_file(PNG, file_name="test.png").sha256 == SHA


def test_a_rejection_masks_the_secrets_in_its_message(make_hook: MakeHook) -> None:
    hook, _ = make_hook([Reply(400, {"message": f"bad {PASSWORD}"})])
    with pytest.raises(CapillaryRequestRejectedError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{WHAT}: HTTP 400, Capillary said: bad ***"


def test_the_body_sent_is_what_the_answer_is_checked_against(make_hook: MakeHook) -> None:
    def short(sent: Sent) -> Reply:
        return Reply(json_body=upload_answer(size=50))

    hook, _ = make_hook([short], hook_kwargs={"retry_integrity_errors": False})
    with pytest.raises(CapillaryIntegrityError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == (
        f"{WHAT}: Capillary stored 50 bytes but 51 were sent (it kept a placeholder or truncated the data)"
    )


def test_an_untrustworthy_answer_is_described_with_the_secrets_masked(make_hook: MakeHook) -> None:
    body = upload_answer(status="false", message=f"echo {PASSWORD}")
    hook, _ = make_hook([Reply(json_body=body)], hook_kwargs={"retry_integrity_errors": False})
    with pytest.raises(CapillaryIntegrityError) as info:
        hook.upload_file(PNG, file_name="test.png")
    assert info.value.message == f"{WHAT}: Capillary answered status 'false', Capillary said: echo ***"
    assert info.value.body is not None
    assert PASSWORD not in info.value.body
    assert '"message": "echo ***"' in info.value.body


def test_a_placeholders_stored_size_is_not_checked(make_hook: MakeHook) -> None:
    hook, _ = make_hook([Reply(json_body=upload_answer("later.png", 7))])
    result = hook.create_placeholder("later.png")
    assert (result.file_size, result.sent_size, result.sha256) == (7, 0, hashlib.sha256(b"").hexdigest())


def test_the_rate_limiter_waits_on_the_hooks_clock_and_sleep(make_hook: MakeHook) -> None:
    hook, rec = make_hook(rate_limit_per_minute=60)
    bound_the_clock(hook)
    hook.upload_file(PNG, file_name="test.png")
    hook.upload_file(PNG, file_name="test.png")
    assert hook.sleeps == [1.0]  # type: ignore[attr-defined]
    assert len(rec.sent) == 2
