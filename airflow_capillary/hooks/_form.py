"""The connection form for Airflow 3.1, derived from ``get_provider_info()`` (one source of truth).

Airflow 3.2+ builds the ``capillary`` connection form from the ``conn-fields`` and
``ui-field-behaviour`` entries of the provider info and never calls the hook methods when those
entries exist. Airflow 3.1 ignores them and only calls ``get_connection_form_widgets`` /
``get_ui_field_behaviour`` on the hook class (its API server mocks wtforms and flask_appbuilder
to read them). These functions translate the provider-info entries into that older form.
"""

from __future__ import annotations

from typing import Any


def _connection_type() -> dict[str, Any]:
    from airflow_capillary.get_provider_info import get_provider_info

    [conn_type] = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "capillary"]
    return conn_type


def connection_form_widgets() -> dict[str, Any]:
    """Return wtforms fields for every ``conn-fields`` entry (Airflow 3.1's connection form).

    Booleans become check boxes; everything else is a text field whose value the config coerces
    (numbers, JSON objects, and lists as JSON or comma-separated text).

    :return: field name -> wtforms field.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for name, spec in _connection_type()["conn-fields"].items():
        schema = spec.get("schema", {})
        label = lazy_gettext(spec.get("label", name))
        description = spec.get("description", "")
        default = schema.get("default")
        if "boolean" in schema.get("type", ["string"]):
            widgets[name] = BooleanField(label, description=description, default=bool(default))
            continue
        validators: list[Any] = [Optional()]
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        widgets[name] = StringField(
            label,
            validators=validators,
            description=description,
            default=default if default is None or isinstance(default, str) else str(default),
            widget=BS3TextFieldWidget(),
        )
    return widgets


def ui_field_behaviour() -> dict[str, Any]:
    """Return the ``ui-field-behaviour`` entry in the hook-method format of Airflow 3.1.

    :return: ``hidden_fields``, ``relabeling`` and ``placeholders``.
    """
    behaviour = _connection_type().get("ui-field-behaviour", {})
    return {
        "hidden_fields": list(behaviour.get("hidden-fields", [])),
        "relabeling": dict(behaviour.get("relabeling", {})),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }
