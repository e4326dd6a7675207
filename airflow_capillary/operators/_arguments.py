"""Checks of UploadImageOperator's arguments (at construction, and once templates are rendered)."""

from __future__ import annotations

from typing import Any

from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.settings import TABLE

__all__ = ["HOOK_POLICY", "as_bool", "check_int", "check_seconds"]

#: UploadImageOperator's arguments passed on to CapillaryFileHook when given: the task policy of
#: the one settings table (``namespace`` is passed always, ``max_connections`` is ``max_workers``).
HOOK_POLICY: tuple[str, ...] = tuple(
    s.name for s in TABLE if s.scope != "connection" and s.name not in ("namespace", "max_connections")
)

#: What a templated boolean may render to.
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


def check_int(name: str, value: Any, low: int, high: int | None) -> None:
    """Refuse an argument that is not an int in ``[low, high]``.

    :param name: the argument.
    :param value: its value.
    :param low: the smallest allowed.
    :param high: the largest allowed (``None``: no bound).
    :raises CapillaryConfigError: it is not.
    """
    bounds = f"from {low} to {high}" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise CapillaryConfigError(f"{name} must be an int {bounds}")
    if value < low or (high is not None and value > high):
        raise CapillaryConfigError(f"{name} must be {bounds}, got {value}")


def check_seconds(name: str, value: Any, bound: str) -> None:
    """Refuse an argument that is not a number of seconds ``>= 0`` (or ``> 0``).

    :param name: the argument.
    :param value: its value.
    :param bound: ``">= 0"`` or ``"> 0"``.
    :raises CapillaryConfigError: it is not.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value < 0 or (bound == "> 0" and value == 0):
        raise CapillaryConfigError(f"{name} must be a number of seconds {bound}, got {value!r}")


def as_bool(value: Any, name: str) -> bool:
    """Return a rendered boolean argument: a bool, or a string such as ``"True"`` / ``"false"``.

    :param value: the rendered value.
    :param name: the argument.
    :return: the bool.
    :raises CapillaryConfigError: anything else.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise CapillaryConfigError(f"{name} must be a bool (or render to 'true' or 'false'), got {value!r}")
