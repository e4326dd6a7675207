"""The hook's HTTP session and its one request function, :func:`exchange`.

* :class:`CapillarySession` is pooled and shared by threads. It follows a redirect only within
  the origin that answered it (same scheme, host and port, or an http -> https upgrade of the
  same host): a redirect elsewhere is returned unfollowed, and the hook refuses it. Credential
  headers never leave the origin.
* :func:`exchange` sends one request and reads its answer, bounded in time
  (:mod:`~airflow_capillary.hooks._deadline`) and in size (:meth:`Answer.read
  <airflow_capillary.hooks._answer.Answer.read>`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.auth import AuthBase

from airflow_capillary import __version__
from airflow_capillary.hooks._answer import MAX_ANSWER_BYTES, Answer
from airflow_capillary.hooks._config import CapillaryConnectionConfig
from airflow_capillary.hooks._deadline import DeadlineAdapter, attempt_deadline, attempt_seconds
from airflow_capillary.hooks._rate_limit import RateLimiter
from airflow_capillary.hooks._retry import rate_limit_pause

__all__ = ["USER_AGENT", "CapillarySession", "build_session", "exchange", "same_origin"]

#: ``User-Agent`` sent with every request.
USER_AGENT = f"airflow-provider-capillary/{__version__} requests/{requests.__version__}"

#: Static header names treated as credentials (dropped on a redirect to another origin).
CREDENTIAL_HEADER_RE = re.compile(
    r"(?i)(auth|token|secret|password|api[-_]?key|cookie|session|signature|credential)"
)

#: Redirects followed (within the origin) before giving up.
MAX_REDIRECTS = 5

#: Bytes of a redirect's own body read before following it (``requests`` would read all of it).
MAX_REDIRECT_BODY = 64 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CapillarySession(requests.Session):
    """A :class:`requests.Session` that keeps requests and credentials on the service's origin.

    A redirect is followed only when :func:`same_origin` allows it; any other redirect comes
    back to the caller as the 3xx answer. ``requests`` itself only drops ``Authorization`` on a
    redirect to another host; here, in case a same-origin rule ever lets a request leave, every
    header in :attr:`credential_headers`, ``Authorization`` and any header whose name looks like
    a credential (:data:`CREDENTIAL_HEADER_RE`) is removed unless the redirect stays on the origin.

    :param credential_headers: names of further headers that carry credentials.
    """

    def __init__(self, credential_headers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.credential_headers = frozenset(h.lower() for h in (*credential_headers, "Authorization"))
        self.max_redirects = MAX_REDIRECTS

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Return where to follow ``resp``, or ``None``: not a redirect, or not to this origin.

        Before a redirect is followed its body is read here, at most :data:`MAX_REDIRECT_BODY`
        bytes (``requests`` would read it to its end, whatever its size), and its connection closed.

        :param resp: the answer.
        :return: the ``Location`` to follow, or ``None`` to hand the answer back as it is.
        """
        try:
            target = super().get_redirect_target(resp)
            if target is None or not same_origin(resp.url, urljoin(resp.url, target)):
                return None
        except (UnicodeError, ValueError):  # a Location that is not UTF-8, or not a URL
            return None
        if not resp._content_consumed:  # type: ignore[attr-defined]
            resp.raw.read(MAX_REDIRECT_BODY, decode_content=False)
            resp.raw.close()  # the rest of a longer body is never read: the connection goes
            resp._content, resp._content_consumed = b"", True  # type: ignore[attr-defined]
        return target

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
    """Tell whether a request to ``old_url`` may follow a redirect to ``new_url``.

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
    adapter = DeadlineAdapter(
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


def exchange(
    session: requests.Session,
    timeout: tuple[float, float],
    method: str,
    url: str,
    *,
    auth: AuthBase | None,
    limiter: RateLimiter | None = None,
    follow_redirects: bool = True,
    limit: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> Answer:
    """Send one request and read its answer, the whole exchange bounded in time and size.

    Connecting, sending and receiving the whole answer must end within the larger timeout plus
    :data:`~airflow_capillary.hooks._deadline.ATTEMPT_MARGIN`; at most ``limit`` bytes of the
    answer are read. Redirects are followed within the origin only, and not at all without
    ``follow_redirects``. With a ``limiter``, the request waits for its turn, and a rate limit
    (429, or 503 with ``Retry-After``) that the limiter absorbs pauses every thread of the hook
    and sends the request again (the body from its start): it costs no retry.

    :param session: the hook's session.
    :param timeout: ``(connect, read)`` seconds.
    :param method: the HTTP method.
    :param url: the URL.
    :param auth: the auth object, or ``None``.
    :param limiter: the hook's rate limiter, or ``None``.
    :param follow_redirects: follow same-origin redirects.
    :param limit: most bytes of the answer to read.
    :param kwargs: more arguments of :meth:`requests.Session.request` (``data``, ``json``, ``headers``).
    :return: the answer (a rate limit too, once the limiter no longer absorbs them).
    :raises requests.RequestException: no answer (``requests.Timeout`` once the deadline passed).
    """
    while True:
        if limiter is None:
            return _send(session, timeout, method, url, auth, follow_redirects, limit, kwargs)
        limiter.acquire()
        try:
            answer = _send(session, timeout, method, url, auth, follow_redirects, limit, kwargs)
        except BaseException:
            limiter.release()
            raise
        pause = rate_limit_pause(answer.status_code, answer.headers.get("Retry-After"))
        if pause is None:
            limiter.success()
            return answer
        if not limiter.pause(pause, slow_down=answer.status_code == 429):
            return answer  # the batch's rate-limit budget is spent: an ordinary failure now
        seek = getattr(kwargs.get("data"), "seek", None)
        if seek is not None:  # the body again from its start (an upload body reopens its source)
            seek(0)


def _send(
    session: requests.Session,
    timeout: tuple[float, float],
    method: str,
    url: str,
    auth: AuthBase | None,
    follow_redirects: bool,
    limit: int,
    kwargs: dict[str, Any],
) -> Answer:
    with attempt_deadline(attempt_seconds(timeout)) as deadline:
        try:
            response = session.request(
                method,
                url,
                auth=auth,
                timeout=timeout,
                stream=True,
                allow_redirects=follow_redirects,
                **kwargs,
            )
            with response:
                return Answer.read(response, limit)
        except Exception:
            if deadline.expired:  # whatever the shut-down socket raised, the cause is the deadline
                raise deadline.error() from None
            raise
