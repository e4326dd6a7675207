"""Shared test configuration.

Airflow runs against a throw-away ``AIRFLOW_HOME`` so that tests never touch a real
deployment; connections come from ``AIRFLOW_CONN_*`` variables, never from a database.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="capillary-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

pytest_plugins = ["airflow_capillary.emulator.pytest_plugin"]


def pytest_collection_modifyitems(items: list) -> None:
    """Run the ``e2e`` tests last.

    Their session fixtures (a whole Airflow deployment, an emulator) live until the session
    ends; run first, they would load the machine under every other test.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
