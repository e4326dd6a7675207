"""The provider's registration, checked against Airflow's own schemas and ProvidersManager."""

from __future__ import annotations

import ast
import inspect
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

from airflow_capillary import __version__
from airflow_capillary import get_provider_info as provider_info_module
from airflow_capillary.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent
AIRFLOW_3_2_OR_LATER = tuple(int(p) for p in airflow.__version__.split(".")[:2]) >= (3, 2)


def _schema(name: str) -> dict[str, Any]:
    return json.loads((AIRFLOW_DIR / name).read_text())


def test_entry_point_resolves_to_get_provider_info():
    (ep,) = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_capillary")
    ]
    assert ep.value == "airflow_capillary.get_provider_info:get_provider_info"
    assert ep.load() is get_provider_info


def test_dict_is_valid_against_airflows_provider_info_schema():
    jsonschema.validate(get_provider_info(), _schema("provider_info.schema.json"))


@pytest.mark.skipif(not AIRFLOW_3_2_OR_LATER, reason="conn-fields schema exists from Airflow 3.2 on")
def test_connection_types_are_valid_against_the_provider_yaml_schema():
    connection_types_schema = _schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(get_provider_info()["connection-types"], connection_types_schema)


def test_version_matches_package_version():
    assert get_provider_info()["versions"][0] == __version__


def test_module_is_a_literal_dict_without_imports():
    """A broken provider dict breaks every `airflow` command of the deployment: keep it inert."""
    tree = ast.parse(inspect.getsource(provider_info_module))
    imported = [
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert [name for name in imported if name not in ("__future__", "typing")] == []
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    (ret,) = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
    assert ret.value is not None
    ast.literal_eval(ret.value)  # raises if anything is computed


def test_every_listed_module_imports():
    info = get_provider_info()
    modules = [
        m
        for key in ("hooks", "operators", "sensors", "triggers")
        for e in info.get(key, [])
        for m in e["python-modules"]
    ]
    for module in modules:
        __import__(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        assert getattr(__import__(module, fromlist=[cls]), cls).conn_type == conn["connection-type"]
    for link in info.get("extra-links", []):
        module, _, cls = link.rpartition(".")
        assert getattr(__import__(module, fromlist=[cls]), cls).name


@pytest.mark.skipif(not AIRFLOW_3_2_OR_LATER, reason="Airflow 3.1 builds the form from the hook's methods")
def test_ui_connection_form_metadata_is_what_the_api_server_serves():
    """The api-server's own service builds the form the UI shows from our dict."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "capillary"]
    assert meta.hook_class_name == "airflow_capillary.hooks.file_service.CapillaryFileHook"
    assert meta.hook_name == "Capillary File Service"
    assert meta.standard_fields is not None
    assert meta.standard_fields.host is not None
    assert meta.standard_fields.host.title == "Cluster URL"
    assert meta.standard_fields.port is not None
    assert meta.standard_fields.port.hidden is True
    extra = meta.extra_fields or {}
    assert extra["auth_type"]["schema"]["enum"] == ["basic", "oauth"]
    assert extra["auth_type"]["value"] == "basic"
    assert extra["oauth_url"]["schema"]["title"] == "OAuth token URL"
    # No default is masked as "***": field names avoid Airflow's sensitive words.
    assert {name: field["value"] for name, field in extra.items() if field["value"] == "***"} == {}
    assert extra["md5_prehashed"]["value"] is False
    assert extra["oauth_access_header"]["value"] == "X-CAP-API-OAUTH-TOKEN"
