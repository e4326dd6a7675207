"""Helpers shared by the reliability suites (issue 7): images, fast retries, running the operator."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.images import png_bytes

#: Hook/operator arguments that keep retries fast: tiny backoff, Retry-After honoured but capped at 20 ms.
FAST_RETRIES: dict[str, Any] = {"retry_min_wait": 0.005, "retry_max_wait": 0.02, "retry_after_max": 0.02}

#: The logger the hook's log is routed to in these tests (structlog in the task SDK otherwise).
HOOK_LOGGER = "capillary.test.reliability.hook"

_RETRY_LINE = re.compile(r"^attempt (\d+) of (\d+) failed: (.*), retrying in ([\d.]+)s$", re.S)


def unique_pngs(folder: Path, count: int, *, prefix: str = "img") -> dict[str, bytes]:
    """Write ``count`` small, pairwise different PNGs into ``folder``.

    :param folder: created if missing.
    :param count: how many.
    :param prefix: file name prefix.
    :return: file name to content.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for index in range(count):
        data = png_bytes(width=1 + index % 7, height=1 + index // 7, seed=index)
        name = f"{prefix}-{index:04d}.png"
        (folder / name).write_bytes(data)
        written[name] = data
    return written


def run_operator(op: UploadImageOperator) -> tuple[Any, dict[str, Any]]:
    """Execute an operator like the task runner does (render, execute) with a mock task instance.

    :param op: the operator.
    :return: what ``execute`` returned (re-raised errors propagate) and the pushed XComs by key.
    """
    from airflow.sdk.execution_time.context import OutletEventAccessors

    ti = mock.MagicMock(name="ti")
    context: dict[str, Any] = {"ti": ti, "outlet_events": OutletEventAccessors()}
    op.render_template_fields(context)  # type: ignore[arg-type]
    result = op.execute(context)  # type: ignore[arg-type]
    return result, pushed_xcoms(ti)


def pushed_xcoms(ti: mock.MagicMock) -> dict[str, Any]:
    """Return the XComs pushed on a mock task instance, by key.

    :param ti: the mock.
    :return: key to value.
    """
    return {c.kwargs["key"]: c.kwargs["value"] for c in ti.xcom_push.call_args_list}


@pytest.fixture
def hook_log(mocker: Any, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Route every hook's log to a stdlib logger that caplog records (WARNING and up)."""
    mocker.patch.object(CapillaryFileHook, "log", new=logging.getLogger(HOOK_LOGGER))
    caplog.set_level(logging.INFO, logger=HOOK_LOGGER)
    return caplog


def _retry_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = []
    for record in caplog.records:
        if record.name != HOOK_LOGGER:
            continue
        match = _RETRY_LINE.match(record.getMessage())
        if match:
            lines.append(match)
    return lines


def retry_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the reason of every "attempt n of N failed: <reason>, retrying" line of the hook.

    :param caplog: the fixture the hook logged to (see :func:`hook_log`).
    :return: the reasons, in order.
    """
    return [match.group(3) for match in _retry_lines(caplog)]


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """Return the wait of every "attempt n of N failed: ..., retrying in <wait>s" line of the hook.

    :param caplog: the fixture the hook logged to (see :func:`hook_log`).
    :return: the waits in seconds, as the line states them (one decimal), in order.
    """
    return [float(match.group(4)) for match in _retry_lines(caplog)]


#: Retry causes as the hook's log line states them, mapped to the emulator's fault kinds.
_CAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("malformed_json", re.compile(r"with a body that is not JSON")),
    ("status_false", re.compile(r"Capillary answered status 'false'")),
    ("placeholder", re.compile(r"Capillary stored 0 bytes but \d+ were sent")),
    ("timeout", re.compile(r"\b(ReadTimeout|ConnectTimeout|Read timed out)\b")),
    ("reset", re.compile(r"\b(ConnectionError|ChunkedEncodingError)\b")),
    ("503", re.compile(r": HTTP 503\b")),
    ("429", re.compile(r": HTTP 429\b")),
    ("500", re.compile(r": HTTP 500\b")),
    ("502", re.compile(r": HTTP 502\b")),
    ("504", re.compile(r": HTTP 504\b")),
)


def classify(reason: str) -> str:
    """Name the cause of a retry from the hook's log line (``other`` if unknown).

    :param reason: the reason part of the line.
    :return: one of the emulator's random fault kinds (``timeout`` for its ``delay``), or ``other``.
    """
    for cause, pattern in _CAUSES:
        if pattern.search(reason):
            return cause
    return "other"


def format_table(title: str, header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """Format a small text table for the test report.

    :param title: line above the table.
    :param header: column names.
    :param rows: rows of values.
    :return: the table.
    """
    lines = [list(map(str, header)), *[list(map(str, row)) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [title, "  ".join(h.ljust(w) for h, w in zip(lines[0], widths, strict=True))]
    text.append("  ".join("-" * w for w in widths))
    text += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines[1:]]
    return "\n".join(text)
