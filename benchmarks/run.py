"""Run the benchmarks and rewrite BENCHMARKS.md and the headline block of README.md.

Usage (``make bench`` runs the first form)::

    .venv/bin/python benchmarks/run.py [--quick] [--cases 1,2,...] [--repeats N] [--keep] [--at REV]

``--quick`` runs smaller sizes and fewer rounds (a few minutes); ``--cases`` runs only some cases
and keeps the stored results of the others (``benchmarks/results.json``), each dated;
``--at REV`` measures the committed tree of a revision (exported with ``git archive``) instead of
the working tree, so that no uncommitted change is measured; ``--render`` runs nothing and
rewrites the report from the stored results and ``benchmarks/analysis.md``. Every figure of
BENCHMARKS.md and of README.md's block between :data:`report.README_START` and
:data:`report.README_END` comes from the stored results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a script: the provider and the emulator of this tree first
    sys.path[0:1] = [str(REPO_ROOT), str(REPO_ROOT / "emulator")]

from benchmarks import report  # noqa: E402
from benchmarks.cases import CASES, size_of  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    GIT_REPO_ENV,
    CaseResult,
    ForeignCpu,
    load_average,
    machine_info,
    workspace,
)

DEFAULT_OUTPUT = REPO_ROOT / "BENCHMARKS.md"
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results.json"
DEFAULT_README = REPO_ROOT / "README.md"
#: Most of the machine's CPU that other processes may use while a case runs for its result to be
#: stored (this machine is shared: above it, the figures measure the neighbours).
MAX_FOREIGN_CPU = 0.10
#: What limits the results and what was tried (prose without figures: the figures are generated),
#: included in the report when present.
ANALYSIS = REPO_ROOT / "benchmarks" / "analysis.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line.

    :param argv: arguments without the program name.
    :return: the options.
    """
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--size", choices=("full", "quick", "tiny"), help=argparse.SUPPRESS)
    parser.add_argument("--cases", default="", help="comma-separated case numbers (default: all)")
    parser.add_argument("--repeats", type=int, help="override the number of rounds of every case")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown report to rewrite")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="stored results (JSON)")
    parser.add_argument(
        "--readme", type=Path, default=DEFAULT_README, help="README whose headline block is rewritten"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories")
    parser.add_argument(
        "--render", action="store_true", help="run nothing: rewrite the report from the stored results"
    )
    parser.add_argument("--at", metavar="REV", help="measure the committed tree of REV, not the working tree")
    parser.add_argument(
        "--accept-load",
        action="store_true",
        help=f"store cases during which other processes used more than {MAX_FOREIGN_CPU:.0%} of the CPU",
    )
    # Set by --at for the run inside the exported tree: what to record as revision and command.
    parser.add_argument("--revision", help=argparse.SUPPRESS)
    parser.add_argument("--recorded-command", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def selected_cases(text: str) -> list[int]:
    """Return the case numbers of ``--cases``.

    :param text: e.g. ``"1,3"``; empty for all.
    :return: the numbers, in order.
    :raises SystemExit: for an unknown case.
    """
    if not text.strip():
        return sorted(CASES)
    numbers = sorted({int(part) for part in text.split(",") if part.strip()})
    unknown = [n for n in numbers if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose among {sorted(CASES)}")
    return numbers


def run_cases(
    numbers: list[int], *, mode: str, repeats: int | None = None, keep: bool = False
) -> list[CaseResult]:
    """Run cases one after another; a failing case is recorded with its error, the others still run.

    :param numbers: case numbers.
    :param mode: ``full``, ``quick`` or ``tiny``.
    :param repeats: override of every case's rounds.
    :param keep: keep the scratch directories.
    :return: one result per case.
    """
    results = []
    for number in numbers:
        module = CASES[number]
        size = size_of(number, mode, repeats)
        print(f"case {number}: {module.TITLE} ({mode}: {size})", flush=True)
        started = time.perf_counter()
        foreign = ForeignCpu()
        with workspace(f"case{number}", keep=keep) as workdir:
            try:
                result = module.run(size, workdir)
            except Exception:
                result = CaseResult(
                    number=number, title=module.TITLE, params=size, error=traceback.format_exc()
                )
        result.seconds = time.perf_counter() - started
        if mode != "tiny" and not size.get("inline"):  # a tiny run's figures mean nothing anyway
            result.foreign_cpu = foreign.share()
        for verdict in result.verdicts:
            print(f"  {verdict.label}: {verdict.target}: {verdict.detail}", flush=True)
        if result.error:
            print(f"  FAILED:\n{result.error}", flush=True)
        others = (
            ""
            if result.foreign_cpu is None
            else f"; other processes used {result.foreign_cpu:.0%} of the CPU"
        )
        print(f"  ({result.seconds:.0f} s{others})", flush=True)
        results.append(result)
    return results


def revision() -> str:
    """Return the commit measured, and the provider files changed in the working tree, if any.

    :return: e.g. ``0a03938`` or ``0a03938 + uncommitted changes to airflow_capillary/models.py``.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "airflow_capillary"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def export_revision(rev: str, destination: Path) -> str:
    """Write the committed tree of ``rev`` into ``destination`` (``git archive``, no checkout touched).

    :param rev: a revision git understands (``HEAD``, a hash, a tag).
    :param destination: an empty directory.
    :return: the abbreviated commit hash.
    :raises SystemExit: when ``rev`` is not a commit of this repository.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "--verify", f"{rev}^{{commit}}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = destination / "tree.tar"
        subprocess.run(
            ["git", "archive", "--format=tar", "-o", str(archive), commit], cwd=REPO_ROOT, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"--at {rev}: not a commit of {REPO_ROOT}: {exc}") from exc
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    archive.unlink()
    return commit


def run_at(rev: str, args_list: list[str], args: argparse.Namespace) -> int:
    """Run the benchmarks of the committed tree of ``rev``, writing this checkout's report files.

    The exported tree's own ``benchmarks/run.py`` runs with the exported provider and emulator first
    on the import path (ahead of the editable installs of this checkout).

    :param rev: the revision.
    :param args_list: the command line given (recorded in the results).
    :param args: the parsed options.
    :return: the exit code of the run.
    """
    with tempfile.TemporaryDirectory(prefix="capillary-bench-tree-") as tree:
        commit = export_revision(rev, Path(tree))
        forwarded = _without_at(args_list)
        command = [
            sys.executable,
            str(Path(tree) / "benchmarks" / "run.py"),
            *forwarded,
            "--output",
            str(args.output.resolve()),
            "--results",
            str(args.results.resolve()),
            "--readme",
            str(args.readme.resolve()),
            "--revision",
            commit,
            "--recorded-command",
            _shown_command(args_list),
        ]
        print(f"measuring {commit} exported to {tree}", flush=True)
        env = {**os.environ, "PYTHONPATH": "", GIT_REPO_ENV: str(REPO_ROOT)}
        return subprocess.run(command, cwd=tree, env=env, check=False).returncode


def _without_at(args_list: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args_list:
        if skip:
            skip = False
        elif arg == "--at":
            skip = True
        elif not arg.startswith("--at="):
            kept.append(arg)
    return kept


def _shown_command(args_list: list[str]) -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
    return " ".join([str(shown), "benchmarks/run.py", *args_list])


def write_reports(document: dict[str, Any], args: argparse.Namespace, analysis: str) -> None:
    """Rewrite the markdown report and the README's headline block from the stored results.

    :param document: the stored results.
    :param args: the options (``output``, ``readme``).
    :param analysis: the analysis prose.
    :raises SystemExit: when a stored figure is impossible (:func:`report.problems`): nothing is written.
    """
    impossible = report.problems(document)
    if impossible:
        raise SystemExit("refusing to write a report with impossible figures:\n- " + "\n- ".join(impossible))
    args.output.write_text(report.render(document, analysis))
    readme = args.readme.read_text()
    args.readme.write_text(report.replace_readme_block(readme, report.headline(document), str(args.readme)))


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and rewrite the report.

    :param argv: arguments (default ``sys.argv[1:]``).
    :return: 0, or 1 when a case failed to run (unmet targets are reported, not failures).
    """
    args_list = sys.argv[1:] if argv is None else argv
    args = parse_args(args_list)
    if args.at:
        return run_at(args.at, args_list, args)
    analysis = ANALYSIS.read_text() if ANALYSIS.exists() else ""
    if args.render:
        write_reports(report.load_results(args.results), args, analysis)
        print(f"wrote {args.output} and the headline of {args.readme} from {args.results}", flush=True)
        return 0
    mode = args.size or ("quick" if args.quick else "full")
    numbers = selected_cases(args.cases)
    load_before = load_average()
    measured = args.revision or revision()
    results = run_cases(numbers, mode=mode, repeats=args.repeats, keep=args.keep)
    run = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.recorded_command or _shown_command(args_list),
        "mode": mode,
        "revision": measured,
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": load_average(),
    }
    kept, refused = screen(results, accept_load=args.accept_load)
    for number, why in refused:
        print(f"case {number} not stored ({why}); the stored result, if any, is kept", flush=True)
    document = report.merge_results(report.load_results(args.results), kept, run)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    write_reports(document, args, analysis)
    print(f"wrote {args.output}, {args.results} and the headline of {args.readme}", flush=True)
    return 1 if refused or any(result.error for result in results) else 0


def screen(
    results: list[CaseResult], *, accept_load: bool = False
) -> tuple[list[CaseResult], list[tuple[int, str]]]:
    """Split fresh results into those to store and those refused, with the reason.

    A result is refused when its figures are impossible (:func:`report.implausible`: noise, not a
    property of the code) or when other processes used more than :data:`MAX_FOREIGN_CPU` of the
    machine while it ran (unless ``accept_load``): publishing either would replace a quiet
    measurement with one the load made up.

    :param results: the cases just run.
    :param accept_load: store results measured under load too (the report shows the load).
    :return: the results to store, and (case number, reason) of the others.
    """
    kept: list[CaseResult] = []
    refused: list[tuple[int, str]] = []
    for result in results:
        problems = report.implausible(json.loads(json.dumps(result.to_dict())))
        if problems:
            refused.append((result.number, "impossible figures: " + "; ".join(problems)))
        elif result.foreign_cpu is not None and result.foreign_cpu > MAX_FOREIGN_CPU and not accept_load:
            refused.append(
                (
                    result.number,
                    f"other processes used {result.foreign_cpu:.0%} of the CPU while it ran "
                    f"(at most {MAX_FOREIGN_CPU:.0%}; --accept-load stores it anyway)",
                )
            )
        else:
            kept.append(result)
    return kept, refused


if __name__ == "__main__":
    sys.exit(main())
