"""airflow_capillary.lineage: the capillary:// asset, hook lineage, and the operator's OpenLineage.

Unit tests of the pure functions, the provider's registration of the scheme with Airflow (what
Airflow's asset handling and OpenLineage translation look up), and the hook's reports into a real
``HookLineageCollector`` (an integration test against the emulator). That the module works without
the OpenLineage provider is tested in ``tests/release``, in a venv that lacks it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from airflow.sdk import Asset

from airflow_capillary import lineage
from airflow_capillary.hooks.file_service import PreparedUpload
from airflow_capillary.lineage import (
    capillary_uri,
    convert_asset_to_openlineage,
    create_asset,
    operator_lineage,
    report_upload,
    sanitize_uri,
    source_dataset_name,
)
from tests.operators.fakes import uploaded_file

try:  # where Airflow keeps its collector: airflow.sdk.lineage (3.2+) or airflow.lineage.hook (3.1)
    from airflow.sdk import lineage as airflow_lineage
except ImportError:
    from airflow.lineage import hook as airflow_lineage  # type: ignore[no-redef]
HookLineageCollector = airflow_lineage.HookLineageCollector

if TYPE_CHECKING:
    from capillary_emulator import CapillaryEmulator

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG = (REPO_ROOT / "dags_examples" / "data" / "rewards" / "coffee-voucher.png").read_bytes()


@pytest.mark.parametrize(
    ("base_url", "namespace", "name", "uri"),
    [
        pytest.param(
            "https://eucrm.cc.capillarytech.com",
            "rewards",
            "coffee-voucher.png",
            "capillary://eucrm.cc.capillarytech.com/rewards/coffee-voucher.png",
            id="https",
        ),
        pytest.param(
            "https://EUcrm.CC.capillarytech.com/",
            "rewards",
            "a.png",
            "capillary://eucrm.cc.capillarytech.com/rewards/a.png",
            id="host-lowercased",
        ),
        pytest.param(
            "http://127.0.0.1:8080",
            "rewards",
            "a.png",
            "capillary://127.0.0.1:8080/rewards/a.png",
            id="port-kept",
        ),
        pytest.param(
            "https://till:secret@eu.example.com:8443/gateway",
            "rewards",
            "a.png",
            "capillary://eu.example.com:8443/rewards/a.png",
            id="no-user-info-no-prefix",
        ),
        pytest.param(
            "http://[::1]:9000", "rewards", "a.png", "capillary://[::1]:9000/rewards/a.png", id="ipv6"
        ),
        pytest.param(
            "eucrm.cc.capillarytech.com",
            "rewards",
            "a.png",
            "capillary://eucrm.cc.capillarytech.com/rewards/a.png",
            id="no-scheme",
        ),
        pytest.param(
            "https://h.example",
            "diwali 2026",
            "crème brûlée/1.png",
            "capillary://h.example/diwali%202026/cr%C3%A8me%20br%C3%BBl%C3%A9e%2F1.png",
            id="segments-percent-encoded",
        ),
    ],
)
def test_capillary_uri(base_url: str, namespace: str, name: str, uri: str) -> None:
    assert capillary_uri(base_url, namespace, name) == uri


@pytest.mark.parametrize(
    ("base_url", "namespace", "name", "message"),
    [
        pytest.param("https://h.example", "", "a.png", "needs a namespace and a name", id="no-namespace"),
        pytest.param("https://h.example", "rewards", "", "needs a namespace and a name", id="no-name"),
        pytest.param("https://", "rewards", "a.png", "has no host", id="no-host"),
    ],
)
def test_capillary_uri_refuses(base_url: str, namespace: str, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        capillary_uri(base_url, namespace, name)


def test_sanitize_uri_lowercases_the_host() -> None:
    assert sanitize_uri(urlsplit("capillary://EU.Example.com:8443/rewards/A.png")) == urlsplit(
        "capillary://eu.example.com:8443/rewards/A.png"
    )


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        pytest.param("capillary:///rewards/a.png", "needs the cluster host", id="no-host"),
        pytest.param("capillary://h.example/rewards", r"has the path /\{namespace\}/\{name\}", id="no-name"),
        pytest.param("capillary://h.example/a/b/c.png", r"got '/a/b/c.png'", id="too-deep"),
        pytest.param("capillary://h.example/rewards/", r"got '/rewards/'", id="empty-name"),
    ],
)
def test_sanitize_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sanitize_uri(urlsplit(uri))


def test_create_asset_and_its_openlineage_dataset() -> None:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    asset = create_asset(
        base_url="http://127.0.0.1:8080", namespace="rewards", name="spa day.webp", extra={"version": 2}
    )

    assert (asset.uri, asset.extra) == ("capillary://127.0.0.1:8080/rewards/spa%20day.webp", {"version": 2})
    assert convert_asset_to_openlineage(asset, None) == Dataset(
        namespace="capillary://127.0.0.1:8080", name="rewards/spa day.webp"
    )


def test_provider_registers_the_capillary_scheme_with_airflow() -> None:
    """What Airflow looks up: the normalizer (without one, OpenLineage drops the asset), the
    factory, and the OpenLineage converter, from ``get_provider_info()["asset-uris"]``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:  # Airflow 3.1
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[assignment]

    manager = Manager()

    assert manager.asset_uri_handlers.get("capillary") is sanitize_uri
    assert manager.asset_factories.get("capillary") is create_asset
    assert manager.asset_to_openlineage_converters.get("capillary") is convert_asset_to_openlineage
    asset = Asset(uri="capillary://EU.example.com/rewards/a.png")
    assert asset.normalized_uri == "capillary://eu.example.com/rewards/a.png"
    assert translate_airflow_asset(asset, None) == Dataset(
        namespace="capillary://eu.example.com", name="rewards/a.png"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("/data/rewards/a.png", ("file", "/data/rewards/a.png"), id="local"),
        pytest.param("/data/rewards/../x/./a.png", ("file", "/data/x/a.png"), id="local-normalized"),
        pytest.param("file:///data/a%20b.png", ("file", "/data/a b.png"), id="file-uri"),
        pytest.param("file://nas01/share/a.png", ("file://nas01", "/share/a.png"), id="file-uri-host"),
        pytest.param("s3://bucket/rewards/a.png", ("s3://bucket", "rewards/a.png"), id="s3"),
        pytest.param("s3://aws_conn@bucket/rewards/a.png", ("s3://bucket", "rewards/a.png"), id="s3-conn-id"),
        pytest.param("s3a://bucket/k/a.png", ("s3://bucket", "k/a.png"), id="s3a"),
        pytest.param("gs://gcp_conn@bucket/k/a.png", ("gs://bucket", "k/a.png"), id="gcs"),
        pytest.param(
            "abfs://az@container/dir/a.png", ("abfs://container", "dir/a.png"), id="other-object-store"
        ),
    ],
)
def test_source_dataset_name(source: str, expected: tuple[str, str]) -> None:
    assert source_dataset_name(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("rewards/a.png", "is not an absolute path or a URI", id="relative"),
        pytest.param("s3://bucket", "has no bucket or no key", id="no-key"),
        pytest.param("s3:///key.png", "has no bucket or no key", id="no-bucket"),
        pytest.param("file://", "has no path", id="file-no-path"),
    ],
)
def test_source_dataset_name_refuses(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        source_dataset_name(source)


def _record(name: str, source: str, **extra: Any) -> dict[str, Any]:
    return {**uploaded_file(name, 10).to_dict(), "source": source, **extra}


def _names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_operator_lineage_inputs_every_source_outputs_only_uploaded_files() -> None:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    records = [
        _record("b.png", "/data/b.png", action="new"),
        _record("a.png", "s3://aws_conn@bucket/in/a.png", action="changed"),
        _record("c.png", "/data/c.png", action="unchanged"),
    ]

    result = operator_lineage(records, base_url="https://eu.example.com")

    assert result.inputs == [
        Dataset(namespace="file", name="/data/b.png"),
        Dataset(namespace="file", name="/data/c.png"),
        Dataset(namespace="s3://bucket", name="in/a.png"),
    ]
    assert result.outputs == [
        Dataset(namespace="capillary://eu.example.com", name="rewards/a.png"),
        Dataset(namespace="capillary://eu.example.com", name="rewards/b.png"),
    ]
    assert (result.run_facets, result.job_facets) == ({}, {})


def test_operator_lineage_without_manifest_every_record_is_an_output() -> None:
    records = [_record("a.png", "/data/a.png"), _record("a.png", "/data/a.png")]  # one file, twice

    result = operator_lineage(records, base_url="http://127.0.0.1:8080")

    assert _names(result.inputs) == [("file", "/data/a.png")]
    assert _names(result.outputs) == [("capillary://127.0.0.1:8080", "rewards/a.png")]


def test_operator_lineage_of_no_records_is_empty() -> None:
    result = operator_lineage([], base_url="https://eu.example.com")
    assert (result.inputs, result.outputs) == ([], [])


def test_operator_lineage_refuses_a_record_without_source() -> None:
    record = uploaded_file("a.png", 10).to_dict()
    with pytest.raises(ValueError, match=r"upload record of 'a\.png' has no source"):
        operator_lineage([record], base_url="https://eu.example.com")


# -- hook lineage ---------------------------------------------------------------------------------


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> HookLineageCollector:
    """A real collector in place of Airflow's (a NoOpCollector unless a lineage reader plugin is
    installed), for the provider and for ObjectStoragePath."""
    real = HookLineageCollector()
    monkeypatch.setattr(airflow_lineage, "get_hook_lineage_collector", lambda: real)
    assert lineage.hook_lineage_collector() is real
    return real


def _prepared(label: str, *, placeholder: bool = False) -> PreparedUpload:
    return PreparedUpload(
        file_name="a.png",
        namespace="rewards",
        content_type="image/png",
        size=10,
        source_label=label,
        url="https://eu.example.com/api_gateway/file-service/rewards/a.png",
        placeholder=placeholder,
    )


def _assets(infos: list[Any]) -> list[tuple[str, dict[str, Any], int, Any]]:
    return [(info.asset.uri, info.asset.extra, info.count, info.context) for info in infos]


OUTPUT_EXTRA = {"file_handle": "handle-a.png", "version": 1}


@pytest.mark.parametrize(
    ("label", "placeholder", "inputs"),
    [
        pytest.param("/data/a b.png", False, ["file:///data/a%20b.png"], id="local-path"),
        pytest.param("<bytes>", False, [], id="bytes"),
        pytest.param("<stream /data/a.png>", False, [], id="stream"),
        pytest.param("<placeholder>", True, [], id="placeholder"),
        pytest.param("s3://aws_conn@bucket/a.png", False, [], id="object-storage-reports-itself"),
    ],
)
def test_report_upload(
    collector: HookLineageCollector, label: str, placeholder: bool, inputs: list[str]
) -> None:
    hook = object()

    report_upload(
        hook,
        _prepared(label, placeholder=placeholder),
        uploaded_file("a.png", 10),
        base_url="https://EU.example.com",
    )

    collected = collector.collected_assets
    assert _assets(collected.inputs) == [(uri, {}, 1, hook) for uri in inputs]
    assert _assets(collected.outputs) == [("capillary://eu.example.com/rewards/a.png", OUTPUT_EXTRA, 1, hook)]


def test_report_upload_of_a_relative_path_is_absolute(
    collector: HookLineageCollector, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    report_upload(None, _prepared("images/a.png"), uploaded_file("a.png", 10), base_url="https://h.example")
    assert [info.asset.uri for info in collector.collected_assets.inputs] == [
        (tmp_path / "images" / "a.png").as_uri()
    ]


@pytest.mark.integration
def test_hook_uploads_report_their_source_and_capillary_file(
    collector: HookLineageCollector, capillary_conn: CapillaryEmulator, tmp_path: Path
) -> None:
    """A local path and an ObjectStoragePath through the real hook: one input each (the path by
    the hook, the ObjectStoragePath by Airflow when the hook reads it), one output each."""
    from airflow.sdk import ObjectStoragePath

    from airflow_capillary.hooks.file_service import CapillaryFileHook

    local = tmp_path / "coffee voucher.png"
    local.write_bytes(PNG)
    stored = tmp_path / "stored" / "spa-day.png"
    stored.parent.mkdir()
    stored.write_bytes(PNG)
    hook = CapillaryFileHook("capillary_default")
    try:
        first = hook.upload_file(local)
        second = hook.upload_file(ObjectStoragePath(stored.as_uri()))
    finally:
        hook.close()
    authority = urlsplit(capillary_conn.base_url).netloc

    collected = collector.collected_assets
    assert _assets(collected.outputs) == [
        (
            f"capillary://{authority}/rewards/coffee%20voucher.png",
            {"file_handle": first.file_handle, "version": 1},
            1,
            hook,
        ),
        (
            f"capillary://{authority}/rewards/spa-day.png",
            {"file_handle": second.file_handle, "version": 1},
            1,
            hook,
        ),
    ]
    by_hook = [info.asset.uri for info in collected.inputs if info.context is hook]
    by_path = [info.asset.uri for info in collected.inputs if isinstance(info.context, ObjectStoragePath)]
    assert by_hook == [local.as_uri()]
    assert by_path == [stored.as_uri()]
    assert len(collected.inputs) == 2


# -- the OpenLineage provider stays unloaded (tests/release runs the provider in a venv without it) --


def test_importing_the_module_loads_no_openlineage() -> None:
    code = (
        "import sys, airflow_capillary.lineage; print(sorted(m for m in sys.modules if 'openlineage' in m))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
    assert lineage.SCHEME == "capillary"
