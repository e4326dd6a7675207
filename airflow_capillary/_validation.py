"""Pure checks of what is about to be uploaded: file names, namespaces, extensions and content.

Shared by the hook (which runs them in ``prepare_upload``, before any network call) and the
operator (which runs them when a task starts). Every function is pure or only reads the local
file system, and raises :class:`~airflow_capillary.exceptions.CapillaryInvalidInputError` with a
message that names the offending value; callers add the connection id and namespace.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from urllib.parse import quote

from airflow_capillary.exceptions import CapillaryInvalidInputError

__all__ = [
    "IMAGE_CONTENT_TYPES",
    "MAX_FILE_NAME_BYTES",
    "MAX_NAMESPACE_CHARS",
    "SNIFF_BYTES",
    "check_content_matches",
    "check_local_file",
    "check_size",
    "content_type_for",
    "extension_of",
    "sniff_image_family",
    "upload_path",
    "validate_content_type",
    "validate_file_name",
    "validate_namespace",
]

#: Longest file name accepted, in bytes of its UTF-8 encoding (the usual file-system limit).
MAX_FILE_NAME_BYTES = 255

#: Longest namespace accepted, in characters.
MAX_NAMESPACE_CHARS = 128

#: Bytes read from the start of a file to sniff its type.
SNIFF_BYTES = 8192

#: Image extensions accepted (lower case, no dot) and the content type sent for each.
IMAGE_CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "apng": "image/apng",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "jfif": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "dib": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "svg": "image/svg+xml",
    "ico": "image/x-icon",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "jp2": "image/jp2",
    "jxl": "image/jxl",
}

# Extension -> family whose magic bytes must match.
_FAMILY = {
    "png": "png",
    "apng": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jpe": "jpeg",
    "jfif": "jpeg",
    "gif": "gif",
    "webp": "webp",
    "bmp": "bmp",
    "dib": "bmp",
    "tif": "tiff",
    "tiff": "tiff",
    "svg": "svg",
    "ico": "ico",
    "heic": "heif",
    "heif": "heif",
    "avif": "avif",
    "jp2": "jp2",
    "jxl": "jxl",
}

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def extension_of(file_name: str) -> str:
    """Return the lower-case extension of ``file_name`` without the dot (``""`` if none).

    :param file_name: a file name.
    :return: the extension.
    """
    stem, dot, ext = file_name.rpartition(".")
    return ext.lower() if dot and stem else ""


def validate_file_name(file_name: object) -> str:
    """Check that ``file_name`` is a plain image file name Capillary can store.

    Refused: non-strings, empty names, leading or trailing white space, ``/``, ``\\``, ``..``
    anywhere, control characters (including NUL), names longer than
    :data:`MAX_FILE_NAME_BYTES` bytes in UTF-8, names without a stem before the extension and
    extensions that are not in :data:`IMAGE_CONTENT_TYPES`. Spaces and non-ASCII letters are
    fine: :func:`upload_path` percent-encodes them.

    :param file_name: the candidate name.
    :return: the name, unchanged.
    :raises CapillaryInvalidInputError: the name is not acceptable (the message says why).
    """
    if not isinstance(file_name, str):
        raise CapillaryInvalidInputError(f"file name must be a string, got {type(file_name).__name__}")
    if not file_name:
        raise CapillaryInvalidInputError("file name is empty")
    shown = repr(file_name)
    if file_name != file_name.strip():
        raise CapillaryInvalidInputError(f"file name {shown} starts or ends with white space")
    if "/" in file_name or "\\" in file_name:
        raise CapillaryInvalidInputError(
            f"file name {shown} contains a path separator: give a plain file name"
        )
    if ".." in file_name:
        raise CapillaryInvalidInputError(f"file name {shown} contains '..'")
    printable_ascii = file_name.isascii() and file_name.isprintable()  # the common case, checked in C
    if not printable_ascii and any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in file_name):
        raise CapillaryInvalidInputError(f"file name {shown} contains a control character")
    size = len(file_name.encode("utf-8"))
    if size > MAX_FILE_NAME_BYTES:
        raise CapillaryInvalidInputError(
            f"file name {shown} is {size} bytes long in UTF-8, the limit is {MAX_FILE_NAME_BYTES}"
        )
    ext = extension_of(file_name)
    if not ext:
        raise CapillaryInvalidInputError(
            f"file name {shown} has no extension: Capillary needs an image extension such as .png"
        )
    if ext not in IMAGE_CONTENT_TYPES:
        raise CapillaryInvalidInputError(
            f"file name {shown} has extension {ext!r}, which is not an image extension "
            f"({', '.join(sorted(IMAGE_CONTENT_TYPES))})"
        )
    return file_name


def validate_namespace(namespace: object) -> str:
    """Check that ``namespace`` is a plain path segment (letters, digits, ``_``, ``.``, ``-``).

    :param namespace: the candidate namespace, e.g. ``rewards``.
    :return: the namespace, unchanged.
    :raises CapillaryInvalidInputError: it is empty, too long, or not a plain segment.
    """
    if not isinstance(namespace, str) or not namespace:
        raise CapillaryInvalidInputError(f"namespace must be a non-empty string, got {namespace!r}")
    if len(namespace) > MAX_NAMESPACE_CHARS or ".." in namespace or not _NAMESPACE_RE.fullmatch(namespace):
        raise CapillaryInvalidInputError(
            f"namespace {namespace!r} is not a plain path segment (letters, digits, '_', '.', '-'; "
            f"at most {MAX_NAMESPACE_CHARS} characters; no '..')"
        )
    return namespace


def content_type_for(file_name: str) -> str:
    """Return the content type sent for ``file_name`` (from its extension).

    :param file_name: a name accepted by :func:`validate_file_name`.
    :return: the MIME type, e.g. ``image/png``.
    :raises CapillaryInvalidInputError: the extension is not an image extension.
    """
    ext = extension_of(file_name)
    try:
        return IMAGE_CONTENT_TYPES[ext]
    except KeyError:
        raise CapillaryInvalidInputError(f"file name {file_name!r} has no image extension") from None


def validate_content_type(content_type: object) -> str:
    """Check an explicit content type (``type/subtype``, no parameters with line breaks).

    :param content_type: the candidate, e.g. ``image/png``.
    :return: the content type, unchanged.
    :raises CapillaryInvalidInputError: it is not a plausible MIME type.
    """
    if not isinstance(content_type, str) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+(\s*;[ -~]*)?", content_type):
        raise CapillaryInvalidInputError(f"content type {content_type!r} is not a MIME type")
    return content_type


def sniff_image_family(head: bytes) -> str | None:
    """Return the image family that ``head`` (the first bytes of a file) starts like.

    :param head: the first bytes of the file (:data:`SNIFF_BYTES` is plenty).
    :return: one of ``png jpeg gif webp bmp tiff svg ico heif avif jp2 jxl``, or ``None``.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ico"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return "jp2"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "jxl"
    if head[4:8] == b"ftyp":
        box_size = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heif"
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and b"<svg" in text:
        return "svg"
    return None


