"""Child process of the benchmarks: one measurement per process, its result as JSON on stdout.

``python -m benchmarks.client KIND 'JSON PARAMS'`` (run by :func:`benchmarks.harness.run_child`).
Only the measured section is timed: interpreter start, imports and set-up are outside it unless
the measurement is about them (``import_cost``, ``parse_dag``). Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

#: Per-request timeout of the baselines (seconds): every loop is bounded.
REQUEST_TIMEOUT = 60.0
#: Namespace used by every case.
NAMESPACE = "rewards"
#: Connection ids the parent points at the emulator.
CAPILLARY_CONN_ID = "capillary_default"
HTTP_CONN_ID = "capillary_http"


def _basic_header(user: str, password: str) -> str:
    import base64

    digest = hashlib.md5(password.encode()).hexdigest()  # what Capillary's Basic auth expects
    return "Basic " + base64.b64encode(f"{user}:{digest}".encode()).decode()


def _upload_url(base_url: str, name: str) -> str:
    return f"{base_url}/api_gateway/file-service/{NAMESPACE}/{quote(name)}"


def _check(response: Any, name: str) -> None:
    """Fail like a careful DAG author would: HTTP status and Capillary's ``status`` field."""
    response.raise_for_status()
    body = response.json()
    if str(body.get("status")).lower() != "true":
        raise RuntimeError(f"upload of {name} refused: {body.get('message')!r}")


class ConnectionCounter:
    """Counts the TCP connections urllib3 opens (what ``requests`` and the hook use) while installed.

    Wraps ``urllib3.connection.HTTPConnection._new_conn``, which opens the socket of every HTTP and
    HTTPS connection, reconnections of a pooled connection object included: nothing runs per
    request, only per new socket, so the count costs the measured clients nothing. A context
    manager that restores urllib3 afterwards (the inline runs of ``make test`` share the test
    process).
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> ConnectionCounter:
        from urllib3.connection import HTTPConnection

        original = HTTPConnection.__dict__["_new_conn"]
        self._original = original

        def new_conn(connection: Any) -> Any:
            with self._lock:
                self.count += 1
            return original(connection)

        HTTPConnection._new_conn = new_conn  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc_info: object) -> None:
        from urllib3.connection import HTTPConnection

        if self._original is not None:
            HTTPConnection._new_conn = self._original  # type: ignore[method-assign]
            self._original = None


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


# --------------------------------------------------------------------------------------------
# Uploaders: each returns a callable that uploads every path (the timed part) and its count.
# --------------------------------------------------------------------------------------------


def _requests_post(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """``requests.post(files=...)`` per file: a new connection (and TLS handshake) each time."""
    import requests

    auth = _basic_header(*params["basic"])
    verify = params.get("verify", True)

    def run(paths: list[str]) -> int:
        for path in paths:
            name = os.path.basename(path)
            with open(path, "rb") as handle:
                response = requests.post(
                    _upload_url(params["base_url"], name),
                    files={"file": (name, handle, "image/png")},
                    headers={"Authorization": auth},
                    verify=verify,
                    timeout=REQUEST_TIMEOUT,
                )
            _check(response, name)
        return len(paths)

    return run


def _session_loop(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """A bare ``requests.Session`` post loop: one pooled keep-alive connection."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = _basic_header(*params["basic"])
    # Per request, not ``session.verify``: requests lets REQUESTS_CA_BUNDLE override the latter.
    verify = params.get("verify", True)

    def run(paths: list[str]) -> int:
        for path in paths:
            name = os.path.basename(path)
            with open(path, "rb") as handle:
                response = session.post(
                    _upload_url(params["base_url"], name),
                    files={"file": (name, handle, "image/png")},
                    verify=verify,
                    timeout=REQUEST_TIMEOUT,
                )
            _check(response, name)
        return len(paths)

    return run


def _session_pool(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """A bare ``requests.Session`` shared by a thread pool: the control for the operator's pool."""
    import requests
    from requests.adapters import HTTPAdapter

    workers = int(params["workers"])
    session = requests.Session()
    session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=workers))
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=workers))
    session.headers["Authorization"] = _basic_header(*params["basic"])
    # Per request, not ``session.verify``: requests lets REQUESTS_CA_BUNDLE override the latter.
    verify = params.get("verify", True)

    def upload(path: str) -> None:
        name = os.path.basename(path)
        with open(path, "rb") as handle:
            response = session.post(
                _upload_url(params["base_url"], name),
                files={"file": (name, handle, "image/png")},
                verify=verify,
                timeout=REQUEST_TIMEOUT,
            )
        _check(response, name)

    def run(paths: list[str]) -> int:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(1 for _ in pool.map(upload, paths))

    return run


