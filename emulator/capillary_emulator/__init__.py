"""Local emulator of Capillary's file service, for tests, benchmarks and demos.

In a test (fixtures from ``capillary_emulator.pytest_plugin``: ``capillary_emulator``,
``capillary_conn``) or a script::

    with CapillaryEmulator() as emu:                    # http://127.0.0.1:<free port>
        os.environ["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = emu.connection_uri()
        emu.push_fault(Fault(status=503))               # the next upload gets a 503
        ...
        emu.stored_files(), emu.requests(), emu.token_requests(), emu.stats()

As a process: ``python -m capillary_emulator [--tls] [--data-dir DIR] ...`` (or the
``capillary-emulator`` script) prints its base URL on the first line, the CA path on the second
with ``--tls``, then ``control token: <token>``; or :class:`EmulatorProcess`, which holds the
token and sends it. Default credentials: basic ``demo`` / ``demo-password``, OAuth ``demo-key`` /
``demo-secret``. Behaviour: ``upload`` (the API), ``oauth``, ``download`` (pre-signed URLs),
``auth``, ``faults``, ``ratelimit``, ``store``; the control endpoints and their guards in
``control``; connection limits and timeouts in ``serving``; the redacted, bounded request log in
``requestlog``.

Rate limit (per API key, as Capillary documents it)::

    clock = ManualClock()                               # deterministic: time moves on advance()
    with CapillaryEmulator(rate_limit="100/min", rate_limit_burst=100, clock=clock) as emu:
        ...                                             # 100 pass; a key's 101st: 429, Retry-After: 1
        emu.rate_limited()                              # {"basic:demo": 1}: 429s per API key
        emu.stats()["rate_limit"]                       # {"basic:demo": {"admitted": 100, "limited": 1}}
        clock.advance(0.6)                              # 100/min refills one request every 0.6 s
        emu.configure(rate_limit="2/s", rate_limit_burst=None, rate_limit_retry_after=5)

``rate_limit`` is a number per second or a text (``"2/s"``, ``"100/min"``); the burst defaults to
``max(1, ceil(rate per second))``; ``Retry-After`` is the fixed ``rate_limit_retry_after`` or the
whole seconds until the key's bucket holds a request again (at least 1). Keys: ``basic:<user>``,
``oauth:<client key>`` (its uploads and its token requests); refused credentials spend nothing.
The same settings exist as CLI options (``--rate-limit 100/min --rate-limit-burst 100
--rate-limit-retry-after 5``) and through ``POST /_emulator/settings``.

The public names are imported lazily so that ``import capillary_emulator`` (done by the
pytest plugin for every test session) stays cheap: the web stack is only loaded when an emulator
is actually started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capillary_emulator.clock import ManualClock
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
    "ManualClock",
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
