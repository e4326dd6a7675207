"""The provider's errors keep every attribute through pickling (mutants of exceptions.py that survived).

Airflow pickles a task's exception on its way to the scheduler and the UI; an attribute dropped
or swapped there is a user's clue lost (the status, the connection, the file, the namespace).
"""

from __future__ import annotations

import pickle

import pytest
from airflow.exceptions import AirflowException

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryBatchError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryIntegrityError,
    CapillaryInvalidInputError,
    CapillaryRequestRejectedError,
    CapillarySecureUrlExpiredError,
    CapillaryServiceUnavailableError,
    CapillaryVerificationError,
    FailedUpload,
)

ATTRIBUTES = ("message", "status_code", "body", "conn_id", "file_name", "namespace")
SINGLE = [
    CapillaryError,
    CapillaryConfigError,
    CapillaryInvalidInputError,
    CapillaryAuthError,
    CapillaryRequestRejectedError,
    CapillaryServiceUnavailableError,
    CapillaryIntegrityError,
    CapillaryVerificationError,
    CapillarySecureUrlExpiredError,
]


def attributes(error: CapillaryError) -> dict[str, object]:
    return {name: getattr(error, name) for name in ATTRIBUTES}


@pytest.mark.parametrize("cls", SINGLE, ids=[c.__name__ for c in SINGLE])
def test_every_attribute_survives_pickling(cls: type[CapillaryError]) -> None:
    error = cls(
        "upload of a.png to rewards failed: HTTP 413",
        status_code=413,
        body='{"message": "too large"}',
        conn_id="capillary_eu",
        file_name="a.png",
        namespace="rewards",
    )
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is cls
    assert isinstance(copy, AirflowException)
    assert str(copy) == "upload of a.png to rewards failed: HTTP 413"
    assert attributes(copy) == {
        "message": "upload of a.png to rewards failed: HTTP 413",
        "status_code": 413,
        "body": '{"message": "too large"}',
        "conn_id": "capillary_eu",
        "file_name": "a.png",
        "namespace": "rewards",
    }


def test_attributes_default_to_none() -> None:
    error = pickle.loads(pickle.dumps(CapillaryAuthError("refused")))
    assert attributes(error) == {
        "message": "refused",
        "status_code": None,
        "body": None,
        "conn_id": None,
        "file_name": None,
        "namespace": None,
    }


def test_batch_error_keeps_failures_count_and_attributes_through_pickling() -> None:
    failures = [
        FailedUpload("/data/a.png", "a.png", "CapillaryServiceUnavailableError: HTTP 503 after 5 attempts"),
        FailedUpload("/data/b.png", "b.png", "CapillaryRequestRejectedError: HTTP 400"),
    ]
    error = CapillaryBatchError(
        "2 of 5 files failed",
        failures=failures,
        uploaded_count=3,
        conn_id="capillary_eu",
        namespace="rewards",
        status_code=503,
        body="busy",
        file_name="a.png",
    )
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is CapillaryBatchError
    assert str(copy) == "2 of 5 files failed"
    assert copy.uploaded_count == 3
    assert copy.failures == (
        FailedUpload("/data/a.png", "a.png", "CapillaryServiceUnavailableError: HTTP 503 after 5 attempts"),
        FailedUpload("/data/b.png", "b.png", "CapillaryRequestRejectedError: HTTP 400"),
    )
    assert all(type(failure) is FailedUpload for failure in copy.failures)
    assert attributes(copy) == {
        "message": "2 of 5 files failed",
        "status_code": 503,
        "body": "busy",
        "conn_id": "capillary_eu",
        "file_name": "a.png",
        "namespace": "rewards",
    }


def test_batch_error_defaults_to_no_failures_and_no_uploads() -> None:
    error = pickle.loads(pickle.dumps(CapillaryBatchError("nothing to do")))
    assert (error.failures, error.uploaded_count, error.conn_id) == ((), 0, None)
