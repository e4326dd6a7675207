"""Shared machinery of the benchmarks: statistics, results, test data, the emulator and child processes.

Every measurement runs in a fresh child process (``python -m benchmarks.client``) so that one
variant cannot leave state behind for the next (pooled connections, registered secrets, imported
modules, a grown heap), and so that the emulator's CPU and memory never count for the client: the
emulator is its own subprocess too. Variants are interleaved round by round, so that the drift of
this shared machine spreads over all of them alike; results are compared as ratios.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from capillary_emulator import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Basic credentials the emulator accepts by default.
BASIC_USER = ("demo", "demo-password")
#: OAuth client the emulator accepts by default.
OAUTH_CLIENT = ("demo-key", "demo-secret")
#: Longest a child measurement may take before it is killed (seconds).
CHILD_TIMEOUT = 900.0
#: Bytecode cache of the child processes (``PYTHONPYCACHEPREFIX``).
PYCACHE_DIR = Path(tempfile.gettempdir()) / "capillary-bench-pycache"
#: Longest the emulator may take to print its base URL (seconds).
EMULATOR_START_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------
# Statistics and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Median and spread of repeated measurements.

    :param median: the median.
    :param low: the smallest value.
    :param high: the largest value.
    :param q1: first quartile (equals the median for fewer than two values).
    :param q3: third quartile.
    :param values: every value, in measurement order.
    """

    median: float
    low: float
    high: float
    q1: float
    q3: float
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        """Return the number of measurements."""
        return len(self.values)

    def spread(self, fmt: str = "{:.3g}", scale: float = 1.0) -> str:
        """Return ``min-max`` formatted with ``fmt``.

        :param fmt: format of one number.
        :param scale: factor applied first (e.g. 1000 for seconds to milliseconds).
        :return: the range, or the single value when there is one measurement.
        """
        if self.n == 1:
            return fmt.format(self.low * scale)
        return f"{fmt.format(self.low * scale)}-{fmt.format(self.high * scale)}"


def summarize(values: Sequence[float]) -> Stats:
    """Summarise repeated measurements.

    :param values: at least one measurement.
    :return: median, min, max and quartiles.
    :raises ValueError: when ``values`` is empty.
    """
    if not values:
        raise ValueError("no measurements to summarise")
    ordered = sorted(float(v) for v in values)
    median = statistics.median(ordered)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = median
    return Stats(median, ordered[0], ordered[-1], q1, q3, tuple(float(v) for v in values))


@dataclass(frozen=True)
class Verdict:
    """Whether one target of the issue is met.

    :param target: the target, as the issue words it.
    :param met: ``True``/``False``; ``None`` when it could not be measured.
    :param detail: the numbers behind the verdict, and why when not met.
    """

    target: str
    met: bool | None
    detail: str

    @property
    def label(self) -> str:
        """Return ``met``, ``not met`` or ``not measured``."""
        return {True: "met", False: "not met", None: "not measured"}[self.met]


@dataclass
class Table:
    """A table of the report.

    :param columns: column headers.
    :param rows: cells, already formatted.
    :param title: optional caption above the table.
    """

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""

    def add(self, *cells: object) -> None:
        """Append a row.

        :param cells: one value per column (formatted with ``str``).
        :raises ValueError: when the number of cells does not match the columns.
        """
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        """Return the table in GitHub markdown."""
        lines = []
        if self.title:
            lines += [self.title, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class CaseResult:
    """Everything one case reports.

    :param number: the case number in the issue (1-6).
    :param title: short title.
    :param method: how it was measured (markdown paragraph).
    :param params: the sizes and repeat counts used.
    :param tables: the numbers.
    :param verdicts: one per target of the case (none for report-only cases).
    :param notes: observations (markdown bullets, without the bullet).
    :param data: the raw numbers, JSON-safe (for tests and ``--json``).
    :param seconds: wall time of the case.
    :param error: set when the case failed; the other fields hold what was measured before.
    :param foreign_cpu: share of the machine's CPU that processes outside the benchmark used while
        the case ran (:class:`ForeignCpu`); ``None`` when not measured (inline runs).
    """

    number: int
    title: str
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    foreign_cpu: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the result."""
        return asdict(self)


def fmt_num(value: float, digits: int = 3) -> str:
    """Format a number with ``digits`` significant digits, without scientific notation for common sizes.

    :param value: the number.
    :param digits: significant digits.
    :return: the text.
    """
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """Describe the machine and the versions that matter.

    :return: labels to values.
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "CPU": cpu,
        "Cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Airflow": version("apache-airflow"),
        "apache-airflow-providers-http": version("apache-airflow-providers-http"),
        "airflow-provider-capillary": version("airflow-provider-capillary"),
        "requests": version("requests"),
        "uvicorn (emulator)": version("uvicorn"),
    }