def check_content_matches(file_name: str, head: bytes) -> None:
    """Check that the first bytes of a file agree with the extension of ``file_name``.

    :param file_name: a name accepted by :func:`validate_file_name`.
    :param head: the first bytes of the content (up to :data:`SNIFF_BYTES`).
    :raises CapillaryInvalidInputError: the content is not the image type its extension says.
    """
    expected = _FAMILY.get(extension_of(file_name))
    found = sniff_image_family(head)
    if expected is not None and found != expected:
        what = f"looks like {found}" if found else "is not a recognised image"
        raise CapillaryInvalidInputError(
            f"content of {file_name!r} {what}, but its extension says {expected} "
            "(set check_content=false to skip this check)"
        )


def check_local_file(path: str | os.PathLike[str]) -> int:
    """Check that ``path`` is an existing, readable regular file (symbolic links followed).

    :param path: a local path.
    :return: the file size in bytes.
    :raises CapillaryInvalidInputError: it is missing, not a regular file, or not readable.
    """
    shown = repr(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CapillaryInvalidInputError(f"file {shown} does not exist") from None
    except OSError as exc:
        raise CapillaryInvalidInputError(f"file {shown} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CapillaryInvalidInputError(f"{shown} is not a regular file")
    if not os.access(path, os.R_OK):
        raise CapillaryInvalidInputError(f"file {shown} is not readable")
    return st.st_size


def check_size(file_name: str, size: int, *, allow_empty: bool, max_file_size: int | None) -> None:
    """Check a file size against the ``allow_empty`` and ``max_file_size`` settings.

    :param file_name: the name, for the message.
    :param size: the size in bytes.
    :param allow_empty: accept a 0-byte file.
    :param max_file_size: the largest size accepted, or ``None`` for no limit.
    :raises CapillaryInvalidInputError: the file is empty (and that is not allowed) or too large.
    """
    if size == 0 and not allow_empty:
        raise CapillaryInvalidInputError(
            f"file {file_name!r} is empty (set allow_empty=true to upload empty files)"
        )
    if max_file_size is not None and size > max_file_size:
        raise CapillaryInvalidInputError(
            f"file {file_name!r} is {size} bytes, larger than max_file_size {max_file_size}"
        )


def upload_path(namespace: str, file_name: str) -> str:
    """Return the URL path of the upload endpoint, with both segments percent-encoded.

    >>> upload_path("rewards", "gift card €.png")
    '/api_gateway/file-service/rewards/gift%20card%20%E2%82%AC.png'

    :param namespace: a namespace accepted by :func:`validate_namespace`.
    :param file_name: a name accepted by :func:`validate_file_name`.
    :return: the path, starting with ``/``.
    """
    return f"/api_gateway/file-service/{quote(namespace, safe='')}/{quote(file_name, safe='')}"
