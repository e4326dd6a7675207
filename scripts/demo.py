"""``make demo``: run the nightly reward-catalogue refresh three times and show what reached Capillary.

Stages (one progress line each; Airflow's own output goes to a log file whose path is printed):

1. start the local emulator of Capillary's file service on a free loopback port, unless
   ``CAPILLARY_CONN`` holds a connection URI of a real cluster;
2. copy the sample reward images to ``.demo/rewards`` and initialise a throw-away
   ``AIRFLOW_HOME`` (SQLite) under ``.demo/``;
3. run ``capillary_reward_catalogue_refresh`` with ``airflow dags test`` three times, with one sync
   manifest (``.demo/payloads/manifest.json``): a first run (every image ``new``), a run with
   nothing changed (every image ``unchanged``, no upload), and a run after one image was edited
   (one ``changed``, as version 2);
4. after each run, print how many uploads the emulator received and a table of the published
   catalogue (file, action, version, handle, size, verified);
5. stop the emulator, write the output to ``.demo/output.txt`` and, against the emulator, into
   README.md between the ``demo-output`` markers (so the README quotes a real run, never a typed one).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
DAG_ID = "capillary_reward_catalogue_refresh"
AIRFLOW = Path(sys.executable).with_name("airflow")
SAMPLES = ROOT / "dags_examples" / "data" / "rewards"
#: The image the third run finds edited.
EDITED = "coffee-voucher.png"
README = ROOT / "README.md"
BEGIN, END = "<!-- demo-output:begin (written by make demo) -->", "<!-- demo-output:end -->"

#: Everything printed, for ``.demo/output.txt`` and the README.
_OUTPUT: list[str] = []


def say(line: str = "") -> None:
    """Print one line and keep it for the output file."""
    print(line, flush=True)
    _OUTPUT.append(line)


def stage(message: str) -> None:
    """Print one progress line."""
    say(f"==> {message}")


def airflow(args: list[str], env: dict[str, str], log_path: Path) -> None:
    """Run an ``airflow`` command with its output appended to ``log_path``."""
    with log_path.open("a") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n")
        log.flush()
        result = subprocess.run(
            [str(AIRFLOW), *args], env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(
            f"`airflow {args[0]} {args[1]}` failed (exit {result.returncode}); "
            f"last lines of {log_path}:\n{tail}"
        )


def edit_png(path: Path, note: str) -> None:
    """Edit a PNG the way an image editor saving metadata would: add a ``tEXt`` chunk after IHDR.

    The picture is the same, the file (and its sha256) is not: a changed image for the sync.
    """
    data = path.read_bytes()
    ihdr_end = 8 + 4 + 4 + struct.unpack(">I", data[8:12])[0] + 4
    body = b"Comment\x00" + note.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    path.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])


def table(rows: list[dict[str, Any]]) -> None:
    """Print the published catalogue as an aligned text table."""
    columns = [
        ("file", "name"),
        ("action", "action"),
        ("version", "version"),
        ("handle", "file_handle"),
        ("size", "file_size"),
        ("verified", "verified"),
    ]
    cells = [[str(row.get(key, "")) for _, key in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _) in enumerate(columns)]
    say("  ".join(title.ljust(w) for (title, _), w in zip(columns, widths, strict=True)).rstrip())
    say("  ".join("-" * w for w in widths))
    for c in cells:
        say("  ".join(value.ljust(w) for value, w in zip(c, widths, strict=True)).rstrip())


def upload_count(emulator: Any) -> int:
    """How many upload requests the emulator answered so far (its counters, never trimmed)."""
    return sum(emulator.stats()["requests"].get("upload", {}).values())


def shown(path: Path) -> str:
    """A path as the output shows it (relative to the repository)."""
    return f"./{path.relative_to(ROOT)}" if path.is_relative_to(ROOT) else str(path)


def write_readme_block() -> None:
    """Replace the README's demo block with this run's output."""
    text = README.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"README.md must hold the markers {BEGIN!r} and {END!r} once each")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    README.write_text(head + BEGIN + "\n```\n" + "\n".join(_OUTPUT) + "\n```\n" + END + tail)


def main() -> int:
    """Run the demo; return the process exit code."""
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    airflow_log = DEMO_DIR / "airflow.log"
    payload_dir = DEMO_DIR / "payloads"
    images = DEMO_DIR / "rewards"
    manifest = payload_dir / "manifest.json"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO_DIR / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "CAPILLARY_PAYLOAD_DIR": str(payload_dir),
        "CAPILLARY_REWARD_IMAGES": str(images),
        "CAPILLARY_MANIFEST": str(manifest),
    }
    emulator = None
    try:
        if os.environ.get("CAPILLARY_CONN"):
            stage("using the Capillary cluster of CAPILLARY_CONN (no emulator)")
            env["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = os.environ["CAPILLARY_CONN"]
        else:
            from capillary_emulator import DEFAULT_PASSWORD, DEFAULT_USER, EmulatorProcess, connection_uri

            emulator = EmulatorProcess(DEMO_DIR / "emulator-data").start()
            stage(f"emulator of Capillary's file service listening on {emulator.base_url}")
            env["AIRFLOW_CONN_CAPILLARY_DEFAULT"] = connection_uri(
                emulator.base_url, DEFAULT_USER, DEFAULT_PASSWORD
            )
        shutil.copytree(SAMPLES, images)
        stage(
            f"initialising a throw-away Airflow home (SQLite); Airflow's output goes to {shown(airflow_log)}"
        )
        airflow(["db", "migrate"], env, airflow_log)
        runs = [
            "the first refresh, no manifest yet",
            "the next night, nothing changed",
            f"the night after, {EDITED} was edited",
        ]
        for number, title in enumerate(runs, start=1):
            if number == 3:
                edit_png(images / EDITED, "edited for the demo's third run")
            say()
            stage(f"run {number} of 3 ({title}): airflow dags test {DAG_ID}")
            before = upload_count(emulator) if emulator is not None else 0
            started = time.monotonic()
            airflow(["dags", "test", DAG_ID], env, airflow_log)
            payloads = sorted(payload_dir.glob("reward-catalogue-*.json"))
            if not payloads:
                raise SystemExit(f"the DAG succeeded but wrote no payload into {payload_dir}")
            rewards = json.loads(payloads[-1].read_text())["rewards"]
            uploaded = sum(r["action"] != "unchanged" for r in rewards)
            count = upload_count(emulator) - before if emulator is not None else uploaded
            noun = "upload" if count == 1 else "uploads"
            received = f"the emulator received {count} {noun}" if emulator else f"{count} {noun} by the task"
            stage(f"DAG run succeeded in {time.monotonic() - started:.1f}s; {received}")
            say()
            table(rewards)
        say()
        say(f"sync manifest:            {shown(manifest)}")
        say(f"reward-catalogue payload: {shown(payloads[-1])}")
        say(f"Airflow log:              {shown(airflow_log)}")
        return 0
    finally:
        if emulator is not None:
            emulator.terminate()
            stage("emulator stopped")
            (DEMO_DIR / "output.txt").write_text("\n".join(_OUTPUT) + "\n")
            if sys.exc_info()[0] is None:
                write_readme_block()


if __name__ == "__main__":
    sys.exit(main())
