"""The one table of settings (airflow_capillary/settings.py) agrees with everything that shows it.

The config (defaults, attribute names, where each setting is given), the literal ``conn-fields``
and ``versions`` of ``get_provider_info()``, the README's tables, and the generator that writes
the last two. The Airflow 3.1 form is checked against the table in tests/hooks/test_form.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_capillary import __version__, settings
from airflow_capillary.get_provider_info import get_provider_info
from airflow_capillary.hooks._config import DEFAULTS, SETTINGS, CapillaryConnectionConfig
from airflow_capillary.hooks.file_service import CapillaryFileHook

ROOT = Path(__file__).resolve().parents[2]


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_provider_info", ROOT / "scripts" / "gen_provider_info.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: scripts/gen_provider_info.py, which renders the table into the provider info and the README.
gen = _load_generator()
CONNECTION: dict[str, Any] = {"host": "https://eucrm.example", "login": "till", "password": "pw"}


def _conn_fields() -> dict[str, Any]:
    [conn_type] = get_provider_info()["connection-types"]
    return conn_type["conn-fields"]


def _readme_region(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^<!-- \[START {name}\][^\n]*-->\n(.*?)^<!-- \[END {name}\] -->$", text, re.M | re.S)
    assert match is not None, f"README.md has no generated region {name!r}"
    return match.group(1)


def test_provider_info_conn_fields_are_the_tables_connection_settings():
    assert _conn_fields() == gen.conn_fields()
    assert list(_conn_fields()) == [s.extra_name for s in settings.TABLE if s.scope != "task"]


def test_provider_info_version_is_the_package_version():
    assert get_provider_info()["versions"] == [__version__]


def test_generator_finds_nothing_to_rewrite():
    """The literal dict and the README are exactly what scripts/gen_provider_info.py writes."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_provider_info.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("region", "render"),
    [
        ("connection-table", gen.readme_connection_table),
        ("task-table", gen.readme_task_table),
    ],
    ids=["connection", "task"],
)
def test_readme_tables_are_the_table(region, render):
    assert _readme_region(region) == render()


def test_readme_names_every_setting_with_its_default():
    connection, task = _readme_region("connection-table"), _readme_region("task-table")
    for s in settings.TABLE:
        if s.scope != "task":
            assert f"| extra `{s.extra_name}` |" in connection
        if s.scope != "connection":
            assert f"| `{s.name}` |" in task
    assert "| extra `max_retries` |" not in connection
    assert (
        "| `max_retries` | Retries after the first attempt, on connection errors, timeouts, 429 and " in task
    )
    assert task.count("\n") == 2 + len(SETTINGS)


def test_config_attributes_are_the_table():
    names = [f.name for f in dataclasses.fields(CapillaryConnectionConfig)]
    assert names == ["conn_id", "base_url", "auth_type", "login", "password"] + [
        s.name for s in settings.TABLE if s.name != "auth_type"
    ]
    assert {s.name: s.default for s in settings.TABLE} == DEFAULTS
    assert frozenset(s.name for s in settings.TABLE if s.scope != "connection") == SETTINGS


def _resolved_default(setting: settings.Setting) -> Any:
    if setting.name == "token_url":
        return "https://eucrm.example/v3/oauth/token/generate"
    if setting.kind == "timeout":
        return (setting.default, setting.default)
    return setting.default


@pytest.mark.parametrize("setting", settings.TABLE, ids=lambda s: s.name)
def test_config_default_is_the_tables(setting):
    assert getattr(CapillaryConnectionConfig.resolve("c", **CONNECTION), setting.name) == _resolved_default(
        setting
    )


@pytest.mark.parametrize(
    "name", [name for name, field in gen.conn_fields().items() if "default" in field["schema"]]
)
def test_form_default_saved_as_text_resolves_to_the_tables_default(name):
    """What the form saves when left at its default is what the config uses without it."""
    text = str(_conn_fields()[name]["schema"]["default"])
    (setting,) = [s for s in settings.TABLE if s.extra_name == name]
    cfg = CapillaryConnectionConfig.resolve("c", extra={name: text}, **CONNECTION)
    assert getattr(cfg, setting.name) == _resolved_default(setting)


def _other_value(setting: settings.Setting) -> Any:
    """A valid value that is not the default."""
    if setting.kind == "boolean":
        return not setting.default
    if setting.kind == "namespace":
        return "loyalty"
    return 7 if setting.kind == "integer" else 7.5


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_hook_argument_is_a_hook_keyword(monkeypatch, name):
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", "capillary://till:pw@eucrm.example")
    setting = settings.BY_NAME[name]
    value = _other_value(setting)
    assert value != setting.default
    resolved = getattr(CapillaryFileHook(**{name: value}).config, name)
    assert resolved == ((value, value) if setting.kind == "timeout" else value)


def test_table_has_one_name_per_setting_and_no_masked_extra():
    """Airflow's UI masks an extra whose name holds a sensitive word, even a default ``false``."""
    from airflow.sdk._shared.secrets_masker import DEFAULT_SENSITIVE_FIELDS

    def masked(name: str) -> bool:
        return any(word in name.lower() for word in DEFAULT_SENSITIVE_FIELDS)

    names = [name for s in settings.TABLE for name in {s.name, s.extra_name}]
    assert len(names) == len(set(names))
    # proxies may carry credentials: that the UI masks their value is wanted (Airflow merges the
    # masked value back on save).
    assert [s.extra_name for s in settings.TABLE if s.scope != "task" and masked(s.extra_name)] == ["proxies"]
    assert [s.name for s in settings.TABLE if s.extra is not None] == [
        s.name for s in settings.TABLE if s.name != "proxies" and masked(s.name)
    ]


def test_operator_takes_every_hook_argument_but_the_pool_size():
    """UploadImageOperator's task policy is the table's (``max_connections`` comes from ``max_workers``)."""
    from airflow_capillary.operators._arguments import HOOK_POLICY
    from airflow_capillary.operators.upload_image import UploadImageOperator

    parameters = inspect.signature(UploadImageOperator.__init__).parameters
    wanted = [s.name for s in settings.TABLE if s.scope != "connection" and s.name != "max_connections"]
    assert {name: parameters[name].default for name in wanted} == dict.fromkeys(wanted)
    assert sorted(HOOK_POLICY) == sorted(set(wanted) - {"namespace"})


def test_operator_arguments_reach_the_config(monkeypatch):
    from airflow_capillary.operators.upload_image import UploadImageOperator

    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", "capillary://till:pw@eucrm.example")
    policy = {s.name: _other_value(s) for s in settings.TABLE if s.scope != "connection"}
    del policy["max_connections"]
    op = UploadImageOperator(task_id="up", source="/data/a.png", max_workers=3, **policy)
    config = op.hook.config
    assert {name: getattr(config, name) for name in policy} == {
        name: (value, value) if name == "timeout" else value for name, value in policy.items()
    }
    assert config.max_connections == 3
