"""Writer of BENCHMARKS.md from the stored results of each case.

``benchmarks/results.json`` keeps the latest result of every case with the date, command, mode and
load of its run, so that ``run.py --cases 2`` refreshes case 2 without dropping the others; the
report says when and how each case was measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness import CaseResult, Table, Verdict

HEADER = """# Benchmarks

Written by `benchmarks/run.py` (`make bench`); do not edit by hand. Every case compares the
provider with its baselines **in the same run, on the same machine**, variants interleaved round by
round, and reports ratios: this machine is shared and noisy, so absolute times drift between runs
while ratios hold. Medians of repeated runs, with the spread (min-max). Everything runs on
loopback against the local emulator (`python -m capillary_emulator`), each client in its
own process, the emulator in another. `make test` runs every case at a tiny size
(`tests/bench/test_bench_tiny.py`) so that none of them rots; those runs assert the shape of the
results, never their timing.
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
        parts.append(f"Parameters: {params}; the case took {case.get('seconds', 0):.0f} s.\n")
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
