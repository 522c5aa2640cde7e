"""A ticket resolved for a while and then reopened: its resolution timer does not count the time it spent
resolved (the stretches are read from the ticket's audit trail), in the API's view, the queue, the sweep
that records breaches and the metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chatsvc.broker import create_broker
from chatsvc.live.service import AgentRef, ChatService
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.tickets.metrics import Period, compute_metrics
from chatsvc.tickets.service import TicketService
from tests.tickets.test_ticket_scheduler import Clock, audit_actions

NEW_YORK = ZoneInfo("America/New_York")


def ny(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=NEW_YORK).astimezone(UTC)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[tuple[Clock, TicketService, AgentRef]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    engine = db.create_engine(url)
    await db.migrate(engine)
    broker = create_broker(None)
    await broker.connect()
    clock = Clock(ny(2026, 3, 2, 10))  # a Monday, 10:00 in New York
    chat = ChatService(engine, broker, Settings(database_url=url), secret_key="k", clock=clock)
    agent_id, _ = await chat.create_agent("Ann", "ann@example.com", "agent")
    try:
        yield clock, TicketService(chat), AgentRef(agent_id, "Ann", "agent", "online")
    finally:
        await engine.dispose()
        await broker.disconnect()


def due(view: dict) -> datetime:
    return datetime.fromisoformat(view["sla"]["resolution"]["due"].replace("Z", "+00:00"))


async def test_time_spent_resolved_before_a_reopen_is_not_counted(desk) -> None:  # type: ignore[no-untyped-def]
    clock, service, ann = desk
    # P2 (lotwize): resolution within 24 business hours, 9:00-18:00 New York, Monday to Friday.
    ticket_id = await service.create(channel="agent", subject="Export broken", text="the CSV export fails",
                                     customer_name="Kim", customer_email="kim@example.com", priority="P2")
    await service.assign(ann, ticket_id, ann.id)
    clock.now = ny(2026, 3, 2, 10, 30)
    await service.reply(ann, ticket_id, "Looking into it.")
    clock.now = ny(2026, 3, 2, 12)  # two business hours used
    await service.act(ann, ticket_id, "resolve")

    # A week later (across the change to daylight saving time on 8 March) the customer says it still fails.
    clock.now = ny(2026, 3, 9, 12)
    await service.act(ann, ticket_id, "reopen")
    row, _ = await service.get(ticket_id)
    reopened = await service.resolved_periods([row])
    assert reopened == {ticket_id: ((ny(2026, 3, 2, 12), ny(2026, 3, 9, 12)),)}

    # 22 business hours were left: Monday 12:00-18:00, Tuesday, then Wednesday 9:00-16:00.
    view = service.sla_view(row, clock.now, reopened[ticket_id])
    assert view["sla"]["resolution"]["state"] == "ok"
    assert due(view) == ny(2026, 3, 11, 16)
    # Counting the resolved week would have put it past due on Wednesday 4 March.
    assert due(service.sla_view(row, clock.now)) == ny(2026, 3, 4, 16)
    assert service.sla_view(row, clock.now)["sla"]["resolution"]["state"] == "breached"

    # The queue shows the same, and the sweep records no breach ...
    items, _ = await service.list(status=None, priority=None, assignee=None, text=None, sort="sla", limit=10,
                                  offset=0)
    assert [(i["id"], i["sla"]["resolution"]["state"], i["sla"]["resolution"]["due"]) for i in items] == [
        (ticket_id, "ok", view["sla"]["resolution"]["due"])]
    await service.sweep()
    assert "sla_breached" not in await audit_actions(service, ticket_id)
    week = Period(start=ny(2026, 3, 2, 0), end=ny(2026, 3, 10, 0), group="day", zone=NEW_YORK)
    metrics = await compute_metrics(service.engine, week, clock.now)
    assert metrics["backlog"]["breached"] == 0
    assert metrics["sla"]["resolution"]["breached"] == 0

    # ... until the remaining hours are really used up.
    clock.now = ny(2026, 3, 11, 16, 1)
    await service.sweep()
    row, _ = await service.get(ticket_id)
    assert row.resolution_breached_at is not None
    assert (await audit_actions(service, ticket_id)).count("sla_breached") == 1
