"""The emulator's rate limit: 429 with ``Retry-After`` per API key, driven by an injected clock
(issue 14: Capillary documents its limits per API key, 100 requests/minute on demo clusters)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import requests
from capillary_emulator.clock import ManualClock
from capillary_emulator.process import EmulatorProcess
from capillary_emulator.ratelimit import RateLimiter, parse_rate
from capillary_emulator.server import CapillaryEmulator

from tests.emulator.conftest import KEY, SECRET, basic_header, upload_url

TOO_MANY = {"code": 429, "status": "false", "message": "Too many requests"}
USERS = {"till-a": "pw-a", "till-b": "pw-b"}


# -- units -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "per_second"),
    [
        (None, None),
        (0, None),
        (2, 2.0),
        (2.5, 2.5),
        ("2/s", 2.0),
        ("100/min", 100 / 60),
        ("100 / minute", 100 / 60),
        ("120/m", 2.0),
        ("0.5", 0.5),
        (".5/sec", 0.5),
    ],
)
def test_parse_rate(value: float | str | None, per_second: float | None) -> None:
    assert parse_rate(value) == per_second


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fast", "expected a rate such as 10/s or 100/min, got 'fast'"),
        ("10/h", "expected a rate such as 10/s or 100/min, got '10/h'"),
        (-1, "a rate limit must be a finite number >= 0, got -1"),
        (float("inf"), "a rate limit must be a finite number >= 0, got inf"),
        (True, "a rate limit is a number or a text such as '100/min', got True"),
    ],
)
def test_parse_rate_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rate(value)  # type: ignore[arg-type]


def test_bucket_per_key_with_burst_refill_and_retry_after() -> None:
    clock = ManualClock()
    limiter = RateLimiter("6/min", burst=2, clock=clock)  # one request every 10 s

    assert [limiter.acquire("basic:a") for _ in range(3)] == [None, None, 10]
    assert limiter.acquire("basic:b") is None  # another key, another bucket
    clock.advance(9.5)
    assert limiter.acquire("basic:a") == 1  # 0.95 of a request refilled: 0.5 s to go, rounded up
    clock.advance(0.5)
    assert limiter.acquire("basic:a") is None
    assert limiter.counts() == {
        "basic:a": {"admitted": 3, "limited": 2},
        "basic:b": {"admitted": 1, "limited": 0},
    }


def test_default_burst_fixed_retry_after_and_reconfiguration() -> None:
    clock = ManualClock()
    limiter = RateLimiter(2.5, clock=clock)
    assert limiter.burst == math.ceil(2.5)
    assert [limiter.acquire("k") for _ in range(4)] == [None, None, None, 1]

    limiter.configure("1/min", burst=1, retry_after=7)
    assert [limiter.acquire("k") for _ in range(2)] == [None, 7]  # a new limit starts full
    limiter.configure(None)
    assert [limiter.acquire("k") for _ in range(50)] == [None] * 50
    assert limiter.settings() == {"rate": None, "per_minute": None, "burst": 1, "retry_after": None}
    limiter.reset()
    assert limiter.counts() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"burst": 0}, "rate_limit_burst must be an integer >= 1, got 0"),
        ({"retry_after": 0}, r"rate_limit_retry_after must be an integer >= 1 \(seconds\), got 0"),
        ({"retry_after": 1.5}, r"rate_limit_retry_after must be an integer >= 1 \(seconds\), got 1.5"),
    ],
)
def test_limiter_settings_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(1, **kwargs)


# -- over HTTP, with the emulator's clock injected -------------------------------------------------------
@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limited(tmp_path, clock: ManualClock) -> Iterator[CapillaryEmulator]:
    """2 requests per second per key, the documented shape of the service's answer."""
    with CapillaryEmulator(data_dir=tmp_path, users=USERS, rate_limit="2/s", clock=clock) as emu:
        yield emu


def _upload(emu: CapillaryEmulator, user: str = "till-a", name: str = "a.png") -> requests.Response:
    headers = basic_header(user, USERS[user])
    return requests.post(upload_url(emu, name), data=b"img", headers=headers, timeout=10)


def _token(emu: CapillaryEmulator) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/v3/oauth/token/generate", json={"key": KEY, "secret": SECRET}, timeout=10
    )


