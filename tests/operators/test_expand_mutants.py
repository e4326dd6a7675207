"""Kills mutmut survivors of operators/_expand.py: object-storage entries, caches, messages and limits."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_capillary.exceptions import CapillaryConfigError, CapillaryInvalidInputError
from airflow_capillary.operators import _expand
from airflow_capillary.operators._expand import SourceFile, assign_names, expand_and_name, expand_source
from tests.operators.images import write_images


def test_an_object_storage_path_is_used_as_given(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    write_images(tmp_path, ["a.png"])
    entry = ObjectStoragePath(str(tmp_path / "a.png"))  # no scheme: its text has no "://"
    expanded = expand_source(entry)
    assert expanded.single
    [file] = expanded.files
    assert file.path is entry
    assert (file.source, file.base_name) == (str(tmp_path / "a.png"), "a.png")
    uri = ObjectStoragePath(f"file://{tmp_path}/a.png")
    assert expand_source(uri).files[0].path is uri


class FakeFs:
    def __init__(self, error: Exception | None = None) -> None:
        self.invalidated: list[Any] = []
        self.error = error

    def invalidate_cache(self, path: Any = None) -> None:
        self.invalidated.append(path)
        if self.error is not None:
            raise self.error


class FakeStoragePath:
    """The parts of an ObjectStoragePath that the expansion uses."""

    protocol = "fake"

    def __init__(self, path: str, fs: Any) -> None:
        self.path, self.fs = path, fs

    def __str__(self) -> str:
        return f"fake://{self.path}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def is_dir(self) -> bool:
        return False

    def exists(self) -> bool:
        return True


@pytest.mark.parametrize(
    "make_fs",
    [FakeFs, lambda: FakeFs(RuntimeError("no cache")), object],
    ids=["cache", "failing-cache", "no-cache"],
)
def test_the_cache_of_the_path_is_forgotten_when_there_is_one(make_fs: Any) -> None:
    fs = make_fs()  # a fresh one per run: pytest may run the test twice in one process (mutmut does)
    entry = FakeStoragePath("bucket/a.png", fs)
    assert expand_source(entry).files == (
        SourceFile(path=entry, source="fake://bucket/a.png", base_name="a.png"),  # type: ignore[arg-type]
    )
    if isinstance(fs, FakeFs):
        assert fs.invalidated == ["bucket/a.png"]


def test_an_object_with_only_a_protocol_is_not_object_storage() -> None:
    class Half:
        protocol = "s3"

    with pytest.raises(CapillaryInvalidInputError) as info:
        expand_source(Half())
    assert str(info.value) == (
        "source must be a path, a glob, a folder, a URI, an ObjectStoragePath or a list of these, got Half"
    )


def test_a_pathlike_of_bytes_is_decoded(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png"])

    class BytesPath:
        def __fspath__(self) -> bytes:
            return os.fsencode(tmp_path / "a.png")

    assert [f.source for f in expand_source(BytesPath()).files] == [str(tmp_path / "a.png")]


def test_an_empty_path_message() -> None:
    with pytest.raises(CapillaryInvalidInputError) as info:
        expand_source(["  "])
    assert str(info.value) == "source contains an empty path"


def test_a_glob_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_images(tmp_path, ["a.png", "b.png"])
    monkeypatch.chdir(tmp_path)
    assert [f.source for f in expand_source("*.png").files] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
    ]


def test_split_glob_without_a_glob_keeps_every_part() -> None:
    assert _expand._split_glob(["bucket", "a.png"]) == (["bucket", "a.png"], "")


def files(*names: str) -> list[SourceFile]:
    return [SourceFile(path=Path(n), source=n, base_name=os.path.basename(n)) for n in names]


def test_file_name_messages() -> None:
    with pytest.raises(CapillaryConfigError) as info:
        assign_names(files("/d/a.png"), file_name="x.png", rename=str.upper, single=True)
    assert str(info.value) == "file_name cannot be combined with name_prefix or rename"
    with pytest.raises(CapillaryConfigError) as info:
        assign_names(files("/d/a.png", "/d/b.png"), file_name="x.png")
    assert str(info.value) == (
        "file_name is only allowed for a single-file source; use name_prefix or rename to name the 2 files "
        "of this batch"
    )


def clash_message(count: int) -> str:
    listed = "; ".join(f"'n{i:02d}.png' <- /a/n{i:02d}.png, /b/n{i:02d}.png" for i in range(min(count, 10)))
    more = f"; and {count - 10} more" if count > 10 else ""
    return (
        f"{count} name(s) would be uploaded more than once in this batch (use name_prefix or rename to tell "
        f"them apart): {listed}{more}"
    )


@pytest.mark.parametrize("count", [10, 11, 12])
def test_duplicate_names_are_listed_up_to_ten(count: int) -> None:
    sources = [f"/{d}/n{i:02d}.png" for i in range(count) for d in ("a", "b")]
    with pytest.raises(CapillaryInvalidInputError) as info:
        assign_names(files(*sources))
    assert str(info.value) == clash_message(count)


@pytest.mark.parametrize("count", [10, 11])
def test_skipped_files_are_listed_up_to_ten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, count: int
) -> None:
    write_images(tmp_path, ["a.png", *(f"n{i:02d}.txt" for i in range(count))])
    log = logging.getLogger("capillary.test.expand")
    caplog.set_level(logging.INFO, logger=log.name)
    expand_and_name(str(tmp_path), file_name=None, name_prefix=None, rename=None, log=log)
    listed = ", ".join(str(tmp_path / f"n{i:02d}.txt") for i in range(10))
    assert [r.getMessage() for r in caplog.records if r.name == log.name] == [
        f"Skipped {count} non-image file(s): {listed}{', ...' if count > 10 else ''}"
    ]
