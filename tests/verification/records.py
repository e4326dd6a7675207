"""Upload records as UploadImageOperator pushes them, for the sensor and trigger tests."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from airflow_capillary.models import UploadedFile
from airflow_capillary.verification.storage import OriginPolicy

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"IEND"
SIGNATURE = "5e1f" * 16
SECURITY_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
#: The policy of the tests' connection: its own origin, S3 over https (where ``secure_url`` points).
POLICY = OriginPolicy("https://eucrm.cc.capillarytech.com")


def secure_url(name: str = "hero.png", base: str = "https://bucket.s3.amazonaws.com") -> str:
    """A pre-signed URL shaped like Capillary's ``secureFilePath``."""
    return (
        f"{base}/rewards/100606/{name}?X-Amz-Security-Token={SECURITY_TOKEN}"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240102T034059Z&X-Amz-SignedHeaders=host"
        f"&X-Amz-Expires=3600&X-Amz-Credential=ASIAEXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request"
        f"&X-Amz-Signature={SIGNATURE}"
    )


def make_record(
    name: str = "hero.png",
    *,
    body: bytes = PNG,
    content_type: str = "image/png",
    url: str | None = "default",
    **overrides: Any,
) -> dict[str, Any]:
    """``UploadedFile.to_dict()`` plus ``source``, describing ``body`` uploaded as ``name``."""
    uploaded = UploadedFile(
        name=name,
        namespace="rewards",
        version=1,
        latest_version=1,
        acl="PRIVATE",
        file_size=len(body),
        file_handle=f"handle-{name}",
        content_type=content_type,
        s3_token=f"rewards/100606/{name}",
        s3_url=f"s3://bucket/rewards/100606/{name}",
        last_modified=datetime(2024, 1, 2, 3, 40, 59, tzinfo=timezone.utc),
        secure_file_path=secure_url(name) if url == "default" else url,
        sent_size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    record = uploaded.to_dict()
    record["source"] = f"/data/rewards/{name}"
    record.update(overrides)
    return record


def without_url(records: Any) -> Any:
    """What the sensor pushes for ``records`` by default: the same, ``secure_file_path`` ``None``."""
    if isinstance(records, list):
        return [without_url(r) for r in records]
    return {**records, "secure_file_path": None}


def unchanged(name: str = "hero.png", body: bytes = PNG) -> dict[str, Any]:
    """An ``unchanged`` record as UploadImageOperator with a manifest pushes it (not uploaded this run).

    The shape of ``operators/_manifest.py``'s ``unchanged_record``: what only an upload answer
    tells is ``None`` (no secure URL), and the rest comes from the manifest.
    """
    record = make_record(name, body=body, url=None, acl=None, code=None, status=None, sent_size=0)
    message = "not uploaded: unchanged since 2026-01-01T00:00:00+00:00"
    return {**record, "message": message, "action": "unchanged"}
