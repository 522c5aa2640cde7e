"""The ticket REST API under /api/v1/tickets."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from chatsvc.live.service import ServiceError, iso
from chatsvc.ops.metrics import RATE_LIMITED
from chatsvc.store.tables import macros
from chatsvc.web.api import ApiError, int_param, json_body, require_agent
from chatsvc.web.security import client_address, limits_for

STAFF = ("agent", "lead", "manager", "admin")
PRIORITY_ORDER = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}


def _tickets(request: Request) -> Any:
    return request.app.state.runtime.service.tickets


def ticket_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "number": f"#{row.id}", "subject": row.subject, "status": row.status,
        "priority": row.priority, "category": row.category, "triage": row.triage, "channel": row.channel,
        "customer": {"name": row.customer_name, "email": row.customer_email, "plan": row.plan,
                     "community": row.community},
        "conversation_id": row.conversation_id, "assignee_id": row.assignee_id,
        "escalation_level": row.escalation_level, "merged_into": row.merged_into,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        "first_response_at": iso(row.first_response_at), "resolved_at": iso(row.resolved_at),
        "closed_at": iso(row.closed_at),
    }


def entry_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "role": row.role, "author": {"id": row.author_id, "name": row.author_name},
            "text": row.text, "internal": row.internal, "data": row.data, "delivery": row.delivery,
            "at": iso(row.created_at)}


MAX_TICKET_ID = 2**63 - 1  # the store's BIGINT: a larger number names no ticket (and must not reach SQL)


def _id(request: Request) -> int:
    try:
        value = int(request.path_params["id"])
    except ValueError:
        raise ApiError(404, "not_found", "ticket ids are numbers") from None
    if not 0 < value <= MAX_TICKET_ID:
        raise ApiError(404, "not_found", "no such ticket")
    return value


def _service_error(exc: ServiceError) -> ApiError:
    status = {"not_found": 404, "illegal_state": 409, "invalid_transition": 409, "conflict": 409,
              "invalid_escalation": 422, "invalid_merge": 409, "invalid": 422, "invalid_action": 400, "no_agent": 409, "unavailable": 503}.get(exc.code, 400)
    return ApiError(status, exc.code, exc.message)


async def list_tickets(request: Request) -> JSONResponse:
    await require_agent(request, STAFF)
    q = request.query_params
    sort = q.get("sort", "priority")
    if sort not in ("priority", "age", "sla", "updated"):
        raise ApiError(400, "bad_request", "sort must be priority, age, sla or updated")
    items, total = await _tickets(request).list(
        status=q.get("status"), priority=q.get("priority"), assignee=q.get("assignee"), text=q.get("q"),
        sort=sort, limit=int_param(request, "limit", 50, 1, 500), offset=int_param(request, "offset", 0, 0, 10**9))
    return JSONResponse({"items": items, "total": total})


async def get_ticket(request: Request) -> JSONResponse:
    await require_agent(request, STAFF)
    found = await _tickets(request).get(_id(request))
    if found is None:
        raise ApiError(404, "not_found", "no such ticket")
    row, entries = found
    reopened = await _tickets(request).resolved_periods([row])
    sla_view = _tickets(request).sla_view(row, request.app.state.runtime.service.clock(), reopened.get(row.id, ()))
    return JSONResponse({**ticket_json(row), **sla_view, "entries": [entry_json(e) for e in entries]})


async def _run(action: Any) -> Any:
    try:
        return await action
    except ServiceError as exc:
        raise _service_error(exc) from None


async def change_status(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    action = (await json_body(request)).get("action")
    if not isinstance(action, str):
        raise ApiError(400, "bad_request", "send {\"action\": ...}")
    status = await _run(_tickets(request).act(agent, _id(request), action))
    return JSONResponse({"id": _id(request), "status": status})


async def assign(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    data = await json_body(request)
    assignee = data.get("agent_id")
    if assignee is not None and not isinstance(assignee, str):
        raise ApiError(400, "bad_request", "agent_id must be a string, or null for auto-assignment")
    status = await _run(_tickets(request).assign(agent, _id(request), assignee))
    row, _ = await _tickets(request).get(_id(request))
    return JSONResponse({"id": row.id, "status": status, "assignee_id": row.assignee_id})


async def bulk_assign(request: Request) -> JSONResponse:
    agent = await require_agent(request, ("lead", "manager", "admin"))
    data = await json_body(request)
    ids, assignee = data.get("ticket_ids"), data.get("agent_id")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or not 0 < len(ids) <= 200:
        raise ApiError(400, "bad_request", "ticket_ids must be a list of 1 to 200 ticket numbers")
    results = []
    for ticket_id in ids:
        if not 0 < ticket_id <= MAX_TICKET_ID:
            results.append({"id": ticket_id, "ok": False, "error": {"code": "not_found", "message": "no such ticket"}})
            continue
        try:
            await _tickets(request).assign(agent, ticket_id, assignee)
            results.append({"id": ticket_id, "ok": True})
        except ServiceError as exc:
            results.append({"id": ticket_id, "ok": False, "error": {"code": exc.code, "message": exc.message}})
    return JSONResponse({"results": results})


async def escalate(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    data = await json_body(request)
    fields = {k: data.get(k) for k in ("type", "reason", "note")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise ApiError(422, "invalid_escalation", "type, reason and note are required strings")
    level = await _run(_tickets(request).escalate(agent, _id(request), fields["type"], fields["reason"],
                                                  fields["note"]))
    return JSONResponse({"id": _id(request), "status": "escalated", "escalation_level": level})


async def patch_ticket(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    data = await json_body(request)
    unknown = set(data) - {"priority", "category", "subject"}
    if unknown:
        raise ApiError(400, "bad_request", f"only priority, category and subject can change here, not "
                                           f"{', '.join(sorted(unknown))}; use the status, assign and escalate routes")
    if "priority" in data and data["priority"] not in tuple(PRIORITY_ORDER):  # a list or object is not hashable
        raise ApiError(422, "invalid", "priority must be P1, P2, P3 or P4")
    changes = {"priority": data.get("priority"), "category": _field(data, "category", 64),
               "subject": _field(data, "subject", 300)}
    await _run(_tickets(request).update_fields(agent, _id(request), {k: v for k, v in changes.items()
                                                                     if k in data and v is not None}))
    row, _ = await _tickets(request).get(_id(request))
    return JSONResponse(ticket_json(row))


async def merge(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    into = (await json_body(request)).get("into")
    if not isinstance(into, int) or isinstance(into, bool) or not 0 < into <= MAX_TICKET_ID:
        raise ApiError(400, "bad_request", "send {\"into\": <ticket number>}")
    await _run(_tickets(request).merge(agent, _id(request), into))
    return JSONResponse({"id": _id(request), "status": "closed", "merged_into": into})


CSAT_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>How did we do?</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1.1rem;margin:.3rem;padding:.5rem 1rem}}textarea{{width:100%;min-height:5rem}}</style>
<h1>How did we do?</h1><p>{message}</p>
<form method="post"><p>
<button name="rating" value="good">😊 Good</button><button name="rating" value="okay">😐 Okay</button>
<button name="rating" value="bad">😞 Bad</button></p>
<label for="comment">What could be better? (optional)</label><textarea id="comment" name="comment" maxlength="2000">
</textarea></form></html>"""
CSAT_THANKS = {"good": "Thank you!", "okay": "Thank you. What could be better? Tell us any time.",
               "bad": "We're sorry. A manager will follow up."}


