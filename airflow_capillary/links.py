"""Operator extra links of the Capillary provider.

Airflow 3 computes extra links on the worker: when a task finishes, the task runner calls
``get_link(operator, ti_key=ti)`` on the operator it has just run and stores the answer in XCom
under :attr:`~airflow.sdk.BaseOperatorLink.xcom_key` (``_link_CapillaryImageLink``); the UI
reads that XCom back. So the link needs no connection, hook or network call here: the operator
leaves the URL on itself during ``execute`` and :meth:`CapillaryImageLink.get_link` returns it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

__all__ = ["LINK_ATTRIBUTE", "CapillaryImageLink"]

#: Attribute the operator sets during ``execute`` to the URL of the uploaded image.
LINK_ATTRIBUTE = "capillary_image_url"


class CapillaryImageLink(BaseOperatorLink):
    """Link "Capillary image" to the image a single-file ``UploadImageOperator`` uploaded.

    The URL is the ``secure_file_path`` (a pre-signed URL valid for about an hour) when the
    operator keeps it (``include_secure_url=True``), else the object's ``s3_url``. Empty when the
    source was a batch or nothing was uploaded, which the UI shows as no link.
    """

    name = "Capillary image"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        """Return the URL the operator recorded, or ``""``.

        :param operator: the operator that ran (on the worker, the executed instance).
        :param ti_key: the task instance (unused: the URL lives on the operator).
        :return: the URL, or an empty string.
        """
        value = getattr(operator, LINK_ATTRIBUTE, None)
        return value if isinstance(value, str) else ""
