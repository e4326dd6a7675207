"""How the storage behind the secure URLs may be reached: which origins, and with which client.

A secure URL comes from an upload answer through XCom, so a hostile answer or any task between
the upload and the sensor can point it anywhere. :class:`OriginPolicy` says which origins
(scheme, host and port) may be fetched:

* the connection's own origin (the emulator serves its URLs there);
* ``https`` on port 443 of any subdomain of ``amazonaws.com`` (S3);
* the connection's ``storage_hosts``: ``scheme://host[:port]`` patterns whose host may start with
  ``*.`` (any subdomain of the rest, not the rest itself); no port means the scheme's default.

A URL with user info, spaces, control characters or backslashes is refused too: two URL parsers
could read its host differently. Hosts are compared by name: a name of an allowed pattern that
resolves to an internal address is not detected, so list only names you control. The sensor and
the trigger refuse a URL outside the policy before any request, follow a redirect only to an
allowed origin and never from ``https`` to ``http``; the hook flags an upload answer's URL that is
outside it.

:class:`ClientSettings` holds the policy with the connection's TLS, timeout and proxy settings
and the ``Retry-After`` cap, and builds the ``httpx.AsyncClient`` of a round (redirects are
followed by the round itself, hop by hop, never by httpx).
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_capillary._redact import install_log_redaction
from airflow_capillary.exceptions import CapillaryConfigError

if TYPE_CHECKING:
    import httpx

    from airflow_capillary.hooks._config import CapillaryConnectionConfig
    from airflow_capillary.hooks.file_service import CapillaryFileHook

__all__ = [
    "DEFAULT_RETRY_AFTER_MAX",
    "DEFAULT_STORAGE_HOSTS",
    "ClientSettings",
    "OriginPolicy",
    "client_kwargs",
    "origin_of",
]

#: Origins every policy allows besides the connection's own: S3 over https.
DEFAULT_STORAGE_HOSTS: tuple[str, ...] = ("https://*.amazonaws.com",)
#: Default longest ``Retry-After`` honoured (the hook's ``retry_after_max``).
DEFAULT_RETRY_AFTER_MAX = 120.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_RE = re.compile(r"[\x00-\x20\x7f\\]")
_PATTERN_RE = re.compile(r"(?:(https?)://)?(\*\.)?(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?")
#: A URL whose authority is only a host name and a port: every parser reads the same origin from it
#: (no user info, brackets, percent-encoding or non-ASCII can hide), so it needs no full parse.
_PLAIN_URL_RE = re.compile(r"(?i)(https?)://([a-z0-9.-]+)(?::([0-9]{0,5}))?(?=[/?#]|\Z)")


@dataclasses.dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str  # lower case, no trailing dot, IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def _parse(url: str, *, user_info: bool = False) -> _Origin | str:
    """The origin of ``url``, or why it has none that could be checked (never quoting the URL)."""
    if _UNSAFE_RE.search(url):
        return "a URL with spaces, control characters or backslashes"
    plain = _PLAIN_URL_RE.match(url)
    if plain is not None:  # the common case (an upload answer's S3 URL): no full parse per upload
        scheme, host = plain.group(1).lower(), plain.group(2).lower().rstrip(".")
        port = int(plain.group(3) or 0)
        if host and port <= 65535:
            return _Origin(scheme, host, port or _DEFAULT_PORTS[scheme])
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "not a valid URL"
    scheme = parsed.scheme.lower()
    host = parsed.raw_host.decode("ascii", errors="replace").lower().rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return "not an http(s) URL with a host"
    if parsed.userinfo and not user_info:
        return "a URL with user info"
    return _Origin(scheme, host.strip("[]"), parsed.port or _DEFAULT_PORTS[scheme])


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for messages: never its user info, path or query.

    :param url: any URL.
    :return: the origin, or ``"an unreadable URL"``.
    """
    origin = _parse(url, user_info=True)
    return str(origin) if isinstance(origin, _Origin) else "an unreadable URL"