async def csat_page(request: Request) -> Response:
    service = request.app.state.runtime.service
    value = service.tokens.verify_purpose("csat", request.path_params["token"])
    if value is None:
        return HTMLResponse("<!doctype html><title>Link not valid</title><p>This survey link is not valid.",
                            status_code=404)
    if request.method == "GET":
        return HTMLResponse(CSAT_PAGE.format(message=f"Ticket #{int(value)}"))
    form = await request.form()
    rating = str(form.get("rating", ""))
    if rating not in CSAT_THANKS:
        return HTMLResponse(CSAT_PAGE.format(message="Please choose one of the three answers."), status_code=422)
    comment = str(form.get("comment", "")).strip() or None
    await _run(service.tickets.record_csat(rating=rating, comment=comment, ticket_id=int(value)))
    return HTMLResponse(f"<!doctype html><title>Thank you</title><p>{CSAT_THANKS[rating]}</p>")


async def _all_macros(request: Request) -> list[Any]:
    from chatsvc.tickets.macros import BUILTIN_MACROS, Macro

    async with request.app.state.runtime.service.engine.connect() as conn:
        rows = (await conn.execute(select(macros).order_by(macros.c.name))).all()
    return [*BUILTIN_MACROS, *(Macro(id=r.id, name=r.name, body=r.body) for r in rows)]


