"""A real Airflow deployment (api-server, scheduler, dag-processor, triggerer) for end-to-end tests.

LocalExecutor on SQLite, or production-shaped (:class:`CeleryStack`: CeleryExecutor, PostgreSQL,
Redis, two workers) with the servers of :mod:`~tests.e2e.airflow_deployment.services`.
"""

from tests.e2e.airflow_deployment.client import AirflowApiClient, AirflowApiError
from tests.e2e.airflow_deployment.deployment import (
    COMPONENTS,
    AirflowDeployment,
    CeleryStack,
    DeploymentError,
)

__all__ = [
    "COMPONENTS",
    "AirflowApiClient",
    "AirflowApiError",
    "AirflowDeployment",
    "CeleryStack",
    "DeploymentError",
]
