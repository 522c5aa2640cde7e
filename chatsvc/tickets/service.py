"""Tickets: chat-to-ticket conversion and the ticket's thread.

A conversation converts at most once: the ticket row carries the conversation id under a unique index and
is inserted in the same transaction that moves the conversation to `ticketed`, so two triggers firing
together, or two processes racing, leave exactly one ticket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from chatsvc.domain import sla
from chatsvc.domain import tickets as tickets_domain
from chatsvc.domain.conversation import State, Trigger
from chatsvc.live import wire
from chatsvc.live.service import BOT_AUTHOR, AgentRef, ChatService, ServiceError, as_utc, iso
from chatsvc.ops import metrics
from chatsvc.ops.logs import Outage, every
from chatsvc.store.tables import (
    agents,
    conversations,
    csat_responses,
    events,
    outbound_messages,
    ticket_audit,
    ticket_entries,
    tickets,
    visitors,
)
from chatsvc.tickets import webhooks
from chatsvc.ws import protocol
from chatsvc.ws.protocol import ErrorCode

log = logging.getLogger("chatsvc.tickets")

SUBJECT_CHARS = 80


def subject_from(question: str | None, fallback: str) -> str:
    """A ticket subject from the visitor's question: one line, whole words, at most 80 characters."""
    text = re.sub(r"\s+", " ", question or "").strip()
    if not text:
        return fallback
    if len(text) > SUBJECT_CHARS:
        cut = text[:SUBJECT_CHARS + 1].rsplit(" ", 1)[0] or text[:SUBJECT_CHARS]
        text = cut.rstrip(" ,.;:-") + "…"
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Converted:
    ticket_id: int
    created: bool


