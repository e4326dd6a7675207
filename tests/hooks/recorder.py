"""Test doubles at the HTTP boundary: a recording ``requests`` transport adapter.

Mounted on a hook's session, :class:`Recorder` sees exactly what would go on the wire (method,
URL, headers, body bytes read the way urllib3 reads them) and answers with scripted replies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.response import HTTPResponse

#: A 51-byte "PNG" (the size of the documented example): PNG magic bytes then filler.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(43))
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(40)

BASE = "https://127.0.0.1:8443"


@dataclasses.dataclass
class Sent:
    """One request as the transport received it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    body_size: int
    body_sha256: str
    largest_read: int
    timeout: Any
    verify: Any
    proxies: Any


@dataclasses.dataclass
class Reply:
    """A scripted answer."""

    status: int = 200
    json_body: Any = None
    text: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def build(self, request: requests.PreparedRequest) -> requests.Response:
        content = self.text if self.text is not None else json.dumps(self.json_body)
        return build_response(
            request, self.status, {"Content-Type": "application/json", **self.headers}, content.encode()
        )


def build_response(
    request: requests.PreparedRequest, status: int, headers: dict[str, str], body: bytes
) -> requests.Response:
    """A ``requests.Response`` as an adapter returns it: the body unread, behind a urllib3 response."""
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers)
    response.raw = HTTPResponse(
        body=io.BytesIO(body), headers=headers, status=status, preload_content=False, decode_content=False
    )
    response.url = request.url or ""
    response.request = request
    response.encoding = "utf-8"
    response.reason = "scripted"
    return response


Script = Reply | BaseException | Callable[[Sent], "Reply | BaseException"]


def upload_answer(
    name: str = "test.png",
    size: int = len(PNG),
    *,
    namespace: str = "rewards",
    version: int = 1,
    content_type: str = "image/png",
    **overrides: Any,
) -> dict[str, Any]:
    """Return the documented 200 answer of the upload endpoint, with ``overrides`` on top."""
    answer: dict[str, Any] = {
        "code": 200,
        "status": "true",
        "message": "Successfully uploaded file",
        "file": {
            "name": name,
            "namespace": namespace,
            "version": version,
            "acl": "PRIVATE",
            "fileSize": str(size),
            "file_handle": "73e78929-1e07-4cc5-a738-b54470a7dc8c",
            "content_type": content_type,
            "s3_token": f"{namespace}/100606/b21f3aea-ad38-4634-82a4-db2aaa0b.png",
            "latest_version": version,
            "last_modified": "2024-05-08 09:10:59",
            "s3_url": f"s3://eucrm-solutions/{namespace}/100606/b21f3aea-ad38-4634-82a4-db2aaa0b.png",
        },
        "secureFilePath": "https://eucrm-solutions.s3-eu-west-1.amazonaws.com/rewards/100606/b.png"
        "?X-Amz-Security-Token=SECRETSESSIONTOKEN&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Date=20240508T034059Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600"
        "&X-Amz-Credential=ASIAXKEP2EMBVBC5UMM3&X-Amz-Signature=86c114267239ef985ff81c32ad0fa1d6",
    }
    answer.update(overrides)
    return answer


def echo_upload(sent: Sent) -> Reply:
    """Answer an upload with the documented body, ``fileSize`` = the bytes of the file part."""
    size = len(file_part(sent)[1]) if sent.body is not None else sent.body_size
    name = sent.url.rsplit("/", 1)[-1]
    return Reply(json_body=upload_answer(unquote(name), size))


def file_part(sent: Sent) -> tuple[bytes, bytes]:
    """Split a recorded multipart body into (part headers, file bytes); raw bodies give (b"", body)."""
    assert sent.body is not None
    content_type = sent.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data; boundary="):
        return b"", sent.body
    boundary = content_type.split("boundary=", 1)[1].encode()
    assert sent.body.startswith(b"--" + boundary + b"\r\n")
    assert sent.body.endswith(b"\r\n--" + boundary + b"--\r\n")
    inner = sent.body[len(boundary) + 4 : -(len(boundary) + 8)]
    head, _, data = inner.partition(b"\r\n\r\n")
    return head, data


class Recorder(BaseAdapter):
    """A transport adapter that records requests and answers from a script.

    :param script: replies, exceptions to raise, or callables of the :class:`Sent` request;
        when the script runs out, ``default`` answers.
    :param default: the answer once the script is empty (``echo_upload`` by default).
    :param keep_bodies: keep body bytes (turn off for big uploads: only size and sha256 kept).
    """

    def __init__(
        self,
        script: Sequence[Script] | None = None,
        *,
        default: Script = echo_upload,
        keep_bodies: bool = True,
    ) -> None:
        super().__init__()
        self.script = list(script or [])
        self.default = default
        self.keep_bodies = keep_bodies
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        digest = hashlib.sha256()
        kept = bytearray() if self.keep_bodies else None
        size = 0
        largest = 0
        body = request.body
        if body is not None and hasattr(body, "read"):
            while chunk := body.read(16384):  # as urllib3 does
                largest = max(largest, len(chunk))
                size += len(chunk)
                digest.update(chunk)
                if kept is not None:
                    kept += chunk
        elif body is not None:
            data = body.encode() if isinstance(body, str) else bytes(body)
            size, largest = len(data), len(data)
            digest.update(data)
            if kept is not None:
                kept += data
        sent = Sent(
            method=request.method or "",
            url=request.url or "",
            headers=dict(request.headers),
            body=bytes(kept) if kept is not None and body is not None else None,
            body_size=size,
            body_sha256=digest.hexdigest(),
            largest_read=largest,
            timeout=timeout,
            verify=verify,
            proxies=proxies,
        )
        with self._lock:
            self.sent.append(sent)
            item = self.script.pop(0) if self.script else self.default
        if callable(item) and not isinstance(item, (Reply, BaseException)):
            item = item(sent)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Reply)
        return item.build(request)

    def close(self) -> None:
        """Nothing to release."""

    def to(self, path_suffix: str) -> list[Sent]:
        """Return the recorded requests whose URL path ends with ``path_suffix``."""
        return [s for s in self.sent if urlsplit(s.url).path.endswith(path_suffix)]
