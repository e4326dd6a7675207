"""Case 5: what the provider adds to DAG parsing.

(i) The wall time of importing the provider's operator and sensor modules in a fresh process that
has already imported ``airflow.sdk``; (ii) ``python -X importtime`` of the same, to name the
modules that cost; (iii) the ``DagBag`` parse time of ``benchmarks/dags/parse_provider.py`` (three
provider tasks) against ``benchmarks/dags/parse_empty.py`` (the same DAG with EmptyOperators), each
parse in a fresh process with Airflow already imported, as in the DAG processor's parsing child.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO_ROOT, CaseResult, Table, Verdict, child_env, run_child, summarize

NUMBER = 5
TITLE = "DAG parse cost of the provider"
PROVIDER_MODULES = ["airflow_capillary.operators.upload_image", "airflow_capillary.sensors.file_service"]
DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
PROVIDER_DAG = DAGS_DIR / "parse_provider.py"
EMPTY_DAG = DAGS_DIR / "parse_empty.py"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"repeats": 9, "base": ["airflow.sdk"], "modules": PROVIDER_MODULES},
    "quick": {"repeats": 3, "base": ["airflow.sdk"], "modules": PROVIDER_MODULES},
    # make test: the imports and parses run in the test process (their times mean nothing there);
    # the `-X importtime` child imports what a DAG file does, so the import check below is real.
    "tiny": {"repeats": 1, "base": ["airflow.sdk"], "modules": PROVIDER_MODULES, "inline": True},
}
TARGET_MS = 20.0
#: Modules a DAG file that uses the provider must not load at parse time: the HTTP stack (requests
#: and urllib3: not loaded at parse before feb912b; with them a parse costs hundreds of ms more),
#: the upload stack (the hook and its retry library), the clients of the sensor's probes, the
#: emulator (a test double).
PARSE_FORBIDDEN = (
    "requests",
    "urllib3",
    "airflow_capillary.hooks.file_service",
    "tenacity",
    "aiohttp",
    "httpx",
    "capillary_emulator",
)
#: Heaviest modules listed from ``-X importtime``.
TOP_MODULES = 8


def parse_importtime(stderr: str, after: str) -> tuple[list[tuple[str, int, int, int]], int]:
    """Read ``-X importtime`` output: the modules imported after the top-level import of ``after``.

    :param stderr: the interpreter's stderr.
    :param after: the module whose top-level line ends the part to skip (the base import).
    :return: ``(name, depth, self µs, cumulative µs)`` of every later module, and the sum of their self times.
    """
    rows: list[tuple[str, int, int, int]] = []
    seen_base = False
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, raw_name = line[len("import time:") :].split("|", 2)
        name = raw_name.rstrip()
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        if not seen_base:
            seen_base = depth == 0 and name.strip() == after
            continue
        rows.append((name.strip(), depth, int(self_us), int(cumulative_us)))
    return rows, sum(row[2] for row in rows)


def implausible(case: dict[str, Any]) -> list[str]:
    """Return the impossible figures of a stored result (a full run's; a tiny run's times mean nothing).

    The provider's DAG does all the empty DAG does and more: a parse difference below zero, or an
    import that costs nothing, is noise of the machine, not a property of the code.

    :param case: the stored result.
    :return: the problems.
    """
    data = case.get("data", {})
    if case.get("params", {}).get("inline") or "diff_ms" not in data:
        return []
    found = []
    if data["diff_ms"] < 0:
        found.append(f"the provider's DAG parsed {-data['diff_ms']:.1f} ms faster than the empty one")
    if any(value <= 0 for value in data.get("import_added", [])):
        found.append("an import of the provider that took no time")
    return found


def headline(case: dict[str, Any]) -> str | None:
    """Word the README's headline of a stored result of this case.

    :param case: the stored result.
    :return: the sentence fragment, or ``None`` for a tiny run (its times mean nothing).
    """
    data = case.get("data", {})
    if case.get("params", {}).get("inline") or "diff_ms" not in data:
        return None
    return f"the provider adds **{data['diff_ms']:.0f} ms** to a DAG's parse"


def run(size: dict[str, Any], workdir: Path) -> CaseResult:
    """Run the case.

    :param size: ``repeats``, ``base`` and ``modules`` (module names), ``inline``.
    :param workdir: scratch directory (unused: the DAG files are in ``benchmarks/dags``).
    :return: the result.
    :raises RuntimeError: when a DAG file does not parse.
    """
    started = time.perf_counter()
    repeats, inline = int(size["repeats"]), bool(size.get("inline"))
    base, modules = list(size["base"]), list(size["modules"])
    imports: list[float] = []
    parses: dict[str, list[float]] = {"provider": [], "empty": []}
    tasks: dict[str, int] = {}
    # Warm-up round, not counted: fills the bytecode cache so that no run compiles sources.
    for round_index in range(repeats + (0 if inline else 1)):
        cost = run_child("import_cost", {"base": base, "modules": modules}, inline=inline)
        measured: dict[str, float] = {}
        for kind, path in (("provider", PROVIDER_DAG), ("empty", EMPTY_DAG)):
            result = run_child("parse_dag", {"path": str(path)}, inline=inline)
            if result["errors"] or result["dags"] != 1:
                raise RuntimeError(f"{path.name} does not parse: {result['errors']}")
            measured[kind] = result["parse"]
            tasks[kind] = result["tasks"]
        if inline or round_index > 0:
            imports.append(cost["added"])
            for kind, seconds in measured.items():
                parses[kind].append(seconds)

    command = f"import {', '.join(base)}; import {', '.join(modules)}"
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", command],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows, self_total = parse_importtime(completed.stderr, base[-1])
    forbidden = sorted(
        {name for name, *_ in rows if any(name == f or name.startswith(f + ".") for f in PARSE_FORBIDDEN)}
    )

    provider, empty = summarize(parses["provider"]), summarize(parses["empty"])
    added = summarize(imports)
    diff_ms = 1000 * (provider.median - empty.median)
    paired = [1000 * (p - e) for p, e in zip(parses["provider"], parses["empty"], strict=True)]
    table = Table(["Measurement", "Median (ms)", "Spread (ms)"])
    table.add(
        f"import {', '.join(modules)} after {', '.join(base)}",
        f"{1000 * added.median:.1f}",
        added.spread("{:.1f}", scale=1000),
    )
    table.add(
        f"`-X importtime`: self time of every module those imports load ({len(rows)} modules)",
        f"{self_total / 1000:.1f}",
        "one run",
    )
    table.add(
        f"parse `{PROVIDER_DAG.name}` ({tasks['provider']} provider tasks)",
        f"{1000 * provider.median:.1f}",
        provider.spread("{:.1f}", scale=1000),
    )
    table.add(
        f"parse `{EMPTY_DAG.name}` ({tasks['empty']} EmptyOperators)",
        f"{1000 * empty.median:.1f}",
        empty.spread("{:.1f}", scale=1000),
    )
    table.add(
        "**parse difference (provider - empty)**", f"**{diff_ms:.1f}**", summarize(paired).spread("{:.1f}")
    )
    heavy = Table(
        ["Module (imported by the provider's modules)", "Self (ms)", "Cumulative (ms)"],
        title=f'Heaviest modules by self time in `python -X importtime -c "{command}"`:',
    )
    for name, _, self_us, cumulative_us in sorted(rows, key=lambda r: -r[2])[:TOP_MODULES]:
        heavy.add(f"`{name}`", f"{self_us / 1000:.1f}", f"{cumulative_us / 1000:.1f}")
    import_verdict = Verdict(
        f"the provider's modules load none of {', '.join(PARSE_FORBIDDEN)} at DAG parse",
        not forbidden,
        f"loaded: {', '.join(forbidden)}" if forbidden else f"none among the {len(rows)} modules loaded",
    )
    verdict = Verdict(
        f"provider adds ≤ {TARGET_MS:g} ms to the parse of a DAG",
        diff_ms <= TARGET_MS,
        f"+{diff_ms:.1f} ms (three provider tasks against three EmptyOperators; per-round differences "
        f"{summarize(paired).spread('{:.1f}')} ms); the import alone adds {1000 * added.median:.1f} ms",
    )
    return CaseResult(
        number=NUMBER,
        title=TITLE,
        method=(
            "Every measurement is a fresh process (bytecode cached, as in a deployment; one warm-up "
            "round not counted). Import: wall time of importing the modules after `airflow.sdk`. "
            "Parse: `DagBag(dag_folder=<file>)` wall time in a process that imported `airflow.sdk` and "
            "`DagBag` first, as the DAG processor's parsing child has (it pre-imports only `airflow.*` "
            "modules, so the provider is imported during the parse). The provider DAG has two "
            "`UploadImageOperator`s and a deferrable `CapillaryFileSensor`; the empty DAG has the same "
            f"three tasks as `EmptyOperator`s. Rounds: {repeats}, interleaved."
        ),
        params=dict(size),
        tables=[table, heavy],
        verdicts=[verdict, import_verdict],
        data={
            "import_added": imports,
            "parse": parses,
            "diff_ms": diff_ms,
            "importtime_self_ms": self_total / 1000,
            "importtime_modules": [row[0] for row in rows],
            "forbidden_imports": forbidden,
        },
        seconds=time.perf_counter() - started,
    )
