"""Unit tests of the emulator's parts (no sockets)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest
from capillary_emulator import auth as auth_module
from capillary_emulator.auth import Authenticator, md5_hex
from capillary_emulator.connection import connection_uri
from capillary_emulator.download import RangeNotSatisfiable, parse_range
from capillary_emulator.faults import (
    DEFAULT_RANDOM_KINDS,
    Fault,
    FaultPlan,
    random_fault,
)
from capillary_emulator.signing import KEY_FILE, SIGNATURE_MISMATCH, UrlSigner, load_or_create_key
from capillary_emulator.store import FileStore
from capillary_emulator.tls import ensure_certificates
from capillary_emulator.upload import guess_content_type
from cryptography import x509

NOW = datetime(2024, 5, 8, 3, 40, 59, tzinfo=timezone.utc)
PATH = "/_s3/bucket/rewards/100606/x.png"


# -- signing ------------------------------------------------------------------------------------------
def _signed(expires: int = 3600) -> dict[str, str]:
    return dict(parse_qsl(UrlSigner(b"k" * 32).sign(PATH, expires=expires, now=NOW)))


def test_signed_url_parameters() -> None:
    params = _signed()
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Date"] == "20240508T034059Z"
    assert params["X-Amz-Expires"] == "3600"
    assert params["X-Amz-SignedHeaders"] == "host"
    assert params["X-Amz-Credential"].endswith("/20240508/eu-west-1/s3/aws4_request")
    assert UrlSigner(b"k" * 32).check(PATH, params, now=NOW) is None


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, None), (3599, None), (3600, ("AccessDenied", "Request has expired"))],
    ids=["signed-now", "last-second", "expired"],
)
def test_expiry(offset: int, expected) -> None:
    assert UrlSigner(b"k" * 32).check(PATH, _signed(), now=NOW + timedelta(seconds=offset)) == expected


def test_signature_depends_on_key_and_path() -> None:
    params = _signed()
    mismatch = ("SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    assert UrlSigner(b"other" * 8).check(PATH, params, now=NOW) == mismatch
    assert UrlSigner(b"k" * 32).check(PATH + "x", params, now=NOW) == mismatch


def test_expires_beyond_seven_days_is_refused() -> None:
    params = _signed(expires=604801)
    assert UrlSigner(b"k" * 32).check(PATH, params, now=NOW) == (
        "AccessDenied",
        "X-Amz-Expires must be between 1 and 604800 seconds",
    )


def test_key_is_created_once_and_survives(tmp_path) -> None:
    key = load_or_create_key(tmp_path)
    assert len(key) == 32
    assert load_or_create_key(tmp_path) == key
    (tmp_path / KEY_FILE).write_text("garbage")
    assert load_or_create_key(tmp_path) != key  # a corrupt key is replaced
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary files left


# -- ranges and content types --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=2-4", 10, (2, 4)),
        ("bytes=5-2", 10, None),
        ("bytes=-20", 10, (0, 9)),
        (" bytes=0-0 ", 10, (0, 0)),
        ("bytes=-", 10, None),
    ],
    ids=["none", "span", "reversed-ignored", "suffix-longer-than-file", "spaces", "no-numbers"],
)
def test_parse_range(header, size: int, expected) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=0-", 0), ("bytes=-1", 0), ("bytes=10-", 10)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@pytest.mark.parametrize(
    ("name", "declared", "expected"),
    [
        ("a.png", None, "image/png"),
        ("a.JPG", "", "image/jpeg"),
        ("a.webp", "application/octet-stream", "image/webp"),
        ("a.heic", "application/x-www-form-urlencoded", "image/heic"),
        ("a.png", "image/png; charset=binary", "image/png"),
        ("a.png", "Image/GIF", "image/gif"),
        ("a.zzz", None, "application/octet-stream"),
    ],
    ids=["png", "upper-ext", "webp", "heic-form-type", "params-dropped", "declared-wins", "unknown"],
)
def test_guess_content_type(name: str, declared, expected: str) -> None:
    assert guess_content_type(name, declared) == expected


# -- faults --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "explode"}, "unknown fault action 'explode'"),
        ({"match": "everything"}, "unknown fault match 'everything'"),
        ({"status": 42}, "fault status must be an HTTP status, got 42"),
        ({"delay": -1}, "fault delay must be >= 0, got -1"),
        ({"times": 0}, "fault times must be >= 1 or None, got 0"),
    ],
    ids=["action", "match", "status", "delay", "times"],
)
def test_invalid_faults(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)


def test_fault_dict_round_trip_and_unknown_fields() -> None:
    fault = Fault(
        status=429, headers={"Retry-After": "3"}, body={"x": 1}, times=None, match="any", store=True
    )
    assert Fault.from_dict(json.loads(json.dumps(fault.to_dict()))) == fault
    with pytest.raises(ValueError, match="unknown fault field\\(s\\): colour"):
        Fault.from_dict({"colour": "red"})


@pytest.mark.parametrize(
    ("action", "stores"),
    [
        ("respond", False),
        ("reset", False),
        ("delay", True),
        ("malformed_json", True),
        ("status_false", False),
        ("placeholder", True),
        ("truncate", True),
    ],
)
def test_default_store_per_action(action: str, stores: bool) -> None:
    assert Fault(action=action).stores is stores
    assert Fault(action=action, store=not stores).stores is not stores


def test_plan_takes_matching_faults_in_order_without_consuming_the_callers_objects() -> None:
    mine = Fault(status=500, times=2)
    plan = FaultPlan()
    plan.push([Fault(status=401, match="token"), mine, Fault(status=502, match="any")])

    taken = [
        plan.take("upload"),
        plan.take("upload"),
        plan.take("download"),
        plan.take("token"),
        plan.take("upload"),
    ]

    assert [f.status if f else None for f in taken] == [500, 500, 502, 401, None]
    assert mine.times == 2


def test_random_faults_are_reproducible_and_roughly_at_rate() -> None:
    def draw(seed: int) -> list[str | None]:
        plan = FaultPlan(fault_rate=0.2, fault_seed=seed)
        return [f.kind if (f := plan.take("upload")) else None for _ in range(1000)]

    first = draw(1)
    assert first == draw(1)
    assert first != draw(2)
    assert 150 <= sum(kind is not None for kind in first) <= 250
    assert {kind for kind in first if kind} == {
        "503",
        "429",
        "500",
        "reset",
        "delay",
        "malformed_json",
        "status_false",
        "placeholder",
    }
    assert FaultPlan(fault_rate=1.0).take("token") is None  # random faults hit uploads only


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("503", Fault(status=503, headers={"Retry-After": "2"})),
        ("429", Fault(status=429, headers={"Retry-After": "2"})),
        ("500", Fault(status=500, headers={})),
        ("timeout", Fault(action="delay", delay=9.0, headers={})),
        ("truncate", Fault(action="truncate", headers={})),
    ],
)
def test_random_fault_kinds(kind: str, expected: Fault) -> None:
    assert random_fault(kind, retry_after="2", timeout_delay=9.0) == expected


def test_random_configuration_is_validated() -> None:
    assert "truncate" not in DEFAULT_RANDOM_KINDS
    with pytest.raises(ValueError, match=r"fault_rate must be within 0\.\.1"):
        FaultPlan(fault_rate=1.5)
    with pytest.raises(ValueError, match="unknown random fault kind"):
        FaultPlan(fault_kinds=("meteor",))


# -- auth ----------------------------------------------------------------------------------------------
def test_token_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(auth_module.time, "time", lambda: clock[0])
    authenticator = Authenticator(b"k" * 32, users={}, oauth_clients={"c": "s"}, token_ttl=60)
    issued = authenticator.issue_token("c", "s")
    assert issued is not None
    token, ttl = issued
    assert ttl == 60
    assert authenticator.check_token(token) == auth_module.Principal("oauth", "c")
    clock[0] += 60
    assert authenticator.check_token(token) is None
    assert authenticator.issue_token("c", "wrong") is None
    assert [entry["accepted"] for entry in authenticator.token_requests()] == [True, False]


def test_md5_hex() -> None:
    assert md5_hex("demo-password") == hashlib.md5(b"demo-password").hexdigest()


# -- store ---------------------------------------------------------------------------------------------
def test_store_versions_persist_across_reopen(tmp_path) -> None:
    store = FileStore(tmp_path, bucket="b", org_id="42")
    sink = store.new_sink()
    sink.write(b"hello")
    first = store.commit(sink, namespace="rewards", name="a.png", content_type="image/png", now=NOW)
    second = store.commit(None, namespace="rewards", name="a.png", content_type="image/png", now=NOW)
    store.close()

    reopened = FileStore(tmp_path, bucket="b", org_id="42")
    files = reopened.files()

    assert [(f.version, f.size, f.placeholder) for f in files] == [(1, 5, False), (2, 0, True)]
    assert files[0] == first
    assert files[1] == second
    assert first.s3_token.startswith("rewards/42/")
    assert first.path.read_bytes() == b"hello"
    assert reopened.find("b", first.s3_token) == first
    assert reopened.find("other", first.s3_token) is None
    reopened.reset()
    assert reopened.files() == []
    assert list((tmp_path / "objects").iterdir()) == []


def test_store_discards_bodies_left_by_a_crash(tmp_path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "dead.part").write_bytes(b"half")
    FileStore(tmp_path, bucket="b", org_id="1")
    assert list((tmp_path / "tmp").iterdir()) == []


# -- TLS and connection strings ------------------------------------------------------------------------
def test_certificate_covers_loopback_names(tmp_path) -> None:
    files = ensure_certificates(tmp_path)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    pem = files.cert.read_bytes()
    assert ensure_certificates(tmp_path) == files
    assert files.cert.read_bytes() == pem  # reused, not regenerated


def test_connection_uri_module_function() -> None:
    assert connection_uri("http://127.0.0.1:8080") == (
        "capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A8080/?auth_type=basic"
    )
    assert connection_uri(
        "https://localhost:1",
        "k@y",
        "s/cr:t",
        auth_type="oauth",
        ca_cert_path="/ca.pem",
        headers={"X-A": "1"},
        md5_prehashed=False,
    ) == (
        "capillary://k%40y:s%2Fcr%3At@https%3A%2F%2Flocalhost%3A1/?auth_type=oauth&verify=%2Fca.pem"
        "&headers=%7B%22X-A%22%3A+%221%22%7D&md5_prehashed=false"
    )
    with pytest.raises(ValueError, match="auth_type must be 'basic' or 'oauth', got 'digest'"):
        connection_uri("http://x", auth_type="digest")
