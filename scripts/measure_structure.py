"""Measure the structure of the provider at two git revisions, for issue 12 (the redesign).

For each revision, read from git itself (``git ls-tree``, ``git show``, ``git archive``; nothing is
checked out and the working tree is never read):

* the lines and files of every package: ``airflow_capillary`` (its top-level modules), each of its
  subpackages, and the emulator (``airflow_capillary/emulator`` before the redesign, the
  ``capillary_emulator`` distribution in ``emulator/`` after it);
* the largest files, and the provider files over the issue's limit of 400 lines;
* the files a reader opens to follow one upload and one sensor check. The paths are written down
  below (:data:`READING_PATHS`) from reading the code of each revision; this script checks that
  every function they name exists in the file named, at that revision, and counts the lines of
  those functions. A path that no longer matches the code stops the script with the step it could
  not find, so the document is never written from a stale description;
* the output of ``duplicates --repo airflow_capillary --most 40`` over the provider package as
  committed at the revision (exported with ``git archive`` into a temporary folder).

Usage::

    python scripts/measure_structure.py                      # 3aa0b41 against HEAD
    python scripts/measure_structure.py --before REV --after REV --output PATH
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "measurements" / "issue-12-structure.md"
#: The last revision before the session that worked on issue 12.
BEFORE = "3aa0b41"
#: The issue's limits.
MAX_FILE_LINES = 400
MAX_UPLOAD_FILES = 4
MAX_SENSOR_FILES = 3
PROVIDER = "airflow_capillary"
DUPLICATES_ARGS = ("--most", "40")


@dataclasses.dataclass(frozen=True)
class Step:
    """One file on a reading path.

    :param path: the file, from the repository root.
    :param functions: the functions read there, as ``name`` or ``Class.name``.
    :param does: what happens there, in a few words.
    :param chain: ``True`` when the reader must open the file to follow the path (the code that
        builds, sends or judges the request); ``False`` for a helper whose call reads plainly where
        it is made (a pool's ``map``, the retry predicate, set-up done once), opened only for a detail.
    """

    path: str
    functions: tuple[str, ...]
    does: str
    chain: bool = True


@dataclasses.dataclass(frozen=True)
class ReadingPath:
    """How a reader follows one operation at one revision.

    :param title: the operation.
    :param start: where the reader starts.
    :param steps: the files in reading order.
    :param note: what the path leaves out, if anything.
    """

    title: str
    start: str
    steps: tuple[Step, ...]
    note: str = ""


_UPLOAD = "one upload (UploadImageOperator.execute to the HTTP request and the answer check)"
_SENSOR = "one sensor check (CapillaryFileSensor.execute/poke to the storage request and the verdict)"

#: Helpers met on both revisions' upload path (``_AUTH``: before the redesign).
_POOL = Step(
    "airflow_capillary/operators/_pool.py",
    ("BoundedPool.map",),
    "the bounded thread pool",
    chain=False,
)
_RETRY = Step(
    "airflow_capillary/hooks/_retry.py",
    ("build_retrying", "is_retryable"),
    "what is retried, and the waits",
    chain=False,
)
_AUTH = Step(
    "airflow_capillary/hooks/_auth.py",
    ("CapillaryBasicAuth.__call__", "CapillaryOAuth.token"),
    "the credentials on each request",
    chain=False,
)
_RECORD = Step(
    "airflow_capillary/models.py",
    ("UploadedFile.from_response",),
    "the answer's fields as a typed record",
    chain=False,
)

#: The reading paths, keyed by the revision they describe ("before": :data:`BEFORE`, "after": the
#: redesign). Written from the code; :func:`check_path` proves every name still exists.
READING_PATHS: dict[str, tuple[ReadingPath, ...]] = {
    "before": (
        ReadingPath(
            _UPLOAD,
            "airflow_capillary/operators/upload_image.py",
            (
                Step(
                    "airflow_capillary/operators/upload_image.py",
                    ("UploadImageOperator.execute", "UploadImageOperator._upload_all"),
                    "expands and validates the batch, maps hook.upload over the pool",
                ),
                Step(
                    "airflow_capillary/hooks/file_service.py",
                    (
                        "CapillaryFileHook.upload",
                        "CapillaryFileHook._request",
                        "CapillaryFileHook._attempt",
                        "CapillaryFileHook._send",
                        "CapillaryFileHook._build_body",
                    ),
                    "upload passes two lambdas (body, check) to _request (tenacity), which passes them to "
                    "_attempt (OAuth 401 resend), which passes the body to _send (session.request)",
                ),
                Step(
                    "airflow_capillary/hooks/_body.py",
                    ("build_body", "UploadBody.read"),
                    "the streamed multipart or raw body, its size and sha256",
                ),
                Step(
                    "airflow_capillary/hooks/_answer.py",
                    ("check_upload_answer", "failure", "given_up"),
                    "judges a 2xx answer, maps other statuses, builds the final error",
                ),
                _POOL,
                _RETRY,
                _AUTH,
                _RECORD,
            ),
            "Validation before the upload (operators/_sources.py, hooks/_source.py, _validation.py) and "
            "the lazy set-up of config, session and auth (hooks/file_service.py, hooks/_config.py, "
            "hooks/_session.py) are not counted.",
        ),
        ReadingPath(
            _SENSOR,
            "airflow_capillary/sensors/file_service.py",
            (
                Step(
                    "airflow_capillary/sensors/file_service.py",
                    (
                        "CapillaryFileSensor.execute",
                        "CapillaryFileSensor._prepare",
                        "CapillaryFileSensor.poke",
                        "probe_sync",
                    ),
                    "prepares the expected files, runs probe_sync over a thread pool, applies the verdicts",
                ),
                Step(
                    "airflow_capillary/_verify.py",
                    (
                        "expected_files",
                        "request_headers",
                        "AnswerJudge.on_headers",
                        "AnswerJudge.feed",
                        "AnswerJudge.finish",
                        "judge_response",
                        "judge_body",
                    ),
                    "the records' expected files and the rules of one answer",
                ),
                Step(
                    "airflow_capillary/triggers/_state.py",
                    ("VerificationState.apply",),
                    "records the verdicts: done, waiting or failed",
                ),
                Step(
                    "airflow_capillary/triggers/file_service.py",
                    ("client_options", "httpx_client_kwargs"),
                    "the client's TLS, timeout and proxy settings (in the trigger's module)",
                    chain=False,
                ),
            ),
            "Deferrable mode adds triggers/file_service.py (CapillaryFileTrigger.run, probe_async) to "
            "the chain.",
        ),
    ),
    "after": (
        ReadingPath(
            _UPLOAD,
            "airflow_capillary/operators/upload_image.py",
            (
                Step(
                    "airflow_capillary/operators/upload_image.py",
                    ("UploadImageOperator.execute", "UploadImageOperator._upload_all"),
                    "expands, validates and (with a manifest) plans the batch, maps hook.upload over "
                    "the pool",
                ),
                Step(
                    "airflow_capillary/hooks/file_service.py",
                    (
                        "CapillaryFileHook.upload",
                        "CapillaryFileHook._upload_once",
                        "CapillaryFileHook._post_upload",
                    ),
                    "one loop 'for attempt in retrying'; one attempt (OAuth 401 resend); a fresh body "
                    "per POST",
                ),
                Step(
                    "airflow_capillary/hooks/_body.py",
                    ("upload_body", "UploadBody.read"),
                    "the streamed multipart or raw body, its size and sha256",
                ),
                Step(
                    "airflow_capillary/hooks/_session.py",
                    ("exchange",),
                    "the one request function: the rate limiter's turn, the deadline, redirects within the "
                    "origin, the bounded read",
                ),
                Step(
                    "airflow_capillary/hooks/_answer.py",
                    ("Answer.read", "check_upload_answer", "failure", "given_up"),
                    "reads the answer (at most 1 MiB), judges a 2xx, maps other statuses, builds the error",
                ),
                _POOL,
                _RETRY,
                Step(
                    "airflow_capillary/hooks/_rate_limit.py",
                    ("RateLimiter.acquire", "RateLimiter.success", "RateLimiter.pause"),
                    "the hook's rate limiter: a turn before each request, a pause on a 429",
                    chain=False,
                ),
                Step(
                    "airflow_capillary/hooks/_deadline.py",
                    ("attempt_deadline",),
                    "the watchdog that ends an attempt at its deadline",
                    chain=False,
                ),
                Step(
                    "airflow_capillary/hooks/_auth.py",
                    ("CapillaryAuth.for_request", "CapillaryOAuth.for_request", "TokenAuth.__call__"),
                    "the credentials of one attempt (an OAuth token is fetched before the request takes "
                    "its turn)",
                    chain=False,
                ),
                _RECORD,
            ),
            "Validation before the upload (operators/_expand.py, hooks/_upload_source.py, "
            "_validation.py), the manifest (operators/_manifest*.py) and the set-up done once per hook "
            "(hooks/_client.py, hooks/_config.py, the session's class in hooks/_session.py) are not "
            "counted.",
        ),
        ReadingPath(
            _SENSOR,
            "airflow_capillary/sensors/file_service.py",
            (
                Step(
                    "airflow_capillary/sensors/file_service.py",
                    (
                        "CapillaryFileSensor.execute",
                        "CapillaryFileSensor._prepare",
                        "CapillaryFileSensor.poke",
                    ),
                    "Airflow glue: prepares the state, runs one round per poke, raises or returns",
                ),
                Step(
                    "airflow_capillary/verification/rounds.py",
                    (
                        "VerificationState.run_round_sync",
                        "VerificationState.run_round",
                        "probe",
                        "request_headers",
                        "VerificationState.apply",
                    ),
                    "one round: the GET with its redirects and the bounded read, the deadline, the verdicts",
                ),
                Step(
                    "airflow_capillary/verification/rules.py",
                    ("AnswerJudge.on_headers", "AnswerJudge.feed", "AnswerJudge.finish"),
                    "the rules of one answer (no I/O)",
                ),
                Step(
                    "airflow_capillary/verification/records.py",
                    ("expected_files",),
                    "set-up: the records' expected files (unchanged ones pass through)",
                    chain=False,
                ),
                Step(
                    "airflow_capillary/verification/storage.py",
                    ("ClientSettings.from_hook", "ClientSettings.client", "OriginPolicy.redirect_refusal"),
                    "set-up: the origin policy and the client's TLS, timeout and proxy settings",
                    chain=False,
                ),
            ),
            "Deferrable mode adds triggers/file_service.py (CapillaryFileTrigger.run, _verify_all), "
            "which calls the same VerificationState.run_round.",
        ),
    ),
}


# -- reading git --------------------------------------------------------------------------------


def git(*args: str) -> str:
    """Run git in the repository and return its output.

    :param args: the arguments.
    :return: stdout.
    :raises SystemExit: git failed (its message is printed).
    """
    run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {run.stderr.strip()}")
    return run.stdout


def resolve(rev: str) -> str:
    """The short hash of a revision.

    :param rev: any revision git understands.
    :return: the abbreviated hash.
    """
    return git("rev-parse", "--short", f"{rev}^{{commit}}").strip()


def python_files(rev: str) -> list[str]:
    """Every ``.py`` file of the provider and the emulator at ``rev``.

    :param rev: the revision.
    :return: paths from the repository root, sorted.
    """
    names = git("ls-tree", "-r", "--name-only", rev, "--", PROVIDER, "emulator").splitlines()
    return sorted(n for n in names if n.endswith(".py"))


def read(rev: str, path: str) -> str:
    """The text of ``path`` at ``rev``.

    :param rev: the revision.
    :param path: the file.
    :return: its text.
    """
    return git("show", f"{rev}:{path}")


def count_lines(text: str) -> int:
    """Lines as ``wc -l`` counts them, plus a last line without a newline.

    :param text: the file's text.
    :return: the count.
    """
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def package_of(path: str) -> str:
    """The package a file belongs to, for the table.

    :param path: a path from the repository root.
    :return: e.g. ``airflow_capillary.hooks``, ``airflow_capillary`` (top-level modules) or
        ``capillary_emulator``.
    """
    parts = path.split("/")
    if parts[0] == "emulator":
        return ".".join(parts[1:-1]) or "emulator (build files)"
    return ".".join(parts[:-1])


def is_emulator(path: str) -> bool:
    """Whether a file is emulator code (inside the provider before the redesign, beside it after).

    :param path: a path from the repository root.
    :return: the answer.
    """
    return path.startswith(("emulator/", f"{PROVIDER}/emulator/"))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The files of one revision and their line counts.

    :param label: ``before`` or ``after``.
    :param rev: the short hash.
    :param lines: path -> lines.
    """

    label: str
    rev: str
    lines: dict[str, int]

    @classmethod
    def take(cls, label: str, rev: str) -> Snapshot:
        """Read the revision.

        :param label: ``before`` or ``after``.
        :param rev: the revision.
        :return: the snapshot.
        """
        return cls(label, resolve(rev), {path: count_lines(read(rev, path)) for path in python_files(rev)})

    def provider(self) -> dict[str, int]:
        """The provider's files, without emulator code."""
        return {p: n for p, n in self.lines.items() if p.startswith(f"{PROVIDER}/") and not is_emulator(p)}

    def emulator(self) -> dict[str, int]:
        """The emulator's files."""
        return {p: n for p, n in self.lines.items() if is_emulator(p)}

    def packages(self) -> dict[str, tuple[int, int]]:
        """Package -> (files, lines)."""
        out: dict[str, tuple[int, int]] = {}
        for path, n in self.lines.items():
            files, lines = out.get(package_of(path), (0, 0))
            out[package_of(path)] = (files + 1, lines + n)
        return out


# -- reading paths --------------------------------------------------------------------------------


def function_lines(source: str, path: str, rev: str) -> dict[str, int]:
    """Every function and method of a module with its length in lines.

    :param source: the module's text.
    :param path: its path (for the error message).
    :param rev: the revision (for the error message).
    :return: ``name`` or ``Class.name`` -> lines, decorators included.
    :raises SystemExit: the module does not parse.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise SystemExit(f"{path} at {rev} does not parse: {exc}") from None
    found: dict[str, int] = {}

    def visit(body: Iterable[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found[prefix + node.name] = (node.end_lineno or node.lineno) - first + 1
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


@dataclasses.dataclass(frozen=True)
class MeasuredStep:
    """A step with the lengths of its functions at one revision."""

    step: Step
    function_lines: tuple[int, ...]


def check_path(reading: ReadingPath, rev: str) -> list[MeasuredStep]:
    """Prove that every function of a reading path exists at ``rev``, and measure it.

    :param reading: the path.
    :param rev: the revision.
    :return: the steps with their functions' lengths.
    :raises SystemExit: a file or a function is missing (the description is stale).
    """
    files = set(python_files(rev))
    measured = []
    for step in reading.steps:
        if step.path not in files:
            raise SystemExit(f"{reading.title}: {step.path} does not exist at {rev}; update READING_PATHS")
        defined = function_lines(read(rev, step.path), step.path, rev)
        missing = [name for name in step.functions if name not in defined]
        if missing:
            raise SystemExit(
                f"{reading.title}: {step.path} at {rev} defines no {', '.join(missing)}; update READING_PATHS"
            )
        measured.append(MeasuredStep(step, tuple(defined[name] for name in step.functions)))
    return measured


def provider_changes(before: Snapshot, after: Snapshot) -> list[tuple[str, str, str]]:
    """The provider modules added, removed and renamed between the revisions (git's rename detection).

    :param before: the earlier revision.
    :param after: the later revision.
    :return: ``(change, path, lines)`` rows: ``added``/``removed``/``renamed from ...``, sorted by path.
    """
    rows = []
    status = git("diff", "--name-status", "-M", before.rev, after.rev, "--", PROVIDER, "emulator")
    for line in status.splitlines():
        kind, *paths = line.split("\t")
        new = paths[-1]
        if not new.endswith(".py") or is_emulator(new) or (is_emulator(paths[0]) and kind == "D"):
            continue
        if kind == "A":
            rows.append(("added", new, _k(after.lines[new])))
        elif kind == "D":
            rows.append(("removed", new, f"{_k(before.lines[new])} before"))
        elif kind.startswith("R"):
            rows.append((f"renamed from `{paths[0]}`", new, _k(after.lines[new])))
    return sorted(rows, key=lambda row: row[1])


# -- duplicates ---------------------------------------------------------------------------------


def duplicates(rev: str, *, without_emulator: bool = False) -> str:
    """Run ``duplicates --repo airflow_capillary --most 40`` over the package as committed at ``rev``.

    :param rev: the revision.
    :param without_emulator: leave ``airflow_capillary/emulator`` out (before the redesign it lived
        there).
    :return: the command's output.
    :raises SystemExit: ``duplicates`` is not on PATH.
    """
    if shutil.which("duplicates") is None:
        raise SystemExit("duplicates is not on PATH")
    archive = subprocess.run(["git", "archive", rev, PROVIDER], cwd=ROOT, capture_output=True, check=True)
    with tempfile.TemporaryDirectory(prefix="measure-structure-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        if without_emulator:
            shutil.rmtree(Path(tmp, PROVIDER, "emulator"), ignore_errors=True)
        run = subprocess.run(
            ["duplicates", "--repo", str(Path(tmp, PROVIDER)), *DUPLICATES_ARGS],
            capture_output=True,
            text=True,
            check=False,
        )
    return (run.stdout + run.stderr).strip()


# -- the document -------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _k(lines: int) -> str:
    return f"{lines:,}"


def _size(files: dict[str, int]) -> str:
    return f"{_k(sum(files.values()))} lines, {len(files)} files"


def _largest(files: dict[str, int], count: int) -> list[tuple[str, int]]:
    return sorted(files.items(), key=lambda item: (-item[1], item[0]))[:count]


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _path_section(reading: ReadingPath, measured: list[MeasuredStep], label: str) -> list[str]:
    chain = [m for m in measured if m.step.chain]
    helpers = [m for m in measured if not m.step.chain]
    out = [
        f"**{label}**: {len(chain)} files to open ({sum(map(sum, (m.function_lines for m in chain)))} "
        f"lines of the functions read), {len(measured)} with the helpers met on the way.",
        "",
    ]
    for number, m in enumerate(chain, 1):
        names = ", ".join(
            f"`{name}` ({n})" for name, n in zip(m.step.functions, m.function_lines, strict=True)
        )
        out.append(f"{number}. `{m.step.path}`: {names}: {m.step.does}.")
    if helpers:
        out += ["", "Helpers met on the way (their call reads plainly where it is made):", ""]
        for m in helpers:
            names = ", ".join(f"`{name}`" for name in m.step.functions)
            out.append(f"- `{m.step.path}`: {names}: {m.step.does}.")
    if reading.note:
        out += ["", reading.note]
    return [*out, ""]


def render(
    before: Snapshot,
    after: Snapshot,
    measured: dict[str, list[list[MeasuredStep]]],
    found: dict[str, str],
) -> str:
    """Write the document.

    :param before: the revision before the redesign.
    :param after: the revision after it.
    :param measured: ``before``/``after`` -> the measured steps of each reading path.
    :param found: ``before``, ``before-without-emulator``, ``after`` -> the output of ``duplicates``.
    :return: the Markdown text.
    """
    snaps = (before, after)
    out = [
        "# Issue 12: the structure before and after the redesign",
        "",
        f"Written by `scripts/measure_structure.py` from git (revisions `{before.rev}` and "
        f"`{after.rev}`, as committed: nothing is checked out, uncommitted work is not counted). "
        "Do not edit by hand: run `.venv/bin/python scripts/measure_structure.py` again.",
        "",
        f"- **before**: `{before.rev}`, the last revision before the session that worked on the redesign.",
        f"- **after**: `{after.rev}`.",
        "",
        "Lines are lines of the `.py` files, as `wc -l` counts them (docstrings and comments included).",
        "",
        "## Summary against the issue's targets",
        "",
    ]
    upload = {label: [m for m in measured[label][0] if m.step.chain] for label in measured}
    sensor = {label: [m for m in measured[label][1] if m.step.chain] for label in measured}
    over = {s.label: [(p, n) for p, n in s.provider().items() if n > MAX_FILE_LINES] for s in snaps}
    largest = {s.label: _largest(s.provider(), 1)[0] for s in snaps}
    dup_count = _duplicate_pairs(found["after"])
    wheel = {
        snap.label: {p: n for p, n in snap.lines.items() if p.startswith(f"{PROVIDER}/")} for snap in snaps
    }
    emulator_split = _verdict(not any(p.startswith(f"{PROVIDER}/") for p in after.emulator()))
    rows = [
        (
            "provider package (without the emulator)",
            _size(before.provider()),
            _size(after.provider()),
            "",
            "",
        ),
        (
            "Python code in the provider wheel (`airflow_capillary/`)",
            f"{_size(wheel['before'])} (the emulator included)",
            _size(wheel["after"]),
            "no emulator code",
            emulator_split,
        ),
        (
            "emulator",
            f"{_size(before.emulator())}, inside the provider package",
            f"{_size(after.emulator())}, its own distribution",
            "its own distribution",
            emulator_split,
        ),
        (
            "largest provider file",
            f"`{largest['before'][0]}` ({largest['before'][1]})",
            f"`{largest['after'][0]}` ({largest['after'][1]})",
            f"no provider file over {MAX_FILE_LINES} lines",
            _verdict(not over["after"]),
        ),
        (
            f"provider files over {MAX_FILE_LINES} lines",
            ", ".join(f"`{p}` ({n})" for p, n in over["before"]) or "none",
            ", ".join(f"`{p}` ({n})" for p, n in over["after"]) or "none",
            "none",
            _verdict(not over["after"]),
        ),
        (
            "files to open to follow one upload",
            len(upload["before"]),
            len(upload["after"]),
            f"at most {MAX_UPLOAD_FILES}",
            _verdict(len(upload["after"]) <= MAX_UPLOAD_FILES),
        ),
        (
            "files to open to follow one sensor check",
            len(sensor["before"]),
            len(sensor["after"]),
            f"at most {MAX_SENSOR_FILES}",
            _verdict(len(sensor["after"]) <= MAX_SENSOR_FILES),
        ),
        (
            "`duplicates` in the provider package",
            f"{_duplicate_pairs(found['before'])} pairs",
            f"{dup_count} pairs",
            "nothing listed",
            _verdict(dup_count == 0),
        ),
    ]
    out += _table(("", f"before `{before.rev}`", f"after `{after.rev}`", "target", "verdict"), rows)
    out += ["", "## Lines and files per package", ""]
    packages = {s.label: s.packages() for s in snaps}
    names = sorted(set(packages["before"]) | set(packages["after"]))
    out += _table(
        ("package", "files before", "lines before", "files after", "lines after"),
        (
            (
                f"`{name}`",
                packages["before"].get(name, (0, 0))[0] or "",
                _k(packages["before"][name][1]) if name in packages["before"] else "",
                packages["after"].get(name, (0, 0))[0] or "",
                _k(packages["after"][name][1]) if name in packages["after"] else "",
            )
            for name in names
        ),
    )
    out += [""]
    out += _table(
        ("total", "files before", "lines before", "files after", "lines after"),
        [
            (
                "provider (without the emulator)",
                len(before.provider()),
                _k(sum(before.provider().values())),
                len(after.provider()),
                _k(sum(after.provider().values())),
            ),
            (
                "emulator",
                len(before.emulator()),
                _k(sum(before.emulator().values())),
                len(after.emulator()),
                _k(sum(after.emulator().values())),
            ),
        ],
    )
    out += [
        "",
        "The provider modules added, removed or renamed between the two revisions (git's rename "
        "detection; a module changed in place is not listed):",
        "",
    ]
    out += _table(
        ("module", "change", "lines"), ((f"`{p}`", c, n) for c, p, n in provider_changes(before, after))
    )
    out += ["", "## The largest files", ""]
    for snap in snaps:
        out += [f"**{snap.label}** (`{snap.rev}`), provider:", ""]
        out += _table(("file", "lines"), ((f"`{p}`", n) for p, n in _largest(snap.provider(), 10)))
        out += ["", f"**{snap.label}** (`{snap.rev}`), emulator:", ""]
        out += _table(("file", "lines"), ((f"`{p}`", n) for p, n in _largest(snap.emulator(), 5)))
        out += [""]
    out += [
        "## The files a reader opens",
        "",
        "Counted: the files whose code builds, sends or judges the request, which a reader must open "
        "to follow the path. Listed but not counted: helpers whose call says what it does where it "
        "is made (a pool's `map`, the retry policy, the credentials, the record's constructor), and "
        "set-up done once. The numbers in brackets are the lines of each function read.",
        "",
    ]
    for index in (0, 1):
        title = READING_PATHS["before"][index].title
        out += [f"### {title[0].upper()}{title[1:]}", ""]
        for snap in snaps:
            reading = READING_PATHS[snap.label][index]
            out += _path_section(reading, measured[snap.label][index], f"{snap.label} (`{snap.rev}`)")
    out += ["## `duplicates --repo airflow_capillary --most 40`", ""]
    out += [
        "Over the package as committed at each revision (exported with `git archive`). Before the "
        "redesign the package held the emulator, so it is shown with it and without it.",
        "",
    ]
    for label, title in (
        ("before", f"before (`{before.rev}`), the package as it was (emulator included)"),
        ("before-without-emulator", f"before (`{before.rev}`), without `airflow_capillary/emulator`"),
        ("after", f"after (`{after.rev}`)"),
    ):
        out += [f"**{title}**:", "", "```", found[label], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _duplicate_pairs(output: str) -> int:
    first = output.splitlines()[0] if output else ""
    if first.startswith("no duplicates"):
        return 0
    head = first.split(" ", 1)[0]
    return int(head) if head.isdigit() else -1


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both revisions and write the document.

    :param argv: the command line.
    :return: the exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", default=BEFORE, help=f"the revision before (default {BEFORE})")
    parser.add_argument("--after", default="HEAD", help="the revision after (default HEAD)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the document")
    args = parser.parse_args(argv)
    before = Snapshot.take("before", args.before)
    after = Snapshot.take("after", args.after)
    measured = {
        snap.label: [check_path(reading, snap.rev) for reading in READING_PATHS[snap.label]]
        for snap in (before, after)
    }
    found = {
        "before": duplicates(before.rev),
        "before-without-emulator": duplicates(before.rev, without_emulator=True),
        "after": duplicates(after.rev),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(before, after, measured, found))
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
