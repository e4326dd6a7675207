"""Local emulator of Capillary's file service, for tests, benchmarks and demos.

In a test (fixtures from ``capillary_emulator.pytest_plugin``: ``capillary_emulator``,
``capillary_conn``) or a script::

    with CapillaryEmulator() as emu:                    # http://127.0.0.1:<free port>
        os.environ["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = emu.connection_uri()
        emu.push_fault(Fault(status=503))               # the next upload gets a 503
        ...
        emu.stored_files(), emu.requests(), emu.token_requests()

As a process: ``python -m capillary_emulator [--tls] [--data-dir DIR] ...`` prints its base
URL on the first line (the CA path on the second with ``--tls``), or :class:`EmulatorProcess`.
Default credentials: basic ``demo`` / ``demo-password``, OAuth ``demo-key`` / ``demo-secret``.
Behaviour: ``upload`` (the API), ``download`` (pre-signed URLs), ``auth``, ``faults``, ``store``.

The public names are imported lazily so that ``import capillary_emulator`` (done by the
pytest plugin for every test session) stays cheap: the web stack is only loaded when an emulator
is actually started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capillary_emulator.connection import connection_uri
from capillary_emulator.defaults import (
    DEFAULT_OAUTH_KEY,
    DEFAULT_OAUTH_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USER,
)

if TYPE_CHECKING:
    from capillary_emulator.faults import Fault
    from capillary_emulator.server import CapillaryEmulator, EmulatorProcess

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_OAUTH_KEY",
    "DEFAULT_OAUTH_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "CapillaryEmulator",
    "EmulatorProcess",
    "Fault",
    "__version__",
    "connection_uri",
]

_LAZY = {
    "CapillaryEmulator": "capillary_emulator.server",
    "EmulatorProcess": "capillary_emulator.server",
    "Fault": "capillary_emulator.faults",
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
