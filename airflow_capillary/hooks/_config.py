"""Resolution of a ``capillary`` connection and the task's arguments into one typed configuration.

The settings, their defaults and where each is given are the table of
:mod:`airflow_capillary.settings`. Each resolves here and nowhere else: the hook argument (task
settings, and ``namespace``, ``timeout``, ``rate_limit_per_minute``), else the connection extra
(connection settings), else the table's default. Task policy set as an extra is refused with a
message that says where it went; so is a fact of the connection given as a hook argument.
URI extras arrive as strings and are coerced here (``"true"``/``"1"``/``"yes"``, numbers, JSON).
An error names the connection id and the field, and never echoes a credential.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_capillary import settings as table
from airflow_capillary.exceptions import CapillaryConfigError
from airflow_capillary.hooks._coerce import Invalid, coerce, without_userinfo
from airflow_capillary.settings import Setting

__all__ = ["DEFAULTS", "SETTINGS", "CapillaryConnectionConfig"]

#: Default of every setting, by attribute name (``None``: unset). Taken from the table.
DEFAULTS: dict[str, Any] = {s.name: s.default for s in table.TABLE}

#: The names a hook argument may set (``CapillaryFileHook(**overrides)``).
SETTINGS: frozenset[str] = table.HOOK_ARGUMENTS


@dataclasses.dataclass(frozen=True, repr=False)
class CapillaryConnectionConfig:
    """Everything the hook needs from a ``capillary`` connection and its task, typed and validated.

    Besides the four below, the attributes are the settings of :data:`airflow_capillary.settings.TABLE`
    (whose ``help`` says what each means); three are set by extras of other names, because
    Airflow's UI masks extras whose names hold a sensitive word: ``md5_prehashed`` sets
    ``password_is_md5``, ``oauth_url`` sets ``token_url`` and ``oauth_access_header`` sets
    ``token_header``. ``timeout`` is a ``(connect, read)`` pair and ``storage_hosts`` a tuple of
    ``scheme://host[:port]`` (``host`` may start with ``*.``: any subdomain; no port: the scheme's
    default). ``repr`` shows neither the password, nor the static headers, nor the credentials
    of a proxy URL.

    :param conn_id: the Airflow connection id.
    :param base_url: scheme, host and port (and path prefix, if any) with no trailing slash.
    :param login: till username (basic) or OAuth client key.
    :param password: plain password, its MD5 hex (``password_is_md5``), or the client secret.
    """

    conn_id: str
    base_url: str
    auth_type: Literal["basic", "oauth"]
    login: str
    password: str = dataclasses.field(repr=False)
    password_is_md5: bool
    token_url: str
    token_header: str
    namespace: str
    timeout: tuple[float, float]
    rate_limit_per_minute: float | None
    verify: bool | str
    proxies: dict[str, str]
    headers: dict[str, str] = dataclasses.field(repr=False)
    storage_hosts: tuple[str, ...]
    server_timezone: str
    upload_encoding: Literal["multipart", "raw"]
    file_field: str
    test_path: str | None
    max_retries: int
    retry_min_wait: float
    retry_max_wait: float
    retry_after_max: float
    max_rate_limit_wait: float
    retry_on_500: bool
    retry_integrity_errors: bool
    check_content: bool
    allow_empty: bool
    max_file_size: int | None
    max_connections: int

    @classmethod
    def resolve(
        cls,
        conn_id: str,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        schema: str | None = None,
        port: int | None = None,
        extra: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> CapillaryConnectionConfig:
        """Resolve the configuration: hook argument > connection extra > default.

        :param conn_id: the connection id (named in every error).
        :param host: connection host (with or without scheme).
        :param login: connection login.
        :param password: connection password.
        :param schema: connection schema (``http``/``https`` when host has no scheme).
        :param port: connection port.
        :param extra: connection extras (``extra_dejson``).
        :param overrides: hook arguments; ``None`` values mean "not given".
        :return: the configuration.
        :raises CapillaryConfigError: a value is missing, wrong or given in the wrong place
            (names the connection id and the field).
        """
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        r = _Resolver(conn_id, extra or {}, given)
        r.refuse_misplaced()
        try:
            base_url = _base_url(host, schema, port)
        except Invalid as exc:
            raise r.error("host", str(exc)) from None
        values = {s.name: r.value(s) for s in table.TABLE}
        auth_type = values["auth_type"]
        who = "till username" if auth_type == "basic" else "OAuth client key"
        secret = "password" if auth_type == "basic" else "OAuth client secret"
        if not login:
            raise r.error("login", f"is empty: auth_type {auth_type} needs the {who}")
        if not password:
            raise r.error("password", f"is empty: auth_type {auth_type} needs the {secret}")
        if (
            auth_type == "basic"
            and values["password_is_md5"]
            and not re.fullmatch(r"[0-9a-fA-F]{32}", password)
        ):
            raise r.error("password", "is not a 32-character MD5 hex digest although md5_prehashed is set")
        if values["retry_min_wait"] > values["retry_max_wait"]:
            raise r.error(
                "retry_min_wait",
                f"({values['retry_min_wait']}) is larger than retry_max_wait ({values['retry_max_wait']})",
            )
        values["token_url"] = (values["token_url"] or f"{base_url}/v3/oauth/token/generate").rstrip("/")
        return cls(conn_id=conn_id, base_url=base_url, login=login, password=password, **values)

    def __repr__(self) -> str:
        shown = []
        for field in dataclasses.fields(self):
            if field.repr:
                value = getattr(self, field.name)
                if field.name == "proxies":
                    value = {scheme: without_userinfo(url) for scheme, url in value.items()}
                shown.append(f"{field.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def url(self, path: str) -> str:
        """Return ``base_url`` joined with ``path`` (which starts with ``/``).

        :param path: an absolute path, already percent-encoded.
        :return: the URL.
        """
        return self.base_url + path


class _Resolver:
    """Reads one setting at a time, hook argument > extra > default, and coerces it."""

    def __init__(self, conn_id: str, extra: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        self.conn_id = conn_id
        self.extra = extra
        self.overrides = overrides

    def error(self, field: str, problem: str) -> CapillaryConfigError:
        return CapillaryConfigError(f"connection {self.conn_id!r}: {field} {problem}", conn_id=self.conn_id)

    def refuse_misplaced(self) -> None:
        """Refuse task policy set as an extra, old extra names, and connection facts as arguments."""
        problems = []
        for s in table.TABLE:
            if s.scope == "task" and _is_set(self.extra.get(s.name)):
                problems.append(f"extra {s.name!r} moved to the task: {table.moved_hint(s)}")
            if s.extra is not None and _is_set(self.extra.get(s.name)):
                problems.append(
                    f"extra {s.name!r} is named {s.extra!r} (Airflow's UI would mask the value of {s.name!r})"
                )
            if s.scope == "connection" and {s.name, s.extra_name} & set(self.overrides):
                problems.append(
                    f"{s.extra_name} is a fact of the connection, not a hook argument: "
                    f"set the extra {s.extra_name!r} of the connection"
                )
        unknown = sorted(set(self.overrides) - {n for s in table.TABLE for n in (s.name, s.extra_name)})
        if unknown:
            problems.append(
                f"unknown hook argument(s) {', '.join(unknown)}; known: {', '.join(sorted(SETTINGS))}"
            )
        if problems:
            raise CapillaryConfigError(
                f"connection {self.conn_id!r}: {'; '.join(problems)}", conn_id=self.conn_id
            )

    def value(self, s: Setting) -> Any:
        if s.scope != "connection" and s.name in self.overrides:
            given = self.overrides[s.name]
        elif s.scope != "task" and _is_set(self.extra.get(s.extra_name)):
            given = self.extra[s.extra_name]
        else:
            given = s.default
        if given is None:
            return None
        try:
            return coerce(given, s)
        except Invalid as exc:
            raise self.error(s.extra_name, str(exc)) from None


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _base_url(host: str | None, schema: str | None, port: int | None) -> str:
    if not host or not host.strip():
        raise Invalid("is empty: set it to the cluster URL, e.g. https://eucrm.cc.capillarytech.com")
    host = host.strip().rstrip("/")
    if "://" not in host:
        scheme = schema.lower() if schema and schema.lower() in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    # No message echoes the parser's error or the host unredacted: a password holding "/" makes
    # its tail the "port" ("Port could not be cast to integer value as 's3cret'").
    try:
        parts = urlsplit(host)
    except ValueError:
        raise Invalid("is not a valid URL (broken [ ] around an IPv6 address)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"must be an http:// or https:// URL, got {without_userinfo(host)!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise Invalid("must not carry credentials, a query or a fragment")
    try:
        has_port = parts.port is not None
    except ValueError:
        raise Invalid("is not a valid URL (its port is not a number from 0 to 65535)") from None
    return f"{parts.scheme}://{parts.netloc}:{port}{parts.path}" if port and not has_port else host
