"""The one table of the provider's settings: connection facts and task policy, with every default.

A ``capillary`` connection holds what a person setting it up must know about the service (its
host, credentials and their kind, namespace, time zone, TLS, proxies, headers, body encoding,
storage hosts, the API key's rate limit). A task holds its policy (retries and waits, the checks
of a file before it is sent, the pool size): those are arguments of ``CapillaryFileHook`` and
``UploadImageOperator``, and a connection extra of their name is refused with a message that
says where it went.

This table feeds:

* the configuration (:mod:`airflow_capillary.hooks._config`: coercion, defaults, the refusals);
* the ``conn-fields`` of :func:`~airflow_capillary.get_provider_info.get_provider_info`, a
  literal dict that ``scripts/gen_provider_info.py`` writes from it (``--check`` finds drift);
* through ``conn-fields``, the connection form of Airflow 3.1 (:mod:`airflow_capillary.hooks._form`);
* the README's tables of the connection and of the task settings (written by the same script).

``tests/provider/test_settings_agree.py`` proves that all of them agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = [
    "BY_NAME",
    "CONNECTION_SETTINGS",
    "HOOK_ARGUMENTS",
    "TABLE",
    "TASK_SETTINGS",
    "Setting",
    "moved_hint",
]

#: Where a setting is given: only in the connection, in the connection with a per-task
#: override (hook or operator argument), or only per task.
Scope = Literal["connection", "both", "task"]

#: How a value is read and coerced (one coercer per kind in ``hooks/_config.py``).
Kind = Literal[
    "choice",
    "boolean",
    "integer",
    "number",
    "timeout",
    "verify",
    "object",
    "hosts",
    "namespace",
    "zone",
    "header",
    "field_name",
    "path",
    "url",
]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its name, how it is coerced, its default, where it is given, how it is shown.

    :param name: the attribute of ``CapillaryConnectionConfig`` and, for ``both``/``task``,
        the hook (and operator) keyword argument.
    :param kind: how a value is coerced (see :data:`Kind`).
    :param default: the value when nothing is given (``None``: unset).
    :param scope: ``connection`` (an extra only), ``both`` (an extra a task may override) or
        ``task`` (a hook/operator argument only; the extra is refused).
    :param label: the form's label.
    :param help: one sentence for the form's description and the README.
    :param extra: the extra's name, when it differs from ``name``: Airflow's UI masks the value
        of any extra whose name holds a sensitive word (``password``, ``token``, ``secret``, ...),
        even a default ``false``.
    :param choices: the accepted values of a ``choice``.
    :param minimum: the smallest accepted number.
    :param exclusive: the number must be larger than ``minimum``, not equal to it.
    :param form_format: the form's format hint (``url``, ``json``).
    """

    name: str
    kind: Kind
    default: Any
    scope: Scope
    label: str
    help: str
    extra: str | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    exclusive: bool = False
    form_format: str | None = None

    @property
    def extra_name(self) -> str:
        """The connection extra's name (``extra`` if set, else ``name``)."""
        return self.extra or self.name


_HOOK_OR_OPERATOR = "CapillaryFileHook or UploadImageOperator"

