"""A visitor and agents over real websockets against a real server on SQLite."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.server import Client, agent, visitor
from tests.ws.conftest import Deployment


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite with the in-process broker and on PostgreSQL with Redis."""
    return str(request.param)


def cid() -> str:
    return uuid.uuid4().hex


async def ask_for_agent(live: Deployment, text: str = "My payment failed twice"):  # type: ignore[no-untyped-def]
    v, welcome = await visitor(live.ws)
    await v.send({"type": "message", "client_id": cid(), "text": text})
    await v.expect("ack")
    await v.send({"type": "request_agent", "ref": "r1"})
    await v.expect(lambda f: f["type"] == "done" and f["ref"] == "r1")
    return v, welcome


async def test_full_exchange_visitor_and_agent(live: Deployment) -> None:
    ann, welcome = await agent(live.ws, live.token("Ann"))
    assert welcome["agent"]["name"] == "Ann" and welcome["conversations"] == []
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]

    offer = await ann.expect("offer")
    assert offer["offer"]["conversation_id"] == conv
    assert offer["offer"]["first_question"] == "My payment failed twice"
    await ann.send({"type": "accept", "conversation_id": conv, "ref": "a1"})
    assigned = await ann.expect("assigned")
    assert assigned["conversation"]["state"] == "with_agent"
    # The agent is sent the transcript so far.
    first = await ann.expect(lambda f: f["type"] == "event" and f["kind"] == "message")
    assert first["text"] == "My payment failed twice" and first["role"] == "visitor"

    joined = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined")
    assert joined["author"]["name"] == "Ann"

    await ann.send({"type": "typing", "conversation_id": conv, "active": True})
    typing = await v.expect("typing")
    assert typing == {"type": "typing", "conversation_id": conv, "role": "agent", "name": "Ann", "active": True}

    await ann.send({"type": "message", "conversation_id": conv, "client_id": "m-1", "text": "Hi, I'm on it"})
    ack = await ann.expect("ack")
    reply = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "message" and f["role"] == "agent")
    assert reply["text"] == "Hi, I'm on it" and reply["seq"] == ack["seq"]

    await v.send({"type": "receipt", "seq": reply["seq"], "status": "read"})
    receipt = await ann.expect("receipt")
    assert receipt["role"] == "visitor" and receipt["seq"] == reply["seq"]

    await v.send({"type": "message", "client_id": cid(), "text": "thanks!"})
    got = await ann.expect(lambda f: f["type"] == "event" and f.get("text") == "thanks!")
    assert got["role"] == "visitor"

    await ann.send({"type": "end", "conversation_id": conv, "resolution": "solved"})
    ended = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "state" and f["data"]["to"] == "ended")
    assert ended["data"]["reason"] == "solved"
    await ann.expect(lambda f: f["type"] == "unassigned" and f["reason"] == "ended")
    # Sequence numbers the visitor saw are strictly increasing with no duplicates.
    seqs = [f["seq"] for f in v.events()]
    assert seqs == sorted(set(seqs))
    await v.close()
    await ann.close()


async def test_reload_resumes_the_same_conversation(live: Deployment) -> None:
    v, welcome = await visitor(live.ws)
    for i in range(3):
        await v.send({"type": "message", "client_id": f"c{i}", "text": f"message {i}"})
        await v.expect("ack")
    await v.close()

    # A reload with the token and the last seen sequence number: only what was missed comes back.
    v2, welcome2 = await visitor(live.ws, token=welcome["token"], last_seq=1)
    assert welcome2["conversation"]["id"] == welcome["conversation"]["id"]
    assert welcome2["visitor_id"] == welcome["visitor_id"]
    replayed = [f for f in v2.frames if f["type"] == "event"]
    assert [f["seq"] for f in replayed] == [2, 3]

    # A retried send with the same client id is acknowledged again, not stored twice.
    await v2.send({"type": "message", "client_id": "c2", "text": "message 2"})
    ack = await v2.expect("ack")
    assert ack["duplicate"] is True and ack["seq"] == 3
    assert [f for f in await v2.quiet(0.3) if f["type"] == "event" and f["seq"] > 3] == []
    await v2.close()

    # A token from a forged or foreign source starts a new visitor rather than opening someone else's chat.
    v3, welcome3 = await visitor(live.ws, token=welcome["token"] + "x")
    assert welcome3["conversation"]["id"] != welcome["conversation"]["id"]
    await v3.close()


