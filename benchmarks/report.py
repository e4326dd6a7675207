"""Writer of BENCHMARKS.md and of README.md's headline block from the stored results of each case.

``benchmarks/results.json`` keeps the latest result of every case with the date, command, mode,
revision and load of its run, so that ``run.py --cases 2`` refreshes case 2 without dropping the
others; the report says when and how each case was measured. No figure is typed by hand: the
report's and the README's numbers are formatted here from the stored results (each case module's
``headline`` function words its own).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from benchmarks.cases import CASES
from benchmarks.harness import CaseResult, Table, Verdict

#: The README's block that :func:`replace_readme_block` rewrites lies between these lines.
README_START = "<!-- bench:headline:start -->"
README_END = "<!-- bench:headline:end -->"

HEADER = """# Benchmarks

Written by `benchmarks/run.py` (`make bench`); do not edit by hand. Every case compares the
provider with its baselines **in the same run, on the same machine**, variants interleaved round by
round, and reports ratios: this machine is shared and noisy, so absolute times drift between runs
while ratios hold. Medians of repeated runs, with the spread (min-max). Everything runs on
loopback against the local emulator (`python -m capillary_emulator`), each client in its
own process, the emulator in another. `make test` runs every case at a tiny size
(`tests/bench/test_bench_tiny.py`) so that none of them rots; those runs assert the shape of the
results and fail on a real regression of what each case measures (counted, never timed).
"""


def load_results(path: Path) -> dict[str, Any]:
    """Return the stored results (``{"cases": {}}`` when there are none).

    :param path: the JSON file.
    :return: the stored document.
    """
    if not path.exists():
        return {"cases": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    data.setdefault("cases", {})
    return data


def merge_results(stored: dict[str, Any], results: list[CaseResult], run: dict[str, Any]) -> dict[str, Any]:
    """Replace the stored result of every case in ``results``, tagging each with ``run``.

    :param stored: the document from :func:`load_results`.
    :param results: the cases just run.
    :param run: ``date``, ``command``, ``mode``, ``machine``, ``load`` of this run.
    :return: the updated document.
    """
    cases = dict(stored.get("cases", {}))
    for result in results:
        cases[str(result.number)] = {**result.to_dict(), "run": run}
    return {"cases": dict(sorted(cases.items(), key=lambda item: int(item[0])))}


def _table(data: dict[str, Any]) -> Table:
    return Table(
        columns=list(data["columns"]), rows=[list(r) for r in data["rows"]], title=data.get("title", "")
    )


def _verdicts(case: dict[str, Any]) -> list[Verdict]:
    return [Verdict(v["target"], v["met"], v["detail"]) for v in case.get("verdicts", [])]


def render(document: dict[str, Any], analysis: str = "") -> str:
    """Render BENCHMARKS.md.

    :param document: the merged results.
    :param analysis: hand-written markdown on what limits the results (``benchmarks/analysis.md``),
        placed after the targets; empty for none.
    :return: the markdown text.
    """
    cases: dict[str, dict[str, Any]] = document["cases"]
    parts = [HEADER]
    runs = {json.dumps(case["run"], sort_keys=True): case["run"] for case in cases.values()}
    parts.append("## Runs\n")
    for run in runs.values():
        numbers = [n for n, case in cases.items() if case["run"] == run]
        parts.append(
            f"- Cases {', '.join(numbers)}: `{run['command']}` ({run['mode']} size), {run['date']}, "
            f"revision {run.get('revision', 'not recorded')}; load average (1/5/15 min) "
            f"{run['load_before']} before, {run['load_after']} after."
        )
    machine = next(iter(runs.values()))["machine"] if runs else {}
    parts.append("\n## Machine\n")
    machine_table = Table(["", ""])
    for key, value in machine.items():
        machine_table.add(key, value)
    parts.append(machine_table.markdown())

    parts.append("\n## Targets\n")
    summary = Table(["Case", "Target", "Verdict", "Numbers"])
    for number, case in cases.items():
        if case.get("error"):
            summary.add(number, case["title"], "**failed to run**", case["error"].splitlines()[0][:200])
        for verdict in _verdicts(case):
            summary.add(number, verdict.target, f"**{verdict.label}**", verdict.detail)
        if not case.get("verdicts") and not case.get("error"):
            summary.add(number, case["title"], "reported (no target)", "see below")
    parts.append(summary.markdown())
    if analysis.strip():
        parts.append("\n" + analysis.strip() + "\n")

    for number, case in cases.items():
        parts.append(f"\n## Case {number}: {case['title']}\n")
        if case.get("method"):
            parts.append(case["method"] + "\n")
        params = ", ".join(f"{k}={v}" for k, v in case.get("params", {}).items() if k != "inline")
        others = case.get("foreign_cpu")
        load = "" if others is None else f"; other processes used {others:.0%} of the CPU meanwhile"
        parts.append(f"Parameters: {params}; the case took {case.get('seconds', 0):.0f} s{load}.\n")
        if case.get("error"):
            parts.append(f"**The case failed:**\n\n```\n{case['error'][-2000:]}\n```\n")
        for table in case.get("tables", []):
            parts.append(_table(table).markdown() + "\n")
        verdicts = _verdicts(case)
        if verdicts:
            parts.append("\n".join(f"- **{v.label}**: {v.target}: {v.detail}" for v in verdicts) + "\n")
        if case.get("notes"):
            parts.append("\n".join(f"- {note}" for note in case["notes"]) + "\n")
    return "\n".join(parts).rstrip() + "\n"


def implausible(case: dict[str, Any]) -> list[str]:
    """Return what is impossible in a stored result (its case module's ``implausible``), if anything.

    :param case: a stored result (a :class:`CaseResult` as a dict).
    :return: one sentence per problem; empty when the figures can be true.
    """
    if case.get("error"):
        return []
    check = getattr(CASES.get(int(case["number"])), "implausible", None)
    return list(check(case)) if check is not None else []


def problems(document: dict[str, Any]) -> list[str]:
    """Return the impossible figures of every stored case, each prefixed with its case number.

    :param document: the stored results.
    :return: the problems; empty when all can be true.
    """
    return [
        f"case {number}: {problem}"
        for number, case in document["cases"].items()
        for problem in implausible(case)
    ]


def headline(document: dict[str, Any]) -> str:
    """Return the README's benchmark headline, every figure taken from the stored results.

    :param document: the stored results.
    :return: markdown (one paragraph, or a sentence saying that nothing was measured yet).
    """
    cases: dict[str, dict[str, Any]] = document.get("cases", {})
    fragments = []
    for number, case in cases.items():
        module = CASES.get(int(number))
        words = getattr(module, "headline", None)
        if words is None or case.get("error"):
            continue
        text = words(case)
        if text:
            fragments.append(text)
    if not fragments:
        return "No benchmark has been run yet: `make bench` measures them."
    runs = sorted({_short_revision(case["run"].get("revision")) for case in cases.values()})
    machine = next(iter(cases.values()))["run"].get("machine", {})
    cores = machine.get("Cores", "?")
    missed = [
        f"{v.target}: {_first_clause(v.detail)}"
        for case in cases.values()
        for v in _verdicts(case)
        if v.met is False
    ]
    text = (
        f"Headlines, measured side by side on a shared {cores}-core machine (revision "
        f"{', '.join(runs)}; details in [BENCHMARKS.md](BENCHMARKS.md)): {'; '.join(fragments)}."
    )
    if missed:
        text += f" Targets not met, explained there: {'; '.join(missed)}."
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def _first_clause(detail: str) -> str:
    """Return ``detail`` up to its first ``;`` outside parentheses (the verdict's own figures)."""
    depth = 0
    for index, char in enumerate(detail):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ";" and depth == 0:
            return detail[:index]
    return detail


def _short_revision(revision: str | None) -> str:
    if not revision:
        return "not recorded"
    commit, _, changes = revision.partition(" + ")
    return f"{commit} with uncommitted changes" if changes else commit


def replace_readme_block(readme: str, block: str, name: str = "README.md") -> str:
    """Return ``readme`` with the text between :data:`README_START` and :data:`README_END` replaced.

    :param readme: the README's text.
    :param block: the new content (markdown, without the marker lines).
    :param name: the file, for the error message.
    :return: the new text.
    :raises SystemExit: when the markers are missing, repeated or out of order.
    """
    lines = readme.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == README_START]
    ends = [i for i, line in enumerate(lines) if line.strip() == README_END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise SystemExit(
            f"{name}: expected one line {README_START!r} and, after it, one line {README_END!r} "
            f"around the benchmark headline (found {len(starts)} and {len(ends)})"
        )
    generated = (
        "<!-- written by `make bench` (benchmarks/report.py) from benchmarks/results.json: "
        "do not edit by hand -->\n" + block.rstrip("\n") + "\n"
    )
    return "".join(lines[: starts[0] + 1]) + generated + "".join(lines[ends[0] :])
