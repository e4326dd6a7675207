"""Lineage of uploads: Airflow's hook lineage, and OpenLineage for :class:`UploadImageOperator`.

A file in Capillary is the asset ``capillary://{host}/{namespace}/{name}``: ``host`` is the
authority of the connection's cluster URL (``eucrm.cc.capillarytech.com``, or ``host:port``),
``namespace`` and ``name`` are percent-encoded path segments. The provider registers the scheme
in ``get_provider_info()["asset-uris"]`` with :func:`sanitize_uri` (Airflow translates an asset
to OpenLineage only when its scheme has a normalizer), :func:`create_asset` and
:func:`convert_asset_to_openlineage`.

- :func:`report_upload` is called by the hook after every upload. It reports the Capillary file
  as an output asset of the hook, and a local source as the input asset ``file:///...``. An
  ``ObjectStoragePath`` source is not reported again: Airflow's ``ObjectStoragePath`` reports
  itself as an input asset when the hook reads it. Bytes and file objects have no asset.
- :func:`operator_lineage` builds the ``OperatorLineage`` that
  ``UploadImageOperator.get_openlineage_facets_on_complete`` returns. Its inputs are every
  source, named after OpenLineage's naming spec as Airflow's own converters name them: namespace
  ``file`` and the absolute path for a local file, ``s3://{bucket}`` and the key for S3,
  ``{scheme}://{authority}`` and the path for another object store. Its outputs are the files
  this run uploaded; a record whose ``action`` is ``unchanged`` (the sync found it in the
  manifest and did not upload it) is not an output.

Nothing here imports the OpenLineage provider at module level: the provider works without it,
and ``pip install "airflow-provider-capillary[openlineage]"`` adds it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset

    from airflow_capillary.hooks.file_service import PreparedUpload
    from airflow_capillary.models import UploadedFile

log = logging.getLogger(__name__)

__all__ = [
    "SCHEME",
    "capillary_uri",
    "convert_asset_to_openlineage",
    "create_asset",
    "hook_lineage_collector",
    "operator_lineage",
    "report_upload",
    "sanitize_uri",
    "source_dataset_name",
]

#: URI scheme of a file in Capillary's file service.
SCHEME = "capillary"
#: Object-storage schemes whose OpenLineage namespace is the bucket (as Airflow's converters do).
_S3_SCHEMES = frozenset({"s3", "s3a", "s3n"})


@functools.lru_cache(maxsize=64)
def _authority(base_url: str) -> str:
    """Return ``host[:port]`` of a cluster URL, lowercased, without user info (cached: once per upload).

    :param base_url: the connection's cluster URL (``https://host[:port][/prefix]``).
    :return: the authority.
    :raises ValueError: the URL has no host.
    """
    parts = urlsplit(base_url if "://" in base_url else f"https://{base_url}")
    if not parts.hostname:
        raise ValueError(f"cluster URL {base_url!r} has no host")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def capillary_uri(base_url: str, namespace: str, name: str) -> str:
    """Return the asset URI of one file in Capillary.

    :param base_url: the connection's cluster URL.
    :param namespace: the file-service namespace.
    :param name: the file's name in Capillary.
    :return: ``capillary://{host}/{namespace}/{name}`` (segments percent-encoded).
    :raises ValueError: the URL has no host, or the namespace or name is empty.
    """
    if not namespace or not name:
        raise ValueError(f"a Capillary file needs a namespace and a name, got {namespace!r}, {name!r}")
    return f"{SCHEME}://{_authority(base_url)}/{quote(namespace, safe='')}/{quote(name, safe='')}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Normalize a ``capillary://`` URI for Airflow (the ``asset-uris`` handler).

    :param uri: the split URI.
    :return: the URI with a lowercase host.
    :raises ValueError: no host, or a path other than ``/{namespace}/{name}``.
    """
    segments = uri.path.split("/")[1:]
    if not uri.netloc:
        raise ValueError("a capillary:// URI needs the cluster host: capillary://{host}/{namespace}/{name}")
    if len(segments) != 2 or not all(segments):
        raise ValueError(f"a capillary:// URI has the path /{{namespace}}/{{name}}, got {uri.path!r}")
    return uri._replace(netloc=uri.netloc.lower())


def create_asset(*, base_url: str, namespace: str, name: str, extra: dict[str, Any] | None = None) -> Asset:
    """Return the Airflow asset of a file in Capillary (the ``asset-uris`` factory).

    :param base_url: the connection's cluster URL.
    :param namespace: the file-service namespace.
    :param name: the file's name.
    :param extra: the asset's extra.
    :return: the asset.
    :raises ValueError: see :func:`capillary_uri`.
    """
    from airflow.sdk import Asset

    return Asset(uri=capillary_uri(base_url, namespace, name), extra=extra)


