"""Unit tests of the source expansion and naming (pure, local files only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_capillary.exceptions import CapillaryConfigError, CapillaryInvalidInputError
from airflow_capillary.operators._expand import (
    ExpandedSource,
    SourceFile,
    assign_names,
    expand_source,
    has_image_extension,
)
from tests.operators.images import write_images


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_images(
        tmp_path / "rewards",
        ["a.png", "b.JPG", "c.webp", "notes.txt", "sub/d.png", "sub/e.jpeg", "sub/deeper/f.png"],
    )
    return tmp_path / "rewards"


def labels(expanded: ExpandedSource) -> list[str]:
    return [item.source for item in expanded.files]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.png", True), ("A.PNG", True), ("x.jpeg", True), ("x.webp", True), ("x.txt", False), ("png", False)],
    ids=["png", "upper", "jpeg", "webp", "txt", "no-dot"],
)
def test_has_image_extension(name: str, expected: bool) -> None:
    assert has_image_extension(name) is expected


def test_single_file_is_single(tree: Path) -> None:
    expanded = expand_source(str(tree / "a.png"))
    assert expanded == ExpandedSource(
        files=(SourceFile(path=tree / "a.png", source=str(tree / "a.png"), base_name="a.png"),),
        single=True,
        skipped=(),
    )


def test_pathlike_single_file(tree: Path) -> None:
    expanded = expand_source(tree / "c.webp")
    assert expanded.single
    assert labels(expanded) == [str(tree / "c.webp")]


def test_relative_path_and_home_are_made_absolute(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    monkeypatch.setenv("HOME", str(tree))
    assert labels(expand_source("a.png")) == [str(tree / "a.png")]
    assert labels(expand_source("~/sub/d.png")) == [str(tree / "sub" / "d.png")]


def test_folder_lists_images_directly_in_it_and_skips_the_rest(tree: Path) -> None:
    expanded = expand_source(str(tree))
    assert labels(expanded) == [str(tree / n) for n in ("a.png", "b.JPG", "c.webp")]
    assert expanded.skipped == (str(tree / "notes.txt"),)
    assert not expanded.single


@pytest.mark.parametrize(
    ("pattern", "expected", "skipped"),
    [
        ("*.png", ["a.png"], []),
        ("*", ["a.png", "b.JPG", "c.webp"], ["notes.txt"]),
        ("**/*.png", ["a.png", "sub/d.png", "sub/deeper/f.png"], []),
        ("sub/*.jp*g", ["sub/e.jpeg"], []),
        ("s?b/[de].*", ["sub/d.png", "sub/e.jpeg"], []),
        ("*.gif", [], []),
    ],
    ids=["star", "everything", "recursive", "in-subfolder", "question-and-class", "no-match"],
)
def test_glob(tree: Path, pattern: str, expected: list[str], skipped: list[str]) -> None:
    expanded = expand_source(f"{tree}/{pattern}")
    assert labels(expanded) == [str(tree / n) for n in expected]
    assert list(expanded.skipped) == [str(tree / n) for n in skipped]
    assert not expanded.single


def test_glob_matching_one_file_is_still_a_batch(tree: Path) -> None:
    expanded = expand_source(f"{tree}/a.p?g")
    assert labels(expanded) == [str(tree / "a.png")]
    assert not expanded.single


def test_relative_glob(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    assert labels(expand_source("sub/*.png")) == [str(tree / "sub" / "d.png")]


def test_list_is_flattened_sorted_and_deduplicated(tree: Path) -> None:
    expanded = expand_source([str(tree / "sub"), f"{tree}/*.png", tree / "a.png", [str(tree / "c.webp")]])
    assert labels(expanded) == [str(tree / n) for n in ("a.png", "c.webp", "sub/d.png", "sub/e.jpeg")]
    assert not expanded.single


def test_list_of_one_file_is_a_batch(tree: Path) -> None:
    assert not expand_source([str(tree / "a.png")]).single


def test_file_uri_single_and_glob(tree: Path) -> None:
    single = expand_source(f"file://{tree}/a.png")
    assert single.single
    assert labels(single) == [f"file://{tree}/a.png"]
    assert single.files[0].base_name == "a.png"
    batch = expand_source(f"file://{tree}/**/*.png")
    assert labels(batch) == [f"file://{tree}/{n}" for n in ("a.png", "sub/d.png", "sub/deeper/f.png")]


def test_file_uri_folder_and_object_storage_path(tree: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    expanded = expand_source(ObjectStoragePath(f"file://{tree}"))
    assert labels(expanded) == [f"file://{tree}/{n}" for n in ("a.png", "b.JPG", "c.webp")]
    assert expanded.skipped == (f"file://{tree}/notes.txt",)
    assert isinstance(expanded.files[0].path, ObjectStoragePath)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{tree}/notes.txt", r"source '.*/notes\.txt' is not an image: its extension is not one of .*\.png"),
        (["{tree}/a.png", "{tree}/notes.txt"], r"source '.*/notes\.txt' is not an image"),
        ("{tree}/missing.png", r"source '.*/missing\.png' does not exist"),
        ("file://{tree}/missing.png", r"source 'file://.*/missing\.png' does not exist"),
        ("file://{tree}/notes.txt", r"source 'file://.*/notes\.txt' is not an image"),
        ("", r"source contains an empty path"),
        (
            42,
            r"source must be a path, a glob, a folder, a URI, an ObjectStoragePath or a list of "
            r"these, got int",
        ),
        ([None], r"got NoneType"),
        (b"/a.png", r"got bytes"),
    ],
    ids=["txt", "txt-in-list", "missing", "missing-uri", "txt-uri", "empty", "int", "none", "bytes"],
)
def test_invalid_sources(tree: Path, source: object, message: str) -> None:
    if isinstance(source, str):
        source = source.format(tree=tree)
    elif isinstance(source, list):
        source = [s.format(tree=tree) if isinstance(s, str) else s for s in source]
    with pytest.raises(CapillaryInvalidInputError, match=message):
        expand_source(source)


def test_custom_image_predicate(tree: Path) -> None:
    expanded = expand_source(str(tree), is_image=lambda name: name.endswith(".png"))
    assert labels(expanded) == [str(tree / "a.png")]
    assert expanded.skipped == tuple(str(tree / n) for n in ("b.JPG", "c.webp", "notes.txt"))


def _files(*names: str) -> list[SourceFile]:
    return [SourceFile(path=Path(n), source=n, base_name=os.path.basename(n)) for n in names]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["a.png", "b.png"]),
        ({"name_prefix": "diwali-"}, ["diwali-a.png", "diwali-b.png"]),
        ({"rename": str.upper}, ["A.PNG", "B.PNG"]),
        (
            {"rename": lambda n: n.replace(".png", "-v2.png"), "name_prefix": "x-"},
            ["x-a-v2.png", "x-b-v2.png"],
        ),
    ],
    ids=["default", "prefix", "rename", "rename-then-prefix"],
)
def test_assign_names(kwargs: dict, expected: list[str]) -> None:
    assert assign_names(_files("/d/a.png", "/d/b.png"), **kwargs) == expected


def test_file_name_for_a_single_file() -> None:
    assert assign_names(_files("/d/a.png"), file_name="hero.png", single=True) == ["hero.png"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"file_name": "x.png"}, r"file_name is only allowed for a single-file source; .* the 2 files"),
        ({"file_name": "x.png", "name_prefix": "p-", "single": True}, "cannot be combined"),
        ({"rename": lambda n: ""}, r"rename must return a non-empty str, it returned '' for '/d/a.png'"),
        ({"rename": lambda n: None}, r"returned None"),
    ],
    ids=["file-name-with-batch", "file-name-with-prefix", "rename-empty", "rename-none"],
)
def test_assign_names_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(CapillaryConfigError, match=message):
        assign_names(_files("/d/a.png", "/e/b.png"), **kwargs)


def test_duplicate_names_are_refused_naming_every_source() -> None:
    files = _files("/d/a.png", "/e/a.png", "/d/b.png", "/f/b.png", "/g/c.png")
    with pytest.raises(
        CapillaryInvalidInputError,
        match=r"^2 name\(s\) would be uploaded more than once in this batch \(use name_prefix or rename "
        r"to tell them apart\): 'a\.png' <- /d/a\.png, /e/a\.png; 'b\.png' <- /d/b\.png, /f/b\.png$",
    ):
        assign_names(files)
