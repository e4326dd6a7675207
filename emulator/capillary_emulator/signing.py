"""The emulator's secret key and its S3-style pre-signed download URLs.

The key lives in ``{data_dir}/signing.key`` (written atomically, mode 0600) so that URLs and access tokens
issued before a restart stay valid after it. URLs carry the query parameters of an AWS SigV4
pre-signed URL; the signature is an HMAC-SHA256 over the path and every ``X-Amz-*`` parameter
(not over the HTTP method, so that one URL serves both GET and HEAD, nor over the host, so that
``localhost`` and ``127.0.0.1`` both work).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode
from xml.sax.saxutils import escape

KEY_FILE = "signing.key"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
ALGORITHM = "AWS4-HMAC-SHA256"
#: S3 refuses pre-signed URLs valid for more than seven days.
MAX_EXPIRES = 7 * 24 * 3600
SIGNED_PARAMS = (
    "X-Amz-Security-Token",
    "X-Amz-Algorithm",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
    "X-Amz-Credential",
)
#: Signed URLs whose credentials are remembered (for :meth:`UrlSigner.issued`).
ISSUED_SIZE = 10_000
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no torn file on a crash).

    :param path: destination.
    :param data: content.
    :param mode: permissions of the file, set when it is created (so a secret is never readable
        by others, not even for a moment; the umask can only narrow them).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with open(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_or_create_key(data_dir: Path) -> bytes:
    """Return the emulator's secret key, creating it on first use (mode 0600).

    A key file left readable by others (by an older emulator) is narrowed to 0600.

    :param data_dir: the emulator's data directory.
    :return: 32 secret bytes.
    """
    path = data_dir / KEY_FILE
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        key = secrets.token_bytes(32)
        write_atomically(path, key.hex().encode(), mode=0o600)
        return key
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return key


def derive_key(key: bytes, purpose: str) -> bytes:
    """Derive an independent sub-key for one purpose.

    :param key: the master key.
    :param purpose: a label such as ``"s3-presign"`` or ``"oauth"``.
    :return: 32 bytes.
    """
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def s3_error_xml(code: str, message: str, **details: str) -> str:
    """Render an S3-style XML error document.

    :param code: e.g. ``AccessDenied``, ``SignatureDoesNotMatch``, ``NoSuchKey``.
    :param message: the human message.
    :param details: extra elements, in order.
    :return: the XML text.
    """
    parts = [f"<Code>{escape(code)}</Code>", f"<Message>{escape(message)}</Message>"]
    parts += [f"<{name}>{escape(value)}</{name}>" for name, value in details.items()]
    parts.append(f"<RequestId>{secrets.token_hex(8).upper()}</RequestId>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"


class UrlSigner:
    """Issue and check pre-signed download URLs.

    :param key: the emulator's master key.
    :param region: region named in ``X-Amz-Credential``.
    """

    def __init__(self, key: bytes, *, region: str = "eu-west-1") -> None:
        self._key = derive_key(key, "s3-presign")
        self.region = region
        access = base64.b32encode(derive_key(key, "access-key-id")).decode()[:16]
        self.access_key_id = f"ASIA{access}"
        self._lock = threading.Lock()
        self._issued: deque[tuple[str, str]] = deque(maxlen=ISSUED_SIZE)

    def _signature(self, path: str, params: Mapping[str, str]) -> str:
        message = "\n".join([path, *(params.get(name, "") for name in SIGNED_PARAMS)])
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def session_token(self, now: datetime) -> str:
        """Return the security token of the signing session that covers ``now``.

        Like an STS session token on real S3, it is shared by every URL signed within one hour,
        and only the signature differs from URL to URL.

        :param now: signing time (UTC).
        :return: a 160-character base64 token.
        """
        window = f"sts-session/{now:%Y%m%d%H}".encode()
        material = b"".join(
            hmac.new(self._key, window + bytes([i]), hashlib.sha256).digest() for i in range(4)
        )
        return base64.b64encode(material[:120]).decode()

    def sign(self, path: str, *, expires: int, now: datetime | None = None) -> str:
        """Return the query string (without ``?``) of a pre-signed URL for ``path``.

        :param path: the URL path, e.g. ``/_s3/bucket/rewards/100606/x.png`` (not percent-encoded).
        :param expires: validity in seconds (``X-Amz-Expires``).
        :param now: signing time (default: now, UTC).
        :return: the encoded query string.
        """
        now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        params = {
            "X-Amz-Security-Token": self.session_token(now),
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Date": now.strftime(AMZ_DATE_FORMAT),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Expires": str(expires),
            "X-Amz-Credential": f"{self.access_key_id}/{now:%Y%m%d}/{self.region}/s3/aws4_request",
        }
        params["X-Amz-Signature"] = self._signature(path, params)
        with self._lock:
            self._issued.append((params["X-Amz-Signature"], params["X-Amz-Security-Token"]))
        return urlencode(params)

    def issued(self) -> list[tuple[str, str]]:
        """Return ``(X-Amz-Signature, X-Amz-Security-Token)`` of the URLs signed (the latest
        :data:`ISSUED_SIZE`), oldest first. In-process only: no endpoint serves them."""
        with self._lock:
            return list(self._issued)

    def check(
        self, path: str, params: Mapping[str, str], *, now: datetime | None = None
    ) -> tuple[str, str] | None:
        """Check a pre-signed request.

        :param path: the requested path (decoded).
        :param params: its query parameters.
        :param now: the time of the check (default: now, UTC).
        :return: ``None`` when valid, else the S3 error ``(code, message)``.
        """
        missing = [name for name in (*SIGNED_PARAMS, "X-Amz-Signature") if name not in params]
        if missing:
            return (
                "AccessDenied",
                f"Query-string authentication requires the {', '.join(missing)} parameter(s)",
            )
        expected = self._signature(path, params).encode()
        given = params["X-Amz-Signature"].lower().encode("utf-8", "replace")  # any text, even non-ASCII
        if not hmac.compare_digest(expected, given):
            return "SignatureDoesNotMatch", SIGNATURE_MISMATCH
        try:
            signed_at = datetime.strptime(params["X-Amz-Date"], AMZ_DATE_FORMAT).replace(tzinfo=timezone.utc)
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            return "AccessDenied", "X-Amz-Date or X-Amz-Expires is malformed"
        if not 1 <= expires <= MAX_EXPIRES:
            return "AccessDenied", "X-Amz-Expires must be between 1 and 604800 seconds"
        now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        if now >= signed_at + timedelta(seconds=expires):
            return "AccessDenied", "Request has expired"
        return None
