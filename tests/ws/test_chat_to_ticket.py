"""Conversations become tickets: when nobody takes them, when the visitor leaves an e-mail, when an agent
converts them; at most once, with the whole transcript; later messages go onto the ticket."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from chatsvc.store import db
from chatsvc.store.tables import ticket_audit, ticket_entries, tickets
from tests.support.server import agent, visitor
from tests.ws.conftest import Deployment


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def ticket_rows(database_url: str) -> tuple[list, list, list]:  # type: ignore[type-arg]
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            t = (await conn.execute(select(tickets))).all()
            e = (await conn.execute(select(ticket_entries).order_by(ticket_entries.c.id))).all()
            a = (await conn.execute(select(ticket_audit))).all()
        return t, e, a
    finally:
        await engine.dispose()


async def test_nobody_online_makes_a_ticket_with_the_transcript(live: Deployment) -> None:
    v, welcome = await visitor(live.ws, identity={"name": "Rosa Diaz", "email": "rosa@example.com", "plan": "Pro"})
    await v.send({"type": "message", "client_id": "q", "text": "payment failed when I paid my HOA dues"})
    await v.send({"type": "request_agent"})
    notice = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket")
    number = notice["data"]["ticket_id"]
    assert f"#{number}" in notice["text"] and "rosa@example.com" in notice["text"]
    state = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "state" and f["data"]["to"] == "ticketed")
    assert state["data"]["reason"] == "nobody_online"

    await v.send({"type": "message", "client_id": "later", "text": "I also got charged twice"})
    await v.expect("ack")
    await asyncio.sleep(0.2)
    rows, entries, audit = await ticket_rows(live.database_url)
    assert len(rows) == 1
    t = rows[0]
    assert (t.id, t.status, t.channel, t.customer_email, t.plan) == (number, "new", "chat", "rosa@example.com", "Pro")
    assert t.subject == "Payment failed when I paid my HOA dues"
    assert t.priority == "P1" and t.triage["source"] in ("rule", "model")
    texts = [e.text for e in entries if e.kind == "message"]
    assert texts == ["payment failed when I paid my HOA dues", "I also got charged twice"]
    assert [a.action for a in audit] == ["created"]


async def test_agent_converts_once_even_when_asked_twice(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, welcome = await visitor(live.ws)
    conv = welcome["conversation"]["id"]
    await v.send({"type": "message", "client_id": "q", "text": "the export button is broken"})
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.send({"type": "note", "conversation_id": conv, "client_id": "n", "text": "repro on Safari only"})
    await ann.expect("ack")
    await asyncio.gather(ann.send({"type": "convert", "conversation_id": conv, "ref": "c1"}),
                         ann.send({"type": "convert", "conversation_id": conv, "ref": "c2"}))
    done = [await ann.expect(lambda f: f["type"] in ("done", "error") and f.get("ref") in ("c1", "c2"))
            for _ in range(2)]
    assert {d["type"] for d in done} == {"done"}
    await ann.expect(lambda f: f["type"] == "unassigned" and f["reason"] == "ticketed")
    await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket")
    rows, entries, _ = await ticket_rows(live.database_url)
    assert len(rows) == 1 and rows[0].assignee_id == live.id("Ann")
    notes = [e for e in entries if e.kind == "note"]
    assert len(notes) == 1 and notes[0].internal is True
    assert all("repro on Safari" not in str(f) for f in v.frames)
    assert len([f for f in v.frames if f["type"] == "event" and f["kind"] == "ticket"]) == 1


async def test_leaving_an_email_with_the_bot_makes_a_ticket(live: Deployment) -> None:
    v, _ = await visitor(live.ws)
    await v.send({"type": "message", "client_id": "q", "text": "how do I add a second community?"})
    await v.send({"type": "leave_email", "email": "lee@example.org"})
    notice = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket")
    assert "lee@example.org" in notice["text"]
    rows, _, _ = await ticket_rows(live.database_url)
    assert rows[0].customer_email == "lee@example.org" and rows[0].priority == "P3"


async def test_a_visitor_who_leaves_while_waiting_gets_a_ticket(deploy) -> None:  # type: ignore[no-untyped-def]
    live = deploy(CHATSVC_VISITOR_GRACE="1", CHATSVC_OFFER_TIMEOUT="60")
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, welcome = await visitor(live.ws, identity={"email": "gone@example.com"})
    await v.send({"type": "message", "client_id": "q", "text": "is the pool open today?"})
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    await v.close()  # the tab is closed while waiting
    revoked = await ann.expect("offer_revoked", timeout=15)
    assert revoked["reason"] == "ended"
    back, _ = await visitor(live.ws, token=welcome["token"])
    await back.quiet(0.5)
    states = [f["data"] for f in back.events("state")]
    assert {"from": "waiting", "to": "ticket_pending", "reason": "visitor_left"} in states
    assert any(f["kind"] == "ticket" for f in back.events())


async def test_a_reload_while_waiting_is_not_leaving(deploy) -> None:  # type: ignore[no-untyped-def]
    live = deploy(CHATSVC_VISITOR_GRACE="1", CHATSVC_OFFER_TIMEOUT="60")
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, welcome = await visitor(live.ws)
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    second, _ = await visitor(live.ws, token=welcome["token"])  # another tab stays open
    await v.close()
    await asyncio.sleep(2.0)
    assert [f for f in await second.quiet(0.5) if f.get("kind") == "ticket"] == []


async def test_an_email_left_after_the_ticket_goes_onto_it(live: Deployment) -> None:
    v, _ = await visitor(live.ws)
    await v.send({"type": "message", "client_id": "q", "text": "anyone there?"})
    await v.send({"type": "request_agent"})
    await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket")
    await v.send({"type": "leave_email", "email": "late@example.com", "ref": "mail"})
    await v.expect(lambda f: f["type"] == "done" and f["ref"] == "mail")
    rows, _, _ = await ticket_rows(live.database_url)
    assert rows[0].customer_email == "late@example.com"
