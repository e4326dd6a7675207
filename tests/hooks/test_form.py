"""The connection form: Airflow 3.1 reads it from the hook methods, 3.2+ from the provider info."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from packaging.version import Version

from airflow_capillary import settings
from airflow_capillary.get_provider_info import get_provider_info
from airflow_capillary.hooks.file_service import CapillaryFileHook

CONN_FIELDS = get_provider_info()["connection-types"][0]["conn-fields"]


def test_ui_field_behaviour_mirrors_the_provider_info():
    behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert CapillaryFileHook.get_ui_field_behaviour() == {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def test_connection_form_as_airflow_sees_it():
    """3.1 builds the form from the hook methods (wtforms mocked); 3.2+ from conn-fields, silently."""
    import airflow

    if Version(airflow.__version__) < Version("3.2"):
        from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

        _, widgets, behaviours = HookMetaService._get_hooks_with_mocked_fab()
        assert behaviours["capillary"] == CapillaryFileHook.get_ui_field_behaviour()
    else:
        from airflow.providers_manager import ProvidersManager

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the deprecated hook methods must not be called
            manager = ProvidersManager()
            manager.initialize_providers_hooks()
            widgets = manager.connection_form_widgets
    mine = {
        k.removeprefix("extra__capillary__"): v
        for k, v in widgets.items()
        if k.startswith("extra__capillary__")
    }
    assert sorted(mine) == sorted(CONN_FIELDS)
    assert all(w.hook_class_name.endswith("CapillaryFileHook") for w in mine.values())


@pytest.fixture
def stand_in_wtforms(monkeypatch: pytest.MonkeyPatch) -> None:
    """wtforms, flask_babel and flask_appbuilder stand-ins whose fields keep their arguments."""
    import sys
    import types

    class Field:
        def __init__(self, label, validators=None, description="", default=None, widget=None):
            self.kind = type(self).__name__
            self.label, self.validators, self.description, self.default = (
                label,
                validators,
                description,
                default,
            )

    fake: dict[str, dict[str, Any]] = {
        "wtforms": {n: type(n, (Field,), {}) for n in ("BooleanField", "StringField")},
        "wtforms.validators": {"Optional": lambda: "optional", "any_of": lambda values: ("any_of", values)},
        "flask_babel": {"lazy_gettext": lambda text: text},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": object},
    }
    for module, attrs in fake.items():
        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**attrs))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("auth_type", "StringField"),
        ("md5_prehashed", "BooleanField"),
        ("timeout", "StringField"),
        ("rate_limit_per_minute", "StringField"),
        ("headers", "StringField"),
        ("storage_hosts", "StringField"),
    ],
    ids=["enum", "boolean", "number", "number-unset", "object", "array"],
)
def test_widget_kinds_with_stand_in_wtforms(stand_in_wtforms, name, kind):
    widget = CapillaryFileHook.get_connection_form_widgets()[name]
    assert widget.kind == kind
    assert widget.label == CONN_FIELDS[name]["label"]
    if name == "auth_type":
        assert (widget.default, widget.validators) == ("basic", ["optional", ("any_of", ["basic", "oauth"])])
    if name == "timeout":
        assert (widget.default, widget.validators) == ("60", ["optional"])
    if name in ("rate_limit_per_minute", "headers", "storage_hosts"):
        assert widget.default is None
    if name == "md5_prehashed":
        assert widget.default is False


def test_airflow_3_1_form_is_the_tables_connection_settings(stand_in_wtforms):
    """One widget per connection setting of airflow_capillary/settings.py: its label, help, default."""
    widgets = CapillaryFileHook.get_connection_form_widgets()
    connection = [s for s in settings.TABLE if s.scope != "task"]
    assert list(widgets) == [s.extra_name for s in connection]
    for s in connection:
        widget = widgets[s.extra_name]
        assert (widget.label, widget.description) == (s.label, s.help)
        if s.kind == "boolean":
            assert (widget.kind, widget.default) == ("BooleanField", s.default)
        else:
            if s.default in (None, {}, ()):
                expected = None
            elif isinstance(s.default, bool):
                expected = str(s.default).lower()
            elif isinstance(s.default, float):
                expected = f"{s.default:g}"
            else:
                expected = s.default
            assert (widget.kind, widget.default) == ("StringField", expected)
    assert not {s.name for s in settings.TABLE if s.scope == "task"} & set(widgets)
