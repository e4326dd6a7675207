"""verification.rounds: progress across rounds (verified files, consecutive-failure bound, Retry-After,
combined failures) and the error kinds of trigger events."""

from __future__ import annotations

import httpx
import pytest

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryIntegrityError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
)
from airflow_capillary.verification.records import expected_files
from airflow_capillary.verification.rounds import (
    ERROR_KINDS,
    Failure,
    VerificationState,
    judge_transport_error,
    kind_of,
    request_headers,
)
from airflow_capillary.verification.rules import Verdict
from tests.verification.records import POLICY, SIGNATURE, make_record

RECORDS = [make_record("a.png"), make_record("b.png"), make_record("c.png")]
A, B, C = expected_files(RECORDS, "size", POLICY)
DONE = Verdict("done", "ok", status_code=206)
NOT_FOUND = Verdict("wait", "'x': HTTP 404; waiting", status_code=404)


def busy(retry_after: float | None = None) -> Verdict:
    return Verdict("wait", "'x': HTTP 503; waiting", status_code=503, retry_after=retry_after, transient=True)


def test_only_pending_files_are_left_in_input_order():
    state = VerificationState([A, B, C], "size", max_consecutive_failures=3)
    assert state.apply([(C, DONE), (A, NOT_FOUND), (B, DONE)]) == [NOT_FOUND.message]
    assert state.pending == [A]
    assert not state.done
    state.apply([(A, DONE)])
    assert state.done
    assert state.failure is None


def test_verified_before_deferring_are_not_pending():
    state = VerificationState([A, B, C], "size", None, verified=[0, 2])
    assert state.pending == [B]


def test_transient_failures_are_bounded_per_file_and_a_404_resets_the_count():
    state = VerificationState([A], "size", max_consecutive_failures=3)
    for verdict in (busy(), busy(), NOT_FOUND, busy(), busy()):
        state.apply([(A, verdict)])
        assert state.failure is None
    state.apply([(A, busy())])
    assert state.failure == Failure(
        kind="unavailable",
        message="'x': HTTP 503; giving up after 3 consecutive failures: check that the storage is reachable "
        "from Airflow (proxy, TLS settings of the connection)",
        file_name="a.png",
        namespace="rewards",
        status_code=503,
    )
    assert isinstance(state.failure.to_exception("c1"), CapillaryServiceUnavailableError)


def test_no_bound_when_max_consecutive_failures_is_none():
    state = VerificationState([A], "size", max_consecutive_failures=None)
    for _ in range(50):
        state.apply([(A, busy())])
    assert state.failure is None


def test_retry_after_is_the_longest_of_the_round_and_resets_each_round():
    state = VerificationState([A, B, C], "size", None)
    state.apply([(A, busy(3.0)), (B, busy(9.0)), (C, busy())])
    assert state.retry_after == 9.0
    assert state.next_wait(5.0) == 9.0
    assert state.next_wait(5.0, remaining=4.0) == 4.0
    assert state.next_wait(5.0, remaining=-1.0) == 0.0
    state.apply([(A, busy()), (B, NOT_FOUND), (C, DONE)])
    assert state.retry_after is None
    assert state.next_wait(5.0) == 5.0


def test_failures_of_one_round_are_combined_and_the_first_sets_the_type():
    state = VerificationState([A, B, C], "size", None)
    expired = Verdict("fail", "'b.png': refused; re-run", kind="expired", status_code=403)
    mismatch = Verdict("fail", "'c.png': 0 bytes", kind="verification", status_code=206)
    state.apply([(C, mismatch), (A, DONE), (B, expired)])
    assert state.failure == Failure(
        kind="expired",
        message="'b.png': refused; re-run. 1 other file(s) failed too: 'c.png': 0 bytes",
        file_name="b.png",
        namespace="rewards",
        status_code=403,
    )


