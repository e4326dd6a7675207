"""The benchmark cases (issues 6, 11, 13, 14), one module each.

Every module has ``NUMBER``, ``TITLE``, ``SIZES`` (``full``, ``quick`` and ``tiny`` parameter
sets) and ``run(size, workdir) -> CaseResult``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.cases import (
    dag_parse,
    far_region,
    mapped,
    memory,
    nightly_refresh,
    oauth,
    overhead,
    rate_limit,
    throughput,
)
from benchmarks.harness import CaseResult

#: Case number to module, in the issue's order.
CASES: dict[int, ModuleType] = {
    module.NUMBER: module
    for module in (
        throughput,
        overhead,
        memory,
        oauth,
        dag_parse,
        mapped,
        rate_limit,
        far_region,
        nightly_refresh,
    )
}

Runner = Callable[[dict[str, Any], Path], CaseResult]


def size_of(number: int, mode: str, repeats: int | None = None) -> dict[str, Any]:
    """Return the parameters of a case for a mode, with an optional repeat override.

    :param number: the case number.
    :param mode: ``full``, ``quick`` or ``tiny``.
    :param repeats: override of the ``repeats`` parameter.
    :return: a copy of the parameters.
    """
    size = dict(CASES[number].SIZES[mode])
    if repeats is not None:
        size["repeats"] = repeats
    return size
