"""Coercion of one setting's value by its kind (see :data:`airflow_capillary.settings.Kind`).

Each coercer takes the given value (a typed JSON value, or the text of a URI extra) and the
setting, and returns the typed value or raises :class:`Invalid` with the problem, which the
config prefixes with the connection and the field. No problem quotes a credential.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_capillary._validation import validate_namespace
from airflow_capillary.exceptions import CapillaryInvalidInputError
from airflow_capillary.settings import Setting

__all__ = ["Invalid", "coerce", "without_userinfo"]

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_PATTERN_RE = re.compile(
    rf"(?:(?P<scheme>https?)://)?(?P<host>(?:\*\.)?{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::(?P<port>\d{{1,5}}))?"
)


class Invalid(Exception):
    """A value that cannot be coerced; the message is the problem, said after the field's name."""


def coerce(value: Any, setting: Setting) -> Any:
    """Return ``value`` coerced to the type of ``setting``'s kind.

    :param value: the given value (not ``None``).
    :param setting: the setting.
    :return: the typed value.
    :raises Invalid: the value is wrong for the kind.
    """
    return _COERCE[setting.kind](value, setting)


def without_userinfo(url: str) -> str:
    """Return ``url`` with any ``user:password@`` part replaced by ``***@`` (for messages and repr).

    Everything up to the last ``@`` counts as userinfo, so that a password holding ``/`` or
    ``@`` is hidden too.

    :param url: a URL, with or without a scheme.
    :return: the URL without credentials.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _json(value: Any, what: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise Invalid(f"must be {what}, got text that is not JSON") from None


def _boolean(value: Any, s: Setting) -> bool:
    text = value.strip().lower() if isinstance(value, str) else None
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise Invalid(f"must be true or false, got {value!r}")


def _number(value: Any, s: Setting) -> float:
    number, minimum = _as_number(value), s.minimum or 0.0
    if number is None or number < minimum or (s.exclusive and number == minimum):
        raise Invalid(f"must be a number {'>' if s.exclusive else '>='} {minimum:g}, got {value!r}")
    return number


def _integer(value: Any, s: Setting) -> int:
    number, minimum = _as_number(value), int(s.minimum or 0)
    if number is None or number != int(number) or number < minimum:
        raise Invalid(f"must be an integer >= {minimum}, got {value!r}")
    return int(number)


def _choice(value: Any, s: Setting) -> str:
    if isinstance(value, str) and value.strip().lower() in s.choices:
        return value.strip().lower()
    raise Invalid(f"must be one of {', '.join(s.choices)}, got {value!r}")


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[Any, Setting], str]:
    def check(value: Any, s: Setting) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise Invalid(f"must be {what}, got {value!r}")
        return value

    return check


def _checked(func: Callable[[Any], Any]) -> Callable[[Any, Setting], Any]:
    def check(value: Any, s: Setting) -> Any:
        try:
            return func(value)
        except (CapillaryInvalidInputError, ValueError, TypeError) as exc:
            raise Invalid(f"is invalid: {exc}") from None

    return check


def _str_dict(value: Any, s: Setting) -> dict[str, str]:
    value = _json(value, "a JSON object of strings")
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        # Values may be credentials: show only the shape, never the content.
        raise Invalid(f"must be an object of string keys and string values, got {type(value).__name__}")
    return dict(value)


def _timeout(value: Any, s: Setting) -> tuple[float, float]:
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    pair = list(value) if isinstance(value, (list, tuple)) else [value, value]
    numbers = [_as_number(v) for v in pair]
    if len(numbers) != 2 or any(n is None or n <= 0 for n in numbers):
        raise Invalid(f"must be a number > 0 or a [connect, read] pair of them, got {value!r}")
    return (numbers[0], numbers[1])  # type: ignore[return-value]


def _verify(value: Any, s: Setting) -> bool | str:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise Invalid(f"must be true, false or a CA bundle path, got {value!r}")
    if value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if not os.path.exists(value):
        raise Invalid(f"is neither true/false nor an existing CA bundle path: {value!r}")
    return value


def _url(value: Any, s: Setting) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except (ValueError, TypeError, AttributeError):  # a port that is not a number; not text
        valid = False
    if not valid:
        raise Invalid("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise Invalid("must not carry credentials")
    return str(value)


def _hosts(value: Any, s: Setting) -> tuple[str, ...]:
    if isinstance(value, str) and not value.strip().startswith("["):
        value = [p for p in re.split(r"[\s,]+", value.strip()) if p]
    value = _json(value, "a JSON list of host patterns")
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise Invalid(f"must be a list of host patterns, got {type(value).__name__}")
    patterns = []
    for entry in value:
        match = _HOST_PATTERN_RE.fullmatch(entry.strip().lower())
        port = int(match["port"]) if match and match["port"] else None
        if match is None or (port is not None and not 1 <= port <= 65535):
            raise Invalid(
                f"entry {without_userinfo(entry)!r} is not a host pattern "
                "(host, *.domain or host:port for https; http://host:port for http)"
            )
        patterns.append(f"{match['scheme'] or 'https'}://{match['host']}" + (f":{port}" if port else ""))
    return tuple(patterns)


def _zone(value: Any) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IANA time zone name") from None
    return str(value)


#: One coercer per kind of the table: ``(given value, setting) -> value``, or raise ``_Invalid``.
_COERCE: dict[str, Callable[[Any, Setting], Any]] = {
    "choice": _choice,
    "boolean": _boolean,
    "integer": _integer,
    "number": _number,
    "timeout": _timeout,
    "verify": _verify,
    "object": _str_dict,
    "hosts": _hosts,
    "namespace": _checked(validate_namespace),
    "zone": _checked(_zone),
    "header": _matching(re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"), "an HTTP header name"),
    "field_name": _matching(re.compile(r"[^\"\\\r\n]+"), "a form field name"),
    "path": _matching(re.compile(r"/\S*"), "a path starting with '/'"),
    "url": _url,
}
