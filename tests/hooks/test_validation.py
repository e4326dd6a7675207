"""Pure input checks shared by the hook and the operator (airflow_capillary._validation)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_capillary import _validation as v
from airflow_capillary.exceptions import CapillaryInvalidInputError

GOOD_NAMES = [
    "test.png",
    "IMG_20220730_180352311.JPG",
    "gift card.webp",
    "crème brûlée.jpeg",
    "礼物.gif",
    "a.b.c.tiff",
    "icon.ico",
    "vector.svg",
    "photo.heic",
    "photo.avif",
    "x" * 251 + ".png",
]


@pytest.mark.parametrize("name", GOOD_NAMES, ids=range(len(GOOD_NAMES)))
def test_good_file_names_pass_unchanged(name):
    assert v.validate_file_name(name) == name


BAD_NAMES = [
    (b"a.png", "must be a string, got bytes"),
    ("", "file name is empty"),
    (" a.png", "starts or ends with white space"),
    ("a.png\t", "starts or ends with white space"),
    ("dir/a.png", "contains a path separator"),
    ("dir\\a.png", "contains a path separator"),
    ("../a.png", "contains a path separator"),
    ("..png", "contains '..'"),
    ("a..png", "contains '..'"),
    ("a\x00.png", "contains a control character"),
    ("a\nb.png", "contains a control character"),
    ("a\x7f.png", "contains a control character"),
    ("a\u2028.png", "contains a control character"),
    ("x" * 252 + ".png", "is 256 bytes long in UTF-8, the limit is 255"),
    ("é" * 126 + ".png", "is 256 bytes long in UTF-8, the limit is 255"),
    ("README", "has no extension"),
    (".png", "has no extension"),
    ("report.pdf", "has extension 'pdf', which is not an image extension"),
    ("archive.png.zip", "has extension 'zip'"),
]


@pytest.mark.parametrize(
    ("name", "message"),
    BAD_NAMES,
    ids=[
        "bytes",
        "empty",
        "leading-space",
        "trailing-tab",
        "slash",
        "backslash",
        "dotdot-slash",
        "dotdot-start",
        "dotdot-middle",
        "nul",
        "newline",
        "del",
        "line-separator",
        "too-long-ascii",
        "too-long-utf8",
        "no-extension",
        "only-extension",
        "not-image",
        "double-extension",
    ],
)
def test_bad_file_names_are_refused(name, message):
    with pytest.raises(CapillaryInvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        v.validate_file_name(name)


@pytest.mark.parametrize("namespace", ["rewards", "Rewards_2", "a.b-c", "9"], ids=str)
def test_good_namespaces(namespace):
    assert v.validate_namespace(namespace) == namespace


@pytest.mark.parametrize(
    "namespace",
    ["", None, "a/b", "a\\b", "..", "a..b", ".hidden", "-x", "a b", "é", "a\x00", "x" * 129],
    ids=[
        "empty",
        "none",
        "slash",
        "backslash",
        "dotdot",
        "dotdot-mid",
        "dot",
        "dash",
        "space",
        "non-ascii",
        "nul",
        "too-long",
    ],
)
def test_bad_namespaces(namespace):
    with pytest.raises(CapillaryInvalidInputError, match="namespace"):
        v.validate_namespace(namespace)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("a.PNG", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.svg", "image/svg+xml"),
        ("a.tif", "image/tiff"),
        ("a.ico", "image/x-icon"),
        ("a.heif", "image/heif"),
        ("a.webp", "image/webp"),
    ],
    ids=["png-upper", "jpg", "svg", "tif", "ico", "heif", "webp"],
)
def test_content_type_from_extension(name, content_type):
    assert v.content_type_for(name) == content_type


def test_content_type_validation():
    assert v.validate_content_type("image/png") == "image/png"
    assert v.validate_content_type("image/svg+xml; charset=utf-8") == "image/svg+xml; charset=utf-8"
    with pytest.raises(CapillaryInvalidInputError, match="'image/png\\\\r\\\\nX: y' is not a MIME type"):
        v.validate_content_type("image/png\r\nX: y")


MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF",
    "gif": b"GIF89a\x01\x00",
    "webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    "bmp": b"BM\x3a\x00\x00\x00",
    "tiff": b"II*\x00\x08\x00",
    "ico": b"\x00\x00\x01\x00\x01\x00",
    "svg": b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    "heif": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    "avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
    "jp2": b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    "jxl": b"\xff\x0a\x00",
}


@pytest.mark.parametrize(("family", "head"), MAGIC.items(), ids=list(MAGIC))
def test_sniff_families(family, head):
    assert v.sniff_image_family(head) == family


@pytest.mark.parametrize(
    "head", [b"", b"hello", b"%PDF-1.7", b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isom"], ids=str
)
def test_sniff_unknown(head):
    assert v.sniff_image_family(head) is None


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("a.png", "png"),
        ("a.apng", "png"),
        ("a.JPG", "jpeg"),
        ("a.jfif", "jpeg"),
        ("a.tiff", "tiff"),
        ("a.heic", "heif"),
        ("a.avif", "avif"),
        ("a.svg", "svg"),
    ],
    ids=["png", "apng", "jpg", "jfif", "tiff", "heic", "avif", "svg"],
)
def test_content_matching_extension_passes(name, family):
    v.check_content_matches(name, MAGIC[family])


def test_content_of_another_type_is_refused():
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"content of 'a.png' looks like jpeg, but its extension says png \(set check_content=false",
    ):
        v.check_content_matches("a.png", MAGIC["jpeg"])


def test_content_that_is_no_image_is_refused():
    with pytest.raises(CapillaryInvalidInputError, match=r"content of 'a.gif' is not a recognised image"):
        v.check_content_matches("a.gif", b"<html>")


def test_local_file_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    image = tmp_path / "a.png"
    image.write_bytes(MAGIC["png"])
    assert v.check_local_file(image) == len(MAGIC["png"])
    link = tmp_path / "link.png"
    link.symlink_to(image)
    assert v.check_local_file(str(link)) == len(MAGIC["png"])
    with pytest.raises(CapillaryInvalidInputError, match=r"file '.*missing.png' does not exist"):
        v.check_local_file(tmp_path / "missing.png")
    with pytest.raises(CapillaryInvalidInputError, match=r"'.*' is not a regular file"):
        v.check_local_file(tmp_path)
    # Root reads everything, so an unreadable file is simulated at the access check.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(CapillaryInvalidInputError, match=r"file '.*a.png' is not readable"):
        v.check_local_file(image)


def test_size_checks():
    v.check_size("a.png", 10, allow_empty=False, max_file_size=10)
    v.check_size("a.png", 0, allow_empty=True, max_file_size=None)
    with pytest.raises(CapillaryInvalidInputError, match=r"file 'a.png' is empty \(set allow_empty=true"):
        v.check_size("a.png", 0, allow_empty=False, max_file_size=None)
    with pytest.raises(
        CapillaryInvalidInputError, match=r"file 'a.png' is 11 bytes, larger than max_file_size 10"
    ):
        v.check_size("a.png", 11, allow_empty=False, max_file_size=10)


@pytest.mark.parametrize(
    ("namespace", "name", "path"),
    [
        ("rewards", "test.png", "/api_gateway/file-service/rewards/test.png"),
        ("rewards", "gift card.png", "/api_gateway/file-service/rewards/gift%20card.png"),
        ("rewards", "crème €.png", "/api_gateway/file-service/rewards/cr%C3%A8me%20%E2%82%AC.png"),
        ("rewards", "a#b?c%d&e+f.png", "/api_gateway/file-service/rewards/a%23b%3Fc%25d%26e%2Bf.png"),
        ("rewards", "it's~ok.png", "/api_gateway/file-service/rewards/it%27s~ok.png"),
    ],
    ids=["plain", "space", "non-ascii", "reserved", "quote-tilde"],
)
def test_upload_path_percent_encodes(namespace, name, path):
    assert v.upload_path(namespace, name) == path
