"""The emulator's ASGI application: the documented API, the S3 downloads and the control endpoints.

Routes:

- ``POST /api_gateway/file-service/{namespace}/{file name}``: upload (see ``upload``).
- ``GET``/``HEAD`` of an upload path: 401 or 405, a side-effect-free probe of the credentials.
- ``POST /v3/oauth/token/generate``: OAuth access token from ``{"key", "secret"}`` (see ``oauth``).
- ``GET``/``HEAD /_s3/{bucket}/{s3_token}?X-Amz-...``: pre-signed download (see ``download``).
- ``/_emulator/...``: the control endpoints, behind a Host check and the control token (see
  ``control``).

A body that stalls longer than ``body_timeout`` is answered 408 (see ``serving``); running out of
file descriptors is answered 503 with ``Retry-After: 1`` and one warning line, not a traceback.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capillary_emulator.control import CONTROL_PREFIX, control_routes
from capillary_emulator.download import S3_PREFIX, download
from capillary_emulator.oauth import TOKEN_PATH, generate_token
from capillary_emulator.resources import OUT_OF_RESOURCES, warn_out_of_resources
from capillary_emulator.responses import ENTRY_KEY, json_response
from capillary_emulator.serving import BodyTimeout
from capillary_emulator.state import EmulatorState
from capillary_emulator.upload import UPLOAD_PREFIX, probe, upload

__all__ = ["CONTROL_PREFIX", "TOKEN_PATH", "create_app"]


class AnyTextConvertor(PathConvertor):
    """Like ``path``, but also matching control characters (so that they get a 400, not a 404)."""

    regex = r"[\s\S]*"


register_url_convertor("capillary_any", AnyTextConvertor())


def _record(request: Request, status: int) -> None:
    entry = request.scope.get("extensions", {}).get(ENTRY_KEY)
    if entry is not None and entry["status"] is None:
        state: EmulatorState = request.app.state.emulator
        entry["status"] = status
        state.log.count(entry["kind"], status)


async def _body_timeout(request: Request, exc: Exception) -> Response:
    _record(request, 408)
    return json_response(408, {"code": 408, "status": "false", "message": str(exc)}, {"Connection": "close"})


async def _os_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, OSError) or exc.errno not in OUT_OF_RESOURCES:
        raise exc
    warn_out_of_resources(exc)
    _record(request, 503)
    message = "Service Unavailable: the emulator is out of file descriptors"
    return json_response(
        503, {"code": 503, "status": "false", "message": message}, {"Retry-After": "1", "Connection": "close"}
    )


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
        *control_routes(),
    ]
    app = Starlette(routes=routes, exception_handlers={BodyTimeout: _body_timeout, OSError: _os_error})
    app.state.emulator = state
    return app
