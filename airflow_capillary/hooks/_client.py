"""What a hook builds on first use, together: the configuration, the session, the auth object.

:func:`build_client` reads the Airflow connection (a missing one, or an extra that is not JSON,
is a :class:`~airflow_capillary.exceptions.CapillaryConfigError`), resolves it with the task's
arguments (:mod:`~airflow_capillary.hooks._config`), and builds the session, the auth object,
the proxy credentials to redact, the storage origin policy of secure URLs and the rate limiter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import requests
from airflow.exceptions import AirflowNotFoundException

from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.hooks._auth import CapillaryAuth, build_auth, proxy_secrets
from airflow_capillary.hooks._config import CapillaryConnectionConfig
from airflow_capillary.hooks._rate_limit import RateLimiter
from airflow_capillary.hooks._session import build_session
from airflow_capillary.verification.storage import OriginPolicy

__all__ = ["Client", "build_client"]


class Client(NamedTuple):
    """A hook's configuration and the objects built from it (shared by its threads).

    :param config: the resolved connection and task policy.
    :param session: the HTTP session.
    :param auth: the auth object.
    :param proxy_secrets: credentials of the proxies, to redact.
    :param storage: where secure URLs may point.
    :param limiter: the rate limiter shared by every request of the hook (token requests too).
    """

    config: CapillaryConnectionConfig
    session: requests.Session
    auth: CapillaryAuth
    proxy_secrets: tuple[str, ...]
    storage: OriginPolicy
    limiter: RateLimiter


def build_client(
    get_connection: Callable[[str], Any],
    conn_id: str,
    overrides: Mapping[str, Any],
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Client:
    """Read the connection ``conn_id`` and build everything a hook needs from it.

    :param get_connection: the hook's ``get_connection`` (Airflow's connection lookup).
    :param conn_id: the connection id.
    :param overrides: the hook's arguments (``None``: not given).
    :param clock: monotonic seconds, for the rate limiter.
    :param sleep: how the rate limiter waits.
    :return: the client.
    :raises CapillaryConfigError: the connection is not defined, its extra is not JSON, or a
        field is missing or wrong.
    """
    try:
        conn = get_connection(conn_id)
    except AirflowNotFoundException:
        raise CapillaryConfigError(
            f"connection {conn_id!r} is not defined (define it in the UI, with "
            f"'airflow connections add' or as AIRFLOW_CONN_{conn_id.upper()})",
            conn_id=conn_id,
        ) from None
    try:  # Airflow logs an unparsable extra and returns {}: every extra would silently default.
        json.loads(conn.extra or "{}")
    except json.JSONDecodeError as exc:  # the position only: the text may hold credentials
        raise CapillaryConfigError(
            f"connection {conn_id!r}: extra is not valid JSON ({exc.msg} at character {exc.pos})",
            conn_id=conn_id,
        ) from None
    config = CapillaryConnectionConfig.resolve(
        conn_id,
        host=conn.host,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        port=conn.port,
        extra=conn.extra_dejson,
        overrides=overrides,
    )
    session = build_session(config)
    limiter = RateLimiter(
        config.rate_limit_per_minute,
        max_slots=config.max_connections,
        max_wait=config.max_rate_limit_wait,
        clock=clock,
        sleep=sleep,
    )
    auth = build_auth(config, session, limiter)
    storage = OriginPolicy.from_config(config)
    return Client(config, session, auth, proxy_secrets(config.proxies), storage, limiter)