#: Every setting, in the form's order: connection facts first, then task policy.
TABLE: tuple[Setting, ...] = (
    Setting(
        "auth_type",
        "choice",
        "basic",
        "connection",
        "Authentication",
        "basic: till username and MD5 of the password; oauth: client credentials exchanged for a token.",
        choices=("basic", "oauth"),
    ),
    Setting(
        "password_is_md5",
        "boolean",
        False,
        "connection",
        "Password is already an MD5 hex digest",
        "Basic auth only: the password field holds md5(password) and is sent as is.",
        extra="md5_prehashed",
    ),
    Setting(
        "token_url",
        "url",
        None,
        "connection",
        "OAuth token URL",
        "OAuth only. Default: {host}/v3/oauth/token/generate. "
        "Capillary's API host can differ from the file-service host.",
        extra="oauth_url",
        form_format="url",
    ),
    Setting(
        "token_header",
        "header",
        "X-CAP-API-OAUTH-TOKEN",
        "connection",
        "OAuth token header",
        "OAuth only: the header that carries the access token.",
        extra="oauth_access_header",
    ),
    Setting(
        "namespace",
        "namespace",
        "rewards",
        "both",
        "Namespace",
        "File-service namespace used when a task names none.",
    ),
    Setting(
        "timeout",
        "timeout",
        60.0,
        "both",
        "Timeout (seconds)",
        "Seconds, or a [connect, read] pair. It bounds each request as a whole: connecting, "
        "sending the file and receiving the whole answer end within the larger value plus 1 s, "
        "however slowly a server sends; each wait for data is also bounded by read. Raise it for "
        "large files over slow links.",
        minimum=0.0,
        exclusive=True,
    ),
    Setting(
        "rate_limit_per_minute",
        "number",
        None,
        "both",
        "Rate limit (requests per minute)",
        "The API key's limit in requests per minute (Capillary documents 100 on demo and testing "
        "clusters). Empty: no fixed limit.",
        minimum=0.0,
        exclusive=True,
    ),
    Setting(
        "verify",
        "verify",
        True,
        "connection",
        "Verify TLS",
        "true, false, or the path of a CA bundle.",
    ),
    Setting(
        "proxies",
        "object",
        {},
        "connection",
        "Proxies (JSON)",
        'requests-style, e.g. {"https": "http://proxy:3128"}.',
        form_format="json",
    ),
    Setting(
        "headers",
        "object",
        {},
        "connection",
        "Extra headers (JSON)",
        'Static headers sent with every request, e.g. {"X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"}.',
        form_format="json",
    ),
    Setting(
        "storage_hosts",
        "hosts",
        (),
        "connection",
        "More storage hosts",
        "Hosts the sensor may fetch secure URLs from, besides this connection's origin and "
        "https://*.amazonaws.com: host, *.domain or host:port (https), or http://host:port.",
    ),
    Setting(
        "server_timezone",
        "zone",
        "Asia/Kolkata",
        "connection",
        "Service time zone",
        "IANA zone in which the service writes last_modified.",
    ),
    Setting(
        "upload_encoding",
        "choice",
        "multipart",
        "connection",
        "Upload encoding",
        "multipart: a form part holds the image; raw: the image is the body.",
        choices=("multipart", "raw"),
    ),
    Setting(
        "file_field",
        "field_name",
        "file",
        "connection",
        "Multipart field name",
        "Name of the form part that carries the image.",
    ),
    Setting(
        "test_path",
        "path",
        None,
        "connection",
        "Path probed by the Test button",
        "An authenticated, read-only path. Default: the namespace's upload path.",
    ),
    Setting(
        "max_retries",
        "integer",
        5,
        "task",
        "Retries",
        "Retries after the first attempt, on connection errors, timeouts, 429 and 502/503/504.",
        minimum=0,
    ),
    Setting(
        "retry_min_wait",
        "number",
        1.0,
        "task",
        "Shortest wait between retries (seconds)",
        "First backoff wait; it doubles on each retry, with jitter.",
        minimum=0.0,
    ),
    Setting(
        "retry_max_wait",
        "number",
        30.0,
        "task",
        "Longest wait between retries (seconds)",
        "Cap of the backoff wait.",
        minimum=0.0,
    ),
    Setting(
        "retry_after_max",
        "number",
        120.0,
        "task",
        "Longest Retry-After honoured (seconds)",
        "A longer Retry-After is cut to this.",
        minimum=0.0,
    ),
    Setting(
        "max_rate_limit_wait",
        "number",
        1800.0,
        "task",
        "Longest wait on rate limits per batch (seconds)",
        "Time a batch may spend paused by 429s (and 503s with Retry-After) before a rate-limited "
        "answer counts as a failure.",
        minimum=0.0,
        exclusive=True,
    ),
    Setting(
        "retry_on_500",
        "boolean",
        False,
        "task",
        "Retry on HTTP 500",
        "Retry HTTP 500 as well as 429 and 502/503/504.",
    ),
    Setting(
        "retry_integrity_errors",
        "boolean",
        True,
        "task",
        "Upload again after an untrustworthy answer",
        "status 'false', malformed JSON or a wrong stored size: upload again "
        "(each upload creates a version) instead of failing.",
    ),
    Setting(
        "check_content",
        "boolean",
        True,
        "task",
        "Check image content against the extension",
        "The magic bytes must agree with the file extension.",
    ),
    Setting(
        "allow_empty",
        "boolean",
        False,
        "task",
        "Allow empty files",
        "Accept 0-byte files.",
    ),
    Setting(
        "max_file_size",
        "integer",
        None,
        "task",
        "Maximum file size (bytes)",
        "Refuse larger files before sending them. None: no limit.",
        minimum=1,
    ),
    Setting(
        "max_connections",
        "integer",
        16,
        "task",
        "Connection pool size",
        "Size of the hook's HTTP connection pool (UploadImageOperator sets it to max_workers).",
        minimum=1,
    ),
)

#: Setting by name.
BY_NAME: dict[str, Setting] = {s.name: s for s in TABLE}
#: The settings a connection extra may set.
CONNECTION_SETTINGS: tuple[Setting, ...] = tuple(s for s in TABLE if s.scope != "task")
#: The settings that are task policy only.
TASK_SETTINGS: tuple[Setting, ...] = tuple(s for s in TABLE if s.scope == "task")
#: The names a hook argument may set (``CapillaryFileHook(**overrides)``).
HOOK_ARGUMENTS: frozenset[str] = frozenset(s.name for s in TABLE if s.scope != "connection")


def moved_hint(setting: Setting) -> str:
    """Return where a task setting is given instead of the connection (for the refusal).

    :param setting: a ``task`` setting.
    :return: e.g. ``pass max_retries= to CapillaryFileHook or UploadImageOperator``.
    """
    if setting.name == "max_connections":
        return "pass max_connections= to CapillaryFileHook (UploadImageOperator sets it from max_workers)"
    return f"pass {setting.name}= to {_HOOK_OR_OPERATOR}"
