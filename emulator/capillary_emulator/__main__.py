"""Command line: ``python -m capillary_emulator [options]``.

Prints, flushed, the base URL on the first line; with ``--tls`` the CA certificate path on the
second; then ``control token: <token>`` (the secret the ``/_emulator`` endpoints require in
``X-Emulator-Token``: taken from ``CAPILLARY_EMULATOR_CONTROL_TOKEN`` when set, else generated);
then one line about the credentials. Stops cleanly on Ctrl-C or SIGTERM (exit code 0). Also
installed as the ``capillary-emulator`` console script.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from capillary_emulator.connection import CONTROL_TOKEN_ENV
from capillary_emulator.defaults import DEFAULT_OAUTH_CLIENTS, DEFAULT_USERS
from capillary_emulator.faults import DEFAULT_RANDOM_KINDS, RANDOM_KINDS
from capillary_emulator.ratelimit import parse_rate
from capillary_emulator.state import EmulatorSettings


def _pair(text: str) -> tuple[str, str]:
    name, sep, secret = text.partition(":")
    if not sep or not name or not secret:
        raise argparse.ArgumentTypeError(f"expected NAME:SECRET, got {text!r}")
    return name, secret


def _rate(text: str) -> float:
    try:
        rate = parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if rate is None:
        raise argparse.ArgumentTypeError(f"the rate must be > 0, got {text!r}")
    return rate


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    what = "an integer" if kind is int else "a number"

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} > 0, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"expected {what} > 0, got {text!r}")
        return value

    return convert


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    bad = [kind for kind in kinds if kind not in RANDOM_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind(s) {bad}; choose among {','.join(RANDOM_KINDS)}"
        )
    return kinds


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m capillary_emulator",
        description="Local emulator of Capillary's file service (upload API, OAuth tokens, S3 downloads).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 for any free one (default: 0)")
    parser.add_argument("--data-dir", type=Path, help="persistent data directory (default: a temporary one)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a generated CA (path on line 2)")
    parser.add_argument("--user", type=_pair, action="append", metavar="NAME:PASSWORD", help="basic user")
    parser.add_argument(
        "--oauth-client", type=_pair, action="append", metavar="KEY:SECRET", help="OAuth client"
    )
    parser.add_argument("--token-ttl", type=int, default=300, help="access token lifetime, s (default: 300)")
    parser.add_argument(
        "--url-expiry", type=int, default=3600, help="secureFilePath validity, s (default: 3600)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to each request, ms")
    parser.add_argument("--max-body-bytes", type=int, help="largest upload body (413 above)")
    parser.add_argument(
        "--rate-limit",
        type=_rate,
        metavar="N/s|N/min",
        help="requests per API key (basic user, OAuth client) before 429 with Retry-After",
    )
    parser.add_argument(
        "--rate-limit-burst", type=_positive(int), metavar="N", help="requests a key may send at once"
    )
    parser.add_argument(
        "--rate-limit-retry-after",
        type=_positive(int),
        metavar="SECONDS",
        help="Retry-After of every rate-limit 429 (default: until the key's bucket refills)",
    )
    parser.add_argument(
        "--request-log-size", type=_positive(int), default=10_000, help="request log entries kept"
    )
    parser.add_argument(
        "--max-connections",
        type=_positive(int),
        help="open connections served at once (default: from the file-descriptor limit)",
    )
    parser.add_argument(
        "--header-timeout", type=_positive(float), default=30.0, help="seconds to send a request head"
    )
    parser.add_argument(
        "--body-timeout", type=_positive(float), default=30.0, help="seconds between two pieces of a body"
    )
    parser.add_argument(
        "--timezone", default="Asia/Kolkata", help="zone of last_modified (default: Asia/Kolkata)"
    )
    parser.add_argument("--bucket", default="emulator-solutions", help="emulated S3 bucket name")
    parser.add_argument("--org-id", default="100606", help="organisation id in s3_token")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random upload fault")
    parser.add_argument("--fault-seed", type=int, help="seed of the random faults")
    parser.add_argument(
        "--fault-kinds",
        type=_kinds,
        default=DEFAULT_RANDOM_KINDS,
        help=f"comma-separated random fault kinds among {','.join(RANDOM_KINDS)} (default: all but truncate)",
    )
    parser.add_argument("--fault-timeout", type=float, default=3.0, help="delay of 'timeout' faults, s")
    return parser


def _credentials_line(settings: EmulatorSettings, custom: bool) -> str:
    if not custom:
        (user, password), (key, secret) = (
            next(iter(DEFAULT_USERS.items())),
            next(iter(DEFAULT_OAUTH_CLIENTS.items())),
        )
        return f"credentials: basic {user} / {password}; oauth {key} / {secret}"
    users = ", ".join(settings.users) or "none"
    clients = ", ".join(settings.oauth_clients) or "none"
    return f"credentials: basic users {users}; oauth clients {clients}"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted.

    :param argv: arguments (default: ``sys.argv[1:]``).
    :return: the exit code.
    """
    args = build_parser().parse_args(argv)
    custom = bool(args.user or args.oauth_client)
    try:
        settings = EmulatorSettings(
            users=dict(args.user or ([] if custom else DEFAULT_USERS.items())),
            oauth_clients=dict(args.oauth_client or ([] if custom else DEFAULT_OAUTH_CLIENTS.items())),
            token_ttl=args.token_ttl,
            url_expiry=args.url_expiry,
            latency=args.latency_ms / 1000.0,
            max_body_bytes=args.max_body_bytes,
            rate_limit=args.rate_limit,
            rate_limit_burst=args.rate_limit_burst,
            rate_limit_retry_after=args.rate_limit_retry_after,
            request_log_size=args.request_log_size,
            max_connections=args.max_connections,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            timezone=args.timezone,
            bucket=args.bucket,
            org_id=args.org_id,
            fault_rate=args.fault_rate,
            fault_seed=args.fault_seed,
            fault_kinds=args.fault_kinds,
            fault_timeout=args.fault_timeout,
        )
    except (ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from capillary_emulator.server import build_server
    from capillary_emulator.state import EmulatorState

    state = EmulatorState(settings, args.data_dir, control_token=os.environ.get(CONTROL_TOKEN_ENV) or None)
    try:
        server, sock, base_url, ca_path = build_server(state, host=args.host, port=args.port, tls=args.tls)
        print(base_url, flush=True)
        if ca_path:
            print(ca_path, flush=True)
        print(f"control token: {state.control_token}", flush=True)
        print(_credentials_line(settings, custom), flush=True)
        # uvicorn handles SIGINT/SIGTERM itself, then re-raises them after its graceful shutdown.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
