"""Verification that uploaded files are served intact, shared by the sensor and the trigger.

:class:`~airflow_capillary.sensors.file_service.CapillaryFileSensor` and
:class:`~airflow_capillary.triggers.file_service.CapillaryFileTrigger` are Airflow glue over
this package. One check of a file reads, in order:

* :mod:`~airflow_capillary.verification.rounds`: the progress of a verification and one round of
  requests (which files are pending, the request with its redirects, the bounded read, the
  deadline, consecutive failures);
* :mod:`~airflow_capillary.verification.rules`: what one answer of the storage means (no I/O).

Set up once per sensor or trigger, before any request:

* :mod:`~airflow_capillary.verification.records`: which records are fetched (an ``unchanged`` one
  passes through) and what each served file must be (no I/O);
* :mod:`~airflow_capillary.verification.storage`: how the storage may be reached: the origin
  policy (also applied by the hook to the secure URL of an upload answer) and the client's TLS,
  timeout and proxy settings.
"""

from __future__ import annotations

__all__: list[str] = []
