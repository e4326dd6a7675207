"""Tiny runs of every benchmark case (issue 6), so that ``make bench`` cannot rot unnoticed.

Each case runs once at its ``tiny`` size (a few files, a few MB, no injected latency, the client
in this process) and the tests assert the shape of what it reports, never a timing. Case 4's token
count is deterministic and asserted exactly. The full sizes run with ``make bench``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import run as bench_run
from benchmarks.cases import CASES, dag_parse, oauth
from benchmarks.harness import (
    CaseResult,
    Table,
    Verdict,
    png_bytes,
    run_child,
    summarize,
    write_large_png,
)

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def tiny() -> dict[int, CaseResult]:
    """Run every case once at its tiny size."""
    return {result.number: result for result in bench_run.run_cases(sorted(CASES), mode="tiny")}


def _column(table: Table, name: str) -> list[str]:
    index = table.columns.index(name)
    return [row[index] for row in table.rows]


def test_every_case_ran_without_error(tiny):
    assert sorted(tiny) == [1, 2, 3, 4, 5, 6]
    errors = {number: result.error for number, result in tiny.items() if result.error}
    assert errors == {}
    for result in tiny.values():
        assert result.tables, result.number
        for table in result.tables:
            assert table.rows
            assert all(len(row) == len(table.columns) for row in table.rows)


def test_case1_throughput_reports_every_client(tiny):
    result = tiny[1]
    (table,) = result.tables
    assert _column(table, "") == ["(a)", "(b)", "(c)", "(d)"]
    assert _column(table, "Workers") == ["1", "1", "8", "8"]
    assert _column(table, "x (a)")[0] == "1.00x"
    assert all(len(rates) == 1 and rates[0] > 0 for rates in result.data["rates"].values())
    # No latency is injected at this size: there is no limit to compare with.
    assert [(v.met, v.detail) for v in result.verdicts] == [
        (None, "not run at this size (no 8-worker run or no injected latency)")
    ] * 2


def test_case2_overhead_compares_hook_with_bare_loop(tiny):
    result = tiny[2]
    (table,) = result.tables
    assert _column(table, "Client") == [
        "bare `requests.Session` post loop",
        "`CapillaryFileHook.upload_file` loop",
    ]
    assert _column(table, "x bare loop")[0] == "1.00x"
    assert result.data["ratio"] > 0
    (verdict,) = result.verdicts
    assert verdict.met is (result.data["ratio"] <= 1.25)


def test_case3_memory_reports_growth_per_client(tiny):
    result = tiny[3]
    (table,) = result.tables
    assert _column(table, "File") == ["3 MB", "3 MB"]
    growth = result.data["growth_mb"]["3 MB"]
    assert sorted(growth) == ["`CapillaryFileHook.upload_file`", "`requests.post(files=...)`"]
    assert all(value >= 0 for values in growth.values() for value in values)
    (verdict,) = result.verdicts
    assert isinstance(verdict.met, bool)


def test_case4_oauth_fetches_exactly_one_token(tiny):
    result = tiny[4]
    (run,) = result.data["runs"]
    assert (run["ttl"], run["tokens"], run["unauthorized"], run["statuses"]) == (300, 1, 0, {"200": 8})
    assert [(v.met, v.detail) for v in result.verdicts] == [
        (True, "1 token request(s), 0 upload(s) answered 401")
    ]


def test_case5_parse_compares_provider_with_empty_dag(tiny):
    result = tiny[5]
    table, heavy = result.tables
    assert len(table.rows) == 5
    assert "airflow_capillary" in result.data["importtime_modules"]
    assert heavy.rows
    assert len(result.data["parse"]["provider"]) == len(result.data["parse"]["empty"]) == 1
    (verdict,) = result.verdicts
    assert verdict.met is (result.data["diff_ms"] <= 20)


def test_case6_dags_have_the_claimed_shape(tiny):
    result = tiny[6]
    shapes = result.data["shapes"]
    assert {dag_id: (s["tasks"], s["mapped_tasks"]) for dag_id, s in shapes.items()} == {
        "bench_upload_batch": (1, 0),
        "bench_upload_mapped": (1, 1),
        "bench_parse_empty": (3, 0),
    }
    (table,) = result.tables
    assert _column(table, "Task instances") == ["1", "3", "3"]
    walls = _column(table, "Wall s (median)")
    # The mapped DAG ran through `airflow dags test` (every upload answered 200 and the run a
    # success: the case checks both); the other two runs are left to make bench.
    assert (walls[0], float(walls[1]) > 0, walls[2]) == ("not run", True, "not run")
    assert sorted(result.data["walls"]) == ["bench_parse_empty", "bench_upload_batch", "bench_upload_mapped"]
    assert result.data["migrate_seconds"] > 0


def test_report_renders_every_case_and_verdict(tiny, tmp_path):
    run = {
        "date": "2026-01-01 00:00 UTC",
        "command": "python benchmarks/run.py --size tiny",
        "mode": "tiny",
        "machine": {"CPU": "test"},
        "load_before": "0",
        "load_after": "0",
    }
    document = bench_run.report.merge_results({"cases": {}}, list(tiny.values()), run)
    text = bench_run.report.render(json.loads(json.dumps(document)))
    for number, result in tiny.items():
        assert f"## Case {number}: {result.title}" in text
        for verdict in result.verdicts:
            assert f"**{verdict.label}**: {verdict.target}" in text
    assert "`python benchmarks/run.py --size tiny` (tiny size), 2026-01-01 00:00 UTC" in text


def test_main_rewrites_report_and_keeps_other_cases(tmp_path, monkeypatch):
    canned = CaseResult(
        number=2, title="canned", tables=[Table(["a"], [["1"]])], verdicts=[Verdict("t", True, "d")]
    )
    fake = SimpleNamespace(
        NUMBER=2, TITLE="canned", SIZES={"tiny": {"repeats": 1}}, run=lambda size, workdir: canned
    )
    monkeypatch.setitem(bench_run.CASES, 2, fake)
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "cases": {
                    "1": {
                        **CaseResult(number=1, title="old").to_dict(),
                        "run": {
                            "date": "d",
                            "command": "c",
                            "mode": "full",
                            "machine": {},
                            "load_before": "",
                            "load_after": "",
                        },
                    }
                }
            }
        )
    )
    output = tmp_path / "BENCHMARKS.md"

    code = bench_run.main(
        ["--size", "tiny", "--cases", "2", "--output", str(output), "--results", str(results)]
    )

    assert code == 0
    stored = json.loads(results.read_text())["cases"]
    assert sorted(stored) == ["1", "2"]
    assert stored["2"]["run"]["command"].endswith(
        f"benchmarks/run.py --size tiny --cases 2 --output {output} --results {results}"
    )
    text = output.read_text()
    assert "## Case 1: old" in text
    assert "## Case 2: canned" in text
    assert "| 2 | t | **met** | d |" in text


def test_main_refuses_unknown_case():
    with pytest.raises(SystemExit, match=r"unknown case\(s\) \[9\]"):
        bench_run.main(["--cases", "9"])


def test_run_child_runs_a_fresh_process():
    result = run_child("import_cost", {"base": ["json"], "modules": ["airflow_capillary"]})
    assert sorted(result) == ["added", "base"]
    assert result["added"] >= 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0], (3.0, 3.0, 3.0, "3")),
        ([1.0, 5.0, 2.0], (2.0, 1.0, 5.0, "1-5")),
        ([4.0, 1.0], (2.5, 1.0, 4.0, "1-4")),
    ],
    ids=["one", "odd", "even"],
)
def test_summarize(values, expected):
    stats = summarize(values)
    assert (stats.median, stats.low, stats.high, stats.spread()) == expected
    assert stats.values == tuple(values)


def test_summarize_refuses_nothing():
    with pytest.raises(ValueError, match="no measurements"):
        summarize([])


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        offset += 12 + length
    return chunks


def test_png_bytes_is_a_valid_distinct_png():
    data = png_bytes(7, 50_000)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 49_000 < len(data) < 51_000
    chunks = _chunks(data)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert len(zlib.decompress(chunks[1][1])) == height * (1 + width * 3)
    assert png_bytes(8, 50_000) != data


def test_write_large_png_has_exact_size_and_png_header(tmp_path: Path):
    path = write_large_png(tmp_path / "big.png", 3 * 1024 * 1024 + 5)
    assert path.stat().st_size == 3 * 1024 * 1024 + 5
    assert path.read_bytes()[:16] == b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.mark.parametrize(
    ("seconds", "ttl", "expected"),
    # The hook refreshes TTL/4 early, at least 2 s but at most TTL/2: 1 s for TTL 2, 0.5 s for TTL 1.
    [(0.5, 300, 1), (299, 300, 2), (6.0, 2, 6), (6.1, 2, 7), (3.0, 1, 6)],
    ids=["short-run", "margin-30s", "ttl2-exact", "ttl2-over", "ttl1"],
)
def test_expected_tokens(seconds, ttl, expected):
    assert oauth.expected_tokens(seconds, ttl) == expected


def test_parse_importtime_keeps_what_follows_the_base():
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:        10 |         10 |   airflow.sdk.child",
            "import time:        20 |         30 | airflow.sdk",
            "import time:         5 |          5 |     requests_toolbelt",
            "import time:         7 |         12 |   airflow_capillary.hooks",
            "import time:         3 |         15 | airflow_capillary.operators.upload_image",
        ]
    )
    rows, total = dag_parse.parse_importtime(stderr, "airflow.sdk")
    expected: list[tuple[str, int, int, int]] = [
        ("requests_toolbelt", 2, 5, 5),
        ("airflow_capillary.hooks", 1, 7, 12),
        ("airflow_capillary.operators.upload_image", 0, 3, 15),
    ]
    assert (rows, total) == (expected, 15)


def test_sizes_have_every_mode():
    for number, module in CASES.items():
        assert sorted(module.SIZES) == ["full", "quick", "tiny"], number
        assert number == module.NUMBER


def test_render_rewrites_report_from_stored_results_only(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "run_cases", lambda *a, **k: pytest.fail("--render must run no case"))
    results = tmp_path / "results.json"
    run = {"date": "d", "command": "c", "mode": "full", "machine": {}, "load_before": "", "load_after": ""}
    results.write_text(
        json.dumps({"cases": {"3": {**CaseResult(number=3, title="stored").to_dict(), "run": run}}})
    )
    output = tmp_path / "BENCHMARKS.md"

    assert bench_run.main(["--render", "--output", str(output), "--results", str(results)]) == 0
    assert "## Case 3: stored" in output.read_text()
