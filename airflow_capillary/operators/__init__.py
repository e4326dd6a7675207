"""Operators of the Capillary provider (:mod:`~airflow_capillary.operators.upload_image`).

Nothing is imported here, so that importing one operator module costs only that module.
"""

from __future__ import annotations

__all__: list[str] = []
