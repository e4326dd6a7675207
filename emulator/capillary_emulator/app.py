"""The emulator's ASGI application: the documented API, the S3 downloads and the control endpoints.

Routes:

- ``POST /api_gateway/file-service/{namespace}/{file name}``: upload (see ``upload``).
- ``GET``/``HEAD`` of an upload path: 401 or 405, a side-effect-free probe of the credentials.
- ``POST /v3/oauth/token/generate``: OAuth access token from ``{"key", "secret"}`` (JSON or form).
- ``GET``/``HEAD /_s3/{bucket}/{s3_token}?X-Amz-...``: pre-signed download (see ``download``).
- Control (no auth, not logged): ``GET``/``POST``/``DELETE /_emulator/faults`` (list, queue a JSON
  list of fault dicts or one dict, clear), ``GET /_emulator/files``, ``GET /_emulator/requests``,
  ``GET /_emulator/tokens``, ``POST /_emulator/reset``, ``GET``/``POST /_emulator/settings``
  (runtime settings, e.g. ``{"latency": 0.05}``), ``GET /_emulator/health``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capillary_emulator.download import S3_PREFIX, download
from capillary_emulator.faults import Fault
from capillary_emulator.responses import (
    NoResponse,
    abort_connection,
    begin,
    fault_response,
    finish,
    json_response,
    reason,
    token_error,
)
from capillary_emulator.state import EmulatorState
from capillary_emulator.upload import UPLOAD_PREFIX, probe, upload

TOKEN_PATH = "/v3/oauth/token/generate"
CONTROL_PREFIX = "/_emulator"


async def _credentials(request: Request) -> tuple[str, str] | None:
    """Read ``key``/``secret`` from a JSON or form body."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data: Any
    if media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        data = dict(await request.form())
    else:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    key, secret = data.get("key"), data.get("secret")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        return None
    return key, secret


async def generate_token(request: Request) -> Response:
    """Issue an OAuth access token.

    :param request: the request.
    :return: ``{"data": {"accessToken", "ttlSeconds"}, "errors": null}``, or 400/401 with ``errors``.
    """
    state, entry, fault = await begin(request, "token")
    if fault is not None:
        if fault.action == "reset":
            await abort_connection(request.scope)
            return finish(entry, NoResponse())
        if fault.action == "respond":
            default = {"data": None, "errors": [{"code": fault.status, "message": reason(fault.status)}]}
            return finish(entry, fault_response(fault, json.dumps(default)))
        if fault.action == "malformed_json":
            return finish(entry, Response('{"data": {"accessToken": "', media_type="application/json"))
    credentials = await _credentials(request)
    if credentials is None:
        message = 'Both key and secret are required (JSON body {"key": ..., "secret": ...})'
        return finish(entry, token_error(400, message))
    entry["principal"] = f"oauth:{credentials[0]}"
    issued = state.auth.issue_token(*credentials)
    if issued is None:
        return finish(entry, token_error(401, "Invalid client key or secret"))
    token, ttl = issued
    return finish(
        entry, json_response(200, {"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": None})
    )


# -- control endpoints --------------------------------------------------------------------------------
def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def control_faults(request: Request) -> Response:
    """List (GET), queue (POST) or clear (DELETE) scripted faults.

    :param request: the request; for POST a JSON fault dict or list of them.
    :return: the pending faults, or 400 for an invalid fault.
    """
    state = _state(request)
    if request.method == "POST":
        try:
            data = await request.json()
            items = data if isinstance(data, list) else [data]
            state.push_faults([Fault.from_dict(item) for item in items])
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})
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
    """List the logged requests.

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


async def control_reset(request: Request) -> Response:
    """Delete stored files, faults and logs.

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
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("expected a JSON object of settings")
            state.configure(**changes)
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})
    return json_response(200, state.settings.public_dict())


async def control_health(request: Request) -> Response:
    """Liveness probe.

    :param request: the request.
    :return: ``{"ok": true}``.
    """
    return json_response(200, {"ok": True})


class AnyTextConvertor(PathConvertor):
    """Like ``path``, but also matching control characters (so that they get a 400, not a 404)."""

    regex = r"[\s\S]*"


register_url_convertor("capillary_any", AnyTextConvertor())


def create_app(state: EmulatorState) -> Starlette:
    """Build the ASGI application around an emulator state.

    :param state: the state shared with the Python API.
    :return: the application.
    """
    routes = [
        Route(f"{UPLOAD_PREFIX}/{{namespace}}/{{file_name:capillary_any}}", upload, methods=["POST"]),
        Route(f"{UPLOAD_PREFIX}/{{namespace}}/{{file_name:capillary_any}}", probe, methods=["GET", "HEAD"]),
        Route(f"{UPLOAD_PREFIX}/{{namespace}}", probe, methods=["GET", "HEAD"]),
        Route(TOKEN_PATH, generate_token, methods=["POST"]),
        Route(f"{S3_PREFIX}/{{rest:path}}", download, methods=["GET", "HEAD"]),
        Route(f"{CONTROL_PREFIX}/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{CONTROL_PREFIX}/files", control_files, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/requests", control_requests, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/tokens", control_tokens, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/reset", control_reset, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/settings", control_settings, methods=["GET", "POST"]),
        Route(f"{CONTROL_PREFIX}/health", control_health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = state
    return app
