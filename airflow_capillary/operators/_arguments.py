"""Checks of UploadImageOperator's arguments (at construction, and once templates are rendered)."""

from __future__ import annotations

from typing import Any

from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.settings import TABLE

__all__ = [
    "DEFAULT_CHECKPOINT_SECONDS",
    "DEFAULT_CHECKPOINT_UPLOADS",
    "HOOK_POLICY",
    "as_bool",
    "check_arguments",
    "check_int",
    "check_seconds",
]

#: Defaults of a sync manifest's checkpoint interval: uploads, and seconds.
DEFAULT_CHECKPOINT_UPLOADS = 100
DEFAULT_CHECKPOINT_SECONDS = 30.0

#: UploadImageOperator's arguments passed on to CapillaryFileHook when given: the task policy of
#: the one settings table (``namespace`` is passed always, ``max_connections`` is ``max_workers``).
HOOK_POLICY: tuple[str, ...] = tuple(
    s.name for s in TABLE if s.scope != "connection" and s.name not in ("namespace", "max_connections")
)

#: What a templated boolean may render to.
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


def check_arguments(
    *,
    max_workers: tuple[Any, int],
    manifest_checkpoint_uploads: Any,
    progress_interval: Any,
    manifest_checkpoint_seconds: Any,
    rename: Any,
    force_upload: Any,
) -> None:
    """Check UploadImageOperator's arguments that no template renders.

    :param max_workers: the value and its upper bound.
    :param manifest_checkpoint_uploads: an int >= 1.
    :param progress_interval: seconds >= 0.
    :param manifest_checkpoint_seconds: seconds > 0.
    :param rename: a callable or ``None``.
    :param force_upload: a bool, or a string a template renders.
    :raises CapillaryConfigError: naming the first wrong argument.
    """
    check_int("max_workers", max_workers[0], 1, max_workers[1])
    check_int("manifest_checkpoint_uploads", manifest_checkpoint_uploads, 1, None)
    check_seconds("progress_interval", progress_interval, ">= 0")
    check_seconds("manifest_checkpoint_seconds", manifest_checkpoint_seconds, "> 0")
    if rename is not None and not callable(rename):
        raise CapillaryConfigError("rename must be a callable taking and returning a file name")
    if not isinstance(force_upload, (bool, str)):
        raise CapillaryConfigError(f"force_upload must be a bool, got {force_upload!r}")


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
