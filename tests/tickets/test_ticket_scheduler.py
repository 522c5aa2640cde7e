"""Auto-close, reminders and SLA breaches under an injected clock, with two services racing as two
processes would: each is acted on exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from chatsvc.broker import create_broker
from chatsvc.live.service import AgentRef, ChatService, ServiceError
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.store.tables import outbound_messages, ticket_audit, tickets
from chatsvc.tickets.service import TicketService

MONDAY_10AM_NY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[Clock, TicketService, TicketService]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    engines = [db.create_engine(url), db.create_engine(url)]
    await db.migrate(engines[0])
    clock = Clock(MONDAY_10AM_NY)
    brokers = [create_broker(None), create_broker(None)]
    for broker in brokers:
        await broker.connect()
    services = [TicketService(ChatService(e, broker, Settings(database_url=url), secret_key="k", clock=clock))
                for e, broker in zip(engines, brokers, strict=True)]
    try:
        yield clock, services[0], services[1]
    finally:
        for e in engines:
            await e.dispose()
        for broker in brokers:
            await broker.disconnect()


AGENT = AgentRef("a1", "Ann", "agent", "online")


async def audit_actions(service: TicketService, ticket_id: int) -> list[str]:
    async with service.engine.connect() as conn:
        return list((await conn.execute(select(ticket_audit.c.action).where(ticket_audit.c.ticket_id == ticket_id)
                                        .order_by(ticket_audit.c.id))).scalars())


async def test_resolved_tickets_close_after_72_hours_once(two_processes) -> None:  # type: ignore[no-untyped-def]
    clock, a, b = two_processes
    ticket_id = await a.create(channel="form", subject="Dues", text="how do I pay dues", customer_name="Kim",
                               customer_email="kim@example.com")
    with pytest.raises(ServiceError) as refused:
        await a.act(AGENT, ticket_id, "resolve")  # a new ticket is assigned before it is worked
    assert refused.value.code == "invalid_transition"
    async with a.engine.begin() as conn:
        await conn.execute(tickets.update().where(tickets.c.id == ticket_id).values(status="open"))
    await a.act(AGENT, ticket_id, "resolve")
    clock.now += timedelta(hours=71)
    await asyncio.gather(a.sweep(), b.sweep())
    row, _ = await a.get(ticket_id)
    assert row.status == "resolved"
    clock.now += timedelta(hours=2)
    await asyncio.gather(a.sweep(), b.sweep())
    row, _ = await a.get(ticket_id)
    assert row.status == "closed"
    assert (await audit_actions(a, ticket_id)).count("status") == 2  # resolve, then one auto_close


async def test_pending_customer_reminder_at_48_hours_once(two_processes) -> None:  # type: ignore[no-untyped-def]
    clock, a, b = two_processes
    ticket_id = await a.create(channel="form", subject=None, text="need a copy of my invoice",
                               customer_name=None, customer_email="pat@example.com")
    async with a.engine.begin() as conn:
        await conn.execute(tickets.update().where(tickets.c.id == ticket_id).values(status="in_progress"))
    await a.act(AGENT, ticket_id, "wait_for_customer")
    clock.now += timedelta(hours=47)
    await asyncio.gather(a.sweep(), b.sweep())
    clock.now += timedelta(hours=2)
    await asyncio.gather(a.sweep(), b.sweep(), a.sweep())
    async with a.engine.connect() as conn:
        sent = (await conn.execute(select(outbound_messages).where(outbound_messages.c.ticket_id == ticket_id))).all()
    assert len(sent) == 1 and sent[0].to_email == "pat@example.com"
    assert (await audit_actions(a, ticket_id)).count("reminder") == 1


async def test_sla_breach_is_recorded_once_and_shown(two_processes) -> None:  # type: ignore[no-untyped-def]
    clock, a, b = two_processes
    ticket_id = await a.create(channel="agent", subject="Site down", text="the portal is down", customer_name="Al",
                               customer_email=None, priority="P1")
    row, _ = await a.get(ticket_id)
    assert a.sla_view(row, clock.now)["sla"]["first_response"]["state"] == "ok"
    clock.now += timedelta(minutes=12)
    assert a.sla_view(row, clock.now)["sla"]["first_response"]["state"] == "approaching"
    clock.now += timedelta(minutes=5)
    assert a.sla_view(row, clock.now)["sla"]["first_response"]["state"] == "breached"
    await asyncio.gather(a.sweep(), b.sweep(), a.sweep(), b.sweep())
    actions = await audit_actions(a, ticket_id)
    assert actions.count("sla_breached") == 1
    row, _ = await a.get(ticket_id)
    assert row.first_response_breached_at is not None and row.resolution_breached_at is None
