"""Local emulator of Capillary's file service, for tests, benchmarks and demos.

The public names are imported lazily so that ``import airflow_capillary.emulator`` (done by the
pytest plugin for every test session) stays cheap: the web stack is only loaded when an emulator
is actually started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_capillary.emulator.faults import Fault
    from airflow_capillary.emulator.server import CapillaryEmulator, EmulatorProcess

__all__ = ["CapillaryEmulator", "EmulatorProcess", "Fault"]

_LAZY = {
    "CapillaryEmulator": "airflow_capillary.emulator.server",
    "EmulatorProcess": "airflow_capillary.emulator.server",
    "Fault": "airflow_capillary.emulator.faults",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first access.

    :param name: attribute name.
    :return: the requested object.
    :raises AttributeError: for unknown names.
    """
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
