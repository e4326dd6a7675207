"""The hook's HTTP session: pooled, shared by threads, and careful with credentials on redirects."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from airflow_capillary import __version__
from airflow_capillary.hooks._config import CapillaryConnectionConfig

#: ``User-Agent`` sent with every request.
USER_AGENT = f"airflow-provider-capillary/{__version__} requests/{requests.__version__}"

#: Static header names treated as credentials (dropped on a redirect to another origin).
CREDENTIAL_HEADER_RE = re.compile(
    r"(?i)(auth|token|secret|password|api[-_]?key|cookie|session|signature|credential)"
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CapillarySession(requests.Session):
    """A :class:`requests.Session` that never forwards credentials to another origin.

    ``requests`` itself only drops ``Authorization`` on a redirect to another host; the OAuth
    token header and credential-like static headers would follow the redirect. Here every
    header in :attr:`credential_headers`, ``Authorization`` and any header whose name looks
    like a credential (:data:`CREDENTIAL_HEADER_RE`) is removed unless the redirect stays on
    the same scheme, host and port (an http -> https upgrade on the same host with default
    ports is allowed, as in ``requests``).

    :param credential_headers: names of further headers that carry credentials.
    """

    def __init__(self, credential_headers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.credential_headers = frozenset(h.lower() for h in (*credential_headers, "Authorization"))

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: bool | None,
        verify: bool | str | None,
        cert: Any,
    ) -> Any:
        """Let the connection's ``verify`` and ``proxies`` win over the environment.

        Plain ``requests`` lets ``REQUESTS_CA_BUNDLE`` and ``*_PROXY`` variables override what
        was set on the session; here a CA path or ``verify=false`` and the ``proxies`` extra
        from the connection take precedence (the environment still fills what they leave unset).
        """
        if verify is None and self.verify is not True:
            verify = self.verify
        merged_proxies = {**self.proxies, **(proxies or {})}
        return super().merge_environment_settings(url, merged_proxies, stream, verify, cert)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """Drop credential headers when a redirect leaves the origin; never re-add netrc auth.

        :param prepared_request: the redirected request, about to be sent.
        :param response: the redirect response.
        """
        if same_origin(response.request.url or "", prepared_request.url or ""):
            return
        for name in list(prepared_request.headers):
            if name.lower() in self.credential_headers or CREDENTIAL_HEADER_RE.search(name):
                del prepared_request.headers[name]


def same_origin(old_url: str, new_url: str) -> bool:
    """Tell whether credentials for ``old_url`` may be sent to ``new_url``.

    :param old_url: the URL that answered with a redirect.
    :param new_url: where the redirect points.
    :return: ``True`` for the same scheme, host and port, or an http -> https upgrade of the
        same host on default ports.
    """
    old, new = urlsplit(old_url), urlsplit(new_url)
    if (old.hostname or "").lower() != (new.hostname or "").lower():
        return False
    old_port = old.port or _DEFAULT_PORTS.get(old.scheme)
    new_port = new.port or _DEFAULT_PORTS.get(new.scheme)
    if old.scheme == new.scheme:
        return old_port == new_port
    return (old.scheme, old_port, new.scheme, new_port) == ("http", 80, "https", 443)


def build_session(config: CapillaryConnectionConfig) -> CapillarySession:
    """Create the session of a hook: pool size, TLS verification, proxies, static headers.

    :param config: the resolved connection.
    :return: the session (no auth attached: the hook passes its auth object per request).
    """
    session = CapillarySession(credential_headers=(config.token_header,))
    adapter = HTTPAdapter(
        pool_connections=max(4, config.max_connections),
        pool_maxsize=config.max_connections,
        max_retries=0,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    session.headers.update(config.headers)
    session.verify = config.verify
    session.proxies.update(config.proxies)
    return session
