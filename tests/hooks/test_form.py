"""The connection form: Airflow 3.1 reads it from the hook methods, 3.2+ from the provider info."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from packaging.version import Version

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


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("auth_type", "StringField"),
        ("md5_prehashed", "BooleanField"),
        ("max_retries", "IntegerField"),
        ("timeout", "StringField"),
        ("headers", "StringField"),
    ],
    ids=["enum", "boolean", "integer", "number", "object"],
)
def test_widget_kinds_with_stand_in_wtforms(monkeypatch, name, kind):
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
        "wtforms": {n: type(n, (Field,), {}) for n in ("BooleanField", "IntegerField", "StringField")},
        "wtforms.validators": {"Optional": lambda: "optional", "any_of": lambda values: ("any_of", values)},
        "flask_babel": {"lazy_gettext": lambda text: text},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": object},
    }
    for module, attrs in fake.items():
        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**attrs))
    widget = CapillaryFileHook.get_connection_form_widgets()[name]
    assert widget.kind == kind
    assert widget.label == CONN_FIELDS[name]["label"]
    if name == "auth_type":
        assert (widget.default, widget.validators) == ("basic", ["optional", ("any_of", ["basic", "oauth"])])
    if name == "timeout":
        assert widget.default == "60"
