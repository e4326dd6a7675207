"""What an upload task reports once its batch is over: the batch error, the asset-event summary.

Pure functions of the records and outcomes, kept apart from the upload path of
:mod:`~airflow_capillary.operators.upload_image`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_capillary._redact import redact_text
from airflow_capillary.exceptions import CapillaryBatchError, FailedUpload

__all__ = ["ACTIONS", "MAX_LISTED_FAILURES", "asset_extra", "batch_error", "describe", "list_errors"]

#: How many failures an error message lists before summarising (all are on ``failures``).
MAX_LISTED_FAILURES = 50
#: What a sync manifest decides for each file, in the order summaries count them.
ACTIONS = ("new", "changed", "unchanged")


def describe(error: BaseException | None) -> str:
    """Return ``"Type: message"`` of an error, with anything credential-like redacted.

    :param error: the error.
    :return: the text (``"unknown error"`` for ``None``).
    """
    if error is None:
        return "unknown error"
    return redact_text(f"{type(error).__name__}: {error}")


def list_errors(items: Iterable[tuple[str, BaseException | None]]) -> str:
    """List ``(source, error)`` pairs one per line, at most :data:`MAX_LISTED_FAILURES`.

    :param items: the pairs.
    :return: the lines, each starting with ``"\\n  - "``.
    """
    lines = [f"{source}: {describe(error)}" for source, error in items]
    more = len(lines) - MAX_LISTED_FAILURES
    listed = lines[:MAX_LISTED_FAILURES] + ([f"... and {more} more"] if more > 0 else [])
    return "\n  - " + "\n  - ".join(listed)


def batch_error(
    failed: Sequence[tuple[str, str, BaseException | None]],
    *,
    total: int,
    uploaded: int,
    conn_id: str,
    namespace: str | None,
) -> CapillaryBatchError:
    """Return the one error of a batch in which some files failed to upload.

    :param failed: ``(source, name, error)`` of each failed file, in source order.
    :param total: the files of the batch.
    :param uploaded: how many of them uploaded.
    :param conn_id: the connection.
    :param namespace: the task's namespace argument.
    :return: the error; its ``failures`` hold every failed file.
    """
    failures = tuple(FailedUpload(source, name, describe(error)) for source, name, error in failed)
    return CapillaryBatchError(
        f"{len(failures)} of {total} files failed to upload ({uploaded} uploaded, their records "
        "are in XCom 'uploaded'): " + list_errors((source, error) for source, _, error in failed),
        failures=failures,
        uploaded_count=uploaded,
        conn_id=conn_id,
        namespace=namespace,
    )


def asset_extra(records: Sequence[dict[str, Any]], *, conn_id: str, with_actions: bool) -> dict[str, Any]:
    """Return the ``extra`` of the task's asset events: a compact summary of the catalogue.

    :param records: every record of the task (uploaded and, with a manifest, unchanged).
    :param conn_id: the connection.
    :param with_actions: a manifest decided the records' ``action``: count them (``actions``) and
        give each file its own.
    :return: ``capillary_conn_id``, ``count``, ``total_bytes``, ``files`` (``name``,
        ``namespace``, ``file_handle``, ``version``, with a manifest ``action``) and, with a
        manifest, ``actions`` (``{"new": n, "changed": n, "unchanged": n}``).
    """
    keys = ("name", "namespace", "file_handle", "version") + (("action",) if with_actions else ())
    extra: dict[str, Any] = {
        "capillary_conn_id": conn_id,
        "count": len(records),
        "total_bytes": sum(r["file_size"] for r in records),
        "files": [{key: r[key] for key in keys} for r in records],
    }
    if with_actions:
        extra["actions"] = {action: sum(r["action"] == action for r in records) for action in ACTIONS}
    return extra


def push_records(
    ti: Any, uploaded: Mapping[int, dict[str, Any]], kept: Mapping[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Push XCom keys ``uploaded`` and ``file_handles`` (before the task may fail).

    :param ti: the task instance.
    :param uploaded: file index to the record of each file this run uploaded.
    :param kept: file index to the record of each unchanged file (with a manifest).
    :return: every record, in file order (the files are sorted by source).
    """
    records = in_order({**uploaded, **kept})
    ti.xcom_push(key="uploaded", value=in_order(uploaded))
    ti.xcom_push(key="file_handles", value={r["name"]: r["file_handle"] for r in records})
    return records


def emit_asset_events(outlets: Sequence[Any], outlet_events: Any, extra: Mapping[str, Any]) -> None:
    """Attach ``extra`` to the event of every outlet that is an asset.

    :param outlets: the task's outlets.
    :param outlet_events: the context's ``outlet_events``.
    :param extra: from :func:`asset_extra`.
    """
    from airflow.sdk import Asset

    for outlet in outlets:
        if isinstance(outlet, Asset):
            outlet_events[outlet].extra.update(extra)


def in_order(records: Mapping[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the records in file order (the files are sorted by source).

    :param records: file index to record.
    :return: the records.
    """
    return [records[i] for i in sorted(records)]
