"""Bad-input catalogue (issue 7, item 2): every bad input fails with its documented error, uploads nothing.

One table: each case sets up one bad input (a file, a name, a namespace, a connection, an
argument), runs the public entry point a DAG author would (the operator, or the hook), and
expects the documented exception type with a message naming the input. Afterwards the emulator
holds nothing: no version stored, not even half of a batch.

Unreadable files: the tests run as root, which reads anything whatever its mode (``chmod 000``
proves nothing). The unreadable cases are therefore what root cannot read either: a path that
goes *through* a regular file (``ENOTDIR``), a symbolic-link loop (``ELOOP``), a named pipe and a
character device (``/dev/zero``) with an image name (not regular files: opening them would block
or never end).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from capillary_emulator import CapillaryEmulator

from airflow_capillary.exceptions import (
    CapillaryAuthError,
    CapillaryConfigError,
    CapillaryError,
    CapillaryInvalidInputError,
    CapillaryServiceUnavailableError,
)
from airflow_capillary.hooks.file_service import CapillaryFileHook
from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.images import jpeg_bytes, png_bytes
from tests.reliability.conftest import FAST_RETRIES, run_operator

pytestmark = pytest.mark.integration

CONN = "AIRFLOW_CONN_CAPILLARY_DEFAULT"
#: The task policy of every case: one retry, fast.
FAST_POLICY: dict[str, Any] = {"max_retries": 1, **FAST_RETRIES}


@dataclass
class Env:
    """What a case needs: a scratch folder, the emulators, and ways to point the connection."""

    tmp: Path
    emu: CapillaryEmulator
    tls_emu: CapillaryEmulator
    monkeypatch: pytest.MonkeyPatch

    def connect(self, uri: str | None = None, **extras: Any) -> None:
        """Point ``capillary_default`` at the emulator or at ``uri``."""
        self.monkeypatch.setenv(CONN, uri or self.emu.connection_uri(**extras))

    def image(self, name: str, data: bytes | None = None) -> Path:
        """Write a file (a PNG by default) and return its path."""
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes() if data is None else data)
        return path

    def operator(self, source: Any, **kwargs: Any) -> Callable[[], Any]:
        """An action running an UploadImageOperator like the task runner (fast retries)."""
        policy = {**FAST_POLICY, **kwargs}
        return lambda: run_operator(UploadImageOperator(task_id="bad", source=source, **policy))

    def upload(self, source: Any, **kwargs: Any) -> Callable[[], Any]:
        """An action uploading through the hook (fast retries)."""
        return lambda: CapillaryFileHook(**FAST_POLICY).upload_file(source, **kwargs)


#: A case prepares its bad input and returns (the action, a regex its message must match).
Case = Callable[[Env], tuple[Callable[[], Any], str]]


def q(value: object) -> str:
    """The regex of ``repr(value)`` (messages quote the offending value)."""
    return re.escape(repr(value))


def missing_file(env: Env) -> tuple[Callable[[], Any], str]:
    path = str(env.tmp / "missing.png")
    return env.operator(path), rf"source {q(path)} does not exist"


def folder_as_file(env: Env) -> tuple[Callable[[], Any], str]:
    folder = env.tmp / "folder.png"
    folder.mkdir()
    return env.upload(str(folder)), rf"{q(str(folder))} is not a regular file"


def path_through_a_file(env: Env) -> tuple[Callable[[], Any], str]:
    path = str(env.image("plain.png") / "inner.png")  # root cannot read it either: ENOTDIR
    return env.upload(path), rf"file {q(path)} cannot be read: Not a directory"


def symlink_loop(env: Env) -> tuple[Callable[[], Any], str]:
    (env.tmp / "loop-a.png").symlink_to(env.tmp / "loop-b.png")
    (env.tmp / "loop-b.png").symlink_to(env.tmp / "loop-a.png")
    path = str(env.tmp / "loop-a.png")
    return env.upload(path), rf"file {q(path)} cannot be read: Too many levels of symbolic links"


def named_pipe(env: Env) -> tuple[Callable[[], Any], str]:
    path = str(env.tmp / "pipe.png")
    os.mkfifo(path)  # opening it would block: it must be refused before any open()
    return env.operator(path), rf"{q(path)} is not a regular file"


def character_device(env: Env) -> tuple[Callable[[], Any], str]:
    return env.upload("/dev/zero", file_name="zero.png"), rf"{q('/dev/zero')} is not a regular file"


def dangling_symlink(env: Env) -> tuple[Callable[[], Any], str]:
    (env.tmp / "dangling.png").symlink_to(env.tmp / "gone.png")
    path = str(env.tmp / "dangling.png")
    return env.upload(path), rf"file {q(path)} does not exist"


def empty_file(env: Env) -> tuple[Callable[[], Any], str]:
    path = env.image("empty.png", b"")
    return env.operator(str(path)), r"file 'empty.png' is empty \(set allow_empty=true"


def text_with_image_extension(env: Env) -> tuple[Callable[[], Any], str]:
    path = env.image("notes.png", b"these are meeting notes, not a picture\n")
    return env.operator(
        str(path)
    ), r"content of 'notes.png' is not a recognised image, but its extension says png"


def image_with_wrong_extension(env: Env) -> tuple[Callable[[], Any], str]:
    path = env.image("photo.jpg", png_bytes())
    return env.operator(str(path)), r"content of 'photo.jpg' looks like png, but its extension says jpeg"


def no_extension(env: Env) -> tuple[Callable[[], Any], str]:
    return env.upload(png_bytes(), file_name="banner"), r"file name 'banner' has no extension"


def non_image_extension(env: Env) -> tuple[Callable[[], Any], str]:
    path = env.image("catalogue.pdf", b"%PDF-1.7\n")
    return env.operator(str(path)), rf"source {q(str(path))} is not an image"


def name(bad: str, problem: str) -> Case:
    """A case uploading a valid PNG under the bad name ``bad`` (through the operator's file_name)."""

    def case(env: Env) -> tuple[Callable[[], Any], str]:
        return env.operator(str(env.image("ok.png")), file_name=bad), rf"file name {q(bad)} {problem}"

    return case


def namespace_with_slash(env: Env) -> tuple[Callable[[], Any], str]:
    return env.upload(png_bytes(), file_name="ok.png", namespace="rewards/2026"), (
        r"namespace 'rewards/2026' is not a plain path segment"
    )


def operator_namespace_with_slash(env: Env) -> tuple[Callable[[], Any], str]:
    # An operator argument: resolved with the connection, so a configuration error naming the field.
    return env.operator(str(env.image("ok.png")), namespace="rewards/2026"), (
        r"connection 'capillary_default': namespace is invalid: namespace 'rewards/2026' is not a plain"
    )


def namespace_traversal(env: Env) -> tuple[Callable[[], Any], str]:
    return env.upload(png_bytes(), file_name="ok.png", namespace=".."), r"namespace '\.\.' is not a plain"


def glob_matching_nothing(env: Env) -> tuple[Callable[[], Any], str]:
    env.image("catalogue/a.png")
    pattern = str(env.tmp / "catalogue" / "*.gif")
    return env.operator(pattern), rf"source {q(pattern)} matched no image"


def over_max_file_size(env: Env) -> tuple[Callable[[], Any], str]:
    path = env.image("big.png")
    return env.operator(
        str(path), max_file_size=40
    ), rf"file 'big.png' is {path.stat().st_size} bytes, larger than max_file_size 40"


def batch_with_one_bad_file(env: Env) -> tuple[Callable[[], Any], str]:
    env.image("batch/a.png")
    env.image("batch/b.jpg", jpeg_bytes())
    bad = env.image("batch/c.png", b"")
    env.image("batch/d.png")
    return env.operator(str(env.tmp / "batch")), (
        rf"^1 of 4 files cannot be uploaded, so none was: \n  - {re.escape(str(bad))}: "
        r"CapillaryInvalidInputError: file 'c.png' is empty"
    )


def duplicate_names_in_batch(env: Env) -> tuple[Callable[[], Any], str]:
    first, second = env.image("x/logo.png"), env.image("y/logo.png")
    return env.operator([str(first), str(second)]), (
        rf"'logo\.png' <- {re.escape(str(first))}, {re.escape(str(second))}"
    )


def source_of_wrong_type(env: Env) -> tuple[Callable[[], Any], str]:
    return env.operator(42), r"source must be a path, .* got int"


def connection_without_host(env: Env) -> tuple[Callable[[], Any], str]:
    env.connect(json.dumps({"conn_type": "capillary", "login": "demo", "password": "demo-password"}))
    return env.upload(png_bytes(), file_name="a.png"), r"connection 'capillary_default': host is empty"


def unknown_auth_type(env: Env) -> tuple[Callable[[], Any], str]:
    env.connect(env.emu.connection_uri().replace("auth_type=basic", "auth_type=kerberos"))
    return env.upload(png_bytes(), file_name="a.png"), (
        r"connection 'capillary_default': auth_type must be one of basic, oauth, got 'kerberos'"
    )


def extra_not_json(env: Env) -> tuple[Callable[[], Any], str]:
    conn = json.loads(env.emu.connection_json(auth_type="oauth"))
    conn["extra"] = '{"auth_type": "oauth",}'  # a trailing comma: Airflow cannot parse it
    env.connect(json.dumps(conn))
    return env.upload(
        png_bytes(), file_name="a.png"
    ), r"connection 'capillary_default': extra is not valid JSON"


def headers_extra_not_json(env: Env) -> tuple[Callable[[], Any], str]:
    env.connect(headers="{X-Attribution: till")
    return env.upload(png_bytes(), file_name="a.png"), (
        r"connection 'capillary_default': headers must be a JSON object of strings, got text that is not JSON"
    )


def timeout_value(value: str, shown: str) -> Case:
    def case(env: Env) -> tuple[Callable[[], Any], str]:
        env.connect(timeout=value)
        return env.upload(png_bytes(), file_name="a.png"), (
            rf"connection 'capillary_default': timeout must be a number > 0 .*, got {re.escape(shown)}$"
        )

    return case


def max_workers_zero(env: Env) -> tuple[Callable[[], Any], str]:
    return env.operator(str(env.image("ok.png")), max_workers=0), r"max_workers must be from 1 to 64, got 0"


def wrong_password(env: Env) -> tuple[Callable[[], Any], str]:
    env.connect(env.emu.connection_uri(auth_type="basic", password="not-the-password"))
    return env.operator(str(env.image("ok.png"))), (
        r"uploading 'ok\.png' to namespace 'rewards' \(connection 'capillary_default'\): HTTP 401"
    )


def wrong_oauth_secret(env: Env) -> tuple[Callable[[], Any], str]:
    env.connect(env.emu.connection_uri(auth_type="oauth", password="not-the-secret"))
    return env.operator(str(env.image("ok.png"))), (
        r"uploading 'ok\.png' .*OAuth token endpoint .* refused client key 'demo-key': HTTP 401"
    )


def unreachable_host(env: Env) -> tuple[Callable[[], Any], str]:
    with socket.socket() as sock:  # a loopback port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env.connect(f"capillary://demo:pw@http%3A%2F%2F127.0.0.1%3A{port}/")
    return env.operator(str(env.image("ok.png"))), (
        rf"uploading 'ok\.png' .*: cannot reach 127\.0\.0\.1:{port} \(after 2 attempts\): ConnectionError"
    )


def invalid_certificate(env: Env) -> tuple[Callable[[], Any], str]:
    env.connect(env.tls_emu.connection_uri(auth_type="basic", verify="true"))  # the default CA bundle
    return env.operator(str(env.image("ok.png"))), (
        r"uploading 'ok\.png' .*: cannot reach 127\.0\.0\.1:\d+: SSLError.*CERTIFICATE_VERIFY_FAILED"
    )


CASES: list[Any] = [
    pytest.param(missing_file, CapillaryInvalidInputError, id="missing-file"),
    pytest.param(folder_as_file, CapillaryInvalidInputError, id="folder-instead-of-file"),
    pytest.param(path_through_a_file, CapillaryInvalidInputError, id="unreadable-path-through-a-file"),
    pytest.param(symlink_loop, CapillaryInvalidInputError, id="unreadable-symlink-loop"),
    pytest.param(named_pipe, CapillaryInvalidInputError, id="named-pipe"),
    pytest.param(character_device, CapillaryInvalidInputError, id="character-device"),
    pytest.param(dangling_symlink, CapillaryInvalidInputError, id="dangling-symlink"),
    pytest.param(empty_file, CapillaryInvalidInputError, id="empty-file"),
    pytest.param(text_with_image_extension, CapillaryInvalidInputError, id="non-image-with-png-extension"),
    pytest.param(image_with_wrong_extension, CapillaryInvalidInputError, id="png-named-jpg"),
    pytest.param(no_extension, CapillaryInvalidInputError, id="no-extension"),
    pytest.param(non_image_extension, CapillaryInvalidInputError, id="pdf-extension"),
    pytest.param(name("rewards/a.png", "contains a path separator"), CapillaryInvalidInputError, id="slash"),
    pytest.param(
        name("rewards\\a.png", "contains a path separator"), CapillaryInvalidInputError, id="backslash"
    ),
    pytest.param(name("..png.png", "contains '..'"), CapillaryInvalidInputError, id="dot-dot"),
    pytest.param(name("a\x00.png", "contains a control character"), CapillaryInvalidInputError, id="nul"),
    pytest.param(name("a\nb.png", "contains a control character"), CapillaryInvalidInputError, id="newline"),
    pytest.param(
        name("a\x1b[31m.png", "contains a control character"), CapillaryInvalidInputError, id="escape"
    ),
    pytest.param(
        name(" a.png", "starts or ends with white space"), CapillaryInvalidInputError, id="leading-space"
    ),
    pytest.param(
        name("n" * 296 + ".png", "is 300 bytes long in UTF-8, the limit is 255"),
        CapillaryInvalidInputError,
        id="300-character-name",
    ),
    pytest.param(namespace_with_slash, CapillaryInvalidInputError, id="namespace-with-slash"),
    pytest.param(operator_namespace_with_slash, CapillaryConfigError, id="operator-namespace-with-slash"),
    pytest.param(namespace_traversal, CapillaryInvalidInputError, id="namespace-dot-dot"),
    pytest.param(glob_matching_nothing, CapillaryInvalidInputError, id="glob-matching-nothing"),
    pytest.param(over_max_file_size, CapillaryInvalidInputError, id="over-max-file-size"),
    pytest.param(batch_with_one_bad_file, CapillaryInvalidInputError, id="batch-with-one-bad-file"),
    pytest.param(duplicate_names_in_batch, CapillaryInvalidInputError, id="duplicate-names-in-batch"),
    pytest.param(source_of_wrong_type, CapillaryInvalidInputError, id="source-of-wrong-type"),
    pytest.param(connection_without_host, CapillaryConfigError, id="connection-without-host"),
    pytest.param(unknown_auth_type, CapillaryConfigError, id="unknown-auth-type"),
    pytest.param(extra_not_json, CapillaryConfigError, id="extra-not-json"),
    pytest.param(headers_extra_not_json, CapillaryConfigError, id="headers-extra-not-json"),
    pytest.param(timeout_value("0", "'0'"), CapillaryConfigError, id="timeout-zero"),
    pytest.param(timeout_value("-5", "'-5'"), CapillaryConfigError, id="timeout-negative"),
    pytest.param(timeout_value("[5, 0]", "[5, 0]"), CapillaryConfigError, id="read-timeout-zero"),
    pytest.param(max_workers_zero, CapillaryConfigError, id="max-workers-zero"),
    pytest.param(wrong_password, CapillaryAuthError, id="wrong-password"),
    pytest.param(wrong_oauth_secret, CapillaryAuthError, id="wrong-oauth-secret"),
    pytest.param(unreachable_host, CapillaryServiceUnavailableError, id="unreachable-host"),
    pytest.param(invalid_certificate, CapillaryServiceUnavailableError, id="invalid-tls-certificate"),
]


@pytest.mark.parametrize(("case", "error"), CASES)
def test_bad_input(
    case: Case,
    error: type[CapillaryError],
    http_emulator: CapillaryEmulator,
    tls_emulator: CapillaryEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http_emulator.reset()
    tls_emulator.reset()
    env = Env(tmp=tmp_path, emu=http_emulator, tls_emu=tls_emulator, monkeypatch=monkeypatch)
    env.connect()
    action, message = case(env)
    with pytest.raises(CapillaryError) as info:
        action()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(message, str(info.value), re.S), f"{message!r} not in {str(info.value)!r}"
    for emu in (http_emulator, tls_emulator):
        assert emu.stored_files() == [], "a version was stored"
        assert [r for r in emu.requests() if r["file_size"] is not None] == []


GOOD_NAMES = ["gift card.png", "café crème.png", "दिवाली उपहार.png", "ギフト券 2026.png", "Ünïcödé-Ñame.png"]


@pytest.mark.parametrize(
    "file_name", GOOD_NAMES, ids=["spaces", "accents", "devanagari", "japanese", "mixed"]
)
def test_names_with_spaces_and_non_ascii_letters_upload_exactly(
    file_name: str, http_emulator: CapillaryEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_emulator.reset()
    monkeypatch.setenv(CONN, http_emulator.connection_uri())
    path = tmp_path / file_name
    path.write_bytes(png_bytes(seed=7))
    record, _ = run_operator(UploadImageOperator(task_id="good", source=str(path)))
    [stored] = http_emulator.stored_files()
    assert record["name"] == stored["name"] == file_name
    assert (record["file_size"], record["sha256"]) == (stored["size"], stored["sha256"])
    # Percent-encoded on the wire (UTF-8), decoded by the service into the exact name.
    [upload] = [r for r in http_emulator.requests() if r["kind"] == "upload"]
    assert upload["path"] == f"/api_gateway/file-service/rewards/{file_name}"
