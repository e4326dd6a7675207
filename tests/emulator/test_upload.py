"""The upload endpoint over real sockets: documented answer, versions, auth, body variants, validation."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import KEY, SECRET, basic_header, png_bytes, upload, upload_url

pytestmark = pytest.mark.integration

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_answer_has_the_documented_shape_and_json_types(emu: CapillaryEmulator) -> None:
    data = png_bytes(100)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    response = upload(emu, "test.png", data)
    after = datetime.now(timezone.utc)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["code", "status", "message", "file", "secureFilePath"]
    assert (body["code"], body["status"], body["message"]) == (200, "true", "Successfully uploaded file")
    file = body["file"]
    assert list(file) == [
        "name",
        "namespace",
        "version",
        "acl",
        "fileSize",
        "file_handle",
        "content_type",
        "s3_token",
        "latest_version",
        "last_modified",
        "s3_url",
    ]
    assert file["name"] == "test.png"
    assert file["namespace"] == "rewards"
    assert file["version"] == 1
    assert type(file["version"]) is int
    assert file["latest_version"] == 1
    assert type(file["latest_version"]) is int
    assert file["acl"] == "PRIVATE"
    assert file["fileSize"] == str(len(data))
    assert UUID4.match(file["file_handle"])
    assert file["content_type"] == "image/png"
    token_uuid = file["s3_token"].removeprefix("rewards/100606/").removesuffix(".png")
    assert file["s3_token"] == f"rewards/100606/{token_uuid}.png"
    assert UUID4.match(token_uuid)
    assert file["s3_url"] == f"s3://emulator-solutions/{file['s3_token']}"
    # last_modified is Asia/Kolkata wall time (UTC+05:30), without a zone
    local = datetime.strptime(file["last_modified"], "%Y-%m-%d %H:%M:%S")
    as_utc = (local - timedelta(hours=5, minutes=30)).replace(tzinfo=timezone.utc)
    assert before <= as_utc <= after

    url = urlsplit(body["secureFilePath"])
    assert f"{url.scheme}://{url.netloc}" == emu.base_url
    assert url.path == f"/_s3/emulator-solutions/{file['s3_token']}"
    query = parse_qs(url.query)
    assert list(query) == [
        "X-Amz-Security-Token",
        "X-Amz-Algorithm",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Expires",
        "X-Amz-Credential",
        "X-Amz-Signature",
    ]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Expires"] == ["3600"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= signed_at <= after
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}/\d{8}/eu-west-1/s3/aws4_request", query["X-Amz-Credential"][0])
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"][0])

    [stored] = emu.stored_files()
    assert {k: stored[k] for k in ("namespace", "name", "version", "size", "sha256", "placeholder")} == {
        "namespace": "rewards",
        "name": "test.png",
        "version": 1,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "placeholder": False,
    }
    assert (stored["file_handle"], stored["s3_token"]) == (file["file_handle"], file["s3_token"])


def test_timezone_is_configurable(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path, timezone="UTC") as emu:
        before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
        stamp = datetime.strptime(upload(emu).json()["file"]["last_modified"], "%Y-%m-%d %H:%M:%S")
        assert before <= stamp <= datetime.now(timezone.utc).replace(tzinfo=None)


def test_versions_count_per_namespace_and_name(emu: CapillaryEmulator) -> None:
    def version(name: str, namespace: str = "rewards") -> tuple[int, int]:
        response = requests.post(
            upload_url(emu, name, namespace), data=png_bytes(), headers=basic_header(), timeout=10
        )
        file = response.json()["file"]
        return file["version"], file["latest_version"]

    assert [version("a.png"), version("a.png"), version("b.png"), version("a.png")] == [
        (1, 1),
        (2, 2),
        (1, 1),
        (3, 3),
    ]
    assert version("a.png", "catalog") == (1, 1)
    handles = {f["file_handle"] for f in emu.stored_files()}
    tokens = {f["s3_token"] for f in emu.stored_files()}
    assert len(handles) == len(tokens) == 5


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (basic_header(), 200),
        (basic_header(password="wrong"), 401),
        (basic_header(hashed=False), 401),
        (basic_header(user="nobody"), 401),
        ({"Authorization": "Basic not-base64!"}, 401),
        ({"Authorization": "Digest abc"}, 401),
        ({}, 401),
        ({"X-CAP-API-OAUTH-TOKEN": "not.a.token"}, 401),
        ({"Authorization": "Bearer nonsense"}, 401),
    ],
    ids=[
        "md5-ok",
        "wrong-password",
        "plain-password",
        "unknown-user",
        "bad-base64",
        "other-scheme",
        "none",
        "bad-token",
        "bad-bearer",
    ],
)
def test_basic_auth(emu: CapillaryEmulator, headers: dict[str, str], status: int) -> None:
    response = requests.post(upload_url(emu, "a.png"), data=png_bytes(), headers=headers, timeout=10)

    assert response.status_code == status
    if status == 401:
        assert response.json() == {
            "code": 401,
            "status": "false",
            "message": "Unauthorized: invalid or missing credentials",
        }
        assert emu.stored_files() == []


def test_md5_comparison_ignores_hex_case(emu: CapillaryEmulator) -> None:
    import base64

    digest = hashlib.md5(b"demo-password").hexdigest().upper()
    header = {"Authorization": "Basic " + base64.b64encode(f"demo:{digest}".encode()).decode()}
    assert requests.post(upload_url(emu, "a.png"), data=b"x", headers=header, timeout=10).status_code == 200


@pytest.mark.parametrize("header", ["X-CAP-API-OAUTH-TOKEN", "Authorization"], ids=["cap-header", "bearer"])
def test_oauth_token_is_accepted(emu: CapillaryEmulator, header: str) -> None:
    token = requests.post(
        f"{emu.base_url}/v3/oauth/token/generate", json={"key": KEY, "secret": SECRET}, timeout=10
    ).json()["data"]["accessToken"]
    value = token if header != "Authorization" else f"Bearer {token}"

    response = requests.post(upload_url(emu, "a.png"), data=b"x", headers={header: value}, timeout=10)

    assert response.status_code == 200
    assert emu.requests()[-1]["principal"] == f"oauth:{KEY}"


def test_large_body_refused_by_auth_still_gets_the_401(emu: CapillaryEmulator) -> None:
    data = b"\0" * (8 << 20)
    response = requests.post(upload_url(emu, "a.png"), data=data, headers=basic_header("x"), timeout=10)
    assert response.status_code == 401


def _chunks(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("kwargs", "content_type"),
    [
        ({"files": {"file": ("ignored.bin", png_bytes(10), "image/png")}}, "image/png"),
        ({"files": {"image": ("x.png", png_bytes(10), "image/png")}}, "image/png"),
        ({"files": {"file": ("x", png_bytes(10))}}, "image/png"),
        ({"files": {"file": ("x", png_bytes(10), "image/webp")}}, "image/webp"),
        ({"files": {"upload": ("x.png", png_bytes(10))}, "data": {"note": "hello"}}, "image/png"),
        ({"data": png_bytes(10), "headers": {"Content-Type": "image/png"}}, "image/png"),
        ({"data": png_bytes(10)}, "image/png"),
        ({"data": png_bytes(10), "headers": {"Content-Type": "application/octet-stream"}}, "image/png"),
        ({"data": _chunks(png_bytes(10))}, "image/png"),
    ],
    ids=[
        "multipart-file",
        "multipart-other-name",
        "multipart-no-type",
        "multipart-declared-type",
        "multipart-with-field",
        "raw-typed",
        "raw-untyped",
        "raw-octet-stream",
        "raw-chunked",
    ],
)
def test_body_variants_store_the_image(emu: CapillaryEmulator, kwargs: dict, content_type: str) -> None:
    kwargs = dict(kwargs)
    if "data" in kwargs and not isinstance(kwargs["data"], (bytes, dict)):
        kwargs["data"] = _chunks(png_bytes(10))
    headers = {**basic_header(), **kwargs.pop("headers", {})}

    response = requests.post(upload_url(emu, "pic.png"), headers=headers, timeout=10, **kwargs)

    assert response.status_code == 200, response.text
    assert response.json()["file"]["content_type"] == content_type
    assert response.json()["file"]["fileSize"] == str(len(png_bytes(10)))
    [stored] = emu.stored_files()
    assert (stored["sha256"], stored["placeholder"]) == (hashlib.sha256(png_bytes(10)).hexdigest(), False)


def test_chunked_body_is_received_with_transfer_encoding(emu: CapillaryEmulator) -> None:
    response = requests.post(
        upload_url(emu, "a.png"), data=_chunks(b"y" * 5000), headers=basic_header(), timeout=10
    )

    assert response.json()["file"]["fileSize"] == "5000"
    assert emu.requests()[-1]["headers"]["transfer-encoding"] == "chunked"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data": b""},
        {"files": {"file": ("a.jpg", b"", "image/jpeg")}},
        {"files": {"comment": (None, "x")}},
    ],
    ids=["no-body", "empty-raw", "empty-file-part", "form-without-file"],
)
def test_no_file_creates_a_placeholder(emu: CapillaryEmulator, kwargs: dict) -> None:
    response = requests.post(upload_url(emu, "later.jpg"), headers=basic_header(), timeout=10, **kwargs)

    assert response.status_code == 200
    file = response.json()["file"]
    assert (file["fileSize"], file["content_type"], file["version"]) == ("0", "image/jpeg", 1)
    [stored] = emu.stored_files()
    assert (stored["size"], stored["placeholder"]) == (0, True)
    assert requests.get(response.json()["secureFilePath"], timeout=10).content == b""


def test_several_unnamed_file_parts_are_ambiguous(emu: CapillaryEmulator) -> None:
    files = {"a": ("a.png", b"1"), "b": ("b.png", b"2")}
    response = requests.post(upload_url(emu, "a.png"), files=files, headers=basic_header(), timeout=10)

    assert response.status_code == 400
    assert response.json()["message"] == "several file parts ('a', 'b') and none named 'file'"
    assert emu.stored_files() == []
    assert list(emu.data_dir.joinpath("tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("namespace", "name", "message"),
    [
        ("rewards", "noext", "File name must have an extension, e.g. test.png"),
        ("rewards", ".png", "File name must not start with '.' or contain '..'"),
        ("rewards", "a..png", "File name must not start with '.' or contain '..'"),
        ("rewards", quote("a\\b.png"), "File name must not contain '/' or '\\'"),
        ("rewards", "a%2Fb.png", "File name must not contain '/' or '\\'"),
        ("rewards", "dir/b.png", "File name must not contain '/' or '\\'"),
        ("rewards", "a%00b.png", "File name must not contain control characters"),
        ("rewards", "a%0Ab.png", "File name must not contain control characters"),
        ("rewards", "x" * 300 + ".png", "File name is longer than 255 bytes"),
        ("rewards", "", "File name is required"),
        ("re wards", "a.png", "Invalid namespace 're wards': use 1-128 letters, digits, '.', '-' or '_'"),
        ("-rewards", "a.png", "Invalid namespace '-rewards': use 1-128 letters, digits, '.', '-' or '_'"),
    ],
    ids=[
        "no-extension",
        "dotfile",
        "dotdot",
        "backslash",
        "encoded-slash",
        "slash",
        "nul",
        "newline",
        "too-long",
        "empty",
        "namespace-space",
        "namespace-dash",
    ],
)
def test_bad_names_get_400(emu: CapillaryEmulator, namespace: str, name: str, message: str) -> None:
    response = requests.post(upload_url(emu, name, namespace), data=b"x", headers=basic_header(), timeout=10)

    assert response.status_code == 400
    assert response.json() == {"code": 400, "status": "false", "message": message}
    assert emu.stored_files() == []


@pytest.mark.parametrize(
    "name", ["photo 1.png", "café ☕.jpeg", "UPPER.PNG"], ids=["space", "unicode", "upper"]
)
def test_names_with_spaces_and_unicode_are_stored_as_sent(emu: CapillaryEmulator, name: str) -> None:
    response = requests.post(upload_url(emu, quote(name)), data=b"img", headers=basic_header(), timeout=10)

    assert response.status_code == 200
    assert response.json()["file"]["name"] == name
    assert emu.stored_files()[0]["name"] == name
    assert response.json()["file"]["s3_token"].endswith("." + name.rsplit(".", 1)[1].lower())


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_max_body_bytes_gets_413(tmp_path, chunked: bool) -> None:
    with CapillaryEmulator(data_dir=tmp_path, max_body_bytes=1000) as emu:
        data = _chunks(b"z" * 1001) if chunked else b"z" * 1001
        response = requests.post(upload_url(emu, "a.png"), data=data, headers=basic_header(), timeout=10)
        at_limit = requests.post(
            upload_url(emu, "b.png"), data=b"z" * 1000, headers=basic_header(), timeout=10
        )

        assert response.status_code == 413
        assert response.json() == {
            "code": 413,
            "status": "false",
            "message": "Request body is larger than 1000 bytes",
        }
        assert at_limit.status_code == 200
        assert [f["name"] for f in emu.stored_files()] == ["b.png"]
        assert list((tmp_path / "tmp").iterdir()) == []


def test_wrong_method_is_405(emu: CapillaryEmulator) -> None:
    assert requests.get(upload_url(emu, "a.png"), headers=basic_header(), timeout=10).status_code == 405


def test_request_log_records_what_was_received(emu: CapillaryEmulator) -> None:
    data = png_bytes(5)
    requests.post(upload_url(emu, "a.png"), data=data, headers=basic_header(), timeout=10)

    [entry] = emu.requests()
    assert entry["kind"] == "upload"
    assert (entry["method"], entry["path"], entry["status"], entry["fault"]) == (
        "POST",
        "/api_gateway/file-service/rewards/a.png",
        200,
        None,
    )
    assert entry["headers"]["authorization"] == "Basic <redacted>"  # the scheme, never the credentials
    assert (entry["body_size"], entry["body_sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert (entry["file_size"], entry["file_sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert entry["principal"] == "basic:demo"


def test_big_upload_streams_to_disk(emu: CapillaryEmulator) -> None:
    block = uuid.uuid4().bytes * 4096  # 64 KiB
    count = 512  # 32 MiB: enough to see the bytes arrive intact through many chunks

    def body():
        for _ in range(count):
            yield block

    response = requests.post(upload_url(emu, "big.png"), data=body(), headers=basic_header(), timeout=60)

    assert response.json()["file"]["fileSize"] == str(len(block) * count)
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)
    assert emu.stored_files()[0]["sha256"] == expected.hexdigest()


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "rewards", basic_header(), 405),
        ("HEAD", "rewards", basic_header(), 405),
        ("GET", "rewards/test.png", basic_header(), 405),
        ("GET", "rewards", basic_header(password="wrong"), 401),
        ("GET", "rewards", {}, 401),
    ],
    ids=["get-namespace", "head-namespace", "get-file", "wrong-password", "no-credentials"],
)
def test_reading_an_upload_path_probes_credentials_without_side_effects(
    emu: CapillaryEmulator, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = requests.request(
        method, f"{emu.base_url}/api_gateway/file-service/{path}", headers=headers, timeout=10
    )

    assert response.status_code == status
    if method == "GET":
        assert response.json()["code"] == status
    if status == 405:
        assert response.headers["allow"] == "POST"
    assert emu.stored_files() == []
    assert emu.requests() == []


def test_namespaces_accept_what_the_hook_accepts(emu: CapillaryEmulator) -> None:
    for namespace in ("rewards.v2", "a" * 128):
        response = requests.post(
            upload_url(emu, "a.png", namespace), data=png_bytes(), headers=basic_header(), timeout=10
        )
        assert (response.status_code, response.json()["file"]["namespace"]) == (200, namespace)
    response = requests.post(
        upload_url(emu, "a.png", "a" * 129), data=png_bytes(), headers=basic_header(), timeout=10
    )
    assert response.status_code == 400
