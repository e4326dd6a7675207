"""Catalogue sync against the emulator over loopback: the uploads it receives are counted exactly.

Every test counts the upload requests the emulator received (``kind == "upload"``) and the
versions it stores, run after run of ``UploadImageOperator`` with a local manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from capillary_emulator import CapillaryEmulator

from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.integration.test_operator_emulator import run
from tests.operators.images import write_images

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = ["a.png", "b.jpg", "c.webp", "d.png", "e.png", "f.jpg"]
#: Longest a child task of the concurrency test may take (seconds).
CHILD_TIMEOUT = 120


@pytest.fixture
def images(tmp_path: Path) -> Path:
    write_images(tmp_path / "catalogue", NAMES)
    return tmp_path / "catalogue"


def upload_count(emu: CapillaryEmulator) -> int:
    """How many upload requests the emulator received so far."""
    return sum(1 for r in emu.requests() if r["kind"] == "upload")


def versions(emu: CapillaryEmulator) -> dict[str, list[int]]:
    """Name -> the versions the emulator stores, oldest first."""
    stored: dict[str, list[int]] = {}
    for f in emu.stored_files():
        stored.setdefault(f["name"], []).append(f["version"])
    return stored


def refusal(manifest: Path | str, problem: str) -> str:
    """The whole message of a manifest that cannot be used."""
    return (
        f"manifest '{manifest}' {problem}. Nothing was uploaded: a manifest that cannot be used is never "
        "taken as empty (that would upload every file again as a new version); fix it, or move it away to "
        "start over"
    )


def sync(images: Path, manifest: Path, **kwargs: Any) -> list[dict[str, Any]]:
    op = UploadImageOperator(
        task_id="sync", source=str(images), manifest=str(manifest), max_workers=3, **kwargs
    )
    result, _ = run(op)
    return result


def test_second_run_uploads_nothing(capillary_conn: CapillaryEmulator, images: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "rewards.json"
    first = sync(images, manifest)
    assert upload_count(capillary_conn) == 6
    assert [r["action"] for r in first] == ["new"] * 6
    second = sync(images, manifest)
    assert upload_count(capillary_conn) == 6  # no upload on the second run
    assert [r["action"] for r in second] == ["unchanged"] * 6
    assert [(r["name"], r["file_handle"], r["version"]) for r in second] == [
        (r["name"], r["file_handle"], r["version"]) for r in first
    ]
    assert versions(capillary_conn) == {name: [1] for name in NAMES}
    stored = {f["name"]: f for f in capillary_conn.stored_files()}
    for record in second:  # the manifest's record is what Capillary stores
        assert (record["sha256"], record["file_size"], record["s3_token"]) == (
            stored[record["name"]]["sha256"],
            stored[record["name"]]["size"],
            stored[record["name"]]["s3_token"],
        )


def test_one_changed_file_is_one_upload_as_version_2(
    capillary_conn: CapillaryEmulator, images: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "rewards.json"
    first = sync(images, manifest)
    write_images(images / "new", ["d.png"])  # another image under the same name
    (images / "new" / "d.png").replace(images / "d.png")
    (images / "new").rmdir()
    before = upload_count(capillary_conn)
    result = sync(images, manifest)
    assert upload_count(capillary_conn) - before == 1
    assert [(r["name"], r["action"], r["version"]) for r in result] == [
        (name, "changed" if name == "d.png" else "unchanged", 2 if name == "d.png" else 1) for name in NAMES
    ]
    assert versions(capillary_conn)["d.png"] == [1, 2]
    changed = result[NAMES.index("d.png")]
    assert changed["file_handle"] != first[NAMES.index("d.png")]["file_handle"]
    assert json.loads(manifest.read_text())["entries"]["rewards/d.png"]["version"] == 2


def test_a_name_prefix_is_a_new_entry(
    capillary_conn: CapillaryEmulator, images: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "rewards.json"
    sync(images, manifest)
    result = sync(images, manifest, name_prefix="diwali-")
    assert upload_count(capillary_conn) == 12
    assert [(r["name"], r["action"], r["version"]) for r in result] == [
        (f"diwali-{n}", "new", 1) for n in NAMES
    ]
    assert sorted(json.loads(manifest.read_text())["entries"]) == sorted(
        [f"rewards/{n}" for n in NAMES] + [f"rewards/diwali-{n}" for n in NAMES]
    )


def test_force_upload_uploads_everything(
    capillary_conn: CapillaryEmulator, images: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "rewards.json"
    sync(images, manifest)
    result = sync(images, manifest, force_upload=True)
    assert upload_count(capillary_conn) == 12
    assert [(r["action"], r["version"]) for r in result] == [("changed", 2)] * 6
    assert versions(capillary_conn) == {name: [1, 2] for name in NAMES}
    assert {e["version"] for e in json.loads(manifest.read_text())["entries"].values()} == {2}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{\x00\x13garbage", "is not valid JSON: truncated or corrupt (Expecting property name enclosed in "
         "double quotes: line 1 column 2)"),
        (b'{"entries": {"rewards/a.png": {"sha256": "95b2', "is not valid JSON: truncated or corrupt "
         "(Unterminated string starting at: line 1 column 42)"),
        (b'{"format": 2, "entries": {}}', "has format 2; this version of the provider reads format 1"),
    ],
    ids=["corrupt", "truncated", "wrong-format"],
)  # fmt: skip
def test_a_bad_manifest_fails_with_no_request_at_all(
    capillary_conn: CapillaryEmulator, images: Path, tmp_path: Path, content: bytes, problem: str
) -> None:
    manifest = tmp_path / "rewards.json"
    manifest.write_bytes(content)
    with pytest.raises(CapillaryInvalidInputError) as info:
        sync(images, manifest)
    assert str(info.value) == refusal(manifest, problem)
    assert capillary_conn.requests() == []
    assert manifest.read_bytes() == content


def test_an_unwritable_manifest_fails_with_no_request_at_all(
    capillary_conn: CapillaryEmulator, images: Path, tmp_path: Path
) -> None:
    (tmp_path / "state").write_text("a file where the manifest's folder should be")
    manifest = tmp_path / "state" / "rewards.json"
    with pytest.raises(CapillaryInvalidInputError) as info:
        sync(images, manifest)
    assert str(info.value) == refusal(manifest, "cannot be read or written (a part of its path is a file)")
    assert capillary_conn.requests() == []


def _child(source: str, manifest: str, ready: str, go: str) -> None:  # pragma: no cover - in the child
    """One task of the concurrency test: signal ready, wait for go, then sync ``source``."""
    from unittest import mock

    from airflow.sdk.execution_time.context import OutletEventAccessors

    Path(ready).touch()
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.01)
    op = UploadImageOperator(
        task_id="sync", source=source, manifest=manifest, max_workers=2, manifest_checkpoint_uploads=1
    )
    op.execute({"ti": mock.MagicMock(), "outlet_events": OutletEventAccessors()})


def test_two_concurrent_tasks_on_one_manifest_lose_no_entry(
    capillary_conn: CapillaryEmulator, tmp_path: Path
) -> None:
    capillary_conn.configure(latency=0.02)  # each batch spans many checkpoints of the other
    halves = {
        "left": [f"left-{i:02d}.png" for i in range(15)],
        "right": [f"right-{i:02d}.png" for i in range(15)],
    }
    for half, names in halves.items():
        write_images(tmp_path / half, names)
    manifest = tmp_path / "shared" / "rewards.json"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.test_sync_emulator",
                str(tmp_path / half),
                str(manifest),
                str(tmp_path / f"{half}.ready"),
                str(go),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for half in halves
    ]
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not all((tmp_path / f"{half}.ready").exists() for half in halves):
        assert time.monotonic() < deadline, "the child tasks did not start"
        assert all(child.poll() is None for child in children), [child.communicate()[0] for child in children]
        time.sleep(0.01)
    go.touch()  # both start uploading now
    outputs = [child.communicate(timeout=CHILD_TIMEOUT)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    entries = json.loads(manifest.read_text())["entries"]
    assert sorted(entries) == sorted(f"rewards/{n}" for names in halves.values() for n in names)
    assert upload_count(capillary_conn) == 30
    # They did overlap: each one's uploads began before the other's ended.
    times = {
        half: [r["time"] for r in capillary_conn.requests() if r["kind"] == "upload" and half in r["path"]]
        for half in halves
    }
    assert min(times["left"]) < max(times["right"])
    assert min(times["right"]) < max(times["left"])
    # And the merged manifest is a true record: a run over both halves uploads nothing.
    result = sync(tmp_path / "left", manifest) + sync(tmp_path / "right", manifest)
    assert [r["action"] for r in result] == ["unchanged"] * 30
    assert upload_count(capillary_conn) == 30


if __name__ == "__main__":
    _child(*sys.argv[1:5])
