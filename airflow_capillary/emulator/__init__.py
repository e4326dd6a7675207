"""Local emulator of Capillary's file service, for tests, benchmarks and demos.

In a test (fixtures from ``airflow_capillary.emulator.pytest_plugin``: ``capillary_emulator``,
``capillary_conn``) or a script::

    with CapillaryEmulator() as emu:                    # http://127.0.0.1:<free port>
        os.environ["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = emu.connection_uri()
        emu.push_fault(Fault(status=503))               # the next upload gets a 503
        ...
        emu.stored_files(), emu.requests(), emu.token_requests()

As a process: ``python -m airflow_capillary.emulator [--tls] [--data-dir DIR] ...`` prints its base
URL on the first line (the CA path on the second with ``--tls``), or :class:`EmulatorProcess`.
Default credentials: basic ``demo`` / ``demo-password``, OAuth ``demo-key`` / ``demo-secret``.
Behaviour: ``upload`` (the API), ``download`` (pre-signed URLs), ``auth``, ``faults``, ``store``.

The public names are imported lazily so that ``import airflow_capillary.emulator`` (done by the
pytest plugin for every test session) stays cheap: the web stack is only loaded when an emulator
is actually started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_capillary.emulator.connection import connection_uri
from airflow_capillary.emulator.defaults import (
    DEFAULT_OAUTH_KEY,
    DEFAULT_OAUTH_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USER,
)

if TYPE_CHECKING:
    from airflow_capillary.emulator.faults import Fault
    from airflow_capillary.emulator.server import CapillaryEmulator, EmulatorProcess

__all__ = [
    "DEFAULT_OAUTH_KEY",
    "DEFAULT_OAUTH_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "CapillaryEmulator",
    "EmulatorProcess",
    "Fault",
    "connection_uri",
]

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
