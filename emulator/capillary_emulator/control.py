"""The control endpoints under ``/_emulator``: faults, files, logs, settings, stats, reset.

They are for the test or script that started the emulator, and refuse everyone else:

- ``Host`` must be a loopback name or address (``localhost``, ``127.0.0.0/8``, ``[::1]``, with any
  port): a page that points its own DNS name at 127.0.0.1 (DNS rebinding) gets 403;
- every endpoint but ``GET /_emulator/health`` requires the control token in the
  ``X-Emulator-Token`` header (401): a secret generated at start (or passed in), printed by the CLI
  (``control token: ...``) and held by ``CapillaryEmulator.control_token``,
  ``EmulatorProcess.control_token`` and the pytest fixtures;
- a ``POST`` must be ``Content-Type: application/json`` (415): a web page cannot send that
  cross-origin without a CORS preflight, which the emulator never grants;
- a ``POST`` body is at most :data:`CONTROL_BODY_LIMIT` bytes (413) of JSON (400 otherwise, deeply
  nested input included).

Routes: ``GET``/``POST``/``DELETE /_emulator/faults`` (list, queue a JSON list of fault dicts or one
dict, clear), ``GET /_emulator/files``, ``GET /_emulator/requests`` (credentials redacted),
``GET /_emulator/tokens``, ``GET /_emulator/stats`` (counts by kind and status, rate-limit counts
per API key), ``POST /_emulator/reset``, ``GET``/``POST /_emulator/settings`` (runtime settings,
e.g. ``{"latency": 0.05}`` or ``{"rate_limit": "100/min", "rate_limit_burst": 100}``),
``GET /_emulator/health``. Control requests are not logged.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capillary_emulator.connection import CONTROL_TOKEN_HEADER
from capillary_emulator.faults import Fault
from capillary_emulator.responses import BodyTooLarge, json_response, parse_json, read_limited
from capillary_emulator.state import EmulatorState

__all__ = [
    "CONTROL_BODY_LIMIT",
    "CONTROL_PREFIX",
    "CONTROL_TOKEN_HEADER",
    "control_routes",
    "is_loopback_host",
]

CONTROL_PREFIX = "/_emulator"
#: Largest control POST body, bytes.
CONTROL_BODY_LIMIT = 4 << 20

_Handler = Callable[[Request], Awaitable[Response]]


def is_loopback_host(host: str | None) -> bool:
    """Tell whether a ``Host`` header names this machine's loopback interface.

    :param host: the header value, e.g. ``127.0.0.1:8080``, ``[::1]:8080`` or ``localhost``.
    :return: ``True`` for ``localhost``, an address in ``127.0.0.0/8`` or ``::1``, with or without
        a port; ``False`` otherwise (a missing header included).
    """
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _refusal(request: Request, needs_token: bool) -> Response | None:
    """Return the answer refusing a control request, or ``None`` when it may proceed."""
    host = request.headers.get("host")
    if not is_loopback_host(host):
        message = (
            "the control endpoints answer only to a loopback Host (localhost, 127.0.0.1, [::1]), "
            f"got {host!r}"
        )
        return json_response(403, {"error": message})
    state: EmulatorState = request.app.state.emulator
    if needs_token:
        given = request.headers.get(CONTROL_TOKEN_HEADER, "").encode("latin-1")
        if not hmac.compare_digest(given, state.control_token.encode()):
            message = (
                f"missing or wrong {CONTROL_TOKEN_HEADER} header: the control token is printed by the "
                "emulator at start and held by CapillaryEmulator/EmulatorProcess.control_token"
            )
            return json_response(401, {"error": message})
    if request.method == "POST":
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return json_response(415, {"error": "control POSTs take Content-Type: application/json"})
    return None


def _guarded(handler: _Handler, *, needs_token: bool = True) -> _Handler:
    async def endpoint(request: Request) -> Response:
        refusal = _refusal(request, needs_token)
        return refusal if refusal is not None else await handler(request)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def _json_body(request: Request) -> Any:
    """Read a bounded JSON control body (an empty body is ``None``).

    :raises ValueError: when it is not JSON.
    :raises BodyTooLarge: past :data:`CONTROL_BODY_LIMIT`.
    """
    body = await read_limited(request, CONTROL_BODY_LIMIT)
    return parse_json(body) if body.strip() else None


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _bad_body(exc: Exception) -> Response:
    return json_response(413 if isinstance(exc, BodyTooLarge) else 400, {"error": str(exc)})


async def control_faults(request: Request) -> Response:
    """List (GET), queue (POST) or clear (DELETE) scripted faults.

    :param request: the request; for POST a JSON fault dict or list of them.
    :return: the pending faults, or 400 for an invalid fault.
    """
    state = _state(request)
    if request.method == "POST":
        try:
            data = await _json_body(request)
            items = data if isinstance(data, list) else [data]
            if not all(isinstance(item, dict) for item in items):
                raise TypeError("expected a fault object or a list of them")
            state.push_faults([Fault.from_dict(item) for item in items])
        except (ValueError, TypeError) as exc:
            return _bad_body(exc)
    elif request.method == "DELETE":
        state.faults.clear()
    return json_response(200, [fault.to_dict() for fault in state.faults.pending()])


async def control_files(request: Request) -> Response:
    """List every stored version (see ``StoredFile.to_dict``).

    :param request: the request.
    :return: JSON list.
    """
    files = await asyncio.to_thread(_state(request).store.files)
    return json_response(200, [stored.to_dict() for stored in files])


async def control_requests(request: Request) -> Response:
    """List the logged requests (credentials redacted, see ``requestlog``).

    :param request: the request.
    :return: JSON list.
    """
    return json_response(200, _state(request).log.entries())


async def control_tokens(request: Request) -> Response:
    """List the token requests.

    :param request: the request.
    :return: JSON list.
    """
    return json_response(200, _state(request).auth.token_requests())


async def control_stats(request: Request) -> Response:
    """Show the counts that the bounded request log cannot lose (see ``EmulatorState.stats``).

    :param request: the request.
    :return: JSON object.
    """
    return json_response(200, _state(request).stats())


async def control_reset(request: Request) -> Response:
    """Delete stored files, faults, logs and counts.

    :param request: the request.
    :return: ``{"reset": true}``.
    """
    await asyncio.to_thread(_state(request).reset)
    return json_response(200, {"reset": True})


async def control_settings(request: Request) -> Response:
    """Show (GET) or change (POST a JSON object) runtime settings.

    :param request: the request.
    :return: the settings without secrets, or 400.
    """
    state = _state(request)
    if request.method == "POST":
        try:
            changes = await _json_body(request)
            if not isinstance(changes, dict):
                raise TypeError("expected a JSON object of settings")
            state.configure(**changes)
        except (ValueError, TypeError) as exc:
            return _bad_body(exc)
    return json_response(200, state.settings.public_dict())


async def control_health(request: Request) -> Response:
    """Liveness probe (no control token needed; the Host check applies).

    :param request: the request.
    :return: ``{"ok": true}``.
    """
    return json_response(200, {"ok": True})


def control_routes() -> list[Route]:
    """Return the guarded control routes."""
    guarded = [
        ("faults", control_faults, ["GET", "POST", "DELETE"]),
        ("files", control_files, ["GET"]),
        ("requests", control_requests, ["GET"]),
        ("tokens", control_tokens, ["GET"]),
        ("stats", control_stats, ["GET"]),
        ("reset", control_reset, ["POST"]),
        ("settings", control_settings, ["GET", "POST"]),
    ]
    routes = [
        Route(f"{CONTROL_PREFIX}/{name}", _guarded(handler), methods=methods)
        for name, handler, methods in guarded
    ]
    routes.append(
        Route(f"{CONTROL_PREFIX}/health", _guarded(control_health, needs_token=False), methods=["GET"])
    )
    return routes
