"""The Airflow 3.1 form from provider-info entries that leave out what Airflow's schema makes optional.

Airflow's provider.yaml schema makes ``label``, ``description``, ``schema`` and its ``type``
optional in a ``conn-fields`` entry, and ``ui-field-behaviour`` and each of its keys optional in
a connection type. The provider's own dict sets them all, so the defaults the form falls back on
were never exercised (mutants of hooks/_form.py that survived); here a minimal provider info
stands in for it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from airflow_capillary import get_provider_info as provider_info_module
from airflow_capillary.hooks.file_service import CapillaryFileHook


class TextWidget:
    """Stands in for flask_appbuilder's BS3TextFieldWidget."""


class Field:
    """A wtforms field stand-in that keeps every argument."""

    def __init__(
        self,
        label: Any,
        validators: Any = None,
        description: Any = "",
        default: Any = None,
        widget: Any = None,
    ) -> None:
        self.kind = type(self).__name__
        self.label, self.validators, self.description = label, validators, description
        self.default, self.widget = default, widget


@pytest.fixture(autouse=True)
def stand_in_wtforms(monkeypatch: pytest.MonkeyPatch) -> None:
    fake: dict[str, dict[str, Any]] = {
        "wtforms": {n: type(n, (Field,), {}) for n in ("BooleanField", "StringField")},
        "wtforms.validators": {"Optional": lambda: "optional", "any_of": lambda values: ("any_of", values)},
        "flask_babel": {"lazy_gettext": lambda text: f"gettext({text})"},
        "flask_appbuilder": {},
        "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": TextWidget},
    }
    for module, attrs in fake.items():
        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**attrs))


def provide(monkeypatch: pytest.MonkeyPatch, connection_type: dict[str, Any]) -> None:
    info = {
        "connection-types": [
            {"connection-type": "other"},
            {"connection-type": "capillary", **connection_type},
        ]
    }
    monkeypatch.setattr(provider_info_module, "get_provider_info", lambda: info)


def test_a_bare_field_is_a_text_field_labelled_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    provide(monkeypatch, {"conn-fields": {"region": {}}})

    [(name, field)] = CapillaryFileHook.get_connection_form_widgets().items()

    assert name == "region"
    assert (field.kind, field.label, field.description, field.default) == (
        "StringField",
        "gettext(region)",
        "",
        None,
    )
    assert field.validators == ["optional"]
    assert isinstance(field.widget, TextWidget)


def test_a_field_with_a_schema_but_no_type_is_a_text_field(monkeypatch: pytest.MonkeyPatch) -> None:
    provide(monkeypatch, {"conn-fields": {"zone": {"label": "Zone", "schema": {"default": "UTC"}}}})

    field = CapillaryFileHook.get_connection_form_widgets()["zone"]

    assert (field.kind, field.label, field.default) == ("StringField", "gettext(Zone)", "UTC")
    assert isinstance(field.widget, TextWidget)


@pytest.mark.parametrize("default", [True, False], ids=["on", "off"])
def test_a_boolean_field_keeps_its_default(monkeypatch: pytest.MonkeyPatch, default: bool) -> None:
    spec = {
        "label": "Flag",
        "description": "a flag",
        "schema": {"type": ["boolean", "null"], "default": default},
    }
    provide(monkeypatch, {"conn-fields": {"flag": spec}})

    field = CapillaryFileHook.get_connection_form_widgets()["flag"]

    assert (field.kind, field.label, field.description, field.default) == (
        "BooleanField",
        "gettext(Flag)",
        "a flag",
        default,
    )


def test_no_ui_field_behaviour_hides_and_relabels_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    provide(monkeypatch, {"conn-fields": {}})

    assert CapillaryFileHook.get_ui_field_behaviour() == {
        "hidden_fields": [],
        "relabeling": {},
        "placeholders": {},
    }


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ({"hidden-fields": ["port"]}, {"hidden_fields": ["port"], "relabeling": {}, "placeholders": {}}),
        (
            {"relabeling": {"host": "URL"}},
            {"hidden_fields": [], "relabeling": {"host": "URL"}, "placeholders": {}},
        ),
        (
            {"placeholders": {"host": "https://"}},
            {"hidden_fields": [], "relabeling": {}, "placeholders": {"host": "https://"}},
        ),
    ],
    ids=["hidden-only", "relabeling-only", "placeholders-only"],
)
def test_each_ui_field_behaviour_key_is_optional(
    monkeypatch: pytest.MonkeyPatch, behaviour: dict[str, Any], expected: dict[str, Any]
) -> None:
    provide(monkeypatch, {"conn-fields": {}, "ui-field-behaviour": behaviour})

    assert CapillaryFileHook.get_ui_field_behaviour() == expected
