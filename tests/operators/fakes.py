"""A fake CapillaryFileHook for the operator's unit tests: records calls, answers deterministically."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_capillary.exceptions import CapillaryInvalidInputError, CapillaryServiceUnavailableError
from airflow_capillary.models import UploadedFile

LAST_MODIFIED = datetime(2026, 11, 26, 4, 10, 59, tzinfo=timezone.utc)
NAMES = ["a.png", "b.jpg", "c.webp"]
OPERATOR_LOGGER = "capillary.test.operator"


@dataclasses.dataclass(frozen=True)
class FakePrepared:
    file_name: str
    namespace: str
    content_type: str
    size: int
    source_label: str
    path: Path


def secure_url(name: str) -> str:
    return (
        f"https://bucket.s3.example/rewards/100/{name}?X-Amz-Security-Token=SESSIONTOKEN{name}"
        "&X-Amz-Expires=3600&X-Amz-Signature=abcdef0123456789"
    )


def uploaded_file(
    name: str, size: int, *, namespace: str = "rewards", version: int = 1, sha256: str = ""
) -> UploadedFile:
    digest = sha256 or hashlib.sha256(name.encode()).hexdigest()
    return UploadedFile(
        name=name,
        namespace=namespace,
        version=version,
        latest_version=version,
        acl="PRIVATE",
        file_size=size,
        file_handle=f"handle-{name}" + (f"-v{version}" if version > 1 else ""),
        content_type="image/png",
        s3_token=f"{namespace}/100/{name}",
        s3_url=f"s3://bucket/{namespace}/100/{name}",
        last_modified=LAST_MODIFIED,
        secure_file_path=secure_url(name),
        code=200,
        status=True,
        message="file uploaded",
        sent_size=size,
        sha256=digest,
    )


class FakeHook:
    """Stands in for CapillaryFileHook: ``invalid`` names fail preparation, ``failing`` uploads.

    Like Capillary, uploading a name again creates its next version (handle ``handle-NAME-vN``);
    the answer's sha256 is that of the file's content, as the real hook's.
    """

    def __init__(
        self,
        *,
        invalid: dict[str, str] | None = None,
        failing: dict[str, Exception] | None = None,
        namespace: str = "rewards",
    ) -> None:
        self.invalid = invalid or {}
        self.failing = failing or {}
        self.namespace = namespace
        self.prepared: list[tuple[Any, dict[str, Any]]] = []
        self.uploads: list[str] = []
        self.versions: dict[tuple[str, str], int] = {}
        self.closed = 0
        self.config = None  # the operator reads it once before preparing the files
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closed += 1

    def prepare_upload(
        self,
        source: Any,
        *,
        file_name: str | None = None,
        namespace: str | None = None,
        content_type: str | None = None,
    ) -> FakePrepared:
        with self._lock:
            self.prepared.append(
                (source, {"file_name": file_name, "namespace": namespace, "content_type": content_type})
            )
        name = file_name or Path(str(source)).name
        if name in self.invalid:
            raise CapillaryInvalidInputError(self.invalid[name])
        path = Path(str(source).removeprefix("file://"))
        return FakePrepared(
            file_name=name,
            namespace=namespace or self.namespace,
            content_type=content_type or "image/png",
            size=path.stat().st_size,
            source_label=str(source),
            path=path,
        )

    def upload(self, prepared: FakePrepared) -> UploadedFile:
        with self._lock:
            self.uploads.append(prepared.file_name)
        error = self.failing.get(prepared.file_name)
        if error is not None:
            raise error
        key = (prepared.namespace, prepared.file_name)
        with self._lock:
            version = self.versions[key] = self.versions.get(key, 0) + 1
        return uploaded_file(
            prepared.file_name,
            prepared.size,
            namespace=prepared.namespace,
            version=version,
            sha256=hashlib.sha256(prepared.path.read_bytes()).hexdigest(),
        )


def unavailable(name: str) -> CapillaryServiceUnavailableError:
    return CapillaryServiceUnavailableError(
        f"uploading {name} to namespace rewards (connection capillary_default): HTTP 503 after 6 attempts",
        status_code=503,
    )


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the operator logged (with the ``oplog`` fixture)."""
    return [r.getMessage() for r in caplog.records if r.name == OPERATOR_LOGGER]


def make_context() -> Any:
    """The parts of a task context the operator uses: ``ti`` (a mock) and ``outlet_events``."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"ti": mock.MagicMock(name="ti"), "outlet_events": OutletEventAccessors()}


def pushed(context: dict[str, Any]) -> dict[str, Any]:
    """The XComs pushed (besides the return value), checking the keys and their order."""
    calls = context["ti"].xcom_push.call_args_list
    assert [c.kwargs["key"] for c in calls] == ["uploaded", "file_handles"]
    return {c.kwargs["key"]: c.kwargs["value"] for c in calls}


def record(
    path: Path, name: str | None = None, *, secure: bool = True, version: int = 1, **more: Any
) -> dict[str, Any]:
    """The record the operator should push for ``path`` uploaded through the fake hook.

    :param more: keys added at the end (``action="new"`` with a manifest).
    """
    name = name or path.name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = uploaded_file(name, path.stat().st_size, version=version, sha256=digest)
    return {**expected.to_dict(include_secure_url=secure), "source": str(path), **more}
