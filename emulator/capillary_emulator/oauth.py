"""``POST /v3/oauth/token/generate``: OAuth access tokens from ``{"key", "secret"}``.

The body is JSON (as Capillary documents) or a URL-encoded or multipart form, at most
:data:`TOKEN_BODY_LIMIT` bytes (413 above). A client over its rate limit gets 429 with
``Retry-After`` in the token API's error shape (see ``ratelimit``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from capillary_emulator.responses import (
    BodyTooLarge,
    NoResponse,
    abort_connection,
    begin,
    fault_response,
    finish,
    json_response,
    parse_json,
    read_limited,
    reason,
    token_error,
)

__all__ = ["TOKEN_BODY_LIMIT", "TOKEN_PATH", "generate_token"]

TOKEN_PATH = "/v3/oauth/token/generate"
#: Largest token request body, bytes (a real one is about 60).
TOKEN_BODY_LIMIT = 16 * 1024
MISSING_CREDENTIALS = 'Both key and secret are required (JSON body {"key": ..., "secret": ...})'


async def _credentials(request: Request) -> tuple[str, str] | None:
    """Read ``key``/``secret`` from a JSON or form body (bounded).

    :raises BodyTooLarge: over :data:`TOKEN_BODY_LIMIT`.
    """
    body = await read_limited(request, TOKEN_BODY_LIMIT)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data: Any
    if media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            data = dict(await Request(request.scope, replay).form())
        except (ValueError, HTTPException):  # python-multipart's errors are ValueErrors
            return None
    else:
        try:
            data = parse_json(body or b"null")
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
    :return: ``{"data": {"accessToken", "ttlSeconds"}, "errors": null}``, or 400/401/413/429 with
        ``errors``.
    """
    state, entry, fault = await begin(request, "token")
    if fault is not None:
        if fault.action == "reset":
            await abort_connection(request.scope)
            return finish(state, entry, NoResponse())
        if fault.action == "respond":
            default = {"data": None, "errors": [{"code": fault.status, "message": reason(fault.status)}]}
            return finish(state, entry, fault_response(fault, json.dumps(default)))
        if fault.action == "malformed_json":
            return finish(state, entry, Response('{"data": {"accessToken": "', media_type="application/json"))
    try:
        credentials = await _credentials(request)
    except BodyTooLarge as exc:
        response = token_error(413, str(exc))
        response.headers["Connection"] = "close"
        return finish(state, entry, response)
    if credentials is None:
        return finish(state, entry, token_error(400, MISSING_CREDENTIALS))
    key, secret = credentials
    entry["principal"] = f"oauth:{key}"
    if state.auth.verify_client(key, secret):
        retry_after = state.limiter.acquire(f"oauth:{key}")
        if retry_after is not None:
            state.auth.record_token_request(key, accepted=False, limited=True)
            response = token_error(429, "Too many requests")
            response.headers["Retry-After"] = str(retry_after)
            return finish(state, entry, response)
    issued = state.auth.issue_token(key, secret)
    if issued is None:
        return finish(state, entry, token_error(401, "Invalid client key or secret"))
    token, ttl = issued
    body = {"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": None}
    return finish(state, entry, json_response(200, body))
