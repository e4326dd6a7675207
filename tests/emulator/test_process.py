"""The CLI and the subprocess runner: first lines, kill -9 and restart, SIGTERM, TLS."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from capillary_emulator.connection import CONTROL_TOKEN_ENV
from capillary_emulator.process import EmulatorProcess
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import basic_header, png_bytes

pytestmark = pytest.mark.integration


def _upload(base_url: str, name: str, data, **kwargs) -> requests.Response:
    url = f"{base_url}/api_gateway/file-service/rewards/{name}"
    return requests.post(url, data=data, headers=basic_header(), timeout=10, **kwargs)


def test_cli_prints_base_url_token_then_credentials_and_stops_on_sigterm(tmp_path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "capillary_emulator",
            "--data-dir",
            str(tmp_path),
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={name: value for name, value in os.environ.items() if name != CONTROL_TOKEN_ENV},
    )
    try:
        assert process.stdout is not None
        first, second, third = (process.stdout.readline().strip() for _ in range(3))
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", first)
        assert re.fullmatch(r"control token: [A-Za-z0-9_-]{43}", second)
        token = second.removeprefix("control token: ")
        assert third == "credentials: basic demo / demo-password; oauth demo-key / demo-secret"
        assert requests.get(f"{first}/_emulator/health", timeout=10).json() == {"ok": True}
        settings = f"{first}/_emulator/settings"
        assert (
            requests.get(settings, headers={"X-Emulator-Token": token}, timeout=10).json()["latency"] == 0.001
        )
        assert requests.get(settings, timeout=10).status_code == 401
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert stderr == ""


def test_console_script_and_token_from_the_environment(tmp_path) -> None:
    script = Path(sys.executable).with_name("capillary-emulator")
    env = {**os.environ, CONTROL_TOKEN_ENV: "token-from-env"}
    process = subprocess.Popen(
        [str(script), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        base_url, token_line = process.stdout.readline().strip(), process.stdout.readline().strip()
        assert token_line == "control token: token-from-env"
        answer = requests.get(
            f"{base_url}/_emulator/stats", headers={"X-Emulator-Token": "token-from-env"}, timeout=10
        )
        assert answer.json()["requests"] == {}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert (process.returncode, stderr) == (0, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nopassword"], "expected NAME:SECRET, got 'nopassword'"),
        (["--rate-limit", "fast"], "expected a rate such as 10/s or 100/min, got 'fast'"),
        (["--rate-limit", "0/s"], "the rate must be > 0, got '0/s'"),
        (["--rate-limit-burst", "0"], "expected an integer > 0, got '0'"),
        (["--header-timeout", "soon"], "expected a number > 0, got 'soon'"),
        (["--fault-kinds", "503,meteor"], "unknown fault kind(s) ['meteor']"),
    ],
    ids=["user", "rate", "zero-rate", "burst", "header-timeout", "fault-kinds"],
)
def test_cli_rejects_bad_arguments(args: list[str], message: str, capsys) -> None:
    from capillary_emulator.__main__ import build_parser

    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(args)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_unknown_timezone(capsys) -> None:
    from capillary_emulator.__main__ import main

    assert main(["--timezone", "Mars/Olympus"]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_process_runner_takes_another_interpreter(tmp_path) -> None:
    python = Path(sys.executable)  # a Path works as well as a str
    runner = EmulatorProcess(tmp_path, python=python, args=["--latency-ms", "1"])
    assert runner.command()[:3] == [str(python), "-m", "capillary_emulator"]
    assert EmulatorProcess(tmp_path).command()[0] == sys.executable
    with runner:
        assert runner.configure()["latency"] == 0.001


def test_kill_9_mid_upload_then_restart_keeps_what_was_stored(tmp_path) -> None:
    emulator = EmulatorProcess(tmp_path / "data", users={"till": "pw"}, args=["--rate-limit", "1000/s"])
    emulator.start()
    try:
        header = {"Authorization": basic_header("till", "pw")["Authorization"]}
        stored = {}
        for index in range(3):
            data = png_bytes(100 * index)
            response = requests.post(
                f"{emulator.base_url}/api_gateway/file-service/rewards/f{index}.png",
                data=data,
                headers=header,
                timeout=10,
            )
            stored[f"f{index}.png"] = (hashlib.sha256(data).hexdigest(), response.json()["secureFilePath"])

        started = threading.Event()
        outcome: list[BaseException | requests.Response] = []

        def slow_body():
            yield b"partial" * 1000
            started.set()
            time.sleep(30)  # never finishes: the emulator dies first
            yield b"never"

        def in_flight() -> None:
            try:
                outcome.append(
                    requests.post(
                        f"{emulator.base_url}/api_gateway/file-service/rewards/cut.png",
                        data=slow_body(),
                        headers=header,
                        timeout=10,
                    )
                )
            except requests.RequestException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=in_flight, daemon=True)
        thread.start()
        assert started.wait(10)
        time.sleep(0.2)
        old_url = emulator.base_url
        assert emulator.kill() == -9

        emulator.restart()

        assert emulator.base_url == old_url  # same port: clients retry against the same URL
        files = emulator.stored_files()
        assert [(f["name"], f["version"], f["sha256"]) for f in files] == [
            (name, 1, sha) for name, (sha, _) in stored.items()
        ]
        for name, (sha, url) in stored.items():  # URLs signed before the crash still work
            assert hashlib.sha256(requests.get(url, timeout=10).content).hexdigest() == sha, name
        assert list((tmp_path / "data" / "tmp").iterdir()) == []
        again = requests.post(
            f"{emulator.base_url}/api_gateway/file-service/rewards/f0.png",
            data=b"x",
            headers=header,
            timeout=10,
        )
        assert again.json()["file"]["version"] == 2
    finally:
        emulator.kill()


def test_process_runner_with_tls_and_control_api(tmp_path) -> None:
    with EmulatorProcess(tmp_path, tls=True) as emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        assert emulator.ca_cert_path == str(tmp_path / "tls" / "ca.pem")
        from capillary_emulator.faults import Fault

        emulator.push_fault(Fault(status=502, headers={}))
        assert _upload(emulator.base_url, "a.png", b"1", verify=emulator.ca_cert_path).status_code == 502
        assert _upload(emulator.base_url, "a.png", b"1", verify=emulator.ca_cert_path).status_code == 200
        assert [f["name"] for f in emulator.stored_files()] == ["a.png"]
        assert [e["status"] for e in emulator.requests()] == [502, 200]
        assert emulator.configure(latency=0.002)["latency"] == 0.002
        emulator.reset()
        assert emulator.stored_files() == []
    assert emulator.process is not None
    assert emulator.process.returncode == 0


def test_tls_is_refused_by_default_and_accepted_with_the_ca(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, tls=True) as emu:
        assert emu.base_url.startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            _upload(emu.base_url, "a.png", b"1")

        response = _upload(emu.base_url, "a.png", b"1", verify=emu.ca_cert_path)
        assert response.status_code == 200
        secure = response.json()["secureFilePath"]
        assert secure.startswith(emu.base_url + "/_s3/")
        assert requests.get(secure, verify=emu.ca_cert_path, timeout=10).content == b"1"
        localhost = emu.base_url.replace("127.0.0.1", "localhost")
        assert _upload(localhost, "b.png", b"2", verify=emu.ca_cert_path).status_code == 200
        context = ssl.create_default_context(cafile=emu.ca_cert_path)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert "verify=" in emu.connection_uri()
        ca_pem = (tmp_path / "tls" / "ca.pem").read_bytes()
    with CapillaryEmulator(data_dir=tmp_path, tls=True):  # restart: same CA, clients keep trusting it
        assert (tmp_path / "tls" / "ca.pem").read_bytes() == ca_pem
