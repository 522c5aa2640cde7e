"""The console's ticket pages: the dashboard (queue counts, the ticket table with SLA timers, filters,
sorting, bulk assignment) and the ticket view (thread, replies, internal notes, status actions,
assignment, priority and category, escalation with the manual's checklist, merge, audit trail).

Pages call the ticket service (`chatsvc.tickets.service`) exactly as the REST API does and allow the
same roles: every staff role works tickets (agent, lead, manager, admin), bulk assignment is for leads,
managers and admins, writers see no tickets. Forms post with the session's CSRF token and answer with a
redirect to the page they came from (post, redirect, get), so a reload never posts twice; a refused
action shows the page again with the reason and the text the agent typed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from chatsvc.console import ticket_views as views
from chatsvc.console.auth import check_csrf, render, require_page, section_roles
from chatsvc.domain import sla
from chatsvc.live.service import AgentRef, ServiceError, as_utc
from chatsvc.store.tables import agents, csat_responses, tickets
from chatsvc.tickets.routes import PRIORITY_ORDER, _service_error
from chatsvc.tickets.service import _facts as ticket_facts
from chatsvc.tickets.service import resolved_periods

# What the queue counts need of each ticket: its status and its SLA facts.
SLA_COLUMNS: Final = (tickets.c.id, tickets.c.status, tickets.c.priority, tickets.c.plan, tickets.c.sla_policy,
                      tickets.c.created_at, tickets.c.first_response_at, tickets.c.resolved_at, tickets.c.paused,
                      tickets.c.pending_since)
BULK_ROLES: Final = ("lead", "manager", "admin")  # as POST /api/v1/tickets-bulk/assign
MAX_TEXT: Final = 20000  # as the REST API's replies and notes
CHANNELS: Final = (("phone", "Phone"), ("email", "E-mail"), ("social", "Social media"), ("agent", "Other"))
PLANS: Final = ("", "Starter", "Growth", "Pro", "PMC")

# What a redirect's ?done= says; only these fixed texts are ever shown (nothing from the URL itself).
DONE: Final = {
    "reply": "Reply sent to the customer.",
    "note": "Internal note added. The customer does not see it.",
    "assigned": "Ticket assigned.",
    "fields": "Ticket details saved.",
    "escalated": "Ticket escalated; the receiving team is notified.",
    "merged": "The duplicate was merged into this ticket.",
    "created": "Ticket created.",
    **{f"status-{a}": f"Done: {label.lower()}." for a, label in views.ACTION_LABELS.items()},
    "status-resolve": "Ticket resolved. The customer gets the satisfaction survey.",
}


def _service(request: Request) -> Any:
    return request.app.state.runtime.service


def _zone(request: Request) -> ZoneInfo:
    """The support team's time zone: that of the SLA policy's business hours."""
    return sla.policy_named(request.app.state.runtime.settings.sla_policy).calendar.zone


@lru_cache(maxsize=1)
def known_categories() -> tuple[str, ...]:
    from chatsvc.classifier.rules import load_rules

    try:
        return tuple(load_rules().categories or ())
    except Exception:  # noqa: BLE001 - a broken rules file only loses the suggestions of a form field
        return ()


class Times:
    """Times as the pages show them, in the team's time zone and relative to the service's clock."""

    def __init__(self, now: datetime, zone: ZoneInfo) -> None:
        self.now = now
        self.zone = zone

    def local(self, value: datetime | None) -> str:
        if value is None:
            return ""
        return as_utc(value).astimezone(self.zone).strftime("%a %d %b %Y %H:%M")  # type: ignore[union-attr]

    def ago(self, value: datetime | None) -> str:
        if value is None:
            return ""
        delta = self.now - as_utc(value)  # type: ignore[operator]
        return "just now" if delta.total_seconds() < 60 else f"{views.duration_words(delta)} ago"

    def iso(self, value: datetime | None) -> str:
        return as_utc(value).isoformat() if value is not None else ""  # type: ignore[union-attr]


async def _staff(conn: Any) -> list[Any]:
    """Everyone a ticket can be assigned to (writers work on articles, not tickets)."""
    return list((await conn.execute(select(agents.c.id, agents.c.name, agents.c.role, agents.c.presence)
                                    .where(agents.c.role != "writer").order_by(func.lower(agents.c.name)))).all())


# ------------------------------------------------------------------ the dashboard


def _text_filter(text: str) -> Any:
    number = re.fullmatch(r"#?(\d{1,12})", text)
    like = f"%{text}%"
    clauses = [tickets.c.subject.ilike(like), tickets.c.customer_email.ilike(like),
               tickets.c.customer_name.ilike(like), tickets.c.community.ilike(like)]
    if number:
        clauses.append(tickets.c.id == int(number.group(1)))
    return or_(*clauses)


def _sort_key(sort: str) -> Any:
    if sort == "age":
        return lambda item: (item["created"],)
    if sort == "updated":
        return lambda item: (-item["updated"].timestamp(),)
    if sort == "sla":  # overdue first, then the nearest deadline; nothing running last
        return lambda item: (item["next_due"] is None, item["next_due"] or item["created"], item["created"])
    return lambda item: (PRIORITY_ORDER.get(item["row"].priority, 9), item["created"])


async def load_queue(request: Request, agent: AgentRef, filters: views.QueueFilters, now: datetime) -> dict[str, Any]:
    """The dashboard's counts and the filtered, sorted page of the ticket table."""
    service = _service(request)
    zone = _zone(request)
    today = views.start_of_day(now, zone)
    base = select(tickets).where(tickets.c.merged_into.is_(None))
    query = base
    statuses = views.STATUS_FILTERS[filters.status]
    if statuses is not None:
        query = query.where(tickets.c.status.in_(statuses))
    if filters.priority:
        query = query.where(tickets.c.priority == filters.priority)
    if filters.assignee == "me":
        query = query.where(tickets.c.assignee_id == agent.id)
    elif filters.assignee == "none":
        query = query.where(tickets.c.assignee_id.is_(None))
    elif filters.assignee:
        query = query.where(tickets.c.assignee_id == filters.assignee)
    if filters.q:
        query = query.where(_text_filter(filters.q))
    async with service.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        counted = (await conn.execute(select(*SLA_COLUMNS).where(tickets.c.merged_into.is_(None), or_(
            tickets.c.status.in_(views.UNRESOLVED), tickets.c.resolved_at >= today)))).all()
        staff = await _staff(conn)
        # Time a ticket spent resolved before a reopen does not count against its resolution timer.
        reopened = await resolved_periods(conn, list({r.id: r for r in (*rows, *counted)}.values()))
    names = {s.id: s.name for s in staff}

    computed: dict[int, views.TicketTimers] = {}

    def timers(row: Any) -> views.TicketTimers:  # once per ticket, though it may be in both queries
        if row.id not in computed:
            computed[row.id] = views.ticket_timers(now, ticket_facts(row, reopened.get(row.id, ())),
                                                   sla.policy_named(row.sla_policy))
        return computed[row.id]

    count_rows = []
    for row in counted:
        worst = timers(row).worst if row.status in views.UNRESOLVED else "ok"
        count_rows.append((row.status, worst, as_utc(row.resolved_at)))
    counts = views.queue_counts(count_rows, today)

    items = []
    for row in rows:
        t = timers(row)
        if not views.sla_matches(filters.sla, t.worst, row.status):
            continue
        running = [x.due for x in (t.first_response, t.resolution) if x.running and x.due is not None]
        items.append({"row": row, "timers": t, "assignee": names.get(row.assignee_id, row.assignee_id),
                      "created": as_utc(row.created_at), "updated": as_utc(row.updated_at),
                      "next_due": min(running) if running else None})
    items.sort(key=_sort_key(filters.sort))
    total = len(items)
    pages = max(1, -(-total // views.PAGE_SIZE))
    page = min(filters.page, pages)
    start = (page - 1) * views.PAGE_SIZE
    return {"counts": counts, "items": items[start:start + views.PAGE_SIZE], "total": total, "page": page,
            "pages": pages, "staff": staff}


def _link(path: str, params: Mapping[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


async def dashboard(request: Request) -> Response:
    agent = await require_page(request, section_roles("tickets"))
    now = _service(request).clock()
    filters = views.parse_filters(request.query_params)
    data = await load_queue(request, agent, filters, now)
    counts = data["counts"]
    count_links = [
        ("new", "New", counts.new, views.QueueFilters(status="new").query()),
        ("open", "Open", counts.open, views.QueueFilters(status="open").query()),
        ("overdue", "Overdue", counts.overdue, views.QueueFilters(sla="overdue", sort="sla").query()),
        ("escalated", "Escalated", counts.escalated, views.QueueFilters(status="escalated").query()),
        ("resolved", "Resolved today", counts.resolved_today,
         views.QueueFilters(status="resolved", sort="updated").query()),
    ]
    bulk = _bulk_result(request.query_params)
    return render(request, "console/tickets.html", {
        **data,
        "filters": filters, "count_links": count_links, "link": _link,
        "clock": Times(now, _zone(request)), "views": views, "can_bulk": agent.role in BULK_ROLES,
        "bulk": bulk, "done": DONE.get(request.query_params.get("done", "")),
    })


def _bulk_result(params: Mapping[str, str]) -> dict[str, Any] | None:
    """The outcome of a bulk assignment, from the redirect's ?assigned=n&failed=1,2 (numbers only)."""
    if "assigned" not in params:
        return None
    try:
        assigned = int(params["assigned"])
        failed = [int(x) for x in params.get("failed", "").split(",") if x]
    except ValueError:
        return None
    return {"assigned": assigned, "failed": failed[:200]}


async def bulk_assign(request: Request) -> Response:
    agent = await require_page(request, BULK_ROLES)
    form = await request.form()
    await check_csrf(request, form)
    ids = []
    for raw in form.getlist("ticket_id"):
        try:
            ids.append(int(str(raw)))
        except ValueError:
            continue
    ids = ids[:200]  # as POST /api/v1/tickets-bulk/assign
    target = str(form.get("agent_id", ""))
    failed = []
    if ids and target:
        assignee = None if target == "auto" else agent.id if target == "me" else target
        for ticket_id in ids:
            try:
                await _service(request).tickets.assign(agent, ticket_id, assignee)
            except ServiceError:
                failed.append(ticket_id)
    else:
        failed = ids
    # Back to the same filters, with the outcome.
    kept = [(k, v) for k, v in parse_qsl(str(form.get("filters", ""))) if k not in ("assigned", "failed", "done")]
    outcome = [("assigned", str(len(ids) - len(failed)))] + ([("failed", ",".join(map(str, failed)))] if failed else [])
    return RedirectResponse(f"/console/tickets?{urlencode(kept + outcome)}", status_code=303)


# ------------------------------------------------------------------ the ticket view


def _ticket_id(request: Request) -> int:
    return int(request.path_params["id"])


async def _ticket_context(request: Request, agent: AgentRef, ticket_id: int) -> dict[str, Any] | None:
    service = _service(request)
    found = await service.tickets.get(ticket_id)
    if found is None:
        return None
    row, entries = found
    now = service.clock()
    audit = await service.tickets.audit(ticket_id) or []
    async with service.engine.connect() as conn:
        staff = await _staff(conn)
        reopened = await resolved_periods(conn, [row])
        same_customer = []
        if row.customer_email or row.visitor_id:
            match = []
            if row.customer_email:
                match.append(func.lower(tickets.c.customer_email) == row.customer_email.lower())
            if row.visitor_id:
                match.append(tickets.c.visitor_id == row.visitor_id)
            same_customer = list((await conn.execute(
                select(tickets.c.id, tickets.c.subject, tickets.c.status, tickets.c.created_at)
                .where(or_(*match), tickets.c.id != ticket_id).order_by(tickets.c.id.desc()).limit(50))).all())
        rating = (await conn.execute(select(csat_responses.c.rating, csat_responses.c.comment)
                                     .where(csat_responses.c.ticket_id == ticket_id))).first()
    merge_targets = [t for t in same_customer if t.status != "closed"]
    macros = await _macros(request)
    names = {s.id: s.name for s in staff}
    return {
        "ticket": row, "entries": entries, "audit": audit, "staff": staff, "names": names,
        "timers": views.ticket_timers(now, ticket_facts(row, reopened.get(row.id, ())),
                                      sla.policy_named(row.sla_policy)),
        "clock": Times(now, _zone(request)), "views": views, "buttons": views.status_buttons(row.status),
        "can_escalate": views.can_escalate(row.status, row.escalation_level),
        "can_merge": row.status != "closed" and row.merged_into is None,
        "can_assign": row.status not in ("resolved", "closed"),
        "merge_targets": merge_targets, "related": same_customer, "macros": macros,
        "categories": known_categories(), "rating": rating,
        "reply_text": "", "note_text": "", "escalation": {"type": "", "reason": "", "note": "", "checked": []},
        "show_escalation": request.query_params.get("escalate") == "1", "error": None,
        "done": DONE.get(request.query_params.get("done", "")),
    }


async def _macros(request: Request) -> list[Any]:
    from chatsvc.tickets.routes import _all_macros

    return await _all_macros(request)


def _macro_text(agent: AgentRef, row: Any, macro_id: str, macros: list[Any]) -> tuple[str, str | None]:
    """A macro rendered for the ticket, with the same variables as POST /api/v1/tickets/{id}/macros/{macro}."""
    from chatsvc.tickets.macros import MacroError, render_macro

    macro = next((m for m in macros if m.id == macro_id), None)
    if macro is None:
        return "", "No such macro."
    context = {"customer_name": row.customer_name or "", "community_name": row.community or "",
               "ticket_id": f"#{row.id}", "agent_name": agent.name, "customer_email": row.customer_email or "",
               "plan": row.plan or "", "subject": row.subject}
    try:
        return render_macro(macro.body, context), None
    except MacroError as exc:
        return "", f"The macro could not be used: {exc}"


async def ticket_page(request: Request) -> Response:
    agent = await require_page(request, section_roles("tickets"))
    ticket_id = _ticket_id(request)
    context = await _ticket_context(request, agent, ticket_id)
    if context is None:
        return render(request, "console/ticket_missing.html", {"ticket_id": ticket_id}, status=404)
    macro_id = request.query_params.get("macro")
    if macro_id:
        text, error = _macro_text(agent, context["ticket"], macro_id, context["macros"])
        context.update(reply_text=text, error=error)
    return render(request, "console/ticket.html", context)


async def _posted(request: Request) -> tuple[AgentRef, int, FormData]:
    agent = await require_page(request, section_roles("tickets"))
    form = await request.form()
    await check_csrf(request, form)
    return agent, _ticket_id(request), form


def _done(ticket_id: int, what: str, anchor: str = "") -> Response:
    return RedirectResponse(f"/console/tickets/{ticket_id}?done={what}{anchor}", status_code=303)


async def _again(request: Request, agent: AgentRef, ticket_id: int, error: str, status: int,
                 **keep: Any) -> Response:
    """The ticket page again with the reason an action was refused and what the agent had typed."""
    context = await _ticket_context(request, agent, ticket_id)
    if context is None:
        return render(request, "console/ticket_missing.html", {"ticket_id": ticket_id}, status=404)
    context.update(error=error, done=None, **keep)
    return render(request, "console/ticket.html", context, status=status)


def _status_of(exc: ServiceError) -> int:
    return _service_error(exc).status


def _posted_text(form: FormData, name: str) -> str:
    return str(form.get(name, ""))


async def _post_entry(request: Request, kind: str) -> Response:
    """A reply or an internal note from the ticket view; the form comes back with the text on an error."""
    agent, ticket_id, form = await _posted(request)
    text = _posted_text(form, "text")
    keep = {f"{kind}_text": text}
    if not text.strip():
        return await _again(request, agent, ticket_id, f"Write the {kind} first.", 400, **keep)
    if len(text) > MAX_TEXT:
        return await _again(request, agent, ticket_id, f"A {kind} is limited to {MAX_TEXT} characters.", 400,
                            **keep)
    tickets = _service(request).tickets
    try:
        await (tickets.reply if kind == "reply" else tickets.note)(agent, ticket_id, text)
    except ServiceError as exc:
        return await _again(request, agent, ticket_id, exc.message, _status_of(exc), **keep)
    return _done(ticket_id, kind, "#thread-end")


async def post_reply(request: Request) -> Response:
    return await _post_entry(request, "reply")


async def post_note(request: Request) -> Response:
    return await _post_entry(request, "note")


async def post_status(request: Request) -> Response:
    agent, ticket_id, form = await _posted(request)
    action = _posted_text(form, "action")
    try:
        await _service(request).tickets.act(agent, ticket_id, action)
    except ServiceError as exc:
        return await _again(request, agent, ticket_id, exc.message, _status_of(exc))
    return _done(ticket_id, f"status-{action}" if f"status-{action}" in DONE else "fields")


async def post_assign(request: Request) -> Response:
    agent, ticket_id, form = await _posted(request)
    target = _posted_text(form, "agent_id")
    assignee = None if target in ("", "auto") else agent.id if target == "me" else target
    try:
        await _service(request).tickets.assign(agent, ticket_id, assignee)
    except ServiceError as exc:
        return await _again(request, agent, ticket_id, exc.message, _status_of(exc))
    return _done(ticket_id, "assigned")


async def post_fields(request: Request) -> Response:
    agent, ticket_id, form = await _posted(request)
    priority = _posted_text(form, "priority")
    category = _posted_text(form, "category").strip()
    subject = _posted_text(form, "subject").strip()
    if priority not in PRIORITY_ORDER:
        return await _again(request, agent, ticket_id, "Choose a priority from P1 to P4.", 422)
    if len(category) > 64 or len(subject) > 300:
        return await _again(request, agent, ticket_id, "The category is limited to 64 characters and the "
                                                       "subject to 300.", 422)
    changes: dict[str, Any] = {"priority": priority}
    if category:
        changes["category"] = category
    if subject:
        changes["subject"] = subject
    try:
        await _service(request).tickets.update_fields(agent, ticket_id, changes)
    except ServiceError as exc:
        return await _again(request, agent, ticket_id, exc.message, _status_of(exc))
    return _done(ticket_id, "fields")


async def post_escalate(request: Request) -> Response:
    agent, ticket_id, form = await _posted(request)
    kept = {"type": _posted_text(form, "type"), "reason": _posted_text(form, "reason")[:2000],
            "note": _posted_text(form, "note")[:MAX_TEXT], "checked": [str(v) for v in form.getlist("check")]}
    missing = views.missing_checklist(kept["checked"])
    problem = None
    if missing:
        problem = "Before you escalate, complete the checklist: " + " ".join(missing)
    elif not kept["type"] or not kept["reason"].strip() or not kept["note"].strip():
        problem = ("An escalation needs a type, a reason and a self-contained note: what was tried, the "
                   "customer's context, and what the next level is asked to do.")
    if problem:
        return await _again(request, agent, ticket_id, problem, 422, escalation=kept, show_escalation=True)
    try:
        await _service(request).tickets.escalate(agent, ticket_id, kept["type"], kept["reason"].strip(),
                                                 kept["note"].strip())
    except ServiceError as exc:
        return await _again(request, agent, ticket_id, exc.message, _status_of(exc), escalation=kept,
                            show_escalation=True)
    return _done(ticket_id, "escalated")


async def post_merge(request: Request) -> Response:
    agent, ticket_id, form = await _posted(request)
    raw = _posted_text(form, "into").strip().lstrip("#")
    if not raw.isdigit():
        return await _again(request, agent, ticket_id, "Choose the ticket to merge this one into.", 400)
    into = int(raw)
    try:
        await _service(request).tickets.merge(agent, ticket_id, into)
    except ServiceError as exc:
        return await _again(request, agent, ticket_id, exc.message, _status_of(exc))
    return _done(into, "merged")


# ------------------------------------------------------------------ a new ticket (phone, e-mail, social)


async def new_ticket(request: Request) -> Response:
    agent = await require_page(request, section_roles("tickets"))
    empty = {"channel": "phone", "customer_name": "", "customer_email": "", "plan": "", "community": "",
             "subject": "", "text": "", "priority": ""}
    if request.method == "GET":
        return render(request, "console/ticket_new.html", {"values": empty, "error": None, "channels": CHANNELS,
                                                           "plans": PLANS, "views": views})
    form = await request.form()
    await check_csrf(request, form)
    values = {k: _posted_text(form, k).strip() for k in empty}
    error = None
    if values["channel"] not in dict(CHANNELS):
        error = "Choose the channel the customer used."
    elif not values["text"]:
        error = "Describe the customer's request."
    elif values["priority"] and values["priority"] not in PRIORITY_ORDER:
        error = "Choose a priority from P1 to P4, or let the rules decide."
    elif values["customer_email"] and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", values["customer_email"]):
        error = "The customer's e-mail address is not valid."
    elif any(len(values[k]) > n for k, n in (("customer_name", 200), ("customer_email", 320), ("community", 200),
                                             ("subject", 300), ("text", MAX_TEXT), ("plan", 64))):
        error = "One of the fields is too long."
    if error:
        return render(request, "console/ticket_new.html", {"values": values, "error": error, "channels": CHANNELS,
                                                           "plans": PLANS, "views": views}, status=422)
    ticket_id = await _service(request).tickets.create(
        channel=values["channel"], subject=values["subject"] or None, text=values["text"],
        customer_name=values["customer_name"] or None, customer_email=values["customer_email"] or None,
        plan=values["plan"].lower() or None, community=values["community"] or None,
        priority=values["priority"] or None, actor=agent)
    return _done(ticket_id, "created")


routes: list[BaseRoute] = [
    Route("/console/tickets", dashboard, methods=["GET"]),
    Route("/console/tickets/assign", bulk_assign, methods=["POST"]),
    Route("/console/tickets/new", new_ticket, methods=["GET", "POST"]),
    Route("/console/tickets/{id:int}", ticket_page, methods=["GET"]),
    Route("/console/tickets/{id:int}/reply", post_reply, methods=["POST"]),
    Route("/console/tickets/{id:int}/note", post_note, methods=["POST"]),
    Route("/console/tickets/{id:int}/status", post_status, methods=["POST"]),
    Route("/console/tickets/{id:int}/assign", post_assign, methods=["POST"]),
    Route("/console/tickets/{id:int}/fields", post_fields, methods=["POST"]),
    Route("/console/tickets/{id:int}/escalate", post_escalate, methods=["POST"]),
    Route("/console/tickets/{id:int}/merge", post_merge, methods=["POST"]),
]
