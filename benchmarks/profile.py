"""Profile a batch upload with py-spy and write a summary of where the client's CPU goes.

Usage::

    .venv/bin/python benchmarks/profile.py [--files 2000] [--workers 8] [--latency 0.05] [--rate 1000] [--raw]

The emulator runs in its own process over HTTPS with the injected latency, as in case 1; the
client is ``python -m benchmarks.client throughput`` (the same child as the benchmarks) for the
operator and, as the reference, for a bare ``requests.Session`` shared by as many threads. Each
client runs under ``py-spy record --format raw --gil``: only the thread holding the GIL is sampled,
so a sample is Python-level CPU, what limits a threaded client (a thread waiting in ``SSL_read``
for the answer, or hashing a large buffer, releases the GIL and is not counted). The summary
keeps the samples of the batch (stacks through the worker threads or the operator's ``execute``;
interpreter start and imports are left out) and lists the functions by self and by inclusive
samples, and the shares by area. Written to
``benchmarks/profiles/<client>-<files>.md``; ``--raw`` keeps the raw stacks beside it
(``.collapsed.txt``, for flamegraph tools; megabytes, so not kept by default).

A second, deterministic view: the hook's serial loop and a bare ``requests.Session`` loop
(``hook_serial``, ``session_loop``: the clients of case 2) upload the same files one after another
over plain HTTP without latency, the timed section under cProfile with a CPU clock
(``time.process_time``: waiting for an answer costs nothing), which sees every call of the one
thread (and inflates call-heavy code alike in both): ``cprofile-<client>-<files>.md``.
"""

from __future__ import annotations

import argparse
import json
import pstats
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a script: the provider and the emulator of this tree first
    sys.path[0:1] = [str(REPO_ROOT), str(REPO_ROOT / "emulator")]

from benchmarks.harness import (  # noqa: E402
    BASIC_USER,
    CHILD_TIMEOUT,
    child_env,
    emulator,
    run_child,
    upload_statuses,
    workspace,
    write_images,
)

