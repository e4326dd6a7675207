"""``make mutation``: run mutmut over the provider and write MUTATION.md.

``python scripts/mutation_report.py run [--full]`` (what ``make mutation`` calls):

1. drops what a previous run left that no longer matches the tree: ``mutants/tests`` (mutmut
   copies ``tests/`` over it, so a deleted test file would live on there) and the mutated copies
   of modules that were deleted or moved;
2. marks the survivors of the previous run as untested, so the tests written since are tried on
   them (mutmut itself only re-tests mutants of functions whose code changed), and drops mutmut's
   map of which tests call which function, so that it is made again for today's code and tests
   (one pass of the test selection; the results themselves are kept);
3. runs ``mutmut run --max-children N`` (``--workers``, default 1: the machine is shared). mutmut keeps a
   result per mutant in ``mutants/`` and a hash per function, so a second run tests only the
   mutants of new or changed functions and the survivors from step 2: minutes, not an hour.
   ``--full`` deletes ``mutants/`` first, for a run from scratch;
4. records at which revision each result was measured (``mutants/mutation-revisions.json``) and
   how long the run took (``mutants/mutation-history.json``), then writes MUTATION.md.

``python scripts/mutation_report.py report`` only rewrites MUTATION.md from ``mutants/``.

Survivors that no test can kill are listed with a reason in ``tests/mutation_equivalents.txt``
(the format is described at its top); MUTATION.md lists them, and every other survivor as
unexplained.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
PACKAGE = "airflow_capillary"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.txt"
REVISIONS = MUTANTS / "mutation-revisions.json"
HISTORY = MUTANTS / "mutation-history.json"
REPORT = ROOT / "MUTATION.md"
MUTMUT = Path(sys.executable).with_name("mutmut")
#: Statuses tried again on every run: new tests may kill them. Timeouts are not (each costs its
#: timeout again); they count as detected.
RETEST = frozenset({"survived", "no tests", "suspicious", "not checked", "check was interrupted by user"})
DETECTED = frozenset({"killed", "timeout", "caught by type check"})
COLUMNS = ("mutants", "killed", "timeout", "survived", "no tests", "other", "equivalent", "unexplained")


@dataclass(frozen=True)
class Equivalent:
    """One entry of ``tests/mutation_equivalents.txt``.

    :param function: the mutated function, dotted (``airflow_capillary.models.UploadedFile.from_dict``).
    :param added: the lines the mutant writes, stripped (what ``mutmut show`` prints after ``+``).
    :param why: one line saying why no test can tell the mutant from the original.
    :param line: line number of the entry in the file, for messages.
    """

    function: str
    added: tuple[str, ...]
    why: str
    line: int


@dataclass
class Mutant:
    """One mutant and its last result.

    :param name: mutmut's name (``airflow_capillary.models.xǁUploadedFileǁto_dict__mutmut_7``).
    :param path: the mutated module, relative to the repository root.
    :param status: mutmut's status word (``killed``, ``survived``, ``timeout``, ``no tests``...).
    :param revision: the revision the result was measured at (``?`` when not recorded).
    :param equivalent: the entry explaining this survivor, if any.
    :param added: the lines the mutant writes (filled in for survivors only).
    """

    name: str
    path: str
    status: str
    revision: str = "?"
    equivalent: Equivalent | None = None
    added: tuple[str, ...] = field(default=())

    @property
    def function(self) -> str:
        """The mutated function, dotted and unmangled (``airflow_capillary.models.UploadedFile.to_dict``)."""
        return readable_function(self.name)


def readable_function(mutant_name: str) -> str:
    """Turn mutmut's mangled name into a dotted function name.

    :param mutant_name: e.g. ``airflow_capillary.models.xǁUploadedFileǁto_dict__mutmut_7`` or
        ``airflow_capillary.models.x__int__mutmut_3``.
    :return: e.g. ``airflow_capillary.models.UploadedFile.to_dict`` or ``airflow_capillary.models._int``.
    """
    mangled = mutant_name.rsplit("__mutmut_", 1)[0]
    module, _, function = mangled.rpartition(".")
    if function.startswith("xǁ"):
        _, class_name, method = function.split("ǁ", 2)
        function = f"{class_name}.{method}"
    elif function.startswith("x_"):
        function = function[2:]
    return f"{module}.{function}"


def read_equivalents(path: Path = EQUIVALENTS) -> list[Equivalent]:
    """Parse the equivalents file: blocks of a function line, ``+ line`` lines and a ``why:`` line.

    :param path: the file.
    :return: the entries in file order.
    :raises ValueError: a block is malformed (the message names the line).
    """
    entries: list[Equivalent] = []
    function: str | None = None
    added: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("+"):
            if function is None:
                raise ValueError(f"{path.name}:{number}: '+' line before a function line")
            added.append(text[1:].strip())
        elif text.startswith("why:"):
            why = text[len("why:") :].strip()
            if function is None or not added or not why:
                raise ValueError(f"{path.name}:{number}: 'why:' needs a function, '+' lines and a reason")
            entries.append(Equivalent(function, tuple(added), why, start))
            function, added = None, []
        else:
            if function is not None:
                raise ValueError(f"{path.name}:{start}: entry for {function} has no 'why:' line")
            if not text.startswith(f"{PACKAGE}."):
                raise ValueError(
                    f"{path.name}:{number}: expected a dotted function in {PACKAGE}, got {text!r}"
                )
            function, start = text, number
    if function is not None:
        raise ValueError(f"{path.name}:{start}: entry for {function} has no 'why:' line")
    return entries


def added_lines(name: str, path: str) -> tuple[str, ...]:
    """The lines a mutant writes, stripped, from mutmut's diff of it.

    :param name: the mutant.
    :param path: its module, relative to the repository root.
    :return: the ``+`` lines of the diff without the ``+`` and surrounding blanks.
    """
    diff = get_diff_for_mutant(name, path=path)
    return tuple(
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    )


def load_mutants() -> dict[str, Mutant]:
    """Read every mutant's last result from ``mutants/`` (modules mutmut mutates today only).

    :return: mutants by name, in module and name order.
    """

    revisions = _read_json(REVISIONS)
    found: dict[str, Mutant] = {}
    for data in _results_by_module():
        for name in sorted(data.exit_code_by_key, key=_name_order):
            code = data.exit_code_by_key[name]
            found[name] = Mutant(name, str(data.path), status_by_exit_code[code], revisions.get(name, "?"))
    return found


def _results_by_module() -> Iterator[SourceFileMutationData]:
    """mutmut's stored results of each module it mutates today, in path order."""
    for path in sorted(walk_mutatable_files()):
        data = SourceFileMutationData(path=path)
        data.load()
        yield data


