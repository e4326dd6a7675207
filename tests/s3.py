"""A real S3 API on loopback: moto's server mode, for ``s3://`` sources and manifests.

Nothing is patched in-process: the provider reaches the server through Airflow's
``ObjectStoragePath`` (the Amazon provider's ``s3`` filesystem, s3fs over aiobotocore) and an
``aws`` connection whose ``endpoint_url`` points at ``http://127.0.0.1:<port>``, exactly as it
would reach MinIO or AWS itself.

Use::

    with MotoS3Server() as s3:
        s3.create_bucket("rewards")
        s3.put("rewards", "catalogue/coffee.png", data)
        os.environ["AIRFLOW_CONN_AWS_MOTO"] = s3.connection_json()
        ObjectStoragePath("s3://aws_moto@rewards/catalogue/").iterdir()

In tests: the ``moto_s3`` fixture (one server per session) and ``s3_bucket`` (a fresh bucket per
test, with ``AIRFLOW_CONN_AWS_MOTO`` set). ``moto_s3`` is importable from any conftest.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest

__all__ = ["AWS_CONN_ID", "MotoS3Server", "S3Bucket", "moto_s3", "s3_bucket"]

#: The Airflow connection id the fixtures export (``AIRFLOW_CONN_AWS_MOTO``).
AWS_CONN_ID = "aws_moto"
#: moto accepts any credentials; these only have to look like keys.
_ACCESS_KEY = "testing-access-key"
_SECRET_KEY = "testing-secret-key"  # moto's dummy credential
_REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoS3Server:
    """moto's S3 server in a thread of this process, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._server: Any = None
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        """The server's URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3Server:
        """Start the server (moto's ``ThreadedMotoServer``; returns once it accepts connections).

        :return: this server.
        """
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoS3Server:
        """Start the server.

        :return: the running server.
        """
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()

    def connection(self) -> dict[str, Any]:
        """Return an Airflow ``aws`` connection (as a dict) that points at this server.

        :return: ``conn_type``, the dummy keys and the ``endpoint_url`` extra.
        """
        return {
            "conn_type": "aws",
            "login": _ACCESS_KEY,
            "password": _SECRET_KEY,
            "extra": {"endpoint_url": self.endpoint_url, "region_name": _REGION},
        }

    def connection_json(self) -> str:
        """Return :meth:`connection` in the JSON form of ``AIRFLOW_CONN_*`` variables.

        :return: the JSON text.
        """
        return json.dumps(self.connection())

    @property
    def client(self) -> Any:
        """A boto3 S3 client of this server, for a test's own setup and assertions."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=_ACCESS_KEY,
                aws_secret_access_key=_SECRET_KEY,
                region_name=_REGION,
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> S3Bucket:
        """Create a bucket.

        :param name: its name (default: a fresh unique one).
        :return: the bucket.
        """
        bucket = name or f"capillary-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        return S3Bucket(self, bucket)


@dataclass(frozen=True)
class S3Bucket:
    """One bucket of a :class:`MotoS3Server`.

    :param server: the server.
    :param name: the bucket's name.
    """

    server: MotoS3Server
    name: str

    def uri(self, key: str = "", conn_id: str = AWS_CONN_ID) -> str:
        """Return the object-storage URI of a key, with the connection id Airflow should use.

        :param key: the object key or prefix (``catalogue/`` or ``catalogue/*.png``).
        :param conn_id: the ``aws`` connection.
        :return: ``s3://<conn_id>@<bucket>/<key>``.
        """
        return f"s3://{conn_id}@{self.name}/{key}"

    def put(self, key: str, data: bytes) -> None:
        """Store an object.

        :param key: its key.
        :param data: its bytes.
        """
        self.server.client.put_object(Bucket=self.name, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        """Read an object.

        :param key: its key.
        :return: its bytes.
        """
        body: bytes = self.server.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def keys(self, prefix: str = "") -> list[str]:
        """List the keys below a prefix.

        :param prefix: the prefix.
        :return: the keys, sorted.
        """
        pages = self.server.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    """Run one moto S3 server on 127.0.0.1 for the test session.

    :return: the running server.
    """
    with MotoS3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(moto_s3: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """Create a fresh bucket and export the ``aws_moto`` connection that reaches it.

    :param moto_s3: the server.
    :param monkeypatch: pytest's monkeypatch fixture.
    :return: the bucket.
    """
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", moto_s3.connection_json())
    return moto_s3.create_bucket()