class TicketService:
    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self.engine = chat.engine
        self._next_sweep: datetime | None = None
        self._retrier: asyncio.Task[None] | None = None

    async def _audit(self, conn: Any, ticket_id: int, what: str, actor: AgentRef | None, now: Any,
                     **data: Any) -> None:
        await conn.execute(insert(ticket_audit).values(
            ticket_id=ticket_id, action=what, actor_id=actor.id if actor else None,
            actor_name=actor.name if actor else "system", data=data or None, created_at=now))

    def _triage(self, question: str | None, plan: str | None) -> tuple[str, str | None, dict[str, Any]]:
        classifier = self.chat.classifier
        if classifier is None or not question:
            return "P3", None, {"source": "default", "rule": None}
        verdict = classifier.classify(question, plan=plan)
        return verdict.priority, verdict.category, dict(verdict.reason)

    async def convert(self, conv_id: str, *, reason: str, actor: AgentRef | None = None) -> Converted:
        """Turn a conversation into a ticket holding its whole transcript; at most once."""
        try:
            async with self.chat._tx() as tx:
                conv = await self.chat._conv(tx.conn, conv_id)
                if conv.ticket_id is not None:
                    return Converted(int(conv.ticket_id), False)
                state = State(conv.state)
                if state is State.ENDED:
                    raise ServiceError(ErrorCode.ILLEGAL_STATE, "an ended conversation cannot become a ticket",
                                       conversation_id=conv_id)
                visitor = (await tx.conn.execute(select(visitors).where(visitors.c.id == conv.visitor_id))).one()
                priority, category, triage = self._triage(conv.first_question, visitor.plan)
                name = visitor.name or (visitor.email or conv.email or "visitor")
                result = await tx.conn.execute(insert(tickets).values(
                    subject=subject_from(conv.first_question, f"Chat with {name}"), status="new",
                    priority=priority, category=conv.category or category, triage=triage, channel="chat",
                    customer_name=visitor.name, customer_email=visitor.email or conv.email, plan=visitor.plan,
                    community=visitor.community, visitor_id=conv.visitor_id, conversation_id=conv_id,
                    assignee_id=conv.agent_id, escalation_level="l1", sla_policy=self.chat.settings.sla_policy,
                    created_at=tx.now, updated_at=tx.now, paused=[]).returning(tickets.c.id))
                ticket_id = int(result.scalar_one())
                rows = (await tx.conn.execute(select(events).where(events.c.conversation_id == conv_id)
                                              .order_by(events.c.seq))).all()
                for row in rows:
                    await tx.conn.execute(insert(ticket_entries).values(_entry_from_event(ticket_id, row)))
                await self._audit(tx.conn, ticket_id, "created", actor, tx.now, channel="chat", reason=reason,
                                  conversation_id=conv_id, priority=priority, triage=triage)
                await webhooks.emit_ticket(tx.conn, webhooks.TICKET_CREATED, ticket_id, tx.now)
                await webhooks.emit_ticket(tx.conn, webhooks.CONVERSATION_TICKETED, ticket_id, tx.now,
                                           conversation_id=conv_id, reason=reason)
                if state is not State.TICKETED:
                    await self.chat._revoke_offer(tx, conv, "ticketed")
                    await self.chat._state_change(
                        tx, conv, Trigger.CONVERT, reason=reason, offer_id=None, ticket_id=str(ticket_id),
                        actor=protocol.Author(id=actor.id, name=actor.name) if actor else None)
                else:  # pragma: no cover - ticketed always carries its ticket id
                    await tx.conn.execute(update(conversations).where(conversations.c.id == conv_id)
                                          .values(ticket_id=str(ticket_id)))
                email = visitor.email or conv.email
                text = (f"We've created ticket #{ticket_id} for you. "
                        + (f"We'll reply by e-mail to {email}. " if email else "")
                        + "You can keep writing here: everything goes onto the ticket.")
                await self.chat._append(tx, conv_id, kind="ticket", role="system", author=BOT_AUTHOR, text=text,
                                        data={"ticket_id": ticket_id, "number": f"#{ticket_id}", "reason": reason})
                if conv.agent_id:
                    tx.publish(wire.agent_channel(conv.agent_id), wire.control_payload(
                        protocol.Unassigned(conversation_id=conv_id, reason="ticketed")))
        except IntegrityError:
            # Another trigger or process converted it first: the unique conversation id says which ticket.
            async with self.engine.connect() as conn:
                existing = (await conn.execute(select(tickets.c.id).where(
                    tickets.c.conversation_id == conv_id))).scalar_one()
            return Converted(int(existing), False)
        log.info("conversation %s became ticket #%d (%s)", conv_id, ticket_id, reason)
        return Converted(ticket_id, True)

    async def _pending_reason(self, conv_id: str) -> str:
        """Why the conversation went to ticket_pending: the reason of its last state change."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(events.c.data).where(
                events.c.conversation_id == conv_id, events.c.kind == "state")
                .order_by(events.c.seq.desc()).limit(1))).first()
        return str((row.data or {}).get("reason", "ticket_pending")) if row else "ticket_pending"

    async def on_ticket_pending(self, conv_id: str) -> None:
        """The live-chat hook: a conversation nobody could take becomes a ticket straight away. When that
        fails (the store is down), `retry_conversions` converts it later."""
        try:
            await self.convert(conv_id, reason=await self._pending_reason(conv_id))
        except ServiceError as exc:
            log.warning("conversion of %s deferred: %s", conv_id, exc.message)

    async def retry_conversions(self) -> int:
        """Convert the conversations left in ticket_pending without a ticket for longer than the grace
        period (their conversion after the state change failed, or the process died before it ran).

        Every process runs this pass; `convert` is idempotent (the ticket's unique conversation id), so two
        processes retrying the same conversation at once still make one ticket. Returns how many tickets
        this pass created. A store that cannot be reached raises, for the caller's loop to report."""
        now = self.chat.clock()
        grace = timedelta(seconds=self.chat.settings.ticket_retry_interval)
        async with self.engine.connect() as conn:
            stuck = (await conn.execute(select(conversations.c.id).where(
                conversations.c.state == State.TICKET_PENDING.value, conversations.c.ticket_id.is_(None),
                conversations.c.updated_at < now - grace)
                .order_by(conversations.c.updated_at).limit(RETRY_BATCH))).scalars().all()
        created = 0
        for conv_id in stuck:
            try:
                converted = await self.convert(conv_id, reason=await self._pending_reason(conv_id))
            except ServiceError as exc:
                if exc.code == ErrorCode.UNAVAILABLE:
                    raise
                log.warning("conversion of %s skipped: %s", conv_id, exc.message)  # it moved on meanwhile
                continue
            if converted.created:
                created += 1
                log.info("conversion of %s retried: ticket #%d", conv_id, converted.ticket_id)
        return created

    async def start(self) -> None:
        """Start the conversion retry pass (every CHATSVC_TICKET_RETRY_INTERVAL seconds; 0: never)."""
        interval = self.chat.settings.ticket_retry_interval
        if interval > 0 and self._retrier is None:
            self._retrier = asyncio.create_task(self._retry_forever(interval), name="chatsvc-ticket-retry")

    async def stop(self) -> None:
        task, self._retrier = self._retrier, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _retry_forever(self, interval: float) -> None:
        await every(interval, self.retry_conversions, Outage(log, "ticket conversion retry"))

    async def on_visitor_message(self, conv_id: str, event: protocol.Event) -> None:
        """A message to a ticketed conversation goes onto its ticket (and re-opens a resolved one)."""
        async with self.chat._tx() as tx:
            conv = await self.chat._conv(tx.conn, conv_id)
            if conv.ticket_id is None:
                return
            ticket_id = int(conv.ticket_id)
            row = (await tx.conn.execute(select(events).where(
                events.c.conversation_id == conv_id, events.c.seq == event.seq))).one()
            await tx.conn.execute(insert(ticket_entries).values(_entry_from_event(ticket_id, row)))
            ticket = (await tx.conn.execute(select(tickets).where(tickets.c.id == ticket_id))).one()
            current = tickets_domain.Status(ticket.status)
            if (tickets_domain.allowed(current, tickets_domain.Action.CUSTOMER_REPLIED)
                    and tickets_domain.transition(current, tickets_domain.Action.CUSTOMER_REPLIED) is not current):
                before = ticket.status
                after = await self._transition(tx, ticket, tickets_domain.Action.CUSTOMER_REPLIED, None)
                if before == "resolved":
                    await self._audit(tx.conn, ticket_id, "reopened", None, tx.now, by="customer_reply")
                    if ticket.assignee_id:
                        tx.publish(wire.agent_channel(ticket.assignee_id), wire.control_payload(
                            protocol.TicketNotice(ticket_id=ticket_id, event="reopened", status=after,
                                                  subject=ticket.subject)))
            else:
                await tx.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(updated_at=tx.now))


    async def create(self, *, channel: str, subject: str | None, text: str, customer_name: str | None,
                     customer_email: str | None, plan: str | None = None, community: str | None = None,
                     priority: str | None = None, category: str | None = None,
                     actor: AgentRef | None = None) -> int:
        """A ticket from the contact form, or one an agent opens (phone, e-mail, social)."""
        auto_priority, auto_category, triage = self._triage(f"{subject or ''}\n{text}", plan)
        if priority:
            triage = {"source": "agent", "rule": None, "suggested": auto_priority}
        async with self.chat._tx() as tx:
            ticket_id = int((await tx.conn.execute(insert(tickets).values(
                subject=subject_from(subject or text, "Support request"), status="new",
                priority=priority or auto_priority, category=category or auto_category, triage=triage,
                channel=channel, customer_name=customer_name, customer_email=customer_email, plan=plan,
                community=community, escalation_level="l1", sla_policy=self.chat.settings.sla_policy, created_at=tx.now,
                updated_at=tx.now, paused=[]).returning(tickets.c.id))).scalar_one())
            await tx.conn.execute(insert(ticket_entries).values(
                ticket_id=ticket_id, kind="message", role="visitor" if actor is None else "agent",
                author_id=actor.id if actor else None, author_name=customer_name if actor is None else actor.name,
                text=text, internal=False, created_at=tx.now))
            await self._audit(tx.conn, ticket_id, "created", actor, tx.now, channel=channel,
                              priority=priority or auto_priority, triage=triage)
            await webhooks.emit_ticket(tx.conn, webhooks.TICKET_CREATED, ticket_id, tx.now)
        return ticket_id

    async def update_fields(self, actor: AgentRef, ticket_id: int, changes: dict[str, Any]) -> None:
        """Priority, category or subject changed by an agent. The final values of resolved tickets are the
        labels `chatsvc train --from-store` learns from, so a correction here teaches the classifier."""
        async with self.chat._tx() as tx:
            ticket = await self._ticket(tx.conn, ticket_id)
            changed = {k: v for k, v in changes.items() if getattr(ticket, k) != v}
            if not changed:
                return
            await tx.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(updated_at=tx.now, **changed))
            for field, value in changed.items():
                await self._audit(tx.conn, ticket_id, f"{field}_changed", actor, tx.now,
                                  **{"from": getattr(ticket, field), "to": value})
            await webhooks.emit_ticket(tx.conn, webhooks.TICKET_UPDATED, ticket_id, tx.now, actor=actor,
                                       changes=webhooks.changes(ticket, changed))

    async def merge(self, actor: AgentRef, source_id: int, target_id: int) -> None:
        """Merge a duplicate into another ticket of the same customer: its thread joins the target's
        (shown interleaved by time) and it closes with a pointer to the target."""
        if source_id == target_id:
            raise ServiceError("invalid_merge", "a ticket cannot be merged into itself")
        async with self.chat._tx() as tx:
            source = await self._ticket(tx.conn, source_id)
            target = await self._ticket(tx.conn, target_id)
            if source.merged_into is not None or target.merged_into is not None:
                raise ServiceError("invalid_merge", "one of the tickets is already merged")
            same = (source.customer_email and source.customer_email.lower() == (target.customer_email or "").lower()) \
                or (source.visitor_id and source.visitor_id == target.visitor_id)
            if not same:
                raise ServiceError("invalid_merge", "only tickets of the same customer can be merged")
            if target.status == "closed":
                raise ServiceError("invalid_merge", "the target ticket is closed")
            await self._transition(tx, source, tickets_domain.Action.MERGE, actor, merged_into=target_id)
            rows = (await tx.conn.execute(select(ticket_entries).where(ticket_entries.c.ticket_id == source_id))).all()
            for row in rows:
                values = {k: getattr(row, k) for k in row._fields if k not in ("id", "ticket_id", "source")}
                await tx.conn.execute(insert(ticket_entries).values(
                    ticket_id=target_id, source=f"merged:{source_id}:{row.id}", **values))
            await tx.conn.execute(insert(ticket_entries).values(
                ticket_id=target_id, kind="system", role="system", text=f"Ticket #{source_id} was merged into this one.",
                internal=False, data={"merged_from": source_id}, created_at=tx.now))
            await tx.conn.execute(update(tickets).where(tickets.c.id == target_id).values(updated_at=tx.now))
            await self._audit(tx.conn, source_id, "merged", actor, tx.now, into=target_id)
            await self._audit(tx.conn, target_id, "merged", actor, tx.now, merged_from=source_id)

    async def record_csat(self, *, rating: str, comment: str | None, ticket_id: int | None = None,
                          conversation_id: str | None = None) -> None:
        """good / okay / bad with an optional comment; a second answer replaces the first."""
        if rating not in ("good", "okay", "bad"):
            raise ServiceError("invalid", "rating must be good, okay or bad")
        async with self.chat._tx() as tx:
            agent_id = None
            if ticket_id is not None:
                ticket = await self._ticket(tx.conn, ticket_id)
                agent_id = ticket.assignee_id
                conversation_id = None
                key = csat_responses.c.ticket_id == ticket_id
            else:
                conv = await self.chat._conv(tx.conn, conversation_id or "")
                if conv.ticket_id is not None:
                    ticket_id, conversation_id = int(conv.ticket_id), None
                    key = csat_responses.c.ticket_id == ticket_id
                else:
                    key = csat_responses.c.conversation_id == conversation_id
                agent_id = conv.agent_id
            await tx.conn.execute(delete(csat_responses).where(key))
            await tx.conn.execute(insert(csat_responses).values(
                ticket_id=ticket_id, conversation_id=conversation_id, agent_id=agent_id, rating=rating,
                comment=(comment or "")[:2000] or None, created_at=tx.now))
            if ticket_id is not None:
                await self._audit(tx.conn, ticket_id, "csat", None, tx.now, rating=rating)
                if rating == "bad":  # the manual: "We're sorry — a manager will follow up"
                    tx.publish("team:management", json.dumps({"event": "csat.bad", "ticket_id": ticket_id}).encode())

    def csat_link(self, ticket_id: int) -> str:
        return f"{self.chat.settings.base_url}/csat/{self.chat.tokens.sign_purpose('csat', str(ticket_id))}"

    # ------------------------------------------------------------------ scheduled work

    async def sweep(self) -> None:
        """Auto-close, reminders and SLA breaches. Every process runs it; each row is claimed with a
        conditional update, so exactly one process acts on each ticket. It computes every open ticket's SLA,
        so it runs every SWEEP_EVERY rather than on each (one-second) live-chat sweep."""
        now = self.chat.clock()
        if self._next_sweep is not None and now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        close_before = now - tickets_domain.AUTO_CLOSE_AFTER
        remind_before = now - tickets_domain.PENDING_REMINDER_AFTER
        async with self.chat._tx() as tx:
            closed = (await tx.conn.execute(update(tickets).where(
                tickets.c.status == "resolved", tickets.c.resolved_at < close_before)
                .values(status="closed", closed_at=now, updated_at=now).returning(tickets.c.id))).scalars().all()
            for ticket_id in closed:
                await self._audit(tx.conn, ticket_id, "status", None, now, action="auto_close",
                                  **{"from": "resolved", "to": "closed"})
                await webhooks.emit_ticket(tx.conn, webhooks.TICKET_UPDATED, ticket_id, now, action="auto_close",
                                           changes={"status": {"from": "resolved", "to": "closed"}})
            reminded = (await tx.conn.execute(update(tickets).where(
                tickets.c.status == "pending_customer", tickets.c.pending_since < remind_before,
                tickets.c.reminded_at.is_(None)).values(reminded_at=now)
                .returning(tickets.c.id, tickets.c.customer_email, tickets.c.subject))).all()
            for row in reminded:
                if row.customer_email:
                    await tx.conn.execute(insert(outbound_messages).values(
                        ticket_id=row.id, to_email=row.customer_email, subject=f"Re: [#{row.id}] {row.subject}",
                        body="We're waiting for your reply to continue with this request. Just answer this "
                             "message when you can.", status="pending", channel="log", created_at=now))
                await self._audit(tx.conn, row.id, "reminder", None, now, to=row.customer_email)
        await self._record_breaches(now)

    async def _record_breaches(self, now: datetime) -> None:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(tickets).where(
                tickets.c.status.not_in(("resolved", "closed")), tickets.c.merged_into.is_(None),
                (tickets.c.first_response_breached_at.is_(None)) | (tickets.c.resolution_breached_at.is_(None)))
            )).all()
            reopened = await resolved_periods(conn, rows)
        for row in rows:
            report = sla.sla_report(now, _facts(row, reopened.get(row.id, ())), sla.policy_named(row.sla_policy))
            for timer, column in ((report.first_response, tickets.c.first_response_breached_at),
                                  (report.resolution, tickets.c.resolution_breached_at)):
                if timer.state is not sla.SlaState.BREACHED or getattr(row, column.key) is not None:
                    continue
                async with self.chat._tx() as tx:
                    claimed = await tx.conn.execute(update(tickets).where(
                        tickets.c.id == row.id, column.is_(None)).values({column.key: now}))
                    if claimed.rowcount != 1:
                        continue  # another process recorded it
                    await self._audit(tx.conn, row.id, "sla_breached", None, now, timer=timer.clock.value,
                                      due=iso(timer.due), priority=row.priority)
                    await webhooks.emit_ticket(tx.conn, webhooks.SLA_BREACHED, row.id, now, timer=timer.clock.value,
                                               due=iso(timer.due))
                    tx.publish("team:leads", json.dumps({"event": "sla.breached", "ticket_id": row.id,
                                                         "timer": timer.clock.value}).encode())
                metrics.SLA_BREACHES.labels(timer.clock.value).inc()
                log.warning("ticket #%d breached its %s SLA", row.id, timer.clock.value)

    # ------------------------------------------------------------------ reading

    async def list(self, *, status: str | None, priority: str | None, assignee: str | None, text: str | None,
                   sort: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        from chatsvc.tickets.routes import ticket_json

        q = select(tickets).where(tickets.c.merged_into.is_(None))
        if status:
            q = q.where(tickets.c.status.in_(status.split(",")))
        if priority:
            q = q.where(tickets.c.priority.in_(priority.split(",")))
        if assignee:
            q = q.where(tickets.c.assignee_id.is_(None) if assignee == "none" else tickets.c.assignee_id == assignee)
        if text:
            like = f"%{text[:200]}%"
            q = q.where(tickets.c.subject.ilike(like) | tickets.c.customer_email.ilike(like)
                        | tickets.c.customer_name.ilike(like))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            reopened = await resolved_periods(conn, rows)
        now = self.chat.clock()
        items = [{**ticket_json(r), **self.sla_view(r, now, reopened.get(r.id, ()))} for r in rows]
        if sort == "priority":
            items.sort(key=lambda t: (t["priority"], t["created_at"]))
        elif sort == "age":
            items.sort(key=lambda t: t["created_at"])
        elif sort == "updated":
            items.sort(key=lambda t: t["updated_at"], reverse=True)
        else:  # sla: overdue first, then the nearest deadline
            items.sort(key=lambda t: (t["sla"]["next_due"] is None, t["sla"]["next_due"] or ""))
        return items[offset:offset + limit], len(items)

    async def resolved_periods(self, rows: Sequence[Any]) -> dict[int, tuple[sla.Interval, ...]]:
        """`resolved_periods` of these ticket rows, read with a connection of its own."""
        async with self.engine.connect() as conn:
            return await resolved_periods(conn, rows)

    def sla_view(self, row: Any, now: Any, resolved: Sequence[sla.Interval] = ()) -> dict[str, Any]:
        """SLA deadlines and state (ok, approaching, breached) of both timers of a ticket; `resolved`: the
        stretches it spent resolved before a reopen (`resolved_periods`)."""
        report = sla.sla_report(now, _facts(row, resolved), sla.policy_named(row.sla_policy))
        timers = {}
        for timer in (report.first_response, report.resolution):
            timers[timer.clock.value] = {"state": timer.state.value, "due": iso(timer.due),
                                         "stopped": timer.stopped, "paused": timer.paused}
        running = [t.due for t in (report.first_response, report.resolution) if not t.stopped and t.due]
        return {"sla": {**timers, "worst": report.worst.value, "next_due": iso(min(running)) if running else None}}

    async def _transition(self, tx: Any, ticket: Any, action: tickets_domain.Action, actor: AgentRef | None,
                          **values: Any) -> str:
        try:
            new = tickets_domain.transition(tickets_domain.Status(ticket.status), action)
        except tickets_domain.IllegalTransition as exc:
            raise ServiceError("invalid_transition", str(exc)) from None
        values = {"status": new.value, "updated_at": tx.now, **values}
        if new is tickets_domain.Status.PENDING_CUSTOMER and ticket.status != new.value:
            values["pending_since"] = tx.now
            values["reminded_at"] = None
        if ticket.status == "pending_customer" and new.value != "pending_customer" and ticket.pending_since:
            values["pending_since"] = None
            values["paused"] = [*(ticket.paused or []), [iso(ticket.pending_since), iso(tx.now)]]
        if new is tickets_domain.Status.RESOLVED:
            values.setdefault("resolved_at", tx.now)
            if ticket.customer_email:
                await tx.conn.execute(insert(outbound_messages).values(
                    ticket_id=ticket.id, to_email=ticket.customer_email, subject=f"[#{ticket.id}] How did we do?",
                    body=f"Your request \"{ticket.subject}\" is resolved. How did we do? {self.csat_link(ticket.id)}",
                    status="pending", channel="log", created_at=tx.now))
        if new is tickets_domain.Status.CLOSED:
            values.setdefault("closed_at", tx.now)
        if ticket.status in ("resolved", "closed") and new.value not in ("resolved", "closed"):
            values["resolved_at"] = None
        changed = await tx.conn.execute(update(tickets).where(
            tickets.c.id == ticket.id, tickets.c.status == ticket.status).values(**values))
        if changed.rowcount != 1:
            raise ServiceError("conflict", "the ticket changed meanwhile; reload and retry", retryable=True)
        await self._audit(tx.conn, ticket.id, "status", actor, tx.now, action=action.value,
                          **{"from": ticket.status, "to": new.value})
        changed_fields = webhooks.changes(ticket, values, WEBHOOK_FIELDS)
        if changed_fields:
            await webhooks.emit_ticket(tx.conn, webhooks.TICKET_UPDATED, ticket.id, tx.now, actor=actor,
                                       action=action.value, changes=changed_fields)
        return new.value

    async def act(self, actor: AgentRef, ticket_id: int, action: str) -> str:
        """A status action from an agent: start, wait_for_customer, resolve, close, reopen, de_escalate."""
        if action not in AGENT_ACTIONS:
            raise ServiceError("invalid_action", f"action must be one of {', '.join(AGENT_ACTIONS)}")
        async with self.chat._tx() as tx:
            ticket = await self._ticket(tx.conn, ticket_id)
            extra: dict[str, Any] = {}
            if action == "de_escalate":
                try:
                    extra["escalation_level"] = tickets_domain.de_escalate(ticket.escalation_level).value
                except tickets_domain.EscalationError as exc:
                    raise ServiceError("invalid_transition", str(exc)) from None
            return await self._transition(tx, ticket, tickets_domain.Action(action), actor, **extra)

    async def assign(self, actor: AgentRef, ticket_id: int, assignee_id: str | None) -> str | None:
        """Assign to an agent, or (None) to the one the auto-assignment rules pick; New becomes Open."""
        async with self.chat._tx() as tx:
            ticket = await self._ticket(tx.conn, ticket_id)
            if assignee_id is None:
                assignee_id = await self._auto_assignee(tx.conn, ticket)
                if assignee_id is None:
                    raise ServiceError("no_agent", "no agent can take this ticket now")
            target = (await tx.conn.execute(select(agents.c.id, agents.c.role).where(agents.c.id == assignee_id))).first()
            if target is None or target.role == "writer":
                raise ServiceError(ErrorCode.NOT_FOUND, "no such agent")
            status = await self._transition(tx, ticket, tickets_domain.Action.ASSIGN, actor, assignee_id=assignee_id)
            await self._audit(tx.conn, ticket_id, "assigned", actor, tx.now,
                              **{"from": ticket.assignee_id, "to": assignee_id})
            await tx.conn.execute(update(agents).where(agents.c.id == assignee_id).values(last_assigned_at=tx.now))
        return status

    async def _auto_assignee(self, conn: Any, ticket: Any) -> str | None:
        from chatsvc.domain.ticket_assignment import TicketAgent, TicketNeed, choose_ticket_agent

        rows = (await conn.execute(select(agents).where(agents.c.role.in_(("agent", "lead"))))).all()
        load = dict((await conn.execute(select(tickets.c.assignee_id, func.count()).where(
            tickets.c.status.in_(("open", "in_progress", "pending_customer", "escalated")))
            .group_by(tickets.c.assignee_id))).all())
        candidates = [TicketAgent(id=r.id, open_tickets=int(load.get(r.id, 0)), skills=frozenset(r.skills or ()),
                                  languages=frozenset(r.languages or ()), senior=r.role == "lead",
                                  last_assigned_at=as_utc(r.last_assigned_at), available=r.presence != "offline")
                      for r in rows]
        return choose_ticket_agent(candidates, TicketNeed(category=ticket.category, plan=ticket.plan))

    async def escalate(self, actor: AgentRef, ticket_id: int, type_: str, reason: str, note: str) -> str:
        """Level 1 → Level 2 → Management, with a reason and a self-contained note the next level reads."""
        async with self.chat._tx() as tx:
            ticket = await self._ticket(tx.conn, ticket_id)
            try:
                level = tickets_domain.escalate(ticket.escalation_level, reason, type_, note)
            except tickets_domain.EscalationError as exc:
                raise ServiceError("invalid_escalation", str(exc)) from None
            if ticket.status != "escalated":
                await self._transition(tx, ticket, tickets_domain.Action.ESCALATE, actor,
                                       escalation_level=level.value)
            else:
                await tx.conn.execute(update(tickets).where(tickets.c.id == ticket_id)
                                      .values(escalation_level=level.value, updated_at=tx.now))
                await webhooks.emit_ticket(tx.conn, webhooks.TICKET_UPDATED, ticket_id, tx.now, actor=actor,
                                           changes=webhooks.changes(ticket, {"escalation_level": level.value}))
            await tx.conn.execute(insert(ticket_entries).values(
                ticket_id=ticket_id, kind="note", role="agent", author_id=actor.id, author_name=actor.name,
                text=f"Escalated to {level.value} ({type_}): {reason}\n\n{note}", internal=True,
                data={"escalation": {"level": level.value, "type": type_, "reason": reason}}, created_at=tx.now))
            await self._audit(tx.conn, ticket_id, "escalated", actor, tx.now, level=level.value, type=type_,
                              reason=reason)
            team = TEAMS.get(type_, "management")
            tx.publish(f"team:{team}", json.dumps({"event": "ticket.escalated", "ticket_id": ticket_id,
                                                   "level": level.value, "type": type_, "reason": reason}).encode())
        log.info("ticket #%d escalated to %s (%s); %s team notified", ticket_id, level.value, type_, team)
        return level.value

    async def get(self, ticket_id: int, *, include_internal: bool = True) -> tuple[Any, list[Any]] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).first()
            if row is None:
                return None
            q = select(ticket_entries).where(ticket_entries.c.ticket_id == ticket_id)
            if not include_internal:
                q = q.where(ticket_entries.c.internal.is_(False))
            entries = (await conn.execute(q.order_by(ticket_entries.c.created_at, ticket_entries.c.id))).all()
        return row, entries

    async def audit(self, ticket_id: int) -> list[Any] | None:
        async with self.engine.connect() as conn:
            if (await conn.execute(select(tickets.c.id).where(tickets.c.id == ticket_id))).first() is None:
                return None
            return list((await conn.execute(select(ticket_audit).where(ticket_audit.c.ticket_id == ticket_id)
                                            .order_by(ticket_audit.c.id))).all())

    # ------------------------------------------------------------------ writing

    async def _ticket(self, conn: Any, ticket_id: int) -> Any:
        row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).first()
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such ticket")
        return row

    async def reply(self, agent: AgentRef, ticket_id: int, text: str) -> Any:
        """A customer-facing reply: onto the ticket, into the visitor's chat, and queued for e-mail."""
        async with self.chat._tx() as tx:
            ticket = await self._ticket(tx.conn, ticket_id)
            delivery = "email"
            if ticket.conversation_id:
                await self.chat._append(tx, ticket.conversation_id, kind="message", role="agent", text=text,
                                        author=protocol.Author(id=agent.id, name=agent.name),
                                        data={"ticket_id": ticket_id})
                delivery = "widget+email" if ticket.customer_email else "widget"
            entry_id = (await tx.conn.execute(insert(ticket_entries).values(
                ticket_id=ticket_id, kind="reply", role="agent", author_id=agent.id, author_name=agent.name,
                text=text, internal=False, delivery=delivery, created_at=tx.now).returning(ticket_entries.c.id))
            ).scalar_one()
            if ticket.customer_email:
                await tx.conn.execute(insert(outbound_messages).values(
                    ticket_id=ticket_id, to_email=ticket.customer_email, subject=f"Re: [#{ticket_id}] {ticket.subject}",
                    body=text, status="pending", channel="log", created_at=tx.now))
            values: dict[str, Any] = {"updated_at": tx.now}
            if ticket.first_response_at is None:
                values["first_response_at"] = tx.now
            await tx.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**values))
            await self._audit(tx.conn, ticket_id, "reply", agent, tx.now, entry_id=entry_id, delivery=delivery)
            entry = (await tx.conn.execute(select(ticket_entries).where(ticket_entries.c.id == entry_id))).one()
        return entry

    async def note(self, agent: AgentRef, ticket_id: int, text: str) -> Any:
        """An internal note: on the ticket only, never sent to the customer by any path."""
        async with self.chat._tx() as tx:
            await self._ticket(tx.conn, ticket_id)
            entry_id = (await tx.conn.execute(insert(ticket_entries).values(
                ticket_id=ticket_id, kind="note", role="agent", author_id=agent.id, author_name=agent.name,
                text=text, internal=True, created_at=tx.now).returning(ticket_entries.c.id))).scalar_one()
            await tx.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(updated_at=tx.now))
            await self._audit(tx.conn, ticket_id, "note", agent, tx.now, entry_id=entry_id)
            entry = (await tx.conn.execute(select(ticket_entries).where(ticket_entries.c.id == entry_id))).one()
        return entry


