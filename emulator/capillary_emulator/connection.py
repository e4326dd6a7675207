"""Airflow connection strings pointing at an emulator (``AIRFLOW_CONN_*`` values), and what the
thread and the process runners share (:class:`EmulatorHandle`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from capillary_emulator.defaults import DEFAULT_PASSWORD, DEFAULT_USER

CONN_TYPE = "capillary"
#: The header carrying the control token (see ``control``).
CONTROL_TOKEN_HEADER = "X-Emulator-Token"
#: The environment variable the CLI takes its control token from (else it generates one).
CONTROL_TOKEN_ENV = "CAPILLARY_EMULATOR_CONTROL_TOKEN"


def _uri_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def connection_uri(
    base_url: str,
    login: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    *,
    auth_type: str = "basic",
    ca_cert_path: str | None = None,
    **extras: Any,
) -> str:
    """Return an ``AIRFLOW_CONN_*`` URI for an emulator at ``base_url``.

    :param base_url: the emulator's base URL (its first line of output).
    :param login: user name (basic) or client key (oauth).
    :param password: plain password (basic) or client secret (oauth).
    :param auth_type: ``basic`` or ``oauth``.
    :param ca_cert_path: with TLS, the CA file, set as the ``verify`` extra.
    :param extras: more connection extras (bools as ``true``/``false``, dicts and lists as JSON).
    :return: e.g. ``capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A8080/?auth_type=basic``.
    :raises ValueError: for an unknown auth type.
    """
    if auth_type not in ("basic", "oauth"):
        raise ValueError(f"auth_type must be 'basic' or 'oauth', got {auth_type!r}")
    merged: dict[str, Any] = {"auth_type": auth_type}
    if ca_cert_path is not None:
        merged["verify"] = ca_cert_path
    merged.update(extras)
    query = urlencode({key: _uri_value(value) for key, value in merged.items()})
    host = quote(base_url, safe="")
    return f"{CONN_TYPE}://{quote(login, safe='')}:{quote(password, safe='')}@{host}/?{query}"


class ConnectionStrings:
    """Mixin giving ``connection_uri``/``connection_json`` to anything with a base URL and credentials.

    The host carries the scheme, percent-encoded in the URI form
    (``capillary://demo:demo-password@http%3A%2F%2F127.0.0.1%3A8080/?auth_type=basic``). With TLS the
    ``verify`` extra is set to the CA file.
    """

    base_url: str
    ca_cert_path: str | None

    def credential_pools(self) -> tuple[Mapping[str, str], Mapping[str, str]]:
        """Return the basic users and the OAuth clients (name to secret) of the emulator."""
        raise NotImplementedError

    def _connection_parts(
        self, auth_type: str, login: str | None, password: str | None, extras: Mapping[str, Any]
    ) -> tuple[str, str, dict[str, Any]]:
        if auth_type not in ("basic", "oauth"):
            raise ValueError(f"auth_type must be 'basic' or 'oauth', got {auth_type!r}")
        users, clients = self.credential_pools()
        pool = users if auth_type == "basic" else clients
        if login is None:
            if not pool:
                raise ValueError(f"the emulator has no credentials configured for {auth_type}")
            login = next(iter(pool))
        if password is None:
            password = pool.get(login, "")
        merged: dict[str, Any] = {"auth_type": auth_type}
        if self.ca_cert_path is not None:
            merged["verify"] = self.ca_cert_path
        merged.update(extras)
        return login, password, merged

    def connection_uri(
        self,
        auth_type: str = "basic",
        *,
        login: str | None = None,
        password: str | None = None,
        **extras: Any,
    ) -> str:
        """Return an ``AIRFLOW_CONN_*`` URI for the emulator.

        :param auth_type: ``basic`` (first user) or ``oauth`` (first OAuth client).
        :param login: override the login.
        :param password: override the password (default: the configured one for ``login``).
        :param extras: more connection extras (bools as ``true``/``false``, dicts and lists as JSON).
        :return: the URI.
        :raises ValueError: for an unknown auth type or no credentials to use.
        """
        user, secret, merged = self._connection_parts(auth_type, login, password, extras)
        return connection_uri(self.base_url, user, secret, **merged)

    def connection_json(
        self,
        auth_type: str = "basic",
        *,
        login: str | None = None,
        password: str | None = None,
        **extras: Any,
    ) -> str:
        """Return the JSON form of :meth:`connection_uri` (extras keep their JSON types).

        :param auth_type: ``basic`` or ``oauth``.
        :param login: override the login.
        :param password: override the password.
        :param extras: more connection extras.
        :return: ``{"conn_type": "capillary", "host": ..., "login": ..., "password": ..., "extra": {...}}``.
        :raises ValueError: for an unknown auth type or no credentials to use.
        """
        user, secret, merged = self._connection_parts(auth_type, login, password, extras)
        return json.dumps(
            {
                "conn_type": CONN_TYPE,
                "host": self.base_url,
                "login": user,
                "password": secret,
                "extra": merged,
            }
        )


class EmulatorHandle(ConnectionStrings):
    """What :class:`~capillary_emulator.server.CapillaryEmulator` and
    :class:`~capillary_emulator.process.EmulatorProcess` share beyond the connection strings.

    Subclasses set :attr:`control_token` and implement :meth:`stats`.
    """

    control_token: str

    def stats(self) -> dict[str, Any]:
        """Return the emulator's counters (see ``EmulatorState.stats``)."""
        raise NotImplementedError

    def rate_limited(self) -> dict[str, int]:
        """Return how many requests each API key got answered 429 by the rate limit.

        :return: e.g. ``{"basic:demo": 3}`` (keys never limited are left out).
        """
        counts: dict[str, dict[str, int]] = self.stats()["rate_limit"]
        return {key: count["limited"] for key, count in counts.items() if count["limited"]}

    def control_headers(self) -> dict[str, str]:
        """Return the headers a raw HTTP call to a ``/_emulator`` endpoint needs (token and JSON)."""
        return {CONTROL_TOKEN_HEADER: self.control_token, "Content-Type": "application/json"}
