"""Unit tests of UploadImageOperator's construction and lifecycle: arguments, hook, on_kill, imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_capillary.exceptions import CapillaryBatchError, CapillaryConfigError, CapillaryError
from airflow_capillary.operators._pool import BoundedPool
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.fakes import FakeHook, make_context, pushed, record

#: Longest a held upload waits for the test to release it: it only ends a broken run (a hang);
#: no assertion depends on it.
WAIT = 30.0


def test_template_fields() -> None:
    assert UploadImageOperator.template_fields == (
        "source",
        "file_name",
        "name_prefix",
        "namespace",
        "content_type",
        "capillary_conn_id",
        "manifest",
        "force_upload",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_workers": 0}, r"^max_workers must be from 1 to 64, got 0$"),
        ({"max_workers": 65}, r"^max_workers must be from 1 to 64, got 65$"),
        ({"max_workers": "8"}, r"^max_workers must be an int from 1 to 64$"),
        ({"max_workers": True}, r"^max_workers must be an int from 1 to 64$"),
        ({"rename": "upper"}, r"^rename must be a callable taking and returning a file name$"),
        ({"progress_interval": -1}, r"^progress_interval must be a number of seconds >= 0, got -1$"),
        ({"progress_interval": "10"}, r"^progress_interval must be a number of seconds >= 0, got '10'$"),
    ],
    ids=["zero", "too-many", "str", "bool", "rename-not-callable", "negative-interval", "str-interval"],
)
def test_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CapillaryConfigError, match=message):
        UploadImageOperator(task_id="up", source="/x.png", **kwargs)


def test_init_only_stores_and_hook_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    op = UploadImageOperator(
        task_id="up", source="/nowhere/*.png", capillary_conn_id="c1", namespace="ns", max_workers=3
    )
    assert (op.source, op.capillary_conn_id, op.namespace, op.max_workers) == (
        "/nowhere/*.png",
        "c1",
        "ns",
        3,
    )
    hook_cls = mock.MagicMock(name="CapillaryFileHook")
    monkeypatch.setattr("airflow_capillary.hooks.file_service.CapillaryFileHook", hook_cls)
    assert op.hook is op.hook
    hook_cls.assert_called_once_with("c1", namespace="ns", max_connections=3)


def test_on_kill_stops_the_pool_promptly(images: Path, mocker: Any) -> None:
    hook = FakeHook()
    release = threading.Event()
    uploading_second = threading.Event()
    returned: list[str] = []
    original = hook.upload

    def slow_upload(prepared: Any) -> Any:
        if prepared.file_name != "a.png":
            uploading_second.set()
            release.wait(WAIT)  # held until the test has seen execute() end
        result = original(prepared)
        returned.append(prepared.file_name)
        return result

    hook.upload = slow_upload  # type: ignore[method-assign]
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    op = UploadImageOperator(task_id="up", source=str(images), max_workers=1)
    mocker.patch(
        "airflow_capillary.operators.upload_image.BoundedPool",
        side_effect=lambda n: BoundedPool(n, poll_interval=0.01),
    )

    def kill_during_second_upload() -> None:
        # Validation is over and a.png uploaded: the task is killed while b.jpg is in flight.
        if uploading_second.wait(WAIT):
            op.on_kill()

    killer = threading.Thread(target=kill_during_second_upload)
    killer.start()
    context = make_context()
    with pytest.raises(CapillaryBatchError) as info:
        op.execute(context)
    # execute() ended while b.jpg's upload was still held: on_kill did not wait for it.
    returned_before_release = list(returned)
    release.set()
    killer.join()
    assert returned_before_release == ["a.png"]
    assert [f.error for f in info.value.failures] == [
        "PoolStoppedError: not attempted: the task was stopped"
    ] * 2
    assert pushed(context)["uploaded"] == [record(images / "a.png")]


def test_the_hook_built_by_the_operator_is_shared_and_closed(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook()
    built: list[tuple[Any, ...]] = []

    def build(*args: Any, **kwargs: Any) -> FakeHook:
        built.append((args, kwargs))
        return hook

    monkeypatch.setattr("airflow_capillary.hooks.file_service.CapillaryFileHook", build)
    UploadImageOperator(task_id="up", source=str(images), max_workers=5).execute(make_context())
    assert built == [(("capillary_default",), {"namespace": None, "max_connections": 5})]
    assert (len(hook.prepared), len(hook.uploads), hook.closed) == (3, 3, 1)


class Interrupted(BaseException):
    """Stands for AirflowTaskTimeout / a signal raised in the main thread while it waits."""


def test_interrupt_mid_batch_pushes_what_uploaded_then_propagates(images: Path, mocker: Any) -> None:
    hook = FakeHook()
    release = threading.Event()
    original = hook.upload

    def upload(prepared: Any) -> Any:
        if prepared.file_name == "c.webp":
            release.wait(WAIT)  # held until the test has seen the interrupt propagate
        return original(prepared)

    hook.upload = upload  # type: ignore[method-assign]
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    mocker.patch(
        "airflow_capillary.operators.upload_image.BoundedPool",
        side_effect=lambda n: BoundedPool(n, poll_interval=0.01),
    )

    def tick(self: Any) -> None:
        if self.done >= 2:
            raise Interrupted()

    mocker.patch("airflow_capillary.operators._progress.UploadProgress.tick", tick)
    context = make_context()
    with pytest.raises(Interrupted):
        UploadImageOperator(task_id="up", source=str(images), max_workers=1).execute(context)
    release.set()
    assert pushed(context) == {
        "uploaded": [record(images / "a.png"), record(images / "b.jpg")],
        "file_handles": {"a.png": "handle-a.png", "b.jpg": "handle-b.jpg"},
    }


def test_on_kill_while_validating_uploads_nothing(images: Path, mocker: Any) -> None:
    hook = FakeHook()
    op = UploadImageOperator(task_id="up", source=str(images), max_workers=1)
    original = hook.prepare_upload

    def prepare(source: Any, **kwargs: Any) -> Any:
        op.on_kill()
        return original(source, **kwargs)

    hook.prepare_upload = prepare  # type: ignore[method-assign]
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    context = make_context()
    with pytest.raises(
        CapillaryError, match=r"^upload stopped \(on_kill\) while validating the files: nothing"
    ):
        op.execute(context)
    assert hook.uploads == []
    context["ti"].xcom_push.assert_not_called()


def test_on_kill_before_execute_is_harmless() -> None:
    UploadImageOperator(task_id="up", source="/x.png").on_kill()


def test_dag_parse_imports_nothing_heavy() -> None:
    # Beyond what any DAG file already imports (the task SDK), only the provider's light modules.
    code = (
        "import sys\n"
        "from airflow.sdk import BaseOperator, BaseOperatorLink\n"
        "before = set(sys.modules)\n"
        "import airflow_capillary.operators.upload_image\n"
        "print(sorted(set(sys.modules) - before - {'airflow_capillary'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    if "MUTANT_UNDER_TEST" in os.environ:
        # Under make mutation, each mutated module's trampoline reads mutmut's config (tomllib).
        imported = [name for name in imported if name.partition(".")[0] not in {"mutmut", "tomllib"}]
    assert imported == (
        [
            "airflow_capillary._redact",
            "airflow_capillary._validation",
            "airflow_capillary.exceptions",
            "airflow_capillary.links",
            "airflow_capillary.operators",
            "airflow_capillary.operators._arguments",
            "airflow_capillary.operators._expand",
            "airflow_capillary.operators._pool",
            "airflow_capillary.operators._progress",
            "airflow_capillary.operators._report",
            "airflow_capillary.operators.upload_image",
            "airflow_capillary.settings",
        ]
    )