RETRY_BATCH = 100  # conversations converted per retry pass; the next pass takes the rest
SWEEP_EVERY = timedelta(seconds=30)  # SLA targets are 15 minutes and up: a breach is recorded within 30 s
AGENT_ACTIONS = ("start", "wait_for_customer", "resolve", "close", "reopen", "de_escalate")
# The fields whose change a status action reports in its ticket.updated event.
WEBHOOK_FIELDS = ("status", "assignee_id", "escalation_level", "merged_into")
STATUSES = frozenset(status.value for status in tickets_domain.Status)
TEAMS = {"technical": "engineering", "billing": "finance", "management": "management", "security": "security"}


def _parse(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _facts(row: Any, resolved_periods: Sequence[sla.Interval] = ()) -> sla.TicketFacts:
    """What the SLA timers of a ticket row depend on. `resolved_periods` (from `resolved_periods`) are the
    stretches it spent resolved before a reopen, which its resolution timer does not count."""
    paused = tuple((_parse(a), _parse(b)) for a, b in (row.paused or []))
    return sla.TicketFacts(
        created_at=as_utc(row.created_at), priority=row.priority, plan=row.plan,
        first_response_at=as_utc(row.first_response_at),
        resolved_at=as_utc(row.resolved_at) if row.status in ("resolved", "closed") else None,
        paused=paused, pending_since=as_utc(row.pending_since) if row.status == "pending_customer" else None,
        resolved_periods=tuple(resolved_periods))


AUDIT_CHUNK = 500  # ticket ids per query: well under the drivers' limits on bound parameters


async def resolved_periods(conn: Any, rows: Sequence[Any]) -> dict[int, tuple[sla.Interval, ...]]:
    """For the ticket rows (with `id`, `created_at`, `priority`) that were resolved and then reopened, the
    stretches they spent resolved, read from the status changes of their audit trail. Tickets never
    reopened are left out (their resolution timer has nothing to skip)."""
    created = {int(r.id): (as_utc(r.created_at), r.priority) for r in rows}
    changes: dict[int, list[tuple[datetime, str]]] = {}
    ids = sorted(created)
    for start in range(0, len(ids), AUDIT_CHUNK):
        found = await conn.execute(
            select(ticket_audit.c.ticket_id, ticket_audit.c.created_at, ticket_audit.c.data)
            .where(ticket_audit.c.action == "status", ticket_audit.c.ticket_id.in_(ids[start:start + AUDIT_CHUNK]))
            .order_by(ticket_audit.c.id))
        for ticket_id, at, data in found.all():
            status = (data or {}).get("to") if isinstance(data, dict) else None
            if status in STATUSES:
                changes.setdefault(int(ticket_id), []).append((as_utc(at), status))
    periods = {}
    for ticket_id, history in changes.items():
        if any(status == "resolved" for _, status in history):
            created_at, priority = created[ticket_id]
            found_periods = sla.TicketFacts.from_history(created_at, priority, history).resolved_periods
            if found_periods:
                periods[ticket_id] = tuple(found_periods)
    return periods


async def training_examples(engine: Any) -> list[Any]:
    """Resolved and closed tickets as labelled examples, with the priority and category agents settled on
    (their corrections included): what `chatsvc train --from-store` learns from."""
    from chatsvc.classifier.labels import Example

    async with engine.connect() as conn:
        rows = (await conn.execute(select(tickets).where(
            tickets.c.status.in_(("resolved", "closed")), tickets.c.merged_into.is_(None)))).all()
        firsts = dict((await conn.execute(
            select(ticket_entries.c.ticket_id, func.min(ticket_entries.c.id))
            .where(ticket_entries.c.kind == "message", ticket_entries.c.internal.is_(False))
            .group_by(ticket_entries.c.ticket_id))).all())
        texts = dict((await conn.execute(select(ticket_entries.c.id, ticket_entries.c.text).where(
            ticket_entries.c.id.in_(list(firsts.values()) or [-1])))).all())
    examples = []
    for row in rows:
        text = (texts.get(firsts.get(row.id)) or row.subject or "").strip()
        if text:
            examples.append(Example(text=text, category=row.category, priority=row.priority, plan=row.plan,
                                    source=f"ticket #{row.id}"))
    return examples


def _entry_from_event(ticket_id: int, row: Any) -> dict[str, Any]:
    kind = {"message": "message", "note": "note", "suggestions": "system", "feedback": "system"}.get(row.kind, "system")
    return {"ticket_id": ticket_id, "kind": kind, "role": row.role, "author_id": row.author_id,
            "author_name": row.author_name, "text": row.text, "internal": bool(row.internal),
            "data": {"event": row.kind, **(row.data or {})} if row.data or kind == "system" else None,
            "source": f"conv:{row.conversation_id}:{row.seq}", "created_at": row.created_at}
