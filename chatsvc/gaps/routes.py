"""Article-gap REST endpoints under /api/v1/gaps: the ranked list, a gap, and the writers' actions."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatsvc.gaps.service import STATUSES, GapError, GapService
from chatsvc.web.api import ApiError, int_param, json_body, require_agent

#: Who reads and acts on gaps: the help center's editors (as for articles).
ROLES = ("writer", "lead", "manager", "admin")
LIST_STATUSES = (*STATUSES, "all")


def gap_service(request: Request) -> GapService:
    """The process's gap service, made on first use (the job itself is started by the app)."""
    runtime = request.app.state.runtime
    service = getattr(runtime, "gaps", None) or getattr(request.app.state, "gaps", None)
    if service is None:
        service = GapService(runtime.service.engine, runtime.kb, runtime.settings, clock=runtime.service.clock)
        request.app.state.gaps = service
    return service


async def _call(coro: Any) -> Any:
    try:
        return await coro
    except GapError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


async def list_gaps(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    status = request.query_params.get("status", "open")
    if status not in LIST_STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(LIST_STATUSES)}")
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    items, total = await gap_service(request).list(status=status, limit=limit, offset=offset)
    return JSONResponse({"items": items, "total": total, "limit": limit, "offset": offset})


async def get_gap(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    return JSONResponse(await _call(gap_service(request).get(request.path_params["id"])))


async def dismiss(request: Request) -> JSONResponse:
    agent = await require_agent(request, ROLES)
    return JSONResponse(await _call(gap_service(request).set_status(request.path_params["id"], "dismissed",
                                                                    agent.name)))


async def reopen(request: Request) -> JSONResponse:
    agent = await require_agent(request, ROLES)
    return JSONResponse(await _call(gap_service(request).set_status(request.path_params["id"], "open", agent.name)))


async def merge(request: Request) -> JSONResponse:
    agent = await require_agent(request, ROLES)
    data = await json_body(request)
    into = data.get("into")
    if not isinstance(into, str) or not into.strip() or set(data) - {"into"}:
        raise ApiError(400, "bad_request", "send {\"into\": \"<gap id>\"}")
    return JSONResponse(await _call(gap_service(request).merge(request.path_params["id"], into, agent.name)))


async def draft(request: Request) -> JSONResponse:
    agent = await require_agent(request, ROLES)
    gap = await _call(gap_service(request).draft(request.path_params["id"], agent.name))
    return JSONResponse(gap, status_code=201)


async def coverage(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    return JSONResponse(await _call(gap_service(request).check_coverage(request.path_params["id"])))


async def run(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    data = await json_body(request) if request.headers.get("content-length", "0") not in ("", "0") else {}
    full = data.get("full", True)
    if not isinstance(full, bool) or set(data) - {"full"}:
        raise ApiError(400, "bad_request", "send {\"full\": true|false} or no body")
    summary = await gap_service(request).run(full=full)
    if summary.get("skipped"):
        raise ApiError(409, "busy", summary["skipped"])
    return JSONResponse(summary)


routes = [
    Route("/api/v1/gaps", list_gaps, methods=["GET"]),
    Route("/api/v1/gaps/run", run, methods=["POST"]),
    Route("/api/v1/gaps/{id}", get_gap, methods=["GET"]),
    Route("/api/v1/gaps/{id}/dismiss", dismiss, methods=["POST"]),
    Route("/api/v1/gaps/{id}/reopen", reopen, methods=["POST"]),
    Route("/api/v1/gaps/{id}/merge", merge, methods=["POST"]),
    Route("/api/v1/gaps/{id}/draft", draft, methods=["POST"]),
    Route("/api/v1/gaps/{id}/coverage", coverage, methods=["POST"]),
]
