"""A small client of Airflow 3's public REST API (``/api/v2``), for end-to-end tests.

It authenticates the way any API user of a SimpleAuthManager deployment does: ``POST /auth/token``
with a username and password gives a JWT, sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import requests

#: Terminal states of a DAG run.
DAG_RUN_FINISHED = frozenset({"success", "failed"})


class AirflowApiError(AssertionError):
    """An API call answered with an unexpected status (an AssertionError: it fails the test)."""


class AirflowApiClient:
    """REST client bound to one deployment and one user.

    :param base_url: the api-server's URL, e.g. ``http://127.0.0.1:41234``.
    :param username: SimpleAuthManager user.
    :param password: that user's password.
    :param timeout: per-request timeout in seconds.
    """

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self.session = requests.Session()
        self._token: str | None = None

    # -- plumbing ---------------------------------------------------------------------------------

    def token(self) -> str:
        """Return a JWT for the user, fetched once through ``POST /auth/token``.

        :return: the access token.
        :raises AirflowApiError: when the server refuses the credentials.
        """
        if self._token is None:
            response = self.session.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self._password},
                timeout=self.timeout,
            )
            if response.status_code != 201:
                raise AirflowApiError(f"POST /auth/token -> {response.status_code}: {response.text[:500]}")
            self._token = str(response.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, *, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call ``/api/v2{path}`` and return the decoded JSON body.

        :param method: HTTP method.
        :param path: path below ``/api/v2`` (starting with ``/``).
        :param expect: accepted status codes.
        :param kwargs: passed to :meth:`requests.Session.request` (``json``, ``params``, ...).
        :return: the JSON body (None for an empty body).
        :raises AirflowApiError: on any other status.
        """
        headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        url = f"{self.base_url}/api/v2{path}"
        # Reads are retried once on a timeout: on a loaded 2-core machine the SQLite-backed
        # api-server has been seen to stall for ~30 s while the scheduler and a task write.
        attempts = 2 if method in ("GET", "HEAD") else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
                break
            except requests.Timeout:
                if attempt == attempts:
                    raise
        if response.status_code not in set(expect):
            raise AirflowApiError(f"{method} /api/v2{path} -> {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET ``/api/v2{path}``; see :meth:`request`.

        :param path: path below ``/api/v2``.
        :param kwargs: passed to :meth:`request`.
        :return: the JSON body.
        """
        return self.request("GET", path, **kwargs)

    @staticmethod
    def _ti_path(dag_id: str, run_id: str, task_id: str) -> str:
        return f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id)}"

    # -- deployment ---------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return ``/api/v2/monitor/health`` (no authentication needed).

        :return: the health document (component -> {"status": ...}).
        """
        response = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=self.timeout)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def import_errors(self) -> list[dict[str, Any]]:
        """Return every DAG import error the dag-processor recorded.

        :return: list of ``{"filename", "stack_trace", ...}``.
        """
        return list(self.get("/importErrors", params={"limit": 100})["import_errors"])

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """Return the DAG's API document, or None while it is not (yet) parsed.

        :param dag_id: the DAG id.
        :return: the DAG or None.
        """
        body = self.request("GET", f"/dags/{quote(dag_id)}", expect=(200, 404))
        return body if body and "dag_id" in body else None

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG.

        :param dag_id: the DAG id.
        """
        self.request("PATCH", f"/dags/{quote(dag_id)}", json={"is_paused": False})

    # -- runs ---------------------------------------------------------------------------------------

    def trigger_dag_run(
        self, dag_id: str, *, conf: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Trigger a manual run now (``POST /dags/{dag_id}/dagRuns``).

        :param dag_id: the DAG id.
        :param conf: the run's ``conf``.
        :param run_id: an explicit run id (default: Airflow's ``manual__...``).
        :return: the created DAG run document (``dag_run_id``, ``state``, ...).
        """
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        result: dict[str, Any] = self.request("POST", f"/dags/{quote(dag_id)}/dagRuns", json=body)
        return result

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Return one DAG run.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :return: the DAG run document.
        """
        result: dict[str, Any] = self.get(f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")
        return result

    def wait_for_dag_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 120.0,
        interval: float = 0.5,
        on_poll: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a DAG run until it is ``success`` or ``failed``.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param timeout: wall-clock deadline in seconds.
        :param interval: pause between polls.
        :param on_poll: called once per poll (e.g. to record task states while the run goes on).
        :return: the finished DAG run document.
        :raises TimeoutError: when the run has not finished by the deadline (states included).
        """
        deadline = time.monotonic() + timeout
        while True:
            if on_poll is not None:
                on_poll()
            run = self.dag_run(dag_id, run_id)
            if run["state"] in DAG_RUN_FINISHED:
                return run
            if time.monotonic() > deadline:
                states = {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}
                raise TimeoutError(
                    f"DAG run {dag_id}/{run_id} still {run['state']} after {timeout:.0f} s; tasks: {states}"
                )
            time.sleep(interval)

    # -- task instances -----------------------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Return every task instance of a run (mapped ones included).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :return: task instance documents (``task_id``, ``map_index``, ``state``, ``try_number``, ...).
        """
        path = f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return list(self.get(path, params={"limit": 1000})["task_instances"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> dict[str, Any]:
        """Return one task instance.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param map_index: the map index (-1 for an unmapped task).
        :return: the task instance document.
        """
        path = self._ti_path(dag_id, run_id, task_id)
        if map_index >= 0:
            path += f"/{map_index}"
        result: dict[str, Any] = self.get(path)
        return result

    def task_instance_tries(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """Return the try history of a task instance (one entry per try, current one included).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param map_index: the map index (-1 for an unmapped task).
        :return: one document per try (``try_number``, ``state``, ``start_date``, ...).
        """
        path = self._ti_path(dag_id, run_id, task_id)
        path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
        return list(self.get(path)["task_instances"])

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", *, map_index: int = -1
    ) -> Any:
        """Return the deserialized value of one XCom.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param key: the XCom key.
        :param map_index: the map index (-1 for an unmapped task).
        :return: the value (JSON).
        """
        path = f"{self._ti_path(dag_id, run_id, task_id)}/xcomEntries/{quote(key)}"
        params = {"map_index": map_index, "deserialize": True, "stringify": False}
        return self.get(path, params=params)["value"]

    def xcom_keys(self, dag_id: str, run_id: str, task_id: str) -> list[str]:
        """Return the XCom keys a task instance pushed.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :return: sorted keys.
        """
        entries = self.get(f"{self._ti_path(dag_id, run_id, task_id)}/xcomEntries")["xcom_entries"]
        return sorted(entry["key"] for entry in entries)

    def extra_links(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> dict[str, Any]:
        """Return the operator extra links of a task instance.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param map_index: the map index (-1 for an unmapped task).
        :return: link name -> URL (None when the link has no value).
        """
        path = f"{self._ti_path(dag_id, run_id, task_id)}/links"
        body = self.get(path, params={"map_index": map_index})
        return dict(body.get("extra_links", body))

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, *, map_index: int = -1
    ) -> str:
        """Return the full log of one try as text (one line per event).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param try_number: the try.
        :param map_index: the map index (-1 for an unmapped task).
        :return: the log text; structured events are rendered as ``event key=value ...``.
        """
        path = f"{self._ti_path(dag_id, run_id, task_id)}/logs/{try_number}"
        body = self.get(path, params={"full_content": True, "map_index": map_index})
        lines: list[str] = []
        for item in body.get("content", []):
            if isinstance(item, dict):
                extra = " ".join(f"{k}={v}" for k, v in item.items() if k not in {"event", "timestamp"})
                lines.append(f"{item.get('event', '')} {extra}".rstrip())
            else:
                lines.append(str(item))
        return "\n".join(lines)
