"""What the ``dag.test()`` e2e tests share: a DAG folder holding one DAG file, and the environment
of the child process that runs it (own ``AIRFLOW_HOME``, SQLite, the emulator's connection)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_dag_env(root: Path, dag_file: Path, connection_uri: str) -> tuple[Path, dict[str, str]]:
    """Copy ``dag_file`` into ``root/dags`` and return that folder and the child's environment.

    :param root: a fresh temporary folder for this run.
    :param dag_file: the DAG file the child runs with ``dag.test()``.
    :param connection_uri: ``AIRFLOW_CONN_CAPILLARY_DEFAULT`` for the child (the emulator).
    :return: the DAG folder and the environment.
    """
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(dag_file, dags / dag_file.name)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_CAPILLARY_DEFAULT": connection_uri,
        "PYTHONPATH": str(REPO_ROOT),
    }
    return dags, env