async def list_macros(request: Request) -> JSONResponse:
    await require_agent(request, STAFF)
    from chatsvc.tickets.macros import BUILTIN_MACROS

    builtin = {m.id for m in BUILTIN_MACROS}
    return JSONResponse({"items": [{"id": m.id, "name": m.name, "body": m.body, "builtin": m.id in builtin}
                                   for m in await _all_macros(request)]})


async def create_macro(request: Request) -> JSONResponse:
    """A custom macro; a template that reaches for anything but the documented variables is refused."""
    agent = await require_agent(request, ("lead", "manager", "admin"))
    from chatsvc.tickets.macros import BUILTIN_MACROS, Macro, MacroError

    data = await json_body(request)
    name = _field(data, "name", 200, required=True) or ""
    body = data.get("body")
    if not isinstance(body, str):
        raise ApiError(422, "invalid_macro", "body must be a string")
    macro_id = _field(data, "id", 64) or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "macro"
    try:
        Macro(id=macro_id, name=name, body=body)
    except MacroError as exc:
        raise ApiError(422, "invalid_macro", str(exc)) from None
    if macro_id in {m.id for m in BUILTIN_MACROS}:
        raise ApiError(409, "conflict", f"{macro_id!r} is a built-in macro")
    service = request.app.state.runtime.service
    async with service.engine.begin() as conn:
        if (await conn.execute(select(macros.c.id).where(macros.c.id == macro_id))).first() is not None:
            raise ApiError(409, "conflict", f"a macro {macro_id!r} exists")
        await conn.execute(macros.insert().values(id=macro_id, name=name, body=body, created_by=agent.id,
                                                  created_at=service.clock()))
    return JSONResponse({"id": macro_id, "name": name, "body": body, "builtin": False}, status_code=201)


async def delete_macro(request: Request) -> Response:
    await require_agent(request, ("lead", "manager", "admin"))
    async with request.app.state.runtime.service.engine.begin() as conn:
        gone = await conn.execute(macros.delete().where(macros.c.id == request.path_params["macro"]))
    if not gone.rowcount:
        raise ApiError(404, "not_found", "no such custom macro")
    return Response(status_code=204)


async def render_macro_for_ticket(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    from chatsvc.tickets.macros import MacroError, render_macro

    macro = next((m for m in await _all_macros(request) if m.id == request.path_params["macro"]), None)
    found = await _tickets(request).get(_id(request))
    if macro is None or found is None:
        raise ApiError(404, "not_found", "no such ticket or macro")
    row, _ = found
    context = {"customer_name": row.customer_name or "", "community_name": row.community or "",
               "ticket_id": f"#{row.id}", "agent_name": agent.name, "customer_email": row.customer_email or "",
               "plan": row.plan or "", "subject": row.subject}
    try:
        text = render_macro(macro.body, context)
    except MacroError as exc:
        raise ApiError(422, "invalid_macro", str(exc)) from None
    return JSONResponse({"macro": macro.id, "text": text})


async def _text(request: Request) -> str:
    data = await json_body(request)
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "empty", "text must be a non-empty string")
    if len(text) > 20000:
        raise ApiError(400, "too_long", "text is limited to 20000 characters")
    return text


