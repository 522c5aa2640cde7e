"""What every REST endpoint shares: JSON errors with a machine-readable code, bearer-token auth, bodies."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from chatsvc.live.service import AgentRef

MAX_BODY_BYTES = 1_000_000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)


async def require_agent(request: Request, roles: Iterable[str] | None = None) -> AgentRef:
    """The agent behind `Authorization: Bearer <token>`, or behind the console's session cookie (then unsafe
    methods must carry the session's X-CSRF-Token); 401 without either, 403 for a role not allowed."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        from chatsvc.console import auth

        if request.cookies.get(auth.SESSION_COOKIE):
            agent = await auth.session_agent(request)
            if agent is None:
                raise ApiError(401, "unauthorized", "the console session has ended; log in again")
            await auth.check_csrf_header(request)
            if roles is not None and agent.role not in set(roles):
                raise ApiError(403, "forbidden", f"the {agent.role} role may not do this")
            return agent
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <agent API token>")
    agent = await request.app.state.runtime.service.authenticate_agent(token.strip())
    if agent is None:
        raise ApiError(401, "unauthorized", "unknown API token")
    if roles is not None and agent.role not in set(roles):
        raise ApiError(403, "forbidden", f"the {agent.role} role may not do this")
    return agent


async def json_body(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return data


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_request", f"{name} must be between {lo} and {hi}")
    return value
