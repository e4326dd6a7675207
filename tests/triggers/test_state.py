"""Progress across rounds: verified files, consecutive-failure bound, Retry-After, combined failures."""

from __future__ import annotations

import pytest

from airflow_capillary._verify import Verdict, expected_files
from airflow_capillary.exceptions import (
    CapillaryError,
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
)
from airflow_capillary.triggers._state import Failure, VerificationState
from tests.sensors.records import make_record

RECORDS = [make_record("a.png"), make_record("b.png"), make_record("c.png")]
A, B, C = expected_files(RECORDS, "size")
DONE = Verdict("done", "ok", status_code=206)
NOT_FOUND = Verdict("wait", "'x': HTTP 404; waiting", status_code=404)


def busy(retry_after: float | None = None) -> Verdict:
    return Verdict("wait", "'x': HTTP 503; waiting", status_code=503, retry_after=retry_after, transient=True)


def test_only_pending_files_are_left_and_records_keep_input_order():
    state = VerificationState([A, B, C], max_consecutive_failures=3)
    assert state.apply([(C, DONE), (A, NOT_FOUND), (B, DONE)]) == [NOT_FOUND.message]
    assert state.pending == [A]
    assert not state.done
    state.apply([(A, DONE)])
    assert state.done
    assert state.failure is None
    assert state.records(RECORDS) == RECORDS


def test_verified_before_deferring_are_not_pending():
    state = VerificationState([A, B, C], None, verified=[0, 2])
    assert state.pending == [B]


def test_transient_failures_are_bounded_per_file_and_a_404_resets_the_count():
    state = VerificationState([A], max_consecutive_failures=3)
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
    state = VerificationState([A], max_consecutive_failures=None)
    for _ in range(50):
        state.apply([(A, busy())])
    assert state.failure is None


def test_retry_after_is_the_longest_of_the_round_and_resets_each_round():
    state = VerificationState([A, B, C], None)
    state.apply([(A, busy(3.0)), (B, busy(9.0)), (C, busy())])
    assert state.retry_after == 9.0
    assert state.next_wait(5.0) == 9.0
    assert state.next_wait(5.0, remaining=4.0) == 4.0
    assert state.next_wait(5.0, remaining=-1.0) == 0.0
    state.apply([(A, busy()), (B, NOT_FOUND), (C, DONE)])
    assert state.retry_after is None
    assert state.next_wait(5.0) == 5.0


def test_failures_of_one_round_are_combined_and_the_first_sets_the_type():
    state = VerificationState([A, B, C], None)
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
    files = expected_files([make_record(f"f{i}.png") for i in range(9)], "size")
    state = VerificationState(files, None)
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
