"""A real Airflow deployment (api-server, scheduler, dag-processor, triggerer) for end-to-end tests."""

from tests.e2e.airflow_deployment.client import AirflowApiClient, AirflowApiError
from tests.e2e.airflow_deployment.deployment import COMPONENTS, AirflowDeployment, DeploymentError

__all__ = ["COMPONENTS", "AirflowApiClient", "AirflowApiError", "AirflowDeployment", "DeploymentError"]
