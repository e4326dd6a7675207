"""Secret-leak scan (issue 7, item 3): the example DAG in a real deployment leaks no credential.

``dags_examples/capillary_reward_catalogue_refresh.py`` runs in the suite's real Airflow deployment
(scheduler, CeleryExecutor with two workers and their supervised task processes, triggerer, on
PostgreSQL and Redis; not ``dags test``, whose console Airflow does not mask): once on the basic
connection, once on an OAuth copy of it, both while the emulator injects transient faults (so that
retries log their reasons), and once more on the basic connection while every upload is refused
(so that a task fails and its exception is logged).

The secrets are known: the basic password, its MD5, the base64 credentials and the whole
``Authorization`` value; the OAuth client secret and every access token the emulator issued; the
``X-Amz-Security-Token`` and ``X-Amz-Signature`` of every ``secureFilePath`` (every URL the
emulator signed, ``issued_credentials()``, and the upload records). They are searched for in
every file under the deployment's log folder (the task logs the Celery workers wrote) and in the
console logs of every component and both workers, in every task instance's
rendered template fields and task log (REST API), and in every XCom value (REST API), except the
``secure_file_path`` of the upload records, where the user opted in (``include_secure_url``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from capillary_emulator import CapillaryEmulator, Fault
from capillary_emulator.defaults import DEFAULT_OAUTH_CLIENTS, DEFAULT_USERS

from tests.e2e.airflow_deployment import AirflowDeployment

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "dags_examples" / "capillary_reward_catalogue_refresh.py"
EXAMPLE_DAG_ID = "capillary_reward_catalogue_refresh"
IMAGES = REPO_ROOT / "dags_examples" / "data" / "rewards"
#: Query parameters of a pre-signed URL that are credentials.
URL_SECRETS = ("X-Amz-Security-Token", "X-Amz-Signature")


def example_dag(dag_id: str, conn_id: str, payload_dir: Path) -> str:
    """The example DAG's source, renamed, on ``conn_id``, unscheduled, with absolute paths.

    :param dag_id: the DAG id of the copy.
    :param conn_id: the connection of its Capillary tasks.
    :param payload_dir: where its last task writes the catalogue payload.
    :return: the source.
    """
    source = EXAMPLE.read_text()
    edits = [
        (f'dag_id="{EXAMPLE_DAG_ID}"', f'dag_id="{dag_id}"'),
        ('schedule="@daily"', "schedule=None"),
        ('str(Path(__file__).parent / "data" / "rewards")', repr(str(IMAGES))),
        ('"/tmp/capillary-reward-catalogue"', repr(str(payload_dir))),
        ('task_id="upload_images",', f'task_id="upload_images",\n        capillary_conn_id="{conn_id}",'),
        ('task_id="verify_images",', f'task_id="verify_images",\n        capillary_conn_id="{conn_id}",'),
    ]
    for old, new in edits:
        assert source.count(old) == 1, f"the example DAG changed: {old!r} is not there once"
        source = source.replace(old, new)
    return source


@dataclass
class Run:
    """One finished run of a copy of the example DAG."""

    dag_id: str
    run_id: str
    state: str
    task_instances: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scan:
    """Everything the three runs produced, and the secrets to look for."""

    runs: list[Run]
    secrets: dict[str, str]
    texts: dict[str, str]
    opted_in_urls: list[str]


def _trigger_and_wait(
    deployment: AirflowDeployment, dag_ids: list[str], conf: dict[str, Any] | None = None
) -> list[Run]:
    client = deployment.client
    started = {dag_id: client.trigger_dag_run(dag_id, conf=conf)["dag_run_id"] for dag_id in dag_ids}
    runs = []
    for dag_id, run_id in started.items():
        finished = client.wait_for_dag_run(dag_id, run_id, timeout=240)
        runs.append(Run(dag_id, run_id, finished["state"], client.task_instances(dag_id, run_id)))
    return runs


def _secrets(emu: CapillaryEmulator, urls: list[str]) -> dict[str, str]:
    """Name -> value of every secret the runs used (all known to the emulator or in the records)."""
    (user, password), (_key, client_secret) = (
        next(iter(DEFAULT_USERS.items())),
        next(iter(DEFAULT_OAUTH_CLIENTS.items())),
    )
    digest = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    basic = base64.b64encode(f"{user}:{digest}".encode()).decode()
    found = {
        "basic password": password,
        "MD5 of the password": digest,
        "base64 Basic credentials": basic,
        "OAuth client secret": client_secret,
    }
    # The emulator's request log redacts what it receives; what it handed out comes from here.
    issued = emu.issued_credentials()
    for token in issued["access_tokens"]:
        found[f"access token {token[-8:]}"] = token
    url_secrets = {"X-Amz-Signature": "url_signatures", "X-Amz-Security-Token": "url_security_tokens"}
    for name, values in url_secrets.items():
        for value in issued[values]:
            found[f"{name} {value[-8:]}"] = value
    for url in urls:
        for name, value in parse_qsl(urlsplit(url).query):
            if name in URL_SECRETS:
                found[f"{name} {value[-8:]}"] = value
    return found


def _api_texts(deployment: AirflowDeployment, runs: list[Run], opted_in_urls: list[str]) -> dict[str, str]:
    """Rendered fields, task logs and XCom values of every task instance, as text, by origin."""
    client = deployment.client
    texts: dict[str, str] = {}
    for run in runs:
        for ti in run.task_instances:
            task_id, map_index = ti["task_id"], ti["map_index"]
            where = f"{run.dag_id}/{run.run_id}/{task_id}[{map_index}]"
            document = client.task_instance(run.dag_id, run.run_id, task_id, map_index=map_index)
            texts[f"rendered fields of {where}"] = json.dumps(document.get("rendered_fields"))
            for try_number in range(1, (ti.get("try_number") or 0) + 1):
                texts[f"task log (API) of {where} try {try_number}"] = client.task_log(
                    run.dag_id, run.run_id, task_id, try_number, map_index=map_index
                )
            for xcom_key in client.xcom_keys(run.dag_id, run.run_id, task_id):
                value = client.xcom(run.dag_id, run.run_id, task_id, xcom_key, map_index=map_index)
                if task_id == "upload_images" and xcom_key in ("return_value", "uploaded"):
                    value = _without_opted_in_urls(value, opted_in_urls)
                texts[f"XCom {xcom_key} of {where}"] = json.dumps(value)
    return texts


def _without_opted_in_urls(value: Any, urls: list[str]) -> Any:
    """The upload records without their ``secure_file_path`` (collected into ``urls``)."""
    records = value if isinstance(value, list) else [value]
    kept = []
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("secure_file_path"), str):
            urls.append(record["secure_file_path"])
            record = {k: v for k, v in record.items() if k != "secure_file_path"}
        kept.append(record)
    return kept


@pytest.fixture(scope="module")
def scan(
    airflow_deployment: AirflowDeployment,
    e2e_emulator: CapillaryEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scan:
    """Run the three copies of the example DAG and collect everything the deployment kept."""
    payloads = tmp_path_factory.mktemp("payloads")
    copies = {"leak_scan_basic": "capillary_default", "leak_scan_oauth": "capillary_oauth"}
    for dag_id, conn_id in copies.items():
        # Each copy has its own payload folder, so its own sync manifest.
        airflow_deployment.add_dag_file(f"{dag_id}.py", example_dag(dag_id, conn_id, payloads / dag_id))
    for dag_id in copies:
        airflow_deployment.wait_for_dag(dag_id, file_name=f"{dag_id}.py", timeout=90)

    # Transient faults for both runs: the retries log their reasons (HTTP statuses, bad answers).
    # A 503 without Retry-After is retried (with one, the hook pauses for it: no retry line).
    e2e_emulator.push_faults(
        [
            Fault(status=503, headers={}, times=2),
            Fault(action="malformed_json"),
            Fault(action="status_false"),
            Fault(status=503, headers={"Retry-After": "1"}, match="token"),
        ]
    )
    try:
        runs = _trigger_and_wait(airflow_deployment, list(copies))
    finally:
        e2e_emulator.state.faults.clear()
    # A run that fails: every upload is refused, so the task's exception is logged. The manifest
    # knows every image by now: force_upload sends them again, into the refusals.
    e2e_emulator.push_fault(Fault(status=401, headers={}, times=None))
    try:
        runs += _trigger_and_wait(airflow_deployment, ["leak_scan_basic"], conf={"force_upload": True})
    finally:
        e2e_emulator.state.faults.clear()

    opted_in_urls: list[str] = []
    texts = _api_texts(airflow_deployment, runs, opted_in_urls)
    for path in airflow_deployment.task_log_files():
        texts[f"log file {path.relative_to(airflow_deployment.logs_folder)}"] = path.read_text(
            errors="replace"
        )
    for name in airflow_deployment.processes:
        texts[f"{name} console log"] = airflow_deployment.component_log(name)
    return Scan(runs, _secrets(e2e_emulator, list(opted_in_urls)), texts, opted_in_urls)


def test_the_runs_did_what_the_scan_needs(scan: Scan) -> None:
    """The scan is only worth something if the runs used every kind of secret and logged failures."""
    assert [(run.dag_id, run.state) for run in scan.runs] == [
        ("leak_scan_basic", "success"),
        ("leak_scan_oauth", "success"),
        ("leak_scan_basic", "failed"),
    ]
    assert len(set(scan.opted_in_urls)) == 2 * len(list(IMAGES.iterdir()))  # return_value = uploaded
    kinds = {name.split(" ")[0] for name in scan.secrets}
    assert {"access", *URL_SECRETS} <= kinds, sorted(scan.secrets)
    logs = "\n".join(text for origin, text in scan.texts.items() if origin.startswith("log file"))
    assert re.search(r"attempt 1 of 6 failed: uploading .*\): HTTP 503", logs)
    assert "CapillaryBatchError" in logs
    assert "HTTP 401" in logs


def _hits(scan: Scan, origins: tuple[str, ...]) -> list[str]:
    """Every occurrence of a secret (as is, or percent-encoded) in the texts of the given origins."""
    hits = []
    for origin, text in scan.texts.items():
        if not origin.startswith(origins):
            continue
        for name, value in scan.secrets.items():
            for form in {value, quote(value, safe="")}:
                position = text.find(form)
                if position >= 0:
                    context = text[max(0, position - 80) : position + len(form) + 40].replace("\n", " ")
                    hits.append(f"{name} in {origin}: ...{context}...")
    return hits


@pytest.mark.parametrize(
    "origins",
    [
        ("log file", "task log (API)"),
        (
            "api-server console",
            "scheduler console",
            "dag-processor console",
            "triggerer console",
            "celery-worker1 console",
            "celery-worker2 console",
        ),
        ("rendered fields",),
        ("XCom",),
    ],
    ids=["task-logs-and-exceptions", "component-logs", "rendered-fields", "xcom"],
)
def test_no_secret(scan: Scan, origins: tuple[str, ...]) -> None:
    assert any(origin.startswith(origins) for origin in scan.texts), f"nothing scanned for {origins}"
    hits = _hits(scan, origins)
    assert hits == [], f"{len(hits)} secret(s) found:\n" + "\n".join(hits)
