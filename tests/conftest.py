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