OUTPUT = REPO_ROOT / "benchmarks" / "profiles"
#: A sample belongs to the batch when one of its frames is in one of these (function, file end).
BATCH_FRAMES = (("_worker", "concurrent/futures/thread.py"), ("execute", "operators/upload_image.py"))
#: Areas of the summary: the first whose file fragment is in the sample's leaf frame's file.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("provider (airflow_capillary)", ("airflow_capillary/",)),
    ("Airflow logging and secrets masker", ("airflow/sdk/log", "_secrets_masker", "structlog/", "logging/")),
    ("TLS (ssl)", ("ssl.py",)),
    ("HTTP client (requests, urllib3, http.client)", ("requests/", "urllib3/", "http/client.py")),
    ("retries (tenacity)", ("tenacity/",)),
    ("threads and queues", ("threading.py", "concurrent/futures/", "queue.py")),
    ("multipart, hashing, files", ("hashlib", "email/", "mimetypes", "pathlib", "genericpath", "os.py")),
    ("JSON", ("json/",)),
)
TOP = 30


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line.

    :param argv: arguments without the program name.
    :return: the options.
    """
    parser = argparse.ArgumentParser(prog="benchmarks/profile.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="images in the batch")
    parser.add_argument("--workers", type=int, default=8, help="max_workers / pool threads")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--raw", action="store_true", help="keep py-spy's raw stacks beside the summaries")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder of the summaries")
    parser.add_argument("--revision", help="the revision profiled, as recorded (default: this checkout's)")
    parser.add_argument("--clients", default="operator,session_pool", help="clients profiled with py-spy")
    parser.add_argument(
        "--cprofile-clients", default="hook_serial,session_loop", help="serial clients profiled with cProfile"
    )
    return parser.parse_args(argv)


def frame_key(frame: str) -> str:
    """Return a frame without its line number: ``func (path/to/file.py)``.

    :param frame: ``func (path/to/file.py:123)`` as py-spy writes it.
    :return: the function and its file, the path cut to its last three parts.
    """
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-3:])})"


def read_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """Read py-spy's raw (collapsed) output.

    :param lines: ``frame;frame;...;frame count`` lines, root first.
    :return: (frames, samples) pairs.
    """
    stacks = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def in_batch(frames: list[str]) -> bool:
    """Return whether a stack is part of the batch (a worker thread, or under ``execute``)."""
    return any(
        frame.startswith(name + " (") and file_end in frame
        for frame in frames
        for name, file_end in BATCH_FRAMES
    )


def area_of(frame: str) -> str:
    """Return the area of a leaf frame (:data:`AREAS`), ``other`` when none matches."""
    where = frame.partition(" (")[2]
    return next((area for area, parts in AREAS if any(part in where for part in parts)), "other")


def summarize_profile(stacks: list[tuple[list[str], int]], title: str, uploads: int) -> str:
    """Return the markdown summary of a profile.

    :param stacks: from :func:`read_collapsed`.
    :param title: the heading.
    :param uploads: files uploaded in the batch (for samples per upload).
    :return: the summary.
    """
    batch = [(frames, count) for frames, count in stacks if in_batch(frames)]
    total = sum(count for _, count in batch) or 1
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in batch:
        self_samples[frame_key(frames[-1])] += count
        areas[area_of(frames[-1])] += count
        for key in {frame_key(frame) for frame in frames}:
            inclusive[key] += count
    lines = [
        f"# {title}",
        "",
        f"{total} samples of the thread holding the GIL during the batch ({sum(c for _, c in stacks)} in the "
        f"whole process, interpreter start and imports included); {total / max(uploads, 1):.2f} samples "
        "per upload. py-spy tells the thread holding the GIL from the interpreter's state at each sample; "
        "with threads contending for it the attribution is approximate: read it beside the cProfile "
        "comparison of the serial loops (`cprofile-compare-*.md`).",
        "",
        "## By area (self samples of the leaf frame)",
        "",
        "| Area | Samples | Share |",
        "|---|---|---|",
    ]
    lines += [f"| {area} | {count} | {count / total:.1%} |" for area, count in areas.most_common()]
    for heading, counter in (
        ("Functions by self samples", self_samples),
        ("Functions by inclusive samples", inclusive),
    ):
        lines += ["", f"## {heading} (top {TOP})", "", "| Function | Samples | Share |", "|---|---|---|"]
        lines += [f"| `{key}` | {count} | {count / total:.1%} |" for key, count in counter.most_common(TOP)]
    provider = [(key, count) for key, count in inclusive.most_common() if "airflow_capillary/" in key]
    lines += [
        "",
        "## The provider's functions by inclusive samples",
        "",
        "| Function | Samples | Share |",
        "|---|---|---|",
    ]
    lines += [f"| `{key}` | {count} | {count / total:.1%} |" for key, count in provider[:TOP]]
    return "\n".join(lines) + "\n"


def profile_client(kind: str, args: argparse.Namespace, workdir: Path) -> Path:
    """Run one client under py-spy against a fresh emulator and write its summary.

    :param kind: ``operator`` or ``session_pool``.
    :param args: the options.
    :param workdir: scratch directory (holds the images).
    :return: the summary file.
    :raises RuntimeError: when the batch does not upload every file.
    """
    folder = workdir / "images"
    paths = [str(p) for p in sorted(folder.glob("*.png"))]
    stem = f"{kind}-{args.files}"
    raw = (args.output if args.raw else workdir) / f"{stem}.collapsed.txt"
    with emulator(workdir / f"emulator-{kind}", tls=True, latency=args.latency) as emu:
        params = {
            "method": kind,
            "workers": args.workers,
            "paths": paths,
            "source": str(folder),
            "base_url": emu.base_url,
            "basic": list(BASIC_USER),
            "verify": emu.ca_cert_path,
        }
        command = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            str(args.rate),
            "--gil",
            "--output",
            str(raw),
            "--",
            sys.executable,
            "-m",
            "benchmarks.client",
            "throughput",
            json.dumps(params),
        ]
        env = child_env({"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")})
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        statuses = upload_statuses(emu)
    if completed.returncode != 0 or statuses != {"200": args.files}:
        raise RuntimeError(
            f"{kind}: exit {completed.returncode}, uploads {statuses}: {completed.stderr[-3000:]}"
        )
    result = json.loads([line for line in completed.stdout.splitlines() if line.startswith("{")][-1])
    title = (
        f"py-spy profile: {kind}, {args.files} files of about 50 KB, {args.workers} workers, HTTPS, "
        f"{args.latency * 1000:g} ms latency"
    )
    summary = summarize_profile(read_collapsed(raw.read_text().splitlines()), title, args.files)
    count, elapsed, cpu = result["count"], result["elapsed"], result["cpu"]
    command_line = (
        f"{Path(sys.executable).name} benchmarks/profile.py --files {args.files} --workers {args.workers} "
        f"--latency {args.latency:g} --rate {args.rate}"
    )
    measured = (
        f"Revision {args.revision}. Measured under py-spy at {args.rate} samples/s: {count} uploads in "
        f"{elapsed:.1f} s "
        f"({count / elapsed:.1f} files/s), {1000 * cpu / count:.2f} ms of client CPU per upload (the "
        f"sampling itself slows the client). Command: `{command_line}`.\n"
    )
    head, _, rest = summary.partition("\n\n")
    path = args.output / f"{stem}.md"
    path.write_text(f"{head}\n\n{measured}\n{rest}")
    return path


#: Uploads before the profiled section of the cProfile runs (connection, lazy imports).
CPROFILE_WARMUP = 20


Row = tuple[str, int, float, float]


def cprofile_client(kind: str, args: argparse.Namespace, workdir: Path) -> tuple[Path, dict[str, Row], int]:
    """Profile one serial client with cProfile (plain HTTP, no latency) and write its summary.

    :param kind: ``hook_serial`` or ``session_loop``.
    :param args: the options.
    :param workdir: scratch directory (holds the images).
    :return: the summary file, the rows by function (name, calls, self s, cumulative s), the uploads.
    :raises RuntimeError: when the batch does not upload every file.
    """
    paths = [str(p) for p in sorted((workdir / "images").glob("*.png"))]
    warmup, measured = paths[:CPROFILE_WARMUP], paths[CPROFILE_WARMUP:]
    stats_file = workdir / f"{kind}.prof"
    with emulator(workdir / f"emulator-cprofile-{kind}") as emu:
        params = {
            "method": kind,
            "paths": measured,
            "warmup": warmup,
            "base_url": emu.base_url,
            "basic": list(BASIC_USER),
            "cprofile": str(stats_file),
        }
        env = {"AIRFLOW_CONN_CAPILLARY_DEFAULT": emu.connection_json("basic")}
        result = run_child("throughput", params, env=env)
        statuses = upload_statuses(emu)
    if statuses != {"200": len(paths)}:
        raise RuntimeError(f"{kind}: uploads {statuses}")
    stats = pstats.Stats(str(stats_file))
    rows: list[Row] = [
        (f"{name} ({'/'.join(file.split('/')[-3:])}:{line})", calls, tottime, cumtime)
        for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    total = sum(row[2] for row in rows) or 1.0
    count = len(measured)
    lines = [
        f"# cProfile: {kind}, {count} uploads of about 50 KB one after another, plain HTTP, no latency",
        "",
        f"Revision {args.revision}. {count} uploads after {len(warmup)} warm-up uploads, in "
        f"{result['elapsed']:.1f} s under cProfile "
        f"({1000 * result['cpu'] / count:.2f} ms of CPU per upload, profiler included; "
        f"{1e6 * total / count:.0f} µs of profiled CPU time per upload). Command: "
        f"`{Path(sys.executable).name} benchmarks/profile.py --files {args.files} --clients '' "
        f"--cprofile-clients {kind}`.",
    ]
    for heading, index in (("self time", 2), ("cumulative time", 3)):
        lines += [
            "",
            f"## Functions by {heading} (top {TOP})",
            "",
            "| Function | Calls per upload | Self µs per upload | Cumulative µs per upload | Self share |",
            "|---|---|---|---|---|",
        ]
        for name, calls, tottime, cumtime in sorted(rows, key=lambda row: -float(row[index]))[:TOP]:
            per_upload = f"{calls / count:.2f} | {1e6 * tottime / count:.1f} | {1e6 * cumtime / count:.1f}"
            lines.append(f"| `{name}` | {per_upload} | {tottime / total:.1%} |")
    path = args.output / f"cprofile-{kind}-{args.files}.md"
    path.write_text("\n".join(lines) + "\n")
    return path, {row[0]: row for row in rows}, count


def compare_profiles(
    hook: tuple[dict[str, Row], int], bare: tuple[dict[str, Row], int], args: argparse.Namespace
) -> Path:
    """Write where the hook's serial loop spends CPU that the bare loop does not (cProfile, per upload).

    :param hook: the rows and uploads of ``hook_serial``.
    :param bare: the rows and uploads of ``session_loop``.
    :param args: the options.
    :return: the file written.
    """
    (hook_rows, hook_count), (bare_rows, bare_count) = hook, bare
    hook_total = sum(row[2] for row in hook_rows.values()) / hook_count
    bare_total = sum(row[2] for row in bare_rows.values()) / bare_count

    def self_us(rows: dict[str, Row], name: str, count: int) -> float:
        return 1e6 * rows[name][2] / count if name in rows else 0.0

    names = set(hook_rows) | set(bare_rows)
    extra = sorted(
        ((self_us(hook_rows, n, hook_count) - self_us(bare_rows, n, bare_count), n) for n in names),
        reverse=True,
    )
    lines = [
        f"# cProfile: the hook's serial loop against a bare `requests.Session` loop, {args.files} files",
        "",
        f"Revision {args.revision}. Profiled CPU per upload: hook {1e6 * hook_total:.0f} µs, bare loop "
        f"{1e6 * bare_total:.0f} µs "
        f"({hook_total / bare_total:.2f}x; the profiler inflates both, call-heavy code most). Functions by "
        "the self time the hook spends beyond the bare loop, per upload:",
        "",
        "| Function | Hook self µs | Bare self µs | Extra µs | Hook calls per upload | Hook cumulative µs |",
        "|---|---|---|---|---|---|",
    ]
    for delta, name in extra[:TOP]:
        calls = hook_rows[name][1] / hook_count if name in hook_rows else 0.0
        cumulative = 1e6 * hook_rows[name][3] / hook_count if name in hook_rows else 0.0
        hook_self, bare_self = self_us(hook_rows, name, hook_count), self_us(bare_rows, name, bare_count)
        lines.append(
            f"| `{name}` | {hook_self:.1f} | {bare_self:.1f} | {delta:.1f} | {calls:.2f} | {cumulative:.1f} |"
        )
    provider = sorted(
        (row for row in hook_rows.values() if "airflow_capillary/" in row[0]), key=lambda row: -row[3]
    )
    lines += [
        "",
        "## The provider's functions by cumulative CPU per upload",
        "",
        "| Function | Calls per upload | Self µs | Cumulative µs |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{name}` | {calls / hook_count:.2f} | {1e6 * tt / hook_count:.1f} | {1e6 * ct / hook_count:.1f} |"
        for name, calls, tt, ct in provider[:TOP]
    ]
    path = args.output / f"cprofile-compare-{args.files}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Profile each client and write the summaries.

    :param argv: arguments (default ``sys.argv[1:]``).
    :return: 0.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.revision:
        from benchmarks.run import revision

        args.revision = revision()
    args.output.mkdir(parents=True, exist_ok=True)
    with workspace("profile") as workdir:
        write_images(workdir / "images", args.files, 50_000)
        for kind in filter(None, (k.strip() for k in args.clients.split(","))):
            print(f"wrote {profile_client(kind, args, workdir)}", flush=True)
        profiled: dict[str, tuple[dict[str, Row], int]] = {}
        for kind in filter(None, (k.strip() for k in args.cprofile_clients.split(","))):
            path, rows, count = cprofile_client(kind, args, workdir)
            profiled[kind] = (rows, count)
            print(f"wrote {path}", flush=True)
        if {"hook_serial", "session_loop"} <= set(profiled):
            compared = compare_profiles(profiled["hook_serial"], profiled["session_loop"], args)
            print(f"wrote {compared}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
