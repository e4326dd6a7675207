"""Planted bugs S1, S2 and S6 of issue 11, as unit tests the mutation run includes.

- S1: the upload answer's pre-signed URL carries session credentials; they reach Airflow's
  secrets masker (decoded and as they appear percent-encoded), before the result is returned.
- S2: ``last_modified`` is read in the connection's ``server_timezone``, not in Asia/Kolkata.
- S6: the retry log line is redacted: a secret in the failure (here the connection's password in
  a connection error's text) never reaches the logger.

They go through the hook's public methods with a recording transport (tests/hooks/recorder.py).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from tests.hooks.conftest import PASSWORD
from tests.hooks.recorder import PNG, Reply, echo_upload, upload_answer

WHAT = "uploading 'test.png' to namespace 'rewards' (connection 'capillary_default')"
_unique = itertools.count()


def session_credentials() -> tuple[str, str]:
    """A session token and an access key credential never registered before in this process.

    The provider registers each session credential once per process, so every test needs its own.
    """
    n = next(_unique)
    token = f"IQoJb3JpZ2luX2VjEHoaCWV1LXdlc3QtMSJHMEUCIQD{n:06d}Zq+T/w=="
    credential = f"ASIAXKEP2EMB{n:08d}/20240508/eu-west-1/s3/aws4_request"
    return token, credential


def signed_url(token: str, credential: str) -> str:
    encoded_token = token.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    return (
        "https://eucrm-solutions.s3-eu-west-1.amazonaws.com/rewards/100606/b.png"
        f"?X-Amz-Security-Token={encoded_token}&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Date=20240508T034059Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600"
        f"&X-Amz-Credential={credential.replace('/', '%2F')}&X-Amz-Signature=86c114267239ef98"
    )


def masked_strings(mask_secret: Any) -> list[str]:
    return [c.args[0] for c in mask_secret.call_args_list if c.args and isinstance(c.args[0], str)]


def test_s1_the_answers_session_credentials_reach_the_masker(make_hook, mocker) -> None:
    token, credential = session_credentials()
    url = signed_url(token, credential)
    masked = mocker.patch("airflow.sdk.log.mask_secret")
    hook, _ = make_hook([Reply(json_body=upload_answer(secureFilePath=url))])

    result = hook.upload_file(PNG, file_name="test.png")

    assert result.secure_file_path == url
    registered = masked_strings(masked)
    assert token in registered
    assert token.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D") in registered
    assert credential in registered
    assert credential.replace("/", "%2F") in registered
    # The per-URL signature is not a session credential: registering it would grow the masker per URL.
    assert "86c114267239ef98" not in registered


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", datetime(2024, 5, 8, 13, 10, 59, tzinfo=timezone.utc)),
        ("UTC", datetime(2024, 5, 8, 9, 10, 59, tzinfo=timezone.utc)),
        (None, datetime(2024, 5, 8, 3, 40, 59, tzinfo=timezone.utc)),
    ],
    ids=["new-york", "utc", "default-kolkata"],
)
def test_s2_last_modified_is_read_in_the_connections_zone(make_hook, zone, expected) -> None:
    extra = {"server_timezone": zone} if zone is not None else {}
    hook, _ = make_hook(**extra)

    result = hook.upload_file(PNG, file_name="test.png")  # the answer says "2024-05-08 09:10:59"

    assert result.last_modified == expected
    assert result.to_dict()["last_modified"] == expected.isoformat()


def test_s6_the_retry_line_masks_the_connections_password(make_hook) -> None:
    leak = (
        "HTTPSConnectionPool(host='127.0.0.1', port=8443): Max retries exceeded "
        f"(Caused by ProxyError('Cannot connect to proxy.', 'the proxy refused {PASSWORD}'))"
    )
    hook, rec = make_hook([requests.ConnectionError(leak), echo_upload])

    hook.upload_file(PNG, file_name="test.png")

    assert len(rec.sent) == 2
    assert hook.lines[0] == (
        f"attempt 1 of 6 failed: {WHAT}: ConnectionError: HTTPSConnectionPool(host='127.0.0.1', port=8443): "
        "Max retries exceeded (Caused by ProxyError('Cannot connect to proxy.', 'the proxy refused ***')), "
        f"retrying in {hook.sleeps[0]:.1f}s"
    )
