"""Expansion of an :class:`~airflow_capillary.operators.upload_image.UploadImageOperator` ``source``.

Turns what a DAG author wrote (a path, a glob, a folder, an object-storage URI, or a list of
these) into the sorted, de-duplicated list of files to upload, and gives each file its name in
Capillary. Pure apart from listing the filesystem or object store it is pointed at: nothing here
talks to Capillary, and the object-storage layer is only imported when a URI is met.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_capillary._validation import IMAGE_CONTENT_TYPES
from airflow_capillary.exceptions import CapillaryConfigError, CapillaryInvalidInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_LISTED",
    "ExpandedSource",
    "SourceFile",
    "assign_names",
    "expand_and_name",
    "expand_source",
    "has_image_extension",
]

#: Extensions treated as images when a glob or a folder is listed: the hook's (lower case, with the dot).
IMAGE_EXTENSIONS = frozenset(f".{ext}" for ext in IMAGE_CONTENT_TYPES)

_GLOB_CHARS = frozenset("*?[")

#: How many skipped or duplicate entries one message lists before summarising the rest.
MAX_LISTED = 10


def has_image_extension(name: str) -> bool:
    """Tell whether ``name`` ends with an image extension (case-insensitive).

    :param name: a file name or path.
    :return: true for ``.png``, ``.JPG``, ``.webp``, ...
    """
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One file to upload.

    :param path: what the hook opens: a local :class:`~pathlib.Path` or an ``ObjectStoragePath``.
    :param source: the label pushed to XCom as ``source``: an absolute local path or a URI.
    :param base_name: the file's base name, the default name in Capillary.
    """

    path: Path | ObjectStoragePath
    source: str
    base_name: str


@dataclasses.dataclass(frozen=True)
class ExpandedSource:
    """The result of :func:`expand_source`.

    :param files: the files to upload, sorted by ``source``, each once.
    :param single: the source was one explicit file (not a list, glob or folder), so the
        operator returns one record instead of a list.
    :param skipped: labels of non-image files met through a glob or a folder, sorted.
    """

    files: tuple[SourceFile, ...]
    single: bool
    skipped: tuple[str, ...]


def expand_source(source: Any, *, is_image: Callable[[str], bool] = has_image_extension) -> ExpandedSource:
    """Expand ``source`` into the files it designates.

    Accepted forms: a local path (``str`` or path-like; ``~`` expanded), a glob (``*``, ``?``,
    ``[...]`` and ``**``), a folder (the images directly in it), a URI handled by
    ``ObjectStoragePath`` (``file://...``, ``s3://conn@bucket/prefix/*.png``) or an
    ``ObjectStoragePath``, and (nested) lists or tuples of these.

    :param source: the rendered ``source`` argument.
    :param is_image: predicate on a file name deciding what a glob or folder keeps.
    :return: the files, whether the source was a single explicit file, and what was skipped.
    :raises CapillaryInvalidInputError: an entry has an unsupported type, is empty, does not
        exist, or is an explicit file without an image extension.
    """
    found: dict[str, SourceFile] = {}
    skipped: set[str] = set()
    single = not isinstance(source, (list, tuple))
    for entry in _flatten(source):
        for item, explicit in _expand_entry(entry):
            single = single and explicit
            if not is_image(item.base_name):
                if explicit:
                    raise CapillaryInvalidInputError(
                        f"source {item.source!r} is not an image: its extension is not one of "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
                    )
                skipped.add(item.source)
                continue
            found.setdefault(item.source, item)
    files = tuple(found[key] for key in sorted(found))
    return ExpandedSource(files=files, single=single and len(files) == 1, skipped=tuple(sorted(skipped)))


def assign_names(
    files: Sequence[SourceFile],
    *,
    file_name: str | None = None,
    name_prefix: str | None = None,
    rename: Callable[[str], str] | None = None,
    single: bool = False,
) -> list[str]:
    """Give each file its name in Capillary and refuse duplicates.

    The name is ``file_name`` for a single-file source; otherwise ``name_prefix`` +
    ``rename(base name)`` (each part optional, the base name by default).

    :param files: the files, as :func:`expand_source` returned them.
    :param file_name: explicit name; only for a single-file source.
    :param name_prefix: text put in front of every name (e.g. ``"diwali-"``).
    :param rename: callable mapping a base name to a new name (applied before the prefix).
    :param single: whether the source was a single explicit file.
    :return: the names, in the order of ``files``.
    :raises CapillaryConfigError: ``file_name`` is combined with a batch, a prefix or ``rename``,
        or ``rename`` does not return a non-empty string.
    :raises CapillaryInvalidInputError: two files of the batch would get the same name.
    """
    if file_name is not None:
        if name_prefix or rename is not None:
            raise CapillaryConfigError("file_name cannot be combined with name_prefix or rename")
        if not single:
            raise CapillaryConfigError(
                "file_name is only allowed for a single-file source; use name_prefix or rename "
                f"to name the {len(files)} files of this batch"
            )
        return [file_name for _ in files]
    names = []
    for item in files:
        name = item.base_name
        if rename is not None:
            renamed = rename(name)
            if not isinstance(renamed, str) or not renamed:
                raise CapillaryConfigError(
                    f"rename must return a non-empty str, it returned {renamed!r} for {item.source!r}"
                )
            name = renamed
        names.append(f"{name_prefix or ''}{name}")
    _refuse_duplicates(files, names)
    return names