async def test_resync_error_when_the_client_is_ahead(live: Deployment) -> None:
    v, welcome = await visitor(live.ws)
    await v.close()
    client = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor")
    await client.send({"type": "hello", "token": welcome["token"], "last_seq": 99})
    err = await client.expect("error")
    assert err["code"] == "resync_required"
    again = await client.expect("welcome")
    assert again["conversation"]["id"] == welcome["conversation"]["id"]
    await client.close()


async def test_accept_race_has_exactly_one_winner(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    bob, _ = await agent(live.ws, live.token("Bob"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    await asyncio.gather(
        ann.send({"type": "accept", "conversation_id": conv, "ref": "ann"}),
        bob.send({"type": "accept", "conversation_id": conv, "ref": "bob"}),
    )
    outcomes = []
    for client in (ann, bob):
        frame = await client.expect(lambda f: f["type"] in ("done", "error") and f.get("ref") in ("ann", "bob"))
        outcomes.append(frame)
    winners = [f for f in outcomes if f["type"] == "done"]
    losers = [f for f in outcomes if f["type"] == "error"]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0]["code"] == "already_taken"
    joined = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined")
    assert joined["author"]["name"] == ("Ann" if winners[0]["ref"] == "ann" else "Bob")
    assert len([f for f in await v.quiet(0.3) if f.get("kind") == "agent_joined"]) == 0


async def test_decline_passes_the_offer_to_the_next_agent(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    bob, _ = await agent(live.ws, live.token("Bob"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    first_client = None
    for client in (ann, bob):
        try:
            await client.expect("offer", timeout=1.0)
            first_client = client
            break
        except TimeoutError:
            continue
    assert first_client is not None
    second_client = bob if first_client is ann else ann
    await first_client.send({"type": "decline", "conversation_id": conv, "ref": "d"})
    revoked = await first_client.expect("offer_revoked")
    assert revoked["reason"] == "declined"
    offer = await second_client.expect("offer")
    assert offer["offer"]["conversation_id"] == conv
    await second_client.send({"type": "accept", "conversation_id": conv})
    await second_client.expect("assigned")
    await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined")
    # Declining what was not offered is a clear error.
    await first_client.send({"type": "decline", "conversation_id": conv, "ref": "again"})
    err = await first_client.expect("error")
    assert err["code"] == "not_offered" and err["ref"] == "again"


async def test_offer_timeout_moves_on_then_hands_to_tickets(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    await ann.expect("offer")
    revoked = await ann.expect("offer_revoked", timeout=10)
    assert revoked["reason"] == "expired"
    # Nobody else is online: the conversation is handed to ticket conversion.
    state = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "state"
                           and f["data"]["to"] == "ticket_pending", timeout=10)
    assert state["data"]["reason"] == "no_agent_accepted"
    assert state["conversation_id"] == conv


async def test_nobody_online_goes_straight_to_ticket_pending_with_email(live: Deployment) -> None:
    v, welcome = await visitor(live.ws)
    await v.send({"type": "message", "client_id": cid(), "text": "hello?"})
    await v.send({"type": "request_agent", "email": "sam@example.com"})
    state = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "state"
                           and f["data"]["to"] == "ticket_pending")
    assert state["data"]["reason"] == "nobody_online"
    # The visitor can keep writing.
    await v.send({"type": "message", "client_id": cid(), "text": "still here"})
    assert (await v.expect("ack"))["duplicate"] is False
    await v.close()
    # A reload shows the e-mail the visitor left in this conversation, the same token and the same chat.
    v2, again = await visitor(live.ws, token=welcome["token"], last_seq=0)
    assert again["token"] == welcome["token"]
    assert again["conversation"]["id"] == welcome["conversation"]["id"]
    assert again["conversation"]["state"] in ("ticket_pending", "ticketed")
    assert again["conversation"]["visitor"]["email"] == "sam@example.com"
    await v2.close()


async def test_internal_notes_never_reach_the_visitor(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.send({"type": "note", "conversation_id": conv, "client_id": "n1", "text": "SECRET refund > $500"})
    note_ack = await ann.expect("ack")
    await ann.expect(lambda f: f["type"] == "event" and f["kind"] == "note")
    await ann.send({"type": "message", "conversation_id": conv, "client_id": "m1", "text": "public reply"})
    await v.expect(lambda f: f["type"] == "event" and f.get("text") == "public reply")
    assert all("SECRET" not in str(f) for f in v.frames)
    await v.close()
    # Nor on resume from before the note.
    v2, _ = await visitor(live.ws, token=vw["token"], last_seq=0)
    await v2.quiet(0.2)
    assert all("SECRET" not in str(f) for f in v2.frames)
    assert note_ack["seq"] not in [f["seq"] for f in v2.events()]


async def test_agent_resumes_after_a_drop_without_gaps_or_duplicates(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.expect(lambda f: f["type"] == "replayed" and f["conversation_id"] == conv)
    last = max(f["seq"] for f in ann.events())
    await ann.close()
    for i in range(5):
        await v.send({"type": "message", "client_id": f"off{i}", "text": f"while away {i}"})
        await v.expect("ack")
    ann2, welcome = await agent(live.ws, live.token("Ann"), cursors={conv: last})
    assert [c["id"] for c in welcome["conversations"]] == [conv]
    await ann2.expect(lambda f: f["type"] == "replayed" and f["conversation_id"] == conv)
    texts = [f["text"] for f in ann2.events("message")]
    assert texts == [f"while away {i}" for i in range(5)]


async def test_agents_cannot_touch_conversations_they_do_not_own(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    bob, _ = await agent(live.ws, live.token("Bob"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    offered = None
    for client in (ann, bob):
        try:
            await client.expect("offer", timeout=1.0)
            offered = client
            break
        except TimeoutError:
            continue
    assert offered is not None
    other = bob if offered is ann else ann
    await offered.send({"type": "accept", "conversation_id": conv})
    await offered.expect("assigned")
    for frame in (
        {"type": "message", "conversation_id": conv, "client_id": "x", "text": "hijack"},
        {"type": "note", "conversation_id": conv, "client_id": "y", "text": "peek"},
        {"type": "end", "conversation_id": conv},
        {"type": "typing", "conversation_id": conv, "active": True},
        {"type": "message", "conversation_id": "no-such-id", "client_id": "z", "text": "?"},
    ):
        await other.send({**frame, "ref": "bad"})
        err = await other.expect("error")
        assert err["code"] == "not_found", frame
    assert all("hijack" not in str(f) for f in await v.quiet(0.3))


async def test_lead_can_transfer_and_visitor_sees_it(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, vw = await ask_for_agent(live)
    conv = vw["conversation"]["id"]
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    bob, _ = await agent(live.ws, live.token("Bob"))
    await ann.send({"type": "transfer", "conversation_id": conv, "agent_id": live.id("Bob")})
    await ann.expect(lambda f: f["type"] == "unassigned" and f["reason"] == "transferred")
    assigned = await bob.expect("assigned")
    assert assigned["reason"] == "transfer"
    notice = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "transferred")
    assert notice["data"]["to"]["name"] == "Bob"
    await bob.send({"type": "message", "conversation_id": conv, "client_id": "b1", "text": "Bob here"})
    await v.expect(lambda f: f["type"] == "event" and f.get("text") == "Bob here")
