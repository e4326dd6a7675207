"""UploadImageOperator: upload one image or a whole reward catalogue to Capillary's file service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_capillary._redact import redact_text, redact_url
from airflow_capillary.exceptions import (
    CapillaryBatchError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
    FailedUpload,
)
from airflow_capillary.links import LINK_ATTRIBUTE, CapillaryImageLink
from airflow_capillary.operators._expand import MAX_LISTED, SourceFile, assign_names, expand_source
from airflow_capillary.operators._pool import BoundedPool, Outcome
from airflow_capillary.operators._progress import UploadProgress

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_capillary.hooks.file_service import CapillaryFileHook, PreparedUpload
    from airflow_capillary.models import UploadedFile

__all__ = ["DEFAULT_MAX_WORKERS", "MAX_WORKERS_LIMIT", "UploadImageOperator"]

#: Default and bounds of ``max_workers``.
DEFAULT_MAX_WORKERS = 8
MAX_WORKERS_LIMIT = 64
#: How many failures an error message lists before summarising (all are on ``failures``).
MAX_LISTED_FAILURES = 50


class UploadImageOperator(BaseOperator):
    """Upload images to Capillary's file service and push their records to XCom.

    ``source`` may be a local file, a glob (``/data/rewards/*.png``, ``**`` allowed), a folder
    (every image directly in it; non-images are skipped with one log line), an
    ``ObjectStoragePath`` or its URI (``file:///data/a.png``, ``s3://aws_conn@bucket/prefix/*.png``),
    or a list of these. Every file is validated before the first upload; the uploads then run in
    a bounded thread pool sharing one hook (one session, one OAuth token). Every file is
    attempted: the files that fail after the hook's retries are listed in one error, raised
    after the records of the files that did upload are pushed to XCom key ``uploaded``.

    :param source: what to upload (templated); see above.
    :param capillary_conn_id: the ``capillary`` connection (templated).
    :param namespace: the file-service namespace (templated); default the connection's
        ``namespace`` extra, else ``rewards``.
    :param file_name: the name in Capillary of a single-file source (templated); default the
        source's base name. Not allowed with a batch.
    :param name_prefix: text put in front of every name of a batch (templated), e.g. ``"diwali-"``.
    :param rename: callable ``(base name) -> name`` applied to every file before ``name_prefix``.
    :param content_type: MIME type to send (templated); default from the extension (the hook
        checks that the magic bytes agree with it).
    :param max_workers: concurrent uploads, 1 to 64.
    :param include_secure_url: keep ``secure_file_path`` (a pre-signed URL valid for about an
        hour) in the XCom records and the extra link; when false it is ``None``.
    :param allow_empty_source: succeed with an empty list when ``source`` matches no image.
    :param progress_interval: seconds between two progress log lines of a batch (0: none).
    :param kwargs: passed to :class:`~airflow.sdk.BaseOperator`.
    :return: for a single-file source, one record: ``UploadedFile.to_dict()`` plus ``source``
        (``name``, ``namespace``, ``version``, ``latest_version``, ``acl``, ``file_size``,
        ``file_handle``, ``content_type``, ``s3_token``, ``s3_url``, ``last_modified`` (ISO 8601
        UTC), ``secure_file_path``, ``code``, ``status``, ``message``, ``sent_size``, ``sha256``,
        ``source``); for any other source, a list of these records sorted by ``source``. Also
        pushed: XCom key ``uploaded`` (list of the records of every file that uploaded, pushed
        on failure too) and key ``file_handles`` (``{name: file_handle}``).
    """

    template_fields: Sequence[str] = (
        "source",
        "file_name",
        "name_prefix",
        "namespace",
        "content_type",
        "capillary_conn_id",
    )
    operator_extra_links = (CapillaryImageLink(),)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        source: Any,
        capillary_conn_id: str = "capillary_default",
        namespace: str | None = None,
        file_name: str | None = None,
        name_prefix: str | None = None,
        rename: Callable[[str], str] | None = None,
        content_type: str | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        include_secure_url: bool = True,
        allow_empty_source: bool = False,
        progress_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise CapillaryConfigError(f"max_workers must be an int from 1 to {MAX_WORKERS_LIMIT}")
        if not 1 <= max_workers <= MAX_WORKERS_LIMIT:
            raise CapillaryConfigError(
                f"max_workers must be from 1 to {MAX_WORKERS_LIMIT}, got {max_workers}"
            )
        valid_interval = isinstance(progress_interval, (int, float)) and not isinstance(
            progress_interval, bool
        )
        if not valid_interval or progress_interval < 0:
            raise CapillaryConfigError(
                f"progress_interval must be a number of seconds >= 0, got {progress_interval!r}"
            )
        if rename is not None and not callable(rename):
            raise CapillaryConfigError("rename must be a callable taking and returning a file name")
        self.source = source
        self.capillary_conn_id = capillary_conn_id
        self.namespace = namespace
        self.file_name = file_name
        self.name_prefix = name_prefix
        self.rename = rename
        self.content_type = content_type
        self.max_workers = max_workers
        self.include_secure_url = include_secure_url
        self.allow_empty_source = allow_empty_source
        self.progress_interval = progress_interval
        self._pool: BoundedPool | None = None

    @cached_property
    def hook(self) -> CapillaryFileHook:
        """The hook shared by every upload of this task (one session, one OAuth token)."""
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        return CapillaryFileHook(
            self.capillary_conn_id, namespace=self.namespace, max_connections=self.max_workers
        )

    def on_kill(self) -> None:
        """Cancel the pending uploads and make ``execute`` stop waiting for the ones in flight."""
        if self._pool is not None:
            self.log.info("Stopping: pending uploads are cancelled")
            self._pool.stop()

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        """Expand, validate and upload; push the records. See the class docstring for the XCom shapes.

        :param context: the task context.
        :return: one record for a single-file source, else the list of records sorted by source.
        """
        expanded = expand_source(self.source)
        files = expanded.files
        names = assign_names(
            files,
            file_name=self.file_name,
            name_prefix=self.name_prefix,
            rename=self.rename,
            single=expanded.single,
        )
        if expanded.skipped:
            self.log.info(
                "Skipped %d non-image file(s): %s%s",
                len(expanded.skipped),
                ", ".join(expanded.skipped[:MAX_LISTED]),
                ", ..." if len(expanded.skipped) > MAX_LISTED else "",
            )
        if not files:
            if not self.allow_empty_source:
                raise CapillaryInvalidInputError(
                    f"source {self.source!r} matched no image (set allow_empty_source=True to allow this)",
                    conn_id=self.capillary_conn_id,
                    namespace=self.namespace,
                )
            self.log.info("Source %r matched no image: nothing to upload", self.source)
            self._push(context, [])
            return []
        self._pool = BoundedPool(self.max_workers)
        uploaded: dict[int, dict[str, Any]] = {}  # file index -> record, filled as uploads finish
        try:
            prepared = self._prepare_all(files, names)
            failures = self._upload_all(files, prepared, uploaded)
        except BaseException:
            # A timeout or an interrupt while uploading: keep what reached Capillary in view.
            if uploaded:
                self._push(context, [uploaded[i] for i in sorted(uploaded)])
            raise
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
        records = [uploaded[i] for i in sorted(uploaded)]  # files are sorted by source
        self._push(context, records)
        if failures:
            self._raise_failures(files, names, failures, uploaded=len(records))
        self._emit_asset_events(context, records)
        if expanded.single:
            link = records[0]["secure_file_path"] or records[0]["s3_url"]
            setattr(self, LINK_ATTRIBUTE, link)
            self.log.info("Capillary image: %s", redact_url(link))
            return records[0]
        return records

    def _prepare_all(self, files: Sequence[SourceFile], names: Sequence[str]) -> list[PreparedUpload]:
        """Validate every file with the hook (no upload); raise one error listing every bad file."""
        hook = self.hook

        def prepare(index: int) -> PreparedUpload:
            return hook.prepare_upload(
                files[index].path, file_name=names[index], content_type=self.content_type
            )

        assert self._pool is not None
        outcomes = self._pool.map(prepare, range(len(files)))
        if self._pool.stopped:
            raise CapillaryError(
                "upload stopped (on_kill) while validating the files: nothing was uploaded",
                conn_id=self.capillary_conn_id,
                namespace=self.namespace,
            )
        bad = [outcome for outcome in outcomes if outcome.error is not None]
        if bad:
            if len(files) == 1 and isinstance(bad[0].error, Exception):
                raise bad[0].error
            raise CapillaryInvalidInputError(
                f"{len(bad)} of {len(files)} files cannot be uploaded, so none was: "
                + _list_errors((files[o.index].source, o.error) for o in bad),
                conn_id=self.capillary_conn_id,
                namespace=self.namespace,
            )
        return [outcome.result for outcome in outcomes]  # type: ignore[misc]

    def _upload_all(
        self,
        files: Sequence[SourceFile],
        prepared: Sequence[PreparedUpload],
        uploaded: dict[int, dict[str, Any]],
    ) -> list[Outcome[UploadedFile]]:
        """Upload every prepared file in the pool, adding each record to ``uploaded`` as it
        arrives; return the failed outcomes."""
        hook = self.hook
        batch = len(files) > 1
        progress = UploadProgress(
            total_files=len(files),
            total_bytes=sum(item.size for item in prepared),
            interval=self.progress_interval if batch else 0,
            log=self.log,
        )
        if batch:
            self.log.info(
                "Uploading %d files to namespace %r with %d workers",
                len(files),
                prepared[0].namespace,
                min(self.max_workers, len(files)),
            )

        def on_done(outcome: Outcome[UploadedFile]) -> None:
            source = files[outcome.index].source
            result = outcome.result
            if result is not None:
                uploaded[outcome.index] = {
                    **result.to_dict(include_secure_url=self.include_secure_url),
                    "source": source,
                }
                # DEBUG: the hook already logs one INFO line per uploaded file.
                self.log.debug(
                    "Uploaded %s as %s/%s version %d (%d bytes), handle %s",
                    source,
                    result.namespace,
                    result.name,
                    result.version,
                    result.file_size,
                    result.file_handle,
                )
            else:
                self.log.warning("Failed to upload %s: %s", source, _describe(outcome.error))
            progress.advance(size=prepared[outcome.index].size, ok=result is not None)

        assert self._pool is not None
        outcomes = self._pool.map(hook.upload, prepared, on_done=on_done, on_wait=progress.tick)
        if batch:
            progress.summary()
        return [outcome for outcome in outcomes if outcome.result is None]

    def _push(self, context: Context, records: list[dict[str, Any]]) -> None:
        """Push XCom keys ``uploaded`` and ``file_handles`` (before the task may fail)."""
        ti = context["ti"]
        ti.xcom_push(key="uploaded", value=records)
        ti.xcom_push(key="file_handles", value={r["name"]: r["file_handle"] for r in records})

    def _raise_failures(
        self,
        files: Sequence[SourceFile],
        names: Sequence[str],
        failures: Sequence[Outcome[UploadedFile]],
        *,
        uploaded: int,
    ) -> None:
        """Raise the one error of this task: the hook's own for a single file, else a batch error."""
        if len(files) == 1 and isinstance(failures[0].error, Exception):
            raise failures[0].error
        failed = tuple(
            FailedUpload(files[o.index].source, names[o.index], _describe(o.error)) for o in failures
        )
        raise CapillaryBatchError(
            f"{len(failed)} of {len(files)} files failed to upload ({uploaded} uploaded, their records "
            "are in XCom 'uploaded'): " + _list_errors((files[o.index].source, o.error) for o in failures),
            failures=failed,
            uploaded_count=uploaded,
            conn_id=self.capillary_conn_id,
            namespace=self.namespace,
        )

    def _emit_asset_events(self, context: Context, records: list[dict[str, Any]]) -> None:
        """Attach a compact summary of the upload to the event of every outlet asset."""
        if not self.outlets:
            return
        from airflow.sdk import Asset

        extra = {
            "capillary_conn_id": self.capillary_conn_id,
            "count": len(records),
            "total_bytes": sum(r["file_size"] for r in records),
            "files": [
                {
                    "name": r["name"],
                    "namespace": r["namespace"],
                    "file_handle": r["file_handle"],
                    "version": r["version"],
                }
                for r in records
            ],
        }
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)


def _describe(error: BaseException | None) -> str:
    """``"Type: message"`` of an error, with anything credential-like redacted."""
    if error is None:
        return "unknown error"
    return redact_text(f"{type(error).__name__}: {error}")


def _list_errors(items: Any) -> str:
    """List ``(source, error)`` pairs one per line, at most :data:`MAX_LISTED_FAILURES`."""
    lines = [f"{source}: {_describe(error)}" for source, error in items]
    more = len(lines) - MAX_LISTED_FAILURES
    listed = lines[:MAX_LISTED_FAILURES] + ([f"... and {more} more"] if more > 0 else [])
    return "\n  - " + "\n  - ".join(listed)