@pytest.mark.integration
def test_429_with_retry_after_once_a_key_is_over_its_limit(limited: CapillaryEmulator, clock) -> None:
    answers = [_upload(limited, name=f"f{i}.png") for i in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "1"
    assert answers[2].json() == TOO_MANY
    assert [stored["name"] for stored in limited.stored_files()] == ["f0.png", "f1.png"]
    clock.advance(0.5)  # one request refilled at 2/s
    assert [_upload(limited).status_code for _ in range(2)] == [200, 429]


@pytest.mark.integration
def test_each_basic_user_has_its_own_limit(limited: CapillaryEmulator) -> None:
    statuses = [
        _upload(limited, user).status_code for user in ("till-a", "till-a", "till-a", "till-b", "till-b")
    ]

    assert statuses == [200, 200, 429, 200, 200]
    assert limited.rate_limited() == {"basic:till-a": 1}


@pytest.mark.integration
def test_an_oauth_client_shares_one_bucket_between_its_tokens_and_uploads(tmp_path, clock) -> None:
    with CapillaryEmulator(data_dir=tmp_path, rate_limit="2/s", clock=clock) as emu:
        token = _token(emu).json()["data"]["accessToken"]
        headers = {"X-CAP-API-OAUTH-TOKEN": token}
        uploads = [
            requests.post(upload_url(emu, "a.png"), data=b"1", headers=headers, timeout=10) for _ in range(2)
        ]
        refused_token = _token(emu)

        assert [answer.status_code for answer in uploads] == [200, 429]
        assert (refused_token.status_code, refused_token.headers["retry-after"]) == (429, "1")
        assert refused_token.json() == {
            "data": None,
            "errors": [{"code": 429, "message": "Too many requests"}],
        }
        assert [(entry["accepted"], entry["limited"]) for entry in emu.token_requests()] == [
            (True, False),
            (False, True),
        ]
        assert emu.rate_limited() == {"oauth:demo-key": 2}
        assert _upload_basic(emu).status_code == 200  # the basic user is another key


def _upload_basic(emu: CapillaryEmulator) -> requests.Response:
    return requests.post(upload_url(emu, "b.png"), data=b"1", headers=basic_header(), timeout=10)


@pytest.mark.integration
def test_refused_credentials_spend_nothing(limited: CapillaryEmulator) -> None:
    wrong = basic_header("till-a", "not-the-password")
    refused = [
        requests.post(upload_url(limited, "a.png"), data=b"1", headers=wrong, timeout=10) for _ in range(5)
    ]
    bad_token = requests.post(
        f"{limited.base_url}/v3/oauth/token/generate", json={"key": KEY, "secret": "wrong"}, timeout=10
    )

    assert [answer.status_code for answer in refused] == [401] * 5
    assert bad_token.status_code == 401
    assert [_upload(limited).status_code for _ in range(3)] == [200, 200, 429]
    assert limited.stats()["rate_limit"] == {"basic:till-a": {"admitted": 2, "limited": 1}}


@pytest.mark.integration
def test_a_fixed_retry_after_and_a_per_minute_limit_set_at_run_time(
    limited: CapillaryEmulator, clock
) -> None:
    limited.configure(rate_limit="100/min", rate_limit_burst=100, rate_limit_retry_after=30)

    statuses = [_upload(limited, name=f"f{i}.png").status_code for i in range(101)]
    refused = _upload(limited)

    assert statuses == [200] * 100 + [429]
    assert refused.headers["retry-after"] == "30"
    clock.advance(0.6)  # 100/min refills one request every 0.6 s
    assert [_upload(limited).status_code for _ in range(2)] == [200, 429]
    assert limited.stats()["rate_limit_settings"] == {
        "rate": 100 / 60,
        "per_minute": 100.0,
        "burst": 100,
        "retry_after": 30,
    }
    assert limited.settings.public_dict()["rate_limit"] == 100 / 60


@pytest.mark.integration
def test_the_counts_survive_the_bounded_log_and_go_with_reset(tmp_path, clock) -> None:
    with CapillaryEmulator(data_dir=tmp_path, rate_limit=1, request_log_size=2, clock=clock) as emu:
        statuses = [_upload_basic(emu).status_code for _ in range(5)]

        assert statuses == [200, 429, 429, 429, 429]
        assert len(emu.requests()) == 2
        assert emu.stats()["requests"] == {"upload": {"200": 1, "429": 4}}
        assert emu.rate_limited() == {"basic:demo": 4}
        emu.reset()
        assert emu.stats()["requests"] == {}
        assert emu.rate_limited() == {}
        assert _upload_basic(emu).status_code == 200  # and the bucket is full again


@pytest.mark.integration
def test_no_limit_by_default(tmp_path) -> None:
    with CapillaryEmulator(data_dir=tmp_path) as emu:
        assert [_upload_basic(emu).status_code for _ in range(20)] == [200] * 20
        assert emu.stats()["rate_limit"] == {"basic:demo": {"admitted": 20, "limited": 0}}


@pytest.mark.integration
def test_the_cli_and_the_settings_endpoint_set_the_limit(tmp_path) -> None:
    """Real time here (a child process has no injectable clock), so the refill is 1/min: the three
    requests would have to be a whole minute apart for the third one to pass."""
    args = ["--rate-limit", "1/min", "--rate-limit-burst", "2", "--rate-limit-retry-after", "5"]
    with EmulatorProcess(tmp_path, args=args) as process:
        url = f"{process.base_url}/api_gateway/file-service/rewards/a.png"
        statuses = [requests.post(url, data=b"1", headers=basic_header(), timeout=10) for _ in range(3)]
        assert [answer.status_code for answer in statuses] == [200, 200, 429]
        assert statuses[2].headers["retry-after"] == "5"
        assert process.rate_limited() == {"basic:demo": 1}

        settings = process.configure(rate_limit="2/min", rate_limit_burst=1, rate_limit_retry_after=None)
        assert (settings["rate_limit"], settings["rate_limit_burst"], settings["rate_limit_retry_after"]) == (
            2 / 60,
            1,
            None,
        )
        again = [requests.post(url, data=b"1", headers=basic_header(), timeout=10) for _ in range(2)]
        assert [answer.status_code for answer in again] == [200, 429]
        # computed: the 30 s a request takes to refill at 2/min, less the (real) time since the
        # previous request, rounded up: 30, or 29 on a machine that took over a second in between
        assert again[1].headers["retry-after"] in ("30", "29")
        assert process.stats()["rate_limit"] == {"basic:demo": {"admitted": 3, "limited": 2}}