def _name_order(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


def result_fingerprints() -> dict[str, tuple[int | None, float | None]]:
    """Each mutant's (exit code, duration): a changed pair means mutmut tested it again.

    :return: the pairs by mutant name.
    """

    pairs: dict[str, tuple[int | None, float | None]] = {}
    for data in _results_by_module():
        for name, code in data.exit_code_by_key.items():
            pairs[name] = (code, data.durations_by_key.get(name))
    return pairs


def prune_stale_copies() -> list[str]:
    """Remove ``mutants/tests`` and mutated copies of modules that no longer exist.

    :return: the removed paths, relative to ``mutants/``.
    """
    removed: list[str] = []
    if (MUTANTS / "tests").exists():
        shutil.rmtree(MUTANTS / "tests")
        removed.append("tests/")
    copies = MUTANTS / PACKAGE
    if copies.is_dir():
        for copy in sorted(copies.rglob("*")):
            if not copy.is_file():
                continue
            relative = copy.relative_to(MUTANTS)
            source = str(relative)
            for suffix in (".meta", ".spans"):
                source = source.removesuffix(suffix)
            if not (ROOT / source).exists():
                copy.unlink()
                removed.append(str(relative))
    return removed


def mark_for_retest() -> int:
    """Set the result of every mutant in :data:`RETEST` back to untested.

    :return: how many were reset.
    """

    count = 0
    for data in _results_by_module():
        reset = [n for n, code in data.exit_code_by_key.items() if status_by_exit_code[code] in RETEST]
        if not reset:
            continue
        for name in reset:
            data.exit_code_by_key[name] = None
        data.save()
        count += len(reset)
    return count


def git(*args: str) -> str:
    """Run git in the repository and return its output, stripped ("" when git fails).

    :param args: git's arguments.
    :return: stdout.
    """
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def current_revision() -> str:
    """The short HEAD, with ``+dirty`` when the package, the tests or the config differ from it.

    :return: e.g. ``2ba42fd`` or ``2ba42fd+dirty``.
    """
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", PACKAGE, "tests", "pyproject.toml")
    return f"{head}+dirty" if dirty else head


def run(*, full: bool, workers: int = 1) -> int:
    """Steps 1-4 of the module docstring.

    :param full: delete ``mutants/`` first.
    :param workers: mutmut's parallel test processes.
    :return: mutmut's exit code (MUTATION.md is written only when it is 0).
    """
    os.chdir(ROOT)
    if full and MUTANTS.exists():
        shutil.rmtree(MUTANTS)
    MUTANTS.mkdir(exist_ok=True)
    fresh = not any(MUTANTS.rglob("*.meta"))
    # mutmut maps each function to the tests that call it once, and afterwards only adds the tests
    # that are new: code that moved or gained callers would keep the old map and show "no tests".
    # Without its stats file mutmut maps again (one pass of the selection) and keeps every result.
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    for removed in prune_stale_copies():
        print(f"mutation: removed stale mutants/{removed}")
    print(f"mutation: {mark_for_retest()} mutants the last run did not kill will be tried again")
    before = result_fingerprints()
    revision = current_revision()
    started = time.monotonic()
    cpu_before = _children_cpu_seconds()
    command = [str(MUTMUT), "run", "--max-children", str(workers)]
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    seconds = round(time.monotonic() - started)
    cpu_seconds = round(_children_cpu_seconds() - cpu_before)
    if code != 0:
        print(f"mutation: mutmut failed (exit {code}); MUTATION.md not rewritten", file=sys.stderr)
        return code
    after = result_fingerprints()
    revisions = _read_json(REVISIONS)
    # A result that is still None was reset for a retest but not reached (an interrupted run).
    tested = [
        name
        for name, pair in after.items()
        if pair[0] is not None and (before.get(name) != pair or name not in revisions)
    ]
    for name, pair in after.items():
        if pair[0] is None:
            revisions.pop(name, None)
    revisions.update(dict.fromkeys(tested, revision))
    _write_json(REVISIONS, {name: revisions[name] for name in sorted(after) if name in revisions})
    history = _read_json(HISTORY)
    entry = {
        "revision": revision,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "tested": len(tested),
        "mutants": len(after),
        "full": fresh,
        "workers": workers,
    }
    history.setdefault("runs", []).append(entry)
    if fresh:
        history["full_run"] = entry
    _write_json(HISTORY, history)
    write_report()
    return 0


def _workers(run: dict[str, Any]) -> str:
    workers = int(run.get("workers", 1))
    return "one worker" if workers == 1 else f"{workers} workers"


def write_report() -> Path:
    """Write MUTATION.md from ``mutants/`` and the equivalents file.

    :return: the path written.
    """
    os.chdir(ROOT)
    mutants = load_mutants()
    equivalents = read_equivalents() if EQUIVALENTS.exists() else []
    used: set[Equivalent] = set()
    for mutant in mutants.values():
        if mutant.status != "survived":
            continue
        mutant.added = added_lines(mutant.name, mutant.path)
        for entry in equivalents:
            # One entry explains one mutant: two mutants of a function may write the same line
            # (``break`` for two ``continue``), and only one of them need be equivalent.
            if entry not in used and entry.function == mutant.function and entry.added == mutant.added:
                mutant.equivalent = entry
                used.add(entry)
                break
    history = _read_json(HISTORY)
    REPORT.write_text(render(mutants, [e for e in equivalents if e not in used], history), encoding="utf-8")
    return REPORT


def render(mutants: dict[str, Mutant], stale: list[Equivalent], history: dict[str, Any]) -> str:
    """The text of MUTATION.md.

    :param mutants: every mutant with its result.
    :param stale: equivalents that matched no survivor (their code changed or a test kills them).
    :param history: ``mutants/mutation-history.json``.
    :return: Markdown.
    """
    by_module: dict[str, list[Mutant]] = {}
    for mutant in mutants.values():
        by_module.setdefault(mutant.path, []).append(mutant)
    runs = history.get("runs", [])
    last = runs[-1] if runs else {}
    full = history.get("full_run", {})
    lines = [
        "# Mutation testing",
        "",
        "Written by `make mutation` (`scripts/mutation_report.py`); do not edit by hand.",
        "",
        f"- Date: {last.get('date', '?')}",
        f"- Revision: {last.get('revision', '?')} (`git log -1 {last.get('revision', '?').split('+')[0]}`)",
        f"- Tool: mutmut {version('mutmut')}, {_workers(last)}, over `{PACKAGE}/` except "
        '`get_provider_info.py` (a literal dict); tests: `tests -m "not integration and not e2e and '
        'not bench"` without `tests/emulator`, `tests/integration`, `tests/e2e`, `tests/bench`, '
        "`tests/release` (`[tool.mutmut]` in pyproject.toml).",
        f"- This run: {last.get('tested', '?')} of {last.get('mutants', '?')} mutants tested in "
        f"{_timing(last)}; every other result is carried over from the revision in "
        "the table's last column (mutmut re-tests a function's mutants when its code changes, and "
        "this script re-tests every survivor on each run).",
        *([f"- Interrupted: {last['interrupted']}"] if last.get("interrupted") else []),
        f"- Last run from scratch (`make mutation MUTATION_FULL=1`): {full.get('mutants', '?')} mutants "
        f"at {full.get('revision', '?')} on {full.get('date', '?')}, {_timing(full)}.",
        "",
        "Score = (killed + timed out) / (mutants - equivalent). A timeout counts as detected: the "
        "mutant made a test hang. `no tests`: no test of the selection runs the function; `other`: "
        "not run (an interrupted run) or a crash. Survived, no tests and other are each either "
        "equivalent or unexplained.",
        "",
        "| module | mutants | killed | timed out | survived | no tests | other | equivalent "
        "| unexplained | score | measured at |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    total: Counter[str] = Counter()
    for path, group in sorted(by_module.items()):
        counts = _counts(group)
        total.update(counts)
        revisions = Counter(m.revision for m in group)
        measured = ", ".join(
            f"{rev} ({n})" if len(revisions) > 1 else rev for rev, n in revisions.most_common()
        )
        lines.append(_row(f"`{path}`", counts, measured))
    lines.append(_row("**all**", total, ""))
    lines.append("")
    lines.append(
        f"**Score: {_score(total)}** over {total['mutants']} mutants "
        f"({total['unexplained']} unexplained survivors)."
    )
    equivalents = [m for m in mutants.values() if m.equivalent is not None]
    lines += ["", f"## Equivalent mutants ({len(equivalents)})", ""]
    lines += [
        "Listed with their reason in `tests/mutation_equivalents.txt`; `mutmut show NAME` prints the diff.",
        "",
    ]
    for mutant in equivalents:
        assert mutant.equivalent is not None
        lines.append(f"- `{mutant.name}`: `{' / '.join(mutant.added)}`: {mutant.equivalent.why}")
    unexplained = [m for m in mutants.values() if m.status not in DETECTED and m.equivalent is None]
    lines += ["", f"## Unexplained survivors ({len(unexplained)})", ""]
    if not unexplained:
        lines.append("None.")
    for mutant in unexplained:
        added = " / ".join(mutant.added) if mutant.added else ""
        lines.append(f"- `{mutant.name}` ({mutant.status})" + (f": `{added}`" if added else ""))
    lines += ["", "## How to run", ""]
    lines += [
        "- `make mutation`: incremental. mutmut keeps each result in `mutants/` with a hash of its "
        "function; the run tests the mutants of new or changed functions and every survivor and "
        "untested mutant of the last run (new tests may kill them), and carries the other results "
        "over.",
        "- `make mutation MUTATION_FULL=1`: from scratch (deletes `mutants/`).",
        "- `.venv/bin/mutmut show NAME` prints a mutant's diff; `.venv/bin/mutmut apply NAME` writes "
        "it into the source tree (undo with git).",
        "- A survivor is either killed by a new test (`tests/<area>/test_<module>_mutants.py`, through "
        "public behaviour) or, when no test can tell it from the original, added to "
        "`tests/mutation_equivalents.txt` with one line saying why.",
        "- Limit: a killed mutant is tested again only when its function changes, not when a test "
        "changes; after weakening a test, run from scratch.",
    ]
    if stale:
        lines += ["", f"## Stale entries in tests/mutation_equivalents.txt ({len(stale)})", ""]
        lines.append("They match no survivor any more (the code changed, or a test now kills the mutant).")
        lines.append("")
        lines += [f"- line {e.line}: `{e.function}`: `{' / '.join(e.added)}`" for e in stale]
    return "\n".join(lines) + "\n"


def _counts(group: list[Mutant]) -> Counter[str]:
    counts: Counter[str] = Counter(mutants=len(group))
    for mutant in group:
        if mutant.status in DETECTED:
            counts["killed" if mutant.status != "timeout" else "timeout"] += 1
        elif mutant.equivalent is not None:
            counts["survived"] += 1
            counts["equivalent"] += 1
        else:
            counts[mutant.status if mutant.status in ("survived", "no tests") else "other"] += 1
            counts["unexplained"] += 1
    return counts


def _score(counts: Counter[str]) -> str:
    judged = counts["mutants"] - counts["equivalent"]
    return f"{100 * (counts['killed'] + counts['timeout']) / judged:.1f}%" if judged else "n/a"


def _row(label: str, counts: Counter[str], measured: str) -> str:
    cells = [str(counts[key]) for key in COLUMNS]
    return f"| {label} | {' | '.join(cells)} | {_score(counts)} | {measured} |"


def _children_cpu_seconds() -> float:
    """CPU time (user + system) of the waited-for children so far: mutmut and every mutant it forked."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timing(run: dict[str, Any]) -> str:
    """``12 min 3 s (CPU 8 min 1 s)``: wall clock on a shared machine, and the CPU the run used."""
    return f"{_duration(run.get('seconds'))} (CPU {_duration(run.get('cpu_seconds'))})"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int):
        return "?"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``run [--full]`` or ``report``.

    :param argv: arguments (``sys.argv[1:]`` by default).
    :return: the exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run mutmut (incrementally) and write MUTATION.md")
    run_parser.add_argument("--full", action="store_true", help="delete mutants/ first: a run from scratch")
    run_parser.add_argument("--workers", type=int, default=1, help="parallel test processes (default: 1)")
    commands.add_parser("report", help="only rewrite MUTATION.md from mutants/")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(full=args.full, workers=args.workers)
    print(f"wrote {write_report().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
