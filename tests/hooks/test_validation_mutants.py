"""Kills mutmut survivors in airflow_capillary/_validation.py: exact messages and boundaries of its checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_capillary import _validation as v
from airflow_capillary.exceptions import CapillaryInvalidInputError

ALL_EXTENSIONS = ", ".join(sorted(v.IMAGE_CONTENT_TYPES))


def refusal(call: object, *args: object, **kwargs: object) -> str:
    """Return the message of the :class:`CapillaryInvalidInputError` that ``call`` raises."""
    assert callable(call)
    with pytest.raises(CapillaryInvalidInputError) as info:
        call(*args, **kwargs)
    assert str(info.value) == info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("a.PNG", "png"),
        ("a.b.JpG", "jpg"),
        ("noext", ""),
        (".png", ""),
        ("a.", ""),
        ("", ""),
        ("archive.tar.gz", "gz"),
    ],
)
def test_extension_of(name: str, ext: str) -> None:
    assert v.extension_of(name) == ext


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (b"a.png", "file name must be a string, got bytes"),
        (None, "file name must be a string, got NoneType"),
        ("", "file name is empty"),
        (" a.png", "file name ' a.png' starts or ends with white space"),
        ("a.png\n", "file name 'a.png\\n' starts or ends with white space"),
        ("d/a.png", "file name 'd/a.png' contains a path separator: give a plain file name"),
        ("d\\a.png", "file name 'd\\\\a.png' contains a path separator: give a plain file name"),
        ("a..b.png", "file name 'a..b.png' contains '..'"),
        ("a\x00b.png", "file name 'a\\x00b.png' contains a control character"),
        ("a\x7fb.png", "file name 'a\\x7fb.png' contains a control character"),
        ("a\ud800b.png", "file name 'a\\ud800b.png' contains a control character"),
        ("a\u2028b.png", "file name 'a\\u2028b.png' contains a control character"),
        ("a\u2029b.png", "file name 'a\\u2029b.png' contains a control character"),
        ("x" * 252 + ".png", f"file name '{'x' * 252}.png' is 256 bytes long in UTF-8, the limit is 255"),
        ("é" * 126 + ".png", f"file name '{'é' * 126}.png' is 256 bytes long in UTF-8, the limit is 255"),
        ("image", "file name 'image' has no extension: Capillary needs an image extension such as .png"),
        (".png", "file name '.png' has no extension: Capillary needs an image extension such as .png"),
        (
            "notes.TXT",
            f"file name 'notes.TXT' has extension 'txt', which is not an image extension ({ALL_EXTENSIONS})",
        ),
    ],
)
def test_file_name_refusals_are_exact(name: object, message: str) -> None:
    assert refusal(v.validate_file_name, name) == message


@pytest.mark.parametrize("name", ["x" * 251 + ".png", "a b.PNG", "é.jpg", "a.b.gif", "a.c.png"])
def test_acceptable_file_names_are_returned_unchanged(name: str) -> None:
    assert v.validate_file_name(name) is name


def test_the_extension_list_is_sorted_and_comma_separated() -> None:
    assert ALL_EXTENSIONS.startswith(
        "apng, avif, bmp, dib, gif, heic, heif, ico, jfif, jp2, jpe, jpeg, jpg, jxl,"
    )


NAMESPACE_RULE = "(letters, digits, '_', '.', '-'; at most 128 characters; no '..')"


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        ("", "namespace must be a non-empty string, got ''"),
        (None, "namespace must be a non-empty string, got None"),
        (7, "namespace must be a non-empty string, got 7"),
        ("a" * 129, f"namespace {'a' * 129!r} is not a plain path segment {NAMESPACE_RULE}"),
        ("a..b", f"namespace 'a..b' is not a plain path segment {NAMESPACE_RULE}"),
        ("a/b", f"namespace 'a/b' is not a plain path segment {NAMESPACE_RULE}"),
        ("-ab", f"namespace '-ab' is not a plain path segment {NAMESPACE_RULE}"),
        ("a b", f"namespace 'a b' is not a plain path segment {NAMESPACE_RULE}"),
    ],
)
def test_namespace_refusals_are_exact(namespace: object, message: str) -> None:
    assert refusal(v.validate_namespace, namespace) == message


@pytest.mark.parametrize("namespace", ["a" * 128, "rewards", "a.b-c_d", "X9", "a.b.c"])
def test_acceptable_namespaces_are_returned_unchanged(namespace: str) -> None:
    assert v.validate_namespace(namespace) is namespace


def test_content_type_for_an_unknown_extension() -> None:
    assert v.content_type_for("a.JPG") == "image/jpeg"
    assert refusal(v.content_type_for, "a.txt") == "file name 'a.txt' has no image extension"


def test_local_file_refusals_are_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "a.png"
    good.write_bytes(b"12345")
    assert v.check_local_file(good) == 5
    assert v.check_local_file(str(good)) == 5
    missing = tmp_path / "missing.png"
    assert refusal(v.check_local_file, missing) == f"file {str(missing)!r} does not exist"
    through_a_file = good / "x.png"
    assert (
        refusal(v.check_local_file, through_a_file)
        == f"file {str(through_a_file)!r} cannot be read: Not a directory"
    )
    assert refusal(v.check_local_file, tmp_path) == f"{str(tmp_path)!r} is not a regular file"
    asked: list[tuple[object, int]] = []

    def no_access(path: object, mode: int) -> bool:
        asked.append((path, mode))
        return False

    monkeypatch.setattr(os, "access", no_access)
    assert refusal(v.check_local_file, good) == f"file {str(good)!r} is not readable"
    assert asked == [(good, os.R_OK)]


def test_size_refusals_are_exact() -> None:
    v.check_size("a.png", 0, allow_empty=True, max_file_size=None)
    v.check_size("a.png", 1, allow_empty=False, max_file_size=1)
    v.check_size("a.png", 10**12, allow_empty=False, max_file_size=None)
    assert refusal(v.check_size, "a.png", 0, allow_empty=False, max_file_size=None) == (
        "file 'a.png' is empty (set allow_empty=true to upload empty files)"
    )
    assert refusal(v.check_size, "a.png", 2, allow_empty=True, max_file_size=1) == (
        "file 'a.png' is 2 bytes, larger than max_file_size 1"
    )


def test_content_mismatch_messages_are_exact() -> None:
    v.check_content_matches("a.png", b"\x89PNG\r\n\x1a\n")
    v.check_content_matches("a.unknown", b"anything")
    assert refusal(v.check_content_matches, "a.png", b"\xff\xd8\xff\xe0") == (
        "content of 'a.png' looks like jpeg, but its extension says png "
        "(set check_content=false to skip this check)"
    )
    assert refusal(v.check_content_matches, "a.gif", b"plain text") == (
        "content of 'a.gif' is not a recognised image, but its extension says gif "
        "(set check_content=false to skip this check)"
    )


def test_upload_path_encodes_every_reserved_character_of_both_segments() -> None:
    assert v.upload_path("a/b c", "d/e?.png") == "/api_gateway/file-service/a%2Fb%20c/d%2Fe%3F.png"
