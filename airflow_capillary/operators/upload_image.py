"""UploadImageOperator: upload one image or a whole reward catalogue to Capillary's file service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import PosixPath, WindowsPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_capillary._redact import redact_url
from airflow_capillary.exceptions import CapillaryError, CapillaryInvalidInputError
from airflow_capillary.links import LINK_ATTRIBUTE, CapillaryImageLink
from airflow_capillary.operators import _report
from airflow_capillary.operators._arguments import (
    DEFAULT_CHECKPOINT_SECONDS,
    DEFAULT_CHECKPOINT_UPLOADS,
    HOOK_POLICY,
    as_bool,
    check_arguments,
)
from airflow_capillary.operators._expand import SourceFile, expand_and_name
from airflow_capillary.operators._pool import BoundedPool, Outcome
from airflow_capillary.operators._progress import UploadProgress

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_capillary.hooks.file_service import CapillaryFileHook, PreparedUpload
    from airflow_capillary.models import UploadedFile
    from airflow_capillary.operators._manifest import Action, Manifest

__all__ = ["DEFAULT_MAX_WORKERS", "MAX_WORKERS_LIMIT", "UploadImageOperator"]

#: Default and bounds of ``max_workers``.
DEFAULT_MAX_WORKERS = 8
MAX_WORKERS_LIMIT = 64
_LOCAL_PATHS = (PosixPath, WindowsPath)  # plain local files (Airflow 3.1's ObjectStoragePath is a Path too)


class UploadImageOperator(BaseOperator):
    """Upload images to Capillary's file service and push their records to XCom.

    ``source`` may be a local file, a glob (``/data/rewards/*.png``, ``**`` allowed), a folder
    (every image directly in it; non-images are skipped with one log line), an
    ``ObjectStoragePath`` or its URI (``file:///data/a.png``, ``s3://aws_conn@bucket/prefix/*.png``),
    or a list of these. Every file is validated before the first upload; the uploads then run in
    a bounded thread pool sharing one hook (one session, one OAuth token). Every file is
    attempted: the files that fail after the hook's retries are listed in one error, raised
    after the records of the files that did upload are pushed to XCom key ``uploaded``.

    With a ``manifest``, the task syncs: it streams the sha256 of every source, uploads only the
    files whose ``(namespace, name)`` entry has another sha256 or size (``new`` or ``changed``),
    takes the record of the others (``unchanged``) from the manifest, and records every upload in
    it, checkpointing during the batch. See the README's "The sync manifest".

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
    :param max_workers: concurrent uploads (and checks of object-storage sources), 1 to 64.
    :param include_secure_url: keep ``secure_file_path`` (a pre-signed URL valid for about an
        hour) in the XCom records and the extra link; when false it is ``None``.
    :param allow_empty_source: succeed with an empty list when ``source`` matches no image.
    :param progress_interval: seconds between two progress log lines of a batch (0: none).
    :param manifest: the sync manifest (templated): a local path, a ``file://`` or object-storage
        URI (``s3://aws_conn@bucket/capillary/rewards.json``) or an ``ObjectStoragePath``; a
        missing one means a first run. ``None`` (default): no sync, every file is uploaded.
    :param force_upload: with a manifest, upload every file anyway and rewrite its entry
        (templated; ``"true"``/``"false"`` renderings are accepted).
    :param manifest_checkpoint_uploads: write the manifest during a batch after this many uploads.
    :param manifest_checkpoint_seconds: ... or when this many seconds passed since the last write.
    :param timeout: seconds per request, or a ``(connect, read)`` pair (default: the connection's).
    :param rate_limit_per_minute: the API key's request limit (default: the connection's).
    :param max_retries: retries after the first attempt of a request (default 5).
    :param retry_min_wait: first backoff wait, seconds (default 1).
    :param retry_max_wait: longest backoff wait, seconds (default 30).
    :param retry_after_max: longest ``Retry-After`` honoured, seconds (default 120).
    :param max_rate_limit_wait: seconds of rate-limit pauses per batch before a 429 fails (1800).
    :param retry_on_500: retry HTTP 500 too (default ``False``).
    :param retry_integrity_errors: upload again after an untrustworthy answer (default ``True``).
    :param check_content: refuse files whose magic bytes disagree with the extension (default ``True``).
    :param allow_empty: accept 0-byte files (default ``False``).
    :param max_file_size: refuse larger files, bytes (default: no limit).
    :param kwargs: passed to :class:`~airflow.sdk.BaseOperator`.
    :return: for a single-file source, one record: ``UploadedFile.to_dict()`` plus ``source``
        (``name``, ``namespace``, ``version``, ``latest_version``, ``acl``, ``file_size``,
        ``file_handle``, ``content_type``, ``s3_token``, ``s3_url``, ``last_modified`` (ISO 8601
        UTC), ``secure_file_path``, ``code``, ``status``, ``message``, ``sent_size``, ``sha256``,
        ``source``), with a manifest also ``action`` (``new``, ``changed`` or ``unchanged``; an
        unchanged record has ``secure_file_path``, ``acl``, ``code`` and ``status`` ``None`` and
        ``sent_size`` 0); for any other source, a list of these records sorted by ``source``.
        Also pushed: XCom key ``uploaded`` (the records of the files uploaded by this run, pushed
        on failure too) and key ``file_handles`` (``{name: file_handle}`` of every file that has
        one, unchanged files included).
    """

    template_fields: Sequence[str] = (
        "source",
        "file_name",
        "name_prefix",
        "namespace",
        "content_type",
        "capillary_conn_id",
        "manifest",
        "force_upload",
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
        manifest: Any = None,
        force_upload: bool | str = False,
        manifest_checkpoint_uploads: int = DEFAULT_CHECKPOINT_UPLOADS,
        manifest_checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        timeout: float | tuple[float, float] | None = None,
        rate_limit_per_minute: float | None = None,
        max_retries: int | None = None,
        retry_min_wait: float | None = None,
        retry_max_wait: float | None = None,
        retry_after_max: float | None = None,
        max_rate_limit_wait: float | None = None,
        retry_on_500: bool | None = None,
        retry_integrity_errors: bool | None = None,
        check_content: bool | None = None,
        allow_empty: bool | None = None,
        max_file_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_arguments(
            max_workers=(max_workers, MAX_WORKERS_LIMIT),
            manifest_checkpoint_uploads=manifest_checkpoint_uploads,
            progress_interval=progress_interval,
            manifest_checkpoint_seconds=manifest_checkpoint_seconds,
            rename=rename,
            force_upload=force_upload,
        )
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
        self.manifest = manifest
        self.force_upload = force_upload
        self.manifest_checkpoint_uploads = manifest_checkpoint_uploads
        self.manifest_checkpoint_seconds = manifest_checkpoint_seconds
        # Task policy for the hook (None: the default of airflow_capillary/settings.py).
        self.timeout = timeout
        self.rate_limit_per_minute = rate_limit_per_minute
        self.max_retries = max_retries
        self.retry_min_wait = retry_min_wait
        self.retry_max_wait = retry_max_wait
        self.retry_after_max = retry_after_max
        self.max_rate_limit_wait = max_rate_limit_wait
        self.retry_on_500 = retry_on_500
        self.retry_integrity_errors = retry_integrity_errors
        self.check_content = check_content
        self.allow_empty = allow_empty
        self.max_file_size = max_file_size
        self._pool: BoundedPool | None = None
        self._manifest: Manifest | None = None
        self._lineage_records: list[dict[str, Any]] = []  # for get_openlineage_facets_on_complete

    @cached_property
    def hook(self) -> CapillaryFileHook:
        """The hook shared by every upload of this task (one session, one OAuth token)."""
        from airflow_capillary.hooks.file_service import CapillaryFileHook

        policy = {name: getattr(self, name, None) for name in HOOK_POLICY}
        return CapillaryFileHook(
            self.capillary_conn_id,
            namespace=self.namespace,
            max_connections=self.max_workers,
            **{name: value for name, value in policy.items() if value is not None},
        )

    def on_kill(self) -> None:
        """Cancel the pending uploads, stop waiting for those in flight, save the manifest."""
        if self._pool is not None:
            self.log.info("Stopping: pending uploads are cancelled")
            self._pool.stop()
        if self._manifest is not None:
            self._manifest.save(raise_errors=False, wait=False)  # a write on_kill interrupted goes on

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Return the OpenLineage lineage of the run (``[openlineage]`` extra, imported lazily).

        :param task_instance: the finished task instance (unused: the run's records are kept).
        :return: the sources as inputs; the files this run uploaded as outputs (unchanged ones not).
        """
        from airflow_capillary.lineage import operator_lineage

        return operator_lineage(self._lineage_records, base_url=self.hook.config.base_url)

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        """Expand, validate (and with a manifest, hash and compare) and upload; push the records.

        :param context: the task context.
        :return: one record for a single-file source, else the list of records sorted by source.
        """
        force = as_bool(self.force_upload, "force_upload")
        expanded, names = expand_and_name(
            self.source,
            file_name=self.file_name,
            name_prefix=self.name_prefix,
            rename=self.rename,
            log=self.log,
        )
        files = expanded.files
        if not files:
            if not self.allow_empty_source:
                raise CapillaryInvalidInputError(
                    f"source {self.source!r} matched no image (set allow_empty_source=True to allow this)",
                    conn_id=self.capillary_conn_id,
                    namespace=self.namespace,
                )
            self.log.info("Source %r matched no image: nothing to upload", self.source)
            _report.push_records(context["ti"], {}, {})
            return []
        manifest = self._manifest = self._open_manifest()
        self._pool = BoundedPool(self.max_workers)
        uploaded: dict[int, dict[str, Any]] = {}  # file index -> record, filled as uploads finish
        kept: dict[int, dict[str, Any]] = {}  # file index -> record of an unchanged file
        try:
            prepared, actions = self._prepare_all(files, names, manifest, force)
            if manifest is not None:
                kept = manifest.plan([f.source for f in files], prepared, actions, force=force)
            failed = self._upload_all(files, prepared, actions, uploaded, manifest)
        except BaseException:
            # A timeout, an interrupt or a manifest write error: keep what reached Capillary.
            if manifest is not None:
                manifest.save(raise_errors=False)
            if uploaded or kept:
                _report.push_records(context["ti"], uploaded, kept)
            raise
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
        try:  # a failing batch records its successes before it raises
            if manifest is not None:
                manifest.save(raise_errors=True)
        finally:
            records = self._lineage_records = _report.push_records(context["ti"], uploaded, kept)
        if failed:
            if len(files) == 1 and isinstance(failed[0][1], Exception):
                raise failed[0][1]
            raise _report.batch_error(
                [(files[i].source, names[i], error) for i, error in failed],
                total=len(files),
                uploaded=len(uploaded),
                conn_id=self.capillary_conn_id,
                namespace=self.namespace,
            )
        if self.outlets:
            extra = _report.asset_extra(records, conn_id=self.capillary_conn_id, with_actions=bool(manifest))
            _report.emit_asset_events(self.outlets, context["outlet_events"], extra)
        if expanded.single:
            link = records[0]["secure_file_path"] or records[0]["s3_url"]
            setattr(self, LINK_ATTRIBUTE, link)
            self.log.info("Capillary image: %s", redact_url(link))
            return records[0]
        return records

    def _open_manifest(self) -> Manifest | None:
        """Read and check the manifest, and that its location is writable (before any upload)."""
        if self.manifest is None:
            return None
        from airflow_capillary.operators._manifest import open_manifest

        return open_manifest(
            self.manifest,
            checkpoint_uploads=self.manifest_checkpoint_uploads,
            checkpoint_seconds=self.manifest_checkpoint_seconds,
            log=self.log,
        )

    def _prepare_all(
        self, files: Sequence[SourceFile], names: Sequence[str], manifest: Manifest | None, force: bool
    ) -> tuple[list[PreparedUpload], list[Action | None]]:
        """Validate every file with the hook (no upload) and, with a manifest, hash it and decide
        its action; raise one error listing every bad file."""
        hook = self.hook
        hook.config  # noqa: B018 - a connection error is raised once, not listed for every file

        def prepare(index: int) -> tuple[PreparedUpload, Action | None]:
            path = files[index].path
            item = hook.prepare_upload(path, file_name=names[index], content_type=self.content_type)
            return item, None if manifest is None else manifest.decide(item, path, force=force)

        assert self._pool is not None
        # Local files in this thread (hashing is CPU work, which threads slow under the GIL).
        local = all(type(item.path) in _LOCAL_PATHS for item in files)
        outcomes = self._pool.map(prepare, range(len(files)), inline=local)
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
                + _report.list_errors((files[o.index].source, o.error) for o in bad),
                conn_id=self.capillary_conn_id,
                namespace=self.namespace,
            )
        results = [outcome.result for outcome in outcomes]
        return [r[0] for r in results], [r[1] for r in results]  # type: ignore[index]

    def _upload_all(
        self,
        files: Sequence[SourceFile],
        prepared: Sequence[PreparedUpload],
        actions: Sequence[Action | None],
        uploaded: dict[int, dict[str, Any]],
        manifest: Manifest | None,
    ) -> list[tuple[int, BaseException | None]]:
        """Upload the files not unchanged into ``uploaded`` (and the manifest); return the failures."""
        hook = self.hook
        todo = [index for index, action in enumerate(actions) if action != "unchanged"]
        batch = len(files) > 1
        progress = UploadProgress(
            total_files=len(todo),
            total_bytes=sum(prepared[i].size for i in todo),
            interval=self.progress_interval if batch else 0,
            log=self.log,
            unchanged=None if manifest is None else len(files) - len(todo),
            rate_limit=lambda: getattr(self.hook, "rate_limit_stats", None),
        )
        if batch and todo:
            self.log.info(
                "Uploading %d files to namespace %r with %d workers",
                len(todo),
                prepared[0].namespace,
                min(self.max_workers, len(todo)),
            )

        def on_done(outcome: Outcome[UploadedFile]) -> None:
            index = todo[outcome.index]
            source, result, action = files[index].source, outcome.result, actions[index]
            if result is not None:
                record = {**result.to_dict(include_secure_url=self.include_secure_url), "source": source}
                uploaded[index] = record if action is None else {**record, "action": action}
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
                if manifest is not None:
                    manifest.record(prepared[index], result, source=source)
            else:
                self.log.warning("Failed to upload %s: %s", source, _report.describe(outcome.error))
            progress.advance(size=prepared[index].size, ok=result is not None, action=action)

        def on_wait() -> None:
            progress.tick()
            if manifest is not None:
                manifest.tick()

        assert self._pool is not None
        outcomes = self._pool.map(hook.upload, [prepared[i] for i in todo], on_done=on_done, on_wait=on_wait)
        if batch or manifest is not None:
            progress.summary()
        return [(todo[o.index], o.error) for o in outcomes if o.result is None]