def _http_hook(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """The http provider's ``HttpHook.run`` per file (it builds a new session on every call)."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="POST", http_conn_id=HTTP_CONN_ID)

    def run(paths: list[str]) -> int:
        for path in paths:
            name = os.path.basename(path)
            with open(path, "rb") as handle:
                response = hook.run(
                    f"api_gateway/file-service/{NAMESPACE}/{quote(name)}",
                    files={"file": (name, handle, "image/png")},
                    extra_options={"timeout": REQUEST_TIMEOUT},
                )
            _check(response, name)
        return len(paths)

    return run


def _hook_serial(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """``CapillaryFileHook.upload_file`` in a loop."""
    from airflow_capillary.hooks.file_service import CapillaryFileHook

    hook = CapillaryFileHook(CAPILLARY_CONN_ID)

    def run(paths: list[str]) -> int:
        for path in paths:
            hook.upload_file(path)
        return len(paths)

    return run


def _hook_pool(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """One hook shared by a thread pool (the operator's design, without the operator)."""
    from airflow_capillary.hooks.file_service import CapillaryFileHook

    workers = int(params["workers"])
    hook = CapillaryFileHook(CAPILLARY_CONN_ID, max_connections=max(workers, 1))

    def run(paths: list[str]) -> int:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(1 for _ in pool.map(hook.upload_file, paths))

    return run


class _TaskInstance:
    """The part of a task instance the operator uses: XCom pushes, kept in memory."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.task_id = "bench_upload"
        self.dag_id = "capillary_bench"
        self.run_id = "bench"
        self.map_index = -1
        self.try_number = 1

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value


def _operator(params: dict[str, Any]) -> Callable[[list[str]], int]:
    """``UploadImageOperator.execute`` with a minimal context; ``source`` param (a folder) or the paths.

    ``workers`` ``None`` keeps the operator's default ``max_workers``.
    """
    from airflow.sdk.bases.operator import ExecutorSafeguard

    from airflow_capillary.operators.upload_image import UploadImageOperator

    def run(paths: list[str]) -> int:
        source = params.get("source") or list(paths)
        workers = params.get("workers")
        kwargs: dict[str, Any] = {} if workers is None else {"max_workers": int(workers)}
        operator = UploadImageOperator(task_id="bench_upload", source=source, **kwargs)
        ti = _TaskInstance()
        context: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": "bench", "params": {}}
        guarded = ExecutorSafeguard.test_mode
        ExecutorSafeguard.test_mode = True  # execute() outside a task runner, on purpose
        try:
            result = operator.execute(context)  # type: ignore[arg-type]
        finally:
            ExecutorSafeguard.test_mode = guarded
        return len(result) if isinstance(result, list) else 1

    return run


UPLOADERS: dict[str, Callable[[dict[str, Any]], Callable[[list[str]], int]]] = {
    "requests_post": _requests_post,
    "session_loop": _session_loop,
    "session_pool": _session_pool,
    "http_hook": _http_hook,
    "hook_serial": _hook_serial,
    "hook_pool": _hook_pool,
    "operator": _operator,
}


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def _timed(
    work: Callable[[], dict[str, Any]], budget: float | None, on_timeout: dict[str, Any]
) -> dict[str, Any]:
    """Run ``work`` and add its ``elapsed`` wall and ``cpu`` seconds, bounded by ``budget``.

    Past the budget, the result is ``on_timeout`` with ``timed_out`` and the times, printed at once,
    and the process leaves (the uploads still running are abandoned). ``work`` runs in a thread so
    that the budget holds whatever it does; its exception is raised here.

    :param work: the timed section; returns the result's other fields.
    :param budget: seconds, or ``None`` for no bound.
    :param on_timeout: the result's other fields when out of time.
    :return: the result.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    cpu0, t0 = time.process_time(), time.perf_counter()
    worker = threading.Thread(target=target, name="bench-timed", daemon=True)
    worker.start()
    worker.join(timeout=budget)
    times = {"elapsed": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
    if worker.is_alive():
        _emit({**times, **on_timeout, "timed_out": True})
        os._exit(0)
    if "error" in outcome:
        raise outcome["error"]
    return {**times, **outcome["result"]}


def throughput(params: dict[str, Any]) -> dict[str, Any]:
    """Upload ``paths`` with ``method``, after uploading the optional ``warmup`` paths untimed.

    Case 1 times the whole batch (no warm-up: opening connections is part of the job); case 2
    warms up first, so that only the steady per-upload cost is counted.

    Bounded in time by the optional ``budget`` (seconds): past it, the result says
    ``timed_out`` and ``count`` is ``None`` (the emulator's log tells how many uploads finished).

    :param params: ``method``, ``paths``, ``warmup`` (optional), ``budget`` (optional), ``base_url``,
        ``basic``, ``verify``, ``workers``, ``source``, ``cprofile`` (optional: a file to write the
        cProfile statistics of the timed section to).
    :return: ``elapsed`` (s), ``cpu`` (s of this process) and ``count`` of the timed uploads, and
        ``connections``: the TCP connections opened over the whole run, warm-up included.
    """
    with ConnectionCounter() as connections:
        run = UPLOADERS[params["method"]](params)
        if params.get("warmup"):
            run(list(params["warmup"]))
        paths = list(params["paths"])

        def work() -> dict[str, Any]:
            if params.get("cprofile"):  # benchmarks/profile.py: the timed section under cProfile
                import cProfile

                profiler = cProfile.Profile(time.process_time)  # CPU, not the wait for answers
                count = profiler.runcall(run, paths)
                profiler.dump_stats(params["cprofile"])
            else:
                count = run(paths)
            return {"count": count, "connections": connections.count}

        budget = float(params["budget"]) if params.get("budget") else None
        return _timed(work, budget, {"count": None, "connections": connections.count})


def batch(params: dict[str, Any]) -> dict[str, Any]:
    """Run ``UploadImageOperator`` once over ``source``, counting failed files instead of failing.

    A :class:`~airflow_capillary.exceptions.CapillaryBatchError` is a result here (the files that
    failed after their retries), any other error fails the measurement. Bounded in time by the
    optional ``budget`` (seconds): past it, the result says ``timed_out`` and the counts are
    ``None`` (the emulator's log tells how many uploads finished).

    :param params: ``source`` (a folder), ``paths`` (its files), ``workers`` (``None``: the default),
        ``budget`` (optional).
    :return: ``elapsed`` and ``cpu`` (s), ``uploaded`` and ``failed`` file counts, ``failure`` (the
        first failure's error, or ``None``).
    """
    from airflow_capillary.exceptions import CapillaryBatchError

    run = _operator(params)
    paths = list(params["paths"])

    def work() -> dict[str, Any]:
        try:
            return {"uploaded": run(paths), "failed": 0, "failure": None}
        except CapillaryBatchError as exc:
            first = exc.failures[0].error if exc.failures else str(exc)
            return {"uploaded": exc.uploaded_count, "failed": len(exc.failures), "failure": first}

    budget = float(params["budget"]) if params.get("budget") else None
    return _timed(work, budget, {"uploaded": None, "failed": None, "failure": None})


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssSampler:
    """Samples this process's resident set size every few milliseconds in a background thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = _current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _current_rss_bytes())

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _current_rss_bytes())


def memory(params: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of this process while uploading one large file, against its RSS just before.

    After imports, set-up and a small warm-up upload, the RSS is read (``before``); during the
    upload a thread samples it every 5 ms, and ``ru_maxrss`` (the kernel's high-water mark) is
    read after it. The peak is the larger of the sampled maximum and ``ru_maxrss`` when that rose
    during the upload (an earlier high-water mark, from imports, says nothing about the upload).

    :param params: ``method``, ``warmup`` (paths), ``path``, ``base_url``, ``basic``.
    :return: ``baseline_rss`` (RSS before) and ``peak_rss`` (bytes), ``elapsed`` (s), ``size`` (bytes).
    """
    run = UPLOADERS[params["method"]](params)
    run(list(params["warmup"]))
    gc.collect()
    before, max_before = _current_rss_bytes(), _max_rss_bytes()
    t0 = time.perf_counter()
    with _RssSampler() as sampler:
        run([params["path"]])
    elapsed = time.perf_counter() - t0
    max_after = _max_rss_bytes()
    peak = max(sampler.peak, max_after if max_after > max_before else 0)
    return {
        "baseline_rss": before,
        "peak_rss": peak,
        "elapsed": elapsed,
        "size": os.path.getsize(params["path"]),
    }


def import_cost(params: dict[str, Any]) -> dict[str, Any]:
    """Wall time of importing ``modules`` on top of ``base`` (both fresh in this process).

    :param params: ``base`` and ``modules``: lists of module names.
    :return: ``base`` and ``added`` seconds.
    """
    import importlib

    t0 = time.perf_counter()
    for name in params["base"]:
        importlib.import_module(name)
    t1 = time.perf_counter()
    for name in params["modules"]:
        importlib.import_module(name)
    return {"base": t1 - t0, "added": time.perf_counter() - t1}


def parse_dag(params: dict[str, Any]) -> dict[str, Any]:
    """Parse one DAG file with ``DagBag`` in a process that has Airflow loaded, as the DAG processor does.

    :param params: ``path``: the DAG file.
    :return: ``parse`` seconds, ``dags``, ``tasks`` and ``mapped_tasks`` counts, ``errors`` (import errors).
    """
    import airflow.sdk  # noqa: F401  (loaded before the parse, as in the DAG processor)
    from airflow.dag_processing.dagbag import DagBag

    t0 = time.perf_counter()
    bag = DagBag(dag_folder=params["path"], safe_mode=False)
    elapsed = time.perf_counter() - t0
    return {
        "parse": elapsed,
        "dags": len(bag.dags),
        "tasks": sum(len(dag.tasks) for dag in bag.dags.values()),
        "mapped_tasks": sum(1 for dag in bag.dags.values() for task in dag.tasks if task.is_mapped),
        "errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()},
    }


MEASUREMENTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "throughput": throughput,
    "batch": batch,
    "memory": memory,
    "import_cost": import_cost,
    "parse_dag": parse_dag,
}


def main(argv: list[str]) -> int:
    """Run one measurement and print its JSON result as the last line.

    :param argv: ``[KIND, JSON]``.
    :return: the exit code.
    """
    kind, raw = argv
    _emit(MEASUREMENTS[kind](json.loads(raw)))
    return 0


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