def cpu_snapshot() -> tuple[float, float, float]:
    """Return the monotonic time, the machine's busy CPU seconds and this process tree's CPU seconds.

    The busy time comes from ``/proc/stat`` (all CPUs; idle and iowait excluded), the tree's from
    :func:`os.times` (this process, and every child it waited for).

    :return: ``(now, busy, own)``; ``busy`` is ``nan`` without ``/proc/stat``.
    """
    own = os.times()
    mine = own.user + own.system + own.children_user + own.children_system
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return time.monotonic(), float("nan"), mine
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return time.monotonic(), busy, mine


class ForeignCpu:
    """Measures the CPU that processes outside this one and its children use over a stretch of time.

    The machine's busy time less this process tree's (a case's emulator and clients have all ended
    and been waited for when it returns), over the elapsed time times the cores, is the share of the
    machine others took: the noise a shared machine adds to a measurement.

    :param snapshot: where the times come from (:func:`cpu_snapshot`).
    :param cores: the machine's cores (default :func:`os.cpu_count`).
    """

    def __init__(
        self, snapshot: Callable[[], tuple[float, float, float]] = cpu_snapshot, cores: int | None = None
    ) -> None:
        self._snapshot = snapshot
        self._cores = cores or os.cpu_count() or 1
        self._start = snapshot()

    def share(self) -> float:
        """Return the share (0..1) of the machine's CPU others used since this object was made.

        :return: the share; ``nan`` without ``/proc/stat``.
        """
        now, busy, own = self._snapshot()
        then, busy0, own0 = self._start
        capacity = (now - then) * self._cores
        if capacity <= 0:
            return 0.0
        return min(1.0, max(0.0, ((busy - busy0) - (own - own0)) / capacity))


def load_average() -> str:
    """Return the 1/5/15-minute load averages, or ``n/a``."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bytes(seed: int, size: int = 50_000) -> bytes:
    """Return a valid RGB PNG of about ``size`` bytes, different for every seed.

    The pixel data is random and stored without compression, so the size is predictable.

    :param seed: makes the image unique.
    :param size: approximate size in bytes (at least a few hundred).
    :return: the PNG file content.
    """
    width = 64
    row = 1 + width * 3
    height = max(1, size // row)
    rng = random.Random(seed)
    raw = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 0)) + _chunk(b"IEND", b"")
    )


def write_images(folder: Path, count: int, size: int = 50_000, prefix: str = "reward") -> list[Path]:
    """Write ``count`` distinct PNG files into ``folder``.

    :param folder: created when missing.
    :param count: number of images.
    :param size: approximate size of each.
    :param prefix: file name prefix.
    :return: the paths, sorted.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{prefix}-{index:05d}.png"
        path.write_bytes(png_bytes(index, size))
        paths.append(path)
    return paths


def write_large_png(path: Path, size: int) -> Path:
    """Write a file of exactly ``size`` bytes that starts as a PNG (signature and IHDR) then random bytes.

    Good enough for content sniffing; not a decodable image.

    :param path: the file to write.
    :param size: total size in bytes.
    :return: ``path``.
    """
    head = PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4096, 4096, 8, 2, 0, 0, 0))
    block = random.Random(size).randbytes(1 << 20)
    with path.open("wb") as handle:
        handle.write(head)
        left = size - len(head)
        while left > 0:
            piece = block[: min(left, len(block))]
            handle.write(piece)
            left -= len(piece)
    return path


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


def _emulator_class() -> type[EmulatorProcess]:
    from capillary_emulator import EmulatorProcess

    class ReadyEmulatorProcess(EmulatorProcess):
        """``EmulatorProcess``, ready once it answers (it sets ``TCP_NODELAY`` per connection itself)."""

        def start(self) -> EmulatorProcess:
            super().start()
            wait_ready(self)
            return self

    return ReadyEmulatorProcess