@dataclasses.dataclass(frozen=True)
class _Pattern:
    scheme: str
    host: str
    wildcard: bool
    port: int

    @classmethod
    def parse(cls, text: str) -> _Pattern:
        match = _PATTERN_RE.fullmatch(text.strip().lower().rstrip("."))
        if match is None:
            raise CapillaryConfigError(
                f"storage_hosts: {text!r} is not a host pattern (host, *.domain or host:port for https; "
                "http://host:port for http)"
            )
        scheme, wildcard, host, port = match.groups()
        scheme = scheme or "https"
        return cls(scheme, host.strip("[]"), bool(wildcard), int(port) if port else _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        return str(_Origin(self.scheme, ("*." if self.wildcard else "") + self.host, self.port))

    def matches(self, origin: _Origin) -> bool:
        if (origin.scheme, origin.port) != (self.scheme, self.port):
            return False
        return origin.host.endswith("." + self.host) if self.wildcard else origin.host == self.host


@dataclasses.dataclass(frozen=True)
class OriginPolicy:
    """Which origins a secure URL may be fetched from (see the module docstring).

    :param own: the connection's base URL (its origin is allowed).
    :param storage_hosts: more patterns, ``scheme://host[:port]`` (``host`` may start with ``*.``).
    :raises CapillaryConfigError: the base URL has no origin, or a pattern is not one (names it).
    """

    own: str
    storage_hosts: tuple[str, ...] = ()
    _patterns: tuple[_Pattern, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        origin = _parse(self.own)
        if not isinstance(origin, _Origin):
            raise CapillaryConfigError(f"the connection's host is {origin}: no storage origin can be allowed")
        own = _Pattern(origin.scheme, origin.host, False, origin.port)
        patterns = (own, *(_Pattern.parse(p) for p in (*DEFAULT_STORAGE_HOSTS, *self.storage_hosts)))
        object.__setattr__(self, "_patterns", patterns)

    @classmethod
    def from_config(cls, config: CapillaryConnectionConfig) -> OriginPolicy:
        """The policy of a connection: its own origin, S3 over https, and its ``storage_hosts``.

        :param config: the resolved connection.
        :return: the policy.
        """
        return cls(own=config.base_url, storage_hosts=tuple(config.storage_hosts))

    @property
    def allowed(self) -> str:
        """The allowed origins, for messages (``, ``-separated)."""
        return ", ".join(str(p) for p in self._patterns)

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be fetched, or ``None`` when it may.

        :param url: the URL.
        :return: ``None``, or a reason naming the refused origin (never the path or the query).
        """
        origin = _parse(url)
        if not isinstance(origin, _Origin):
            return f"it is {origin}"
        if any(p.matches(origin) for p in self._patterns):
            return None
        return (
            f"{origin} is not an allowed storage origin (allowed: {self.allowed}; add hosts with the "
            "connection extra storage_hosts)"
        )

    def redirect_refusal(self, source: str, target: str) -> str | None:
        """Why a redirect from ``source`` to ``target`` may not be followed, or ``None``.

        :param source: the URL that answered with the redirect.
        :param target: the absolute ``Location``.
        :return: ``None``, or a reason naming the target's origin.
        """
        if source.lower().startswith("https:") and target.lower().startswith("http:"):
            return f"a redirect from https to http ({origin_of(target)}) is never followed"
        return self.refusal(target)


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """How the storage is reached: the origin policy, the connection's TLS, timeout and proxy
    settings and the ``Retry-After`` cap. Never the connection's credentials or static headers:
    they are for Capillary's API, not for the storage.

    :param policy: the origins that may be fetched.
    :param verify: TLS verification: a bool or the path of a CA bundle.
    :param timeout: ``(connect, read)`` in seconds.
    :param proxies: requests-style proxies (may hold credentials: kept out of ``repr``).
    :param retry_after_max: longest ``Retry-After`` honoured, in seconds.
    """

    policy: OriginPolicy
    verify: bool | str = True
    timeout: tuple[float, float] = (60.0, 60.0)
    proxies: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX

    @classmethod
    def from_hook(cls, hook: CapillaryFileHook) -> ClientSettings:
        """The settings of the hook's connection.

        :param hook: the hook (only its resolved ``config`` is read).
        :return: the settings.
        :raises CapillaryConfigError: the connection is misconfigured.
        """
        config = hook.config
        connect, read = config.timeout
        return cls(
            policy=OriginPolicy.from_config(config),
            verify=config.verify,
            timeout=(float(connect), float(read)),
            proxies=dict(config.proxies or {}),
            retry_after_max=float(config.retry_after_max),
        )

    def client(self) -> httpx.AsyncClient:
        """A new client with these settings (see :func:`client_kwargs`).

        :return: the client; close it (``async with``).
        :raises CapillaryConfigError: ``verify`` names a CA bundle that does not exist here.
        """
        import httpx

        return httpx.AsyncClient(**client_kwargs(self))


def client_kwargs(settings: ClientSettings) -> dict[str, Any]:
    """Keyword arguments of the ``httpx.AsyncClient`` for ``settings``.

    Also makes sure httpx's and httpcore's own log lines (the request line, a redirect's
    ``Location``) never show a signature (:func:`~airflow_capillary._redact.install_log_redaction`).

    :param settings: the settings.
    :return: ``verify``, ``timeout``, ``follow_redirects`` (off) and, with proxies, ``mounts``.
    :raises CapillaryConfigError: ``verify`` names a CA bundle that does not exist here.
    """
    import httpx

    install_log_redaction()
    verify: bool | ssl.SSLContext = True
    value = settings.verify
    if isinstance(value, str):
        if not os.path.exists(value):
            raise CapillaryConfigError(
                f"verify: the CA bundle {value!r} does not exist on this machine (with deferrable=True "
                "the triggerer needs it too)"
            )
        verify = (
            ssl.create_default_context(capath=value)
            if os.path.isdir(value)
            else ssl.create_default_context(cafile=value)
        )
    else:
        verify = bool(value)
    connect, read = settings.timeout
    kwargs: dict[str, Any] = {
        "verify": verify,
        "timeout": httpx.Timeout(read, connect=connect),
        "follow_redirects": False,
    }
    if settings.proxies:
        kwargs["mounts"] = {
            (key if "://" in key else f"{key}://"): httpx.AsyncHTTPTransport(proxy=url, verify=verify)
            for key, url in settings.proxies.items()
            if url
        }
    return kwargs