def test_a_long_list_of_failures_is_cut_in_the_message():
    files = expected_files([make_record(f"f{i}.png") for i in range(9)], "size", POLICY)
    state = VerificationState(files, "size", None)
    state.apply([(f, Verdict("fail", f"{f.name} bad", kind="verification")) for f in files])
    assert state.failure is not None
    assert state.failure.message == (
        "f0.png bad. 8 other file(s) failed too: f1.png bad; f2.png bad; f3.png bad; f4.png bad; f5.png bad "
        "(and 3 more)"
    )


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("expired", CapillarySecureUrlExpiredError),
        ("verification", CapillaryVerificationError),
        ("x", CapillaryError),
    ],
    ids=["expired", "verification", "unknown-kind"],
)
def test_failure_to_exception_and_event(kind, cls):
    failure = Failure(kind, "boom", "a.png", "rewards", 403)
    exc = failure.to_exception("capillary_default")
    assert type(exc) is cls
    assert (exc.message, exc.file_name, exc.namespace, exc.status_code, exc.conn_id) == (
        "boom",
        "a.png",
        "rewards",
        403,
        "capillary_default",
    )
    assert failure.to_event() == {
        "status": "error",
        "kind": kind,
        "message": "boom",
        "file_name": "a.png",
        "namespace": "rewards",
        "status_code": 403,
    }


def test_error_kinds_are_the_documented_exceptions():
    assert {
        "expired": CapillarySecureUrlExpiredError,
        "verification": CapillaryVerificationError,
        "unavailable": CapillaryServiceUnavailableError,
        "rejected": CapillaryRequestRejectedError,
        "invalid": CapillaryInvalidInputError,
        "config": CapillaryConfigError,
        "internal": CapillaryError,
    } == ERROR_KINDS


def test_no_error_kind_is_shadowed_by_an_earlier_one():
    """kind_of takes the first match: a base listed before its subclass would swallow it."""
    classes = list(ERROR_KINDS.values())
    for position, cls in enumerate(classes):
        assert not [earlier for earlier in classes[:position] if issubclass(cls, earlier)]


class RenewedUrlExpired(CapillarySecureUrlExpiredError):
    """A subclass, as a caller or a later version might raise."""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        *((cls("x"), kind) for kind, cls in ERROR_KINDS.items()),
        (RenewedUrlExpired("x"), "expired"),
        (CapillaryIntegrityError("x"), "internal"),
        (CapillaryAuthError("x"), "internal"),
    ],
    ids=[*ERROR_KINDS, "subclass-of-expired", "integrity", "auth"],
)
def test_kind_of_maps_by_isinstance(exc, kind):
    assert kind_of(exc) == kind
    failure = Failure.from_exception(exc)
    assert (failure.kind, type(failure.to_exception())) == (kind, ERROR_KINDS[kind])


@pytest.mark.parametrize(
    "event",
    [
        {"status": "error", "kind": "nope", "message": "x"},
        {"status": "error", "kind": "expired"},
        {"status": "error", "kind": "expired", "message": 3},
    ],
    ids=["unknown-kind", "no-message", "message-not-text"],
)
def test_failure_from_event_refuses_what_to_event_never_writes(event):
    assert Failure.from_event(event) is None


def test_failure_round_trips_through_its_event():
    failure = Failure("expired", "boom", "a.png", "rewards", 403)
    assert Failure.from_event(failure.to_event()) == failure


def test_request_headers_ask_the_stored_bytes_and_one_byte_in_size_mode():
    assert request_headers("size") == {"Accept-Encoding": "identity", "Range": "bytes=0-0"}
    assert request_headers("sha256") == {"Accept-Encoding": "identity"}


@pytest.mark.parametrize(
    ("exc", "decision", "kind", "transient"),
    [
        (httpx.ConnectTimeout("timed out"), "wait", None, True),
        (httpx.ReadTimeout("timed out"), "wait", None, True),
        (httpx.ConnectError("[Errno 111] Connection refused"), "wait", None, True),
        (httpx.RemoteProtocolError("peer closed connection"), "wait", None, True),
        (httpx.ProxyError("407"), "wait", None, True),
        (
            httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"),
            "fail",
            "rejected",
            False,
        ),
        (httpx.TooManyRedirects("Exceeded maximum allowed redirects."), "fail", "rejected", False),
    ],
    ids=["connect-timeout", "read-timeout", "refused", "reset", "proxy", "scheme", "redirects"],
)
def test_transport_errors(exc, decision, kind, transient):
    verdict = judge_transport_error(A, exc)
    assert (verdict.decision, verdict.kind, verdict.transient) == (decision, kind, transient)
    assert verdict.message.startswith("'a.png' (namespace rewards): ")
    assert type(exc).__name__ in verdict.message


def test_transport_error_message_never_carries_the_url():
    verdict = judge_transport_error(A, httpx.ConnectError(f"cannot reach {A.url}"))
    assert SIGNATURE not in verdict.message
    assert verdict.message == "'a.png' (namespace rewards): ConnectError: cannot reach ***; waiting"
