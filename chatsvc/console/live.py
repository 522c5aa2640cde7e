"""The live chat workspace of the console: the queue, the conversation list and the conversation view.

    GET /console/queue                            the workspace (offers, waiting chats, my conversations)
    GET /console/conversations/{id}               the same workspace with one conversation open
    GET /console/api/queue                        every waiting conversation, and which are offered to me
    GET /console/api/agents                       agents to transfer to: online or away, with their load
    GET /console/api/conversations/{id}/macros/{macro}   a macro rendered for this conversation's visitor

Everything live (offers, messages, notes, typing, receipts, accept, transfer, convert, end) goes over
the agent websocket, which the page opens with the session cookie (docs/protocol.md). The JSON routes
here are read-only helpers for what the protocol does not carry; they take the same session cookie.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chatsvc.console.auth import render, require_page, section_roles
from chatsvc.domain.conversation import State
from chatsvc.live.service import ServiceError, iso
from chatsvc.store.tables import agents, conversations, offers, visitors
from chatsvc.web.api import ApiError, require_agent

QUEUE_ROLES = section_roles("queue")
WAITING_LIMIT = 200

# Documented in docs/console.md; shown on the page with `?`.
SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("a", "Accept the highlighted offer"),
    ("d", "Decline the highlighted offer"),
    ("j / k", "Highlight the next / previous offer"),
    ("Alt+↓ / Alt+↑", "Open the next / previous conversation"),
    ("/", "Write in the open conversation"),
    ("Alt+n", "Switch the composer between reply and internal note"),
    ("Enter / Shift+Enter", "Send / new line"),
    ("Esc", "Leave the composer"),
    ("?", "Show or hide these shortcuts"),
)


def _boot(agent: Any, selected: dict[str, Any] | None) -> str:
    """Start-up data for live.js, in a JSON block (not a script: the CSP allows no inline scripts)."""
    data = {"agent": {"id": agent.id, "name": agent.name, "role": agent.role}, "selected": selected}
    return json.dumps(data).replace("<", "\\u003c")


async def queue_page(request: Request) -> Response:
    agent = await require_page(request, QUEUE_ROLES)
    return render(request, "console/queue.html", {"boot": _boot(agent, None), "shortcuts": SHORTCUTS})


async def conversation_page(request: Request) -> Response:
    agent = await require_page(request, QUEUE_ROLES)
    service = request.app.state.runtime.service
    try:
        conv = await service.agent_can_see(agent, request.path_params["id"])
    except ServiceError:
        return render(request, "console/missing.html", {"what": "conversation"}, status=404)
    async with service.engine.connect() as conn:
        info = await service.conversation_info(conn, conv)
    selected = {"id": conv.id, "state": conv.state, "ticket_id": conv.ticket_id,
                "visitor": _identity(info.visitor), "agent": info.agent.name if info.agent else None,
                "first_question": conv.first_question, "category": conv.category, "priority": conv.priority}
    return render(request, "console/queue.html", {"boot": _boot(agent, selected), "shortcuts": SHORTCUTS})


def _identity(identity: Any) -> dict[str, Any] | None:
    if identity is None:
        return None
    return {"name": identity.name, "email": identity.email, "plan": identity.plan, "community": identity.community}


async def api_queue(request: Request) -> JSONResponse:
    """Every waiting conversation, oldest first: any agent may accept one (exactly one wins)."""
    agent = await require_agent(request, QUEUE_ROLES)
    service = request.app.state.runtime.service
    async with service.engine.connect() as conn:
        rows = (await conn.execute(
            select(conversations, visitors.c.name.label("v_name"), visitors.c.email.label("v_email"),
                   visitors.c.plan.label("v_plan"), visitors.c.community.label("v_community"),
                   offers.c.agent_id.label("offered_to"))
            .join(visitors, visitors.c.id == conversations.c.visitor_id)
            .outerjoin(offers, offers.c.id == conversations.c.offer_id)
            .where(conversations.c.state == State.WAITING.value)
            .order_by(conversations.c.waiting_since).limit(WAITING_LIMIT))).all()
    items = [{
        "conversation_id": r.id, "first_question": r.first_question, "category": r.category,
        "priority": r.priority, "waiting_since": iso(r.waiting_since),
        "visitor": {"name": r.v_name, "email": r.v_email or r.email, "plan": r.v_plan, "community": r.v_community},
        "offered_to_me": r.offered_to == agent.id, "offer_id": r.offer_id if r.offered_to == agent.id else None,
    } for r in rows]
    return JSONResponse({"items": items, "now": iso(service.clock())}, headers={"Cache-Control": "no-store"})


async def api_agents(request: Request) -> JSONResponse:
    """Who a conversation can be transferred to: agents online or away, with how many chats they have."""
    await require_agent(request, QUEUE_ROLES)
    service = request.app.state.runtime.service
    async with service.engine.connect() as conn:
        load = dict((await conn.execute(
            select(conversations.c.agent_id, func.count()).where(conversations.c.state == State.WITH_AGENT.value)
            .group_by(conversations.c.agent_id))).all())
        rows = (await conn.execute(select(agents.c.id, agents.c.name, agents.c.role, agents.c.presence,
                                          agents.c.capacity)
                                   .where(agents.c.presence.in_(("online", "away")),
                                          agents.c.role.in_(sorted(QUEUE_ROLES)))
                                   .order_by(agents.c.name))).all()
    return JSONResponse({"items": [{"id": r.id, "name": r.name, "role": r.role, "presence": r.presence,
                                    "active_chats": int(load.get(r.id, 0)), "capacity": r.capacity}
                                   for r in rows]}, headers={"Cache-Control": "no-store"})


async def api_macro(request: Request) -> JSONResponse:
    """A macro's text for this conversation: the visitor's name, community and plan, and the agent's name."""
    agent = await require_agent(request, QUEUE_ROLES)
    from chatsvc.tickets.macros import MacroError, render_macro
    from chatsvc.tickets.routes import _all_macros

    service = request.app.state.runtime.service
    try:
        conv = await service.agent_can_see(agent, request.path_params["id"])
    except ServiceError:
        raise ApiError(404, "not_found", "no such conversation") from None
    macro = next((m for m in await _all_macros(request) if m.id == request.path_params["macro"]), None)
    if macro is None:
        raise ApiError(404, "not_found", "no such macro")
    async with service.engine.connect() as conn:
        visitor = (await conn.execute(select(visitors).where(visitors.c.id == conv.visitor_id))).first()
    context = {"customer_name": (visitor.name if visitor else None) or "",
               "customer_email": (visitor.email if visitor else None) or conv.email or "",
               "community_name": (visitor.community if visitor else None) or "",
               "plan": (visitor.plan if visitor else None) or "", "ticket_id": f"#{conv.ticket_id}" if conv.ticket_id else "",
               "subject": conv.first_question or "", "agent_name": agent.name}
    try:
        text = render_macro(macro.body, context)
    except MacroError as exc:
        raise ApiError(422, "invalid_macro", str(exc)) from None
    if not conv.ticket_id:  # a chat has no ticket number yet: drop the signature's empty "Ticket" line
        text = re.sub(r"\n[ \t]*Ticket[ \t#]*$", "", text.rstrip())
    return JSONResponse({"macro": macro.id, "text": text}, headers={"Cache-Control": "no-store"})


routes: list[BaseRoute] = [
    Route("/console/queue", queue_page),
    Route("/console/conversations/{id}", conversation_page),
    Route("/console/api/queue", api_queue),
    Route("/console/api/agents", api_agents),
    Route("/console/api/conversations/{id}/macros/{macro}", api_macro),
]
