"""The trigger's repr, which Airflow logs: every argument, the secure URLs redacted (untested mutants)."""

from __future__ import annotations

from airflow_capillary.triggers.file_service import CapillaryFileTrigger
from tests.verification.records import SECURITY_TOKEN, SIGNATURE, make_record


def test_repr_names_the_class_and_every_argument_with_the_secure_url_redacted() -> None:
    record = make_record()
    trigger = CapillaryFileTrigger(
        records=[record],
        deadline=1.0,
        check="size",
        conn_id="cap",
        poll_interval=7,
        max_consecutive_failures=None,
        max_workers=2,
    )
    redacted = {
        **record,
        "secure_file_path": record["secure_file_path"]
        .replace(f"X-Amz-Security-Token={SECURITY_TOKEN}", "X-Amz-Security-Token=***")
        .replace(
            "X-Amz-Credential=ASIAEXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request", "X-Amz-Credential=***"
        )
        .replace(f"X-Amz-Signature={SIGNATURE}", "X-Amz-Signature=***"),
    }

    text = repr(trigger)

    assert text == (
        f"<airflow_capillary.triggers.file_service.CapillaryFileTrigger records={[redacted]!r}, "
        "deadline=1.0, check=size, conn_id=cap, poll_interval=7.0, max_consecutive_failures=None, "
        "verified=[], max_workers=2, not_before=None>"
    )
    assert SECURITY_TOKEN not in text
    assert SIGNATURE not in text
    # The trigger itself keeps the URL it must fetch.
    assert trigger.serialize()[1]["records"] == [record]