def expand_and_name(
    source: Any,
    *,
    file_name: str | None,
    name_prefix: str | None,
    rename: Callable[[str], str] | None,
    log: Any,
) -> tuple[ExpandedSource, list[str]]:
    """Expand ``source``, name its files (:func:`assign_names`) and log one line of what was skipped.

    :param source: the rendered ``source`` argument.
    :param file_name: explicit name of a single-file source.
    :param name_prefix: text put in front of every name.
    :param rename: callable mapping a base name to a new name.
    :param log: where the line of skipped non-image files goes.
    :return: the expansion and the name of each file.
    :raises CapillaryInvalidInputError: see :func:`expand_source` and :func:`assign_names`.
    :raises CapillaryConfigError: see :func:`assign_names`.
    """
    expanded = expand_source(source)
    names = assign_names(
        expanded.files, file_name=file_name, name_prefix=name_prefix, rename=rename, single=expanded.single
    )
    if expanded.skipped:
        log.info(
            "Skipped %d non-image file(s): %s%s",
            len(expanded.skipped),
            ", ".join(expanded.skipped[:MAX_LISTED]),
            ", ..." if len(expanded.skipped) > MAX_LISTED else "",
        )
    return expanded, names


def _refuse_duplicates(files: Sequence[SourceFile], names: Sequence[str]) -> None:
    by_name: dict[str, list[str]] = {}
    for item, name in zip(files, names, strict=True):
        by_name.setdefault(name, []).append(item.source)
    clashes = sorted((name, sources) for name, sources in by_name.items() if len(sources) > 1)
    if not clashes:
        return
    listed = "; ".join(f"{name!r} <- {', '.join(sources)}" for name, sources in clashes[:MAX_LISTED])
    more = f"; and {len(clashes) - MAX_LISTED} more" if len(clashes) > MAX_LISTED else ""
    raise CapillaryInvalidInputError(
        f"{len(clashes)} name(s) would be uploaded more than once in this batch (use name_prefix "
        f"or rename to tell them apart): {listed}{more}"
    )


def _flatten(source: Any) -> Iterable[Any]:
    if isinstance(source, (list, tuple)):
        for entry in source:
            yield from _flatten(entry)
    else:
        yield source


def _is_object_storage(value: Any) -> bool:
    # ObjectStoragePath (a universal_pathlib UPath) without importing it: it has a protocol and fs.
    return hasattr(value, "protocol") and hasattr(value, "fs")


def _text_of(entry: Any) -> str:
    if isinstance(entry, str):
        text = entry
    elif _is_object_storage(entry):
        text = str(entry)
    elif isinstance(entry, os.PathLike):
        text = os.fspath(entry)
        text = text if isinstance(text, str) else os.fsdecode(text)
    else:
        raise CapillaryInvalidInputError(
            "source must be a path, a glob, a folder, a URI, an ObjectStoragePath or a list of "
            f"these, got {type(entry).__name__}"
        )
    if not text.strip():
        raise CapillaryInvalidInputError("source contains an empty path")
    return text


def _has_glob(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def _is_uri(text: str) -> bool:
    return "://" in text


def _storage_path(entry: Any, text: str) -> ObjectStoragePath:
    if _is_object_storage(entry):
        return entry
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(text)


def _expand_entry(entry: Any) -> Iterable[tuple[SourceFile, bool]]:
    """Yield ``(file, explicit)`` for one non-list entry."""
    text = _text_of(entry)
    if _is_uri(text) or _is_object_storage(entry):
        yield from _expand_storage(entry, text)
    else:
        yield from _expand_local(text)


def _local_file(path: Path) -> SourceFile:
    absolute = Path(os.path.abspath(path))
    return SourceFile(path=absolute, source=str(absolute), base_name=absolute.name)


def _expand_local(text: str) -> Iterable[tuple[SourceFile, bool]]:
    path = Path(text).expanduser()
    if _has_glob(text) and not path.exists():
        base, pattern = _split_glob(path.parts)
        return _list(Path(*base) if base else Path("."), pattern, _local_file, str(path))
    return _list(path, None, _local_file, os.path.abspath(path))


def _expand_storage(entry: Any, text: str) -> Iterable[tuple[SourceFile, bool]]:
    if _has_glob(text):
        scheme, _, rest = text.partition("://")
        base, pattern = _split_glob(rest.split("/"))
        return _list(
            _fresh(_storage_path(None, f"{scheme}://{'/'.join(base)}")), pattern, _storage_file, text
        )
    return _list(_fresh(_storage_path(entry, text)), None, _storage_file, text)


def _fresh(path: ObjectStoragePath) -> ObjectStoragePath:
    """Forget what the file system cached of ``path`` (s3fs keeps listings, with each object's ETag,
    for the life of the process): a sync must see the objects as they are now, and reading an
    object that changed since it was cached fails with ``FileExpired``."""
    with contextlib.suppress(Exception):  # not every file system has a cache
        path.fs.invalidate_cache(path.path)
    return path


def _list(
    path: Any, pattern: str | None, make: Callable[[Any], SourceFile], label: str
) -> Iterable[tuple[SourceFile, bool]]:
    """List what ``path`` designates: the files matching ``pattern`` below it, the files directly
    in it if it is a folder, else the file itself (explicit). Works on ``Path`` and ``ObjectStoragePath``.
    """
    if pattern is not None:
        candidates = path.glob(pattern)
    elif path.is_dir():
        candidates = path.iterdir()
    elif path.exists():
        return [(make(path), True)]
    else:
        raise CapillaryInvalidInputError(f"source {label!r} does not exist")
    return [(make(match), False) for match in sorted(candidates, key=str) if match.is_file()]


def _split_glob(parts: Sequence[str]) -> tuple[list[str], str]:
    """Split path parts at the first one holding a glob character: (fixed base, pattern)."""
    for index, part in enumerate(parts):
        if _has_glob(part):
            return list(parts[:index]), "/".join(parts[index:])
    return list(parts), ""


def _storage_file(path: ObjectStoragePath) -> SourceFile:
    return SourceFile(path=path, source=str(path), base_name=path.name)
