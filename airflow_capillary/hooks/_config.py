"""Resolution of a ``capillary`` connection into one typed, validated configuration.

Every setting is resolved here and nowhere else, in this order:

1. the hook argument (``CapillaryFileHook(timeout=...)`` or ``**overrides``),
2. the connection extra of the same name,
3. the default in :data:`DEFAULTS`.

Extras of the URI form of ``AIRFLOW_CONN_*`` arrive as strings and are coerced here
(``"true"``/``"1"``/``"yes"``, numbers, JSON for dicts and pairs). A value that cannot be
coerced raises :class:`~airflow_capillary.exceptions.CapillaryConfigError` naming the
connection id and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_capillary._validation import validate_namespace
from airflow_capillary.exceptions import CapillaryConfigError, CapillaryInvalidInputError

#: Default of every setting that has one (``None``: no default, i.e. unset).
DEFAULTS: dict[str, Any] = {
    "auth_type": "basic",
    "password_is_md5": False,
    "token_url": None,
    "token_header": "X-CAP-API-OAUTH-TOKEN",
    "namespace": "rewards",
    "timeout": 60.0,
    "verify": True,
    "proxies": {},
    "headers": {},
    "server_timezone": "Asia/Kolkata",
    "upload_encoding": "multipart",
    "file_field": "file",
    "max_retries": 5,
    "retry_min_wait": 1.0,
    "retry_max_wait": 30.0,
    "retry_after_max": 120.0,
    "retry_on_500": False,
    "retry_integrity_errors": True,
    "max_file_size": None,
    "check_content": True,
    "allow_empty": False,
    "max_connections": 16,
    "test_path": None,
}

#: Other accepted names of some extras. The connection form uses these, because Airflow's UI
#: masks the value of any extra whose name contains a sensitive word ("password", "token").
ALIASES: dict[str, str] = {
    "md5_prehashed": "password_is_md5",
    "oauth_url": "token_url",
    "oauth_access_header": "token_header",
}

#: Settings that a hook argument or a connection extra may set (with their aliases).
SETTINGS = frozenset(DEFAULTS) | frozenset(ALIASES)

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclasses.dataclass(frozen=True)
class CapillaryConnectionConfig:
    """Everything the hook needs from a ``capillary`` connection, typed and validated.

    :param conn_id: the Airflow connection id.
    :param base_url: scheme, host and port (and path prefix, if any) with no trailing slash.
    :param auth_type: ``basic`` or ``oauth``.
    :param login: till username (basic) or OAuth client key.
    :param password: plain password, its MD5 hex (``password_is_md5``), or the client secret.
    :param password_is_md5: basic only: ``password`` already holds ``md5(password)`` in hex.
    :param token_url: OAuth token endpoint.
    :param token_header: header carrying the OAuth access token.
    :param namespace: default file-service namespace.
    :param timeout: ``(connect, read)`` timeout in seconds.
    :param verify: ``True``/``False`` or the path of a CA bundle.
    :param proxies: requests-style proxies (``{"https": "http://proxy:3128"}``).
    :param headers: static headers sent with every request.
    :param server_timezone: IANA zone in which the service writes ``last_modified``.
    :param upload_encoding: ``multipart`` or ``raw``.
    :param file_field: name of the multipart part that carries the file.
    :param max_retries: retries after the first attempt.
    :param retry_min_wait: first backoff wait in seconds (doubles each retry, plus jitter).
    :param retry_max_wait: longest backoff wait in seconds.
    :param retry_after_max: cap on an honoured ``Retry-After`` in seconds.
    :param retry_on_500: retry HTTP 500 as well as 429/502/503/504.
    :param retry_integrity_errors: re-upload when the answer fails the integrity checks
        (each re-upload creates a new version in Capillary).
    :param max_file_size: largest file accepted in bytes, or ``None``.
    :param check_content: the magic bytes must agree with the file extension.
    :param allow_empty: accept 0-byte files.
    :param max_connections: size of the HTTP connection pool.
    :param test_path: path probed by ``test_connection`` (default: the namespace URL).
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
    verify: bool | str
    proxies: dict[str, str]
    headers: dict[str, str] = dataclasses.field(repr=False)
    server_timezone: str
    upload_encoding: Literal["multipart", "raw"]
    file_field: str
    max_retries: int
    retry_min_wait: float
    retry_max_wait: float
    retry_after_max: float
    retry_on_500: bool
    retry_integrity_errors: bool
    max_file_size: int | None
    check_content: bool
    allow_empty: bool
    max_connections: int
    test_path: str | None

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
        :raises CapillaryConfigError: a value is missing or wrong (names conn id and field).
        """
        given = {ALIASES.get(k, k): v for k, v in (overrides or {}).items() if v is not None}
        r = _Resolver(conn_id, extra or {}, given)
        base_url = _base_url(r, host, schema, port)
        auth_type = r.choice("auth_type", ("basic", "oauth"))
        who = "till username" if auth_type == "basic" else "OAuth client key"
        secret = "password" if auth_type == "basic" else "OAuth client secret"
        if not login:
            raise r.error("login", f"is empty: auth_type {auth_type} needs the {who}")
        if not password:
            raise r.error("password", f"is empty: auth_type {auth_type} needs the {secret}")
        password_is_md5 = r.boolean("password_is_md5")
        if auth_type == "basic" and password_is_md5 and not re.fullmatch(r"[0-9a-fA-F]{32}", password):
            raise r.error("password", "is not a 32-character MD5 hex digest although password_is_md5 is set")
        token_url = r.string("token_url") or f"{base_url}/v3/oauth/token/generate"
        if urlsplit(token_url).scheme not in ("http", "https") or not urlsplit(token_url).netloc:
            raise r.error("token_url", "must be an http:// or https:// URL")
        max_wait = r.number("retry_max_wait", minimum=0.0)
        min_wait = r.number("retry_min_wait", minimum=0.0)
        if min_wait > max_wait:
            raise r.error("retry_min_wait", f"({min_wait}) is larger than retry_max_wait ({max_wait})")
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            auth_type=auth_type,  # type: ignore[arg-type]
            login=login,
            password=password,
            password_is_md5=password_is_md5,
            token_url=token_url.rstrip("/"),
            token_header=r.string("token_header", pattern=_HEADER_NAME_RE, what="an HTTP header name"),
            namespace=r.convert("namespace", validate_namespace),
            timeout=_timeout(r),
            verify=_verify(r),
            proxies=r.str_dict("proxies"),
            headers=r.str_dict("headers"),
            server_timezone=r.convert("server_timezone", _zone),
            upload_encoding=r.choice("upload_encoding", ("multipart", "raw")),  # type: ignore[arg-type]
            file_field=r.string("file_field", pattern=re.compile(r"[^\"\\\r\n]+"), what="a form field name"),
            max_retries=r.integer("max_retries", minimum=0),
            retry_min_wait=min_wait,
            retry_max_wait=max_wait,
            retry_after_max=r.number("retry_after_max", minimum=0.0),
            retry_on_500=r.boolean("retry_on_500"),
            retry_integrity_errors=r.boolean("retry_integrity_errors"),
            max_file_size=r.integer("max_file_size", minimum=1, optional=True),
            check_content=r.boolean("check_content"),
            allow_empty=r.boolean("allow_empty"),
            max_connections=r.integer("max_connections", minimum=1),
            test_path=r.string("test_path", pattern=re.compile(r"/\S*"), what="a path starting with '/'"),
        )

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

    def raw(self, field: str) -> Any:
        if field in self.overrides:
            return self.overrides[field]
        names = [field, *(alias for alias, canonical in ALIASES.items() if canonical == field)]
        given = {name: self.extra[name] for name in names if _is_set(self.extra.get(name))}
        if len(given) > 1 and len({json.dumps(v, sort_keys=True, default=str) for v in given.values()}) > 1:
            raise self.error(field, f"is given twice with different values (as {' and '.join(given)})")
        value = next(iter(given.values()), None)
        if value is None:
            return DEFAULTS[field]
        return value

    def convert(self, field: str, func: Callable[[Any], Any]) -> Any:
        value = self.raw(field)
        try:
            return func(value)
        except (CapillaryInvalidInputError, ValueError, TypeError) as exc:
            raise self.error(field, f"is invalid: {exc}") from None

    def boolean(self, field: str) -> bool:
        value = self.raw(field)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self.error(field, f"must be true or false, got {value!r}")

    def number(self, field: str, *, minimum: float, exclusive: bool = False) -> float:
        value = self.raw(field)
        number = _as_number(value)
        if number is None or number < minimum or (exclusive and number == minimum):
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            raise self.error(field, f"must be a number {bound}, got {value!r}")
        return number

    def integer(self, field: str, *, minimum: int, optional: bool = False) -> Any:
        value = self.raw(field)
        if value is None and optional:
            return None
        number = _as_number(value)
        if number is None or number != int(number) or number < minimum:
            raise self.error(field, f"must be an integer >= {minimum}, got {value!r}")
        return int(number)

    def string(self, field: str, *, pattern: re.Pattern[str] | None = None, what: str = "") -> Any:
        value = self.raw(field)
        if value is None:
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise self.error(field, f"must be {what or 'a string'}, got {value!r}")
        return value

    def choice(self, field: str, choices: tuple[str, ...]) -> str:
        value = self.raw(field)
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise self.error(field, f"must be one of {', '.join(choices)}, got {value!r}")

    def str_dict(self, field: str) -> dict[str, str]:
        value = self.raw(field)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise self.error(
                    field, "must be a JSON object of strings, got text that is not JSON"
                ) from None
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            # Values may be credentials: show only the shape, never the content.
            raise self.error(
                field, f"must be an object of string keys and string values, got {type(value).__name__}"
            )
        return dict(value)


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _base_url(r: _Resolver, host: str | None, schema: str | None, port: int | None) -> str:
    if not host or not host.strip():
        raise r.error("host", "is empty: set it to the cluster URL, e.g. https://eucrm.cc.capillarytech.com")
    host = host.strip().rstrip("/")
    if "://" not in host:
        scheme = schema.lower() if schema and schema.lower() in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    try:
        parts = urlsplit(host)
        has_port = parts.port is not None
    except ValueError as exc:
        raise r.error("host", f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise r.error("host", f"must be an http:// or https:// URL, got {host!r}")
    if parts.query or parts.fragment or parts.username:
        raise r.error("host", "must not carry credentials, a query or a fragment")
    if port and not has_port:
        host = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
    return host


def _timeout(r: _Resolver) -> tuple[float, float]:
    value = r.raw("timeout")
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    pair = list(value) if isinstance(value, (list, tuple)) else [value, value]
    numbers = [_as_number(v) for v in pair]
    if len(numbers) != 2 or any(n is None or n <= 0 for n in numbers):
        raise r.error("timeout", f"must be a number > 0 or a [connect, read] pair of them, got {value!r}")
    return (numbers[0], numbers[1])  # type: ignore[return-value]


def _verify(r: _Resolver) -> bool | str:
    value = r.raw("verify")
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        if not os.path.exists(value):
            raise r.error("verify", f"is neither true/false nor an existing CA bundle path: {value!r}")
        return value
    raise r.error("verify", f"must be true, false or a CA bundle path, got {value!r}")


def _zone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IANA time zone name")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone name") from None
    return value