def _capillary_dataset_name(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    namespace, name = (unquote(segment) for segment in parts.path.split("/")[1:3])
    return f"{SCHEME}://{parts.netloc}", f"{namespace}/{name}"


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Dataset:
    """Translate a ``capillary://`` asset to an OpenLineage dataset (the ``asset-uris`` converter).

    :param asset: the asset (its URI already normalized by :func:`sanitize_uri`).
    :param lineage_context: the object that reported it (unused).
    :return: namespace ``capillary://{host}``, name ``{namespace}/{name}`` (decoded).
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, name = _capillary_dataset_name(asset.uri)
    return Dataset(namespace=namespace, name=name)


def source_dataset_name(source: str) -> tuple[str, str]:
    """Name a source as OpenLineage's naming spec does, the way Airflow's converters name it.

    :param source: an absolute local path, a ``file://`` URI, or an object-storage URI
        (user info, such as an Airflow connection id in ``s3://aws_conn@bucket/key``, is dropped).
    :return: ``(namespace, name)``: ``("file", "/abs/path")``, ``("s3://bucket", "key")``, or
        ``("{scheme}://{authority}", "path")``.
    :raises ValueError: an empty source, a relative local path, or a URI without a path.
    """
    if "://" not in source:
        if not os.path.isabs(source):
            raise ValueError(f"source {source!r} is not an absolute path or a URI")
        return "file", os.path.normpath(source)
    parts = urlsplit(source)
    authority = parts.netloc.rpartition("@")[2]
    path = unquote(parts.path)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not path:
            raise ValueError(f"source {source!r} has no path")
        return ("file" if not authority else f"file://{authority}"), path
    key = path.lstrip("/")
    if not authority or not key:
        raise ValueError(f"source {source!r} has no bucket or no key")
    return f"{'s3' if scheme in _S3_SCHEMES else scheme}://{authority}", key


def hook_lineage_collector() -> Any:
    """Return Airflow's hook lineage collector (a no-op one unless a lineage reader is installed).

    :return: the collector of ``airflow.sdk.lineage`` (Airflow 3.2+) or ``airflow.lineage.hook`` (3.1).
    """
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector
    except ImportError:  # Airflow 3.1
        from airflow.lineage.hook import get_hook_lineage_collector  # type: ignore[no-redef]
    return get_hook_lineage_collector()


def report_upload(context: Any, prepared: PreparedUpload, result: UploadedFile, *, base_url: str) -> None:
    """Report one finished upload to Airflow's hook lineage collector.

    :param context: who reports (the hook).
    :param prepared: what was sent (its ``source_label`` names a local path or a URI).
    :param result: what Capillary stored.
    :param base_url: the connection's cluster URL.
    """
    try:
        collector = hook_lineage_collector()
        if type(collector).__name__ == "NoOpCollector":  # no lineage reader: build no URIs per upload
            return
        label = prepared.source_label
        if not prepared.placeholder and not label.startswith("<") and "://" not in label:
            collector.add_input_asset(context=context, uri=Path(os.path.abspath(label)).as_uri())
        collector.add_output_asset(
            context=context,
            uri=capillary_uri(base_url, result.namespace, result.name),
            asset_extra={"file_handle": result.file_handle, "version": result.version},
        )
    except Exception:  # lineage is best effort: a stored upload must not become a failed file
        log.warning("Hook lineage of %s/%s was not reported", result.namespace, result.name, exc_info=True)


def operator_lineage(records: Iterable[Mapping[str, Any]], *, base_url: str) -> OperatorLineage:
    """Build the OpenLineage lineage of one run of ``UploadImageOperator``.

    :param records: the run's records (XCom shape: ``source``, ``namespace``, ``name``, and with a
        manifest ``action``), in any order.
    :param base_url: the connection's cluster URL.
    :return: inputs (every source, once, sorted) and outputs (every file uploaded by this run,
        once, sorted); empty when there are no records.
    :raises ValueError: a record names no source, namespace or name.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs: set[tuple[str, str]] = set()
    outputs: set[tuple[str, str]] = set()
    for record in records:
        source = record.get("source")
        if not isinstance(source, str) or not source:
            raise ValueError(f"upload record of {record.get('name')!r} has no source")
        inputs.add(source_dataset_name(source))
        if record.get("action") != "unchanged":
            uri = capillary_uri(base_url, str(record.get("namespace") or ""), str(record.get("name") or ""))
            outputs.add(_capillary_dataset_name(uri))
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in sorted(inputs)],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in sorted(outputs)],
    )