async def add_reply(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    text = await _text(request)
    try:
        entry = await _tickets(request).reply(agent, _id(request), text)
    except ServiceError as exc:
        raise _service_error(exc) from None
    return JSONResponse(entry_json(entry), status_code=201)


async def add_note(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    text = await _text(request)
    try:
        entry = await _tickets(request).note(agent, _id(request), text)
    except ServiceError as exc:
        raise _service_error(exc) from None
    return JSONResponse(entry_json(entry), status_code=201)


async def audit(request: Request) -> JSONResponse:
    await require_agent(request, STAFF)
    rows = await _tickets(request).audit(_id(request))
    if rows is None:
        raise ApiError(404, "not_found", "no such ticket")
    return JSONResponse({"items": [{"id": r.id, "action": r.action, "actor": {"id": r.actor_id, "name": r.actor_name},
                                    "data": r.data, "at": iso(r.created_at)} for r in rows]})


EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHANNELS = ("agent", "phone", "email", "social")


def _field(data: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(422, "invalid", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid", f"{name} must be a string")
    if len(value) > limit:
        raise ApiError(422, "invalid", f"{name} is limited to {limit} characters")
    return value.strip()


async def create_ticket(request: Request) -> JSONResponse:
    agent = await require_agent(request, STAFF)
    data = await json_body(request)
    channel = data.get("channel", "agent")
    if channel not in CHANNELS:
        raise ApiError(422, "invalid", f"channel must be one of {', '.join(CHANNELS)}")
    priority = data.get("priority")
    if priority is not None and priority not in tuple(PRIORITY_ORDER):
        raise ApiError(422, "invalid", "priority must be P1, P2, P3 or P4")
    email = _field(data, "customer_email", 320)
    if email and not EMAIL_RE.match(email):
        raise ApiError(422, "invalid", "customer_email is not an e-mail address")
    ticket_id = await _tickets(request).create(
        channel=channel, subject=_field(data, "subject", 300), text=_field(data, "text", 20000, required=True) or "",
        customer_name=_field(data, "customer_name", 200), customer_email=email, plan=_field(data, "plan", 64),
        community=_field(data, "community", 200), priority=priority, category=_field(data, "category", 64),
        actor=agent)
    row, entries = await _tickets(request).get(ticket_id)
    return JSONResponse({**ticket_json(row), "entries": [entry_json(e) for e in entries]}, status_code=201)


async def contact_form(request: Request) -> JSONResponse:
    """The public contact form: validated, rate-limited per address, with a honeypot field for bots."""
    limits = limits_for(request.app.state.runtime.settings)
    if not limits.allow_address(limits.contact, client_address(request.client)):
        RATE_LIMITED.labels("contact").inc()
        raise ApiError(429, "rate_limited", "too many requests from this address; try again in a minute")
    data = await json_body(request)
    if data.get("website"):  # hidden from people, filled by bots
        return JSONResponse({"status": "received"}, status_code=202)
    email = _field(data, "email", 320, required=True) or ""
    if not EMAIL_RE.match(email):
        raise ApiError(422, "invalid", "email is not an e-mail address")
    message = _field(data, "message", 10000, required=True) or ""
    ticket_id = await _tickets(request).create(
        channel="form", subject=_field(data, "subject", 300), text=message,
        customer_name=_field(data, "name", 200), customer_email=email, plan=_field(data, "plan", 64),
        community=_field(data, "community", 200))
    return JSONResponse({"status": "received", "ticket": f"#{ticket_id}"}, status_code=201)


routes = [
    Route("/api/v1/contact", contact_form, methods=["POST"]),
    Route("/api/v1/tickets", create_ticket, methods=["POST"]),
    Route("/api/v1/tickets", list_tickets, methods=["GET"]),
    Route("/api/v1/tickets/{id}", get_ticket, methods=["GET"]),
    Route("/api/v1/tickets/{id}", patch_ticket, methods=["PATCH"]),
    Route("/api/v1/tickets/{id}/merge", merge, methods=["POST"]),
    Route("/csat/{token}", csat_page, methods=["GET", "POST"]),
    Route("/api/v1/tickets/{id}/replies", add_reply, methods=["POST"]),
    Route("/api/v1/tickets/{id}/notes", add_note, methods=["POST"]),
    Route("/api/v1/tickets/{id}/audit", audit, methods=["GET"]),
    Route("/api/v1/tickets/{id}/status", change_status, methods=["POST"]),
    Route("/api/v1/tickets/{id}/assign", assign, methods=["POST"]),
    Route("/api/v1/tickets/{id}/escalate", escalate, methods=["POST"]),
    Route("/api/v1/tickets/{id}/macros/{macro}", render_macro_for_ticket, methods=["POST"]),
    Route("/api/v1/tickets-bulk/assign", bulk_assign, methods=["POST"]),
    Route("/api/v1/macros", list_macros, methods=["GET"]),
    Route("/api/v1/macros", create_macro, methods=["POST"]),
    Route("/api/v1/macros/{macro}", delete_macro, methods=["DELETE"]),
]