def emulator(
    workdir: Path, *, tls: bool = False, latency: float = 0.0, token_ttl: int = 300
) -> EmulatorProcess:
    """Return the emulator CLI as a subprocess on 127.0.0.1 (not started: use it as a context manager).

    A separate process, so that its CPU time and memory never count for the client under test.

    :param workdir: its data directory (stderr goes to ``emulator-stderr.log`` there).
    :param tls: serve HTTPS with the emulator's self-signed CA (``ca_cert_path``).
    :param latency: seconds added to every request.
    :param token_ttl: OAuth token lifetime, seconds.
    :return: the emulator process.
    """
    args = ["--latency-ms", f"{latency * 1000:g}", "--token-ttl", str(token_ttl)]
    return _emulator_class()(
        workdir, tls=tls, args=args, startup_timeout=EMULATOR_START_TIMEOUT, env=child_env()
    )


def wait_ready(emu: EmulatorProcess, timeout: float = EMULATOR_START_TIMEOUT) -> None:
    """Wait until the emulator answers its health endpoint.

    The CLI prints its URL once the socket is bound, before uvicorn listens on it: a request sent
    at once can be refused.

    :param emu: the started emulator.
    :param timeout: seconds to wait.
    :raises RuntimeError: when it does not answer in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            emu.control("GET", "health")
            return
        except OSError as exc:
            if time.monotonic() > deadline or not emu.running:
                raise RuntimeError(f"the emulator at {emu.base_url} does not answer: {exc}") from exc
            time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------

_AIRFLOW_HOME: Path | None = None


@contextmanager
def patched_environ(changes: Mapping[str, str], remove: Sequence[str] = ()) -> Iterator[None]:
    """Set and remove environment variables for the duration of the block, then restore them.

    :param changes: variables to set.
    :param remove: variables to unset.
    :return: nothing (a context manager).
    """
    saved = {name: os.environ.get(name) for name in [*changes, *remove]}
    try:
        for name in remove:
            os.environ.pop(name, None)
        os.environ.update(changes)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def airflow_home() -> Path:
    """Return a throw-away ``AIRFLOW_HOME`` shared by the children of this run."""
    global _AIRFLOW_HOME
    if _AIRFLOW_HOME is None:
        _AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="capillary-bench-airflow-"))
    return _AIRFLOW_HOME


def child_env(extra: Mapping[str, str] | None = None, *, first: Sequence[str] = ()) -> dict[str, str]:
    """Return the environment of a child process: this tree importable, Airflow pointed at a temp home.

    :param extra: more variables.
    :param first: directories put ahead of this tree on the import path (:func:`provider_at`).
    :return: the environment.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    # This tree's provider and emulator first, ahead of the editable installs (``run.py --at``
    # measures an exported revision with the venv of the checkout).
    paths = (*first, str(REPO_ROOT), str(REPO_ROOT / "emulator"), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.setdefault("AIRFLOW_HOME", str(airflow_home()))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    # A deployed Airflow runs from compiled bytecode; without it every child would spend seconds
    # compiling Airflow's sources. The cache lives outside the working tree and the venv.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if extra:
        env.update(extra)
    return env


def run_child(
    kind: str,
    params: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = CHILD_TIMEOUT,
    inline: bool = False,
    provider: Path | None = None,
) -> dict[str, Any]:
    """Run one measurement in a fresh ``python -m benchmarks.client`` process.

    :param kind: the measurement (a function of ``benchmarks.client``).
    :param params: its JSON-safe parameters.
    :param env: extra environment variables (connections).
    :param timeout: seconds before the child is killed.
    :param inline: run it in this process instead (the tiny sizes of ``make test``: same code, no
        interpreter start; the numbers then mean nothing).
    :param provider: a directory holding another ``airflow_capillary`` (:func:`provider_at`) that
        the child imports instead of this tree's; not with ``inline``.
    :return: the JSON object the child printed on its last stdout line.
    :raises RuntimeError: when the child fails or prints no result.
    :raises ValueError: for ``provider`` with ``inline``.
    """
    if inline and provider is not None:
        raise ValueError("another provider runs in a child process only, not inline")
    if inline:
        from benchmarks import client

        with patched_environ(env or {}):
            measured = client.MEASUREMENTS[kind](json.loads(json.dumps(dict(params))))
        inline_result: dict[str, Any] = json.loads(json.dumps(measured))
        return inline_result
    command = [sys.executable, "-m", "benchmarks.client", kind, json.dumps(dict(params))]
    completed = subprocess.run(
        command,
        # ``python -m`` puts its working directory first on the import path: with another provider,
        # that directory (holding only ``airflow_capillary``), so that this tree's does not win.
        cwd=provider if provider is not None else REPO_ROOT,
        env=child_env(env, first=[str(provider)] if provider is not None else []),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child {kind} failed (exit {completed.returncode}): {completed.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


#: The git repository that :func:`provider_at` exports from (``run.py --at`` runs in an export,
#: which is no repository, and names the checkout it came from here).
GIT_REPO_ENV = "CAPILLARY_BENCH_GIT_REPO"
_PROVIDERS: dict[str, Path] = {}


def provider_at(revision: str) -> Path:
    """Return a directory holding only the ``airflow_capillary`` package of ``revision``.

    For a variant that measures the provider as it was (before a feature), in the same run as the
    current one: put the directory first on a child's import path (``run_child(provider=...)``).
    Exported once per process with ``git archive``; removed when the process ends.

    :param revision: a commit of the repository (:data:`GIT_REPO_ENV`, else this tree).
    :return: the directory.
    :raises RuntimeError: when the revision cannot be exported (no git, unknown commit).
    """
    if revision in _PROVIDERS:
        return _PROVIDERS[revision]
    repo = os.environ.get(GIT_REPO_ENV) or str(REPO_ROOT)
    destination = Path(tempfile.mkdtemp(prefix=f"capillary-bench-provider-{revision[:12]}-"))
    atexit.register(shutil.rmtree, destination, True)
    archive = destination / "provider.tar"
    try:
        subprocess.run(
            ["git", "-C", repo, "archive", "--format=tar", "-o", str(archive), revision, "airflow_capillary"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise RuntimeError(f"cannot export airflow_capillary at {revision} from {repo}: {detail}") from exc
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    archive.unlink()
    _PROVIDERS[revision] = destination
    return destination


def upload_statuses(emu: EmulatorProcess) -> dict[str, int]:
    """Count the emulator's upload requests by answered status, since its last reset.

    From its counters (``stats()``), which its bounded request log cannot lose; an emulator without
    them (an older revision) is counted from its request log.

    :param emu: the running emulator.
    :return: status (as text; ``none`` for a connection dropped instead of answered) to count.
    """
    stats = getattr(emu, "stats", None)
    if stats is not None:
        counts: dict[str, int] = dict(stats()["requests"].get("upload", {}))
        return counts
    counts = {}
    for entry in emu.requests():
        if entry.get("kind") == "upload":
            key = "none" if entry.get("status") is None else str(entry.get("status"))
            counts[key] = counts.get(key, 0) + 1
    return counts


def process_cpu_seconds(pid: int | None) -> float:
    """Return the CPU time (user + system) a process has used so far, from ``/proc``.

    :param pid: the process id (``None``: 0).
    :return: seconds; 0 when it cannot be read.
    """
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def finished_uploads(result: Mapping[str, Any], statuses: Mapping[str, int], expected: int, what: str) -> int:
    """Return how many uploads a run finished, checking a complete run against the emulator's log.

    :param result: the child's result (``timed_out`` when it ran out of its time budget).
    :param statuses: :func:`upload_statuses` after the run.
    :param expected: uploads a complete run makes.
    :param what: the run, for the error message.
    :return: ``expected`` for a complete run; the uploads answered 200 for a timed-out one.
    :raises RuntimeError: when a complete run is not exactly ``expected`` uploads answered 200.
    """
    if result.get("timed_out"):
        return int(statuses.get("200", 0))
    if dict(statuses) != {"200": expected}:
        raise RuntimeError(f"{what}: expected {expected} uploads answered 200, got {dict(statuses)}")
    return expected


@contextmanager
def workspace(prefix: str, keep: bool = False) -> Iterator[Path]:
    """Yield a temporary directory, removed afterwards unless ``keep``.

    :param prefix: directory name prefix.
    :param keep: keep it for inspection.
    :return: the directory.
    """
    path = Path(tempfile.mkdtemp(prefix=f"capillary-bench-{prefix}-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
