"""Two server processes sharing PostgreSQL and Redis carry one conversation across them."""

from __future__ import annotations

import pytest

from tests.support.server import agent, visitor
from tests.ws.conftest import DeployFactory


@pytest.fixture
def backend() -> str:
    return "postgres"


async def open_chat(visitor_ws: str, agent_ws: str, token: str):  # type: ignore[no-untyped-def]
    ann, _ = await agent(agent_ws, token)
    v, welcome = await visitor(visitor_ws)
    conv = welcome["conversation"]["id"]
    await v.send({"type": "message", "client_id": "q", "text": "Can't log in to the portal"})
    await v.expect("ack")
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined")
    return v, welcome, ann, conv


async def test_visitor_on_one_process_agent_on_the_other_both_ways(deploy: DeployFactory) -> None:
    a = deploy()
    b = deploy()
    v, _, ann, conv = await open_chat(a.ws, b.ws, a.token("Ann"))
    for i in range(10):
        await v.send({"type": "message", "client_id": f"v{i}", "text": f"visitor {i}"})
        await ann.send({"type": "message", "conversation_id": conv, "client_id": f"a{i}", "text": f"agent {i}"})
    for i in range(10):
        await ann.expect(lambda f, i=i: f["type"] == "event" and f.get("text") == f"visitor {i}")
        await v.expect(lambda f, i=i: f["type"] == "event" and f.get("text") == f"agent {i}")
    await ann.send({"type": "typing", "conversation_id": conv, "active": True})
    assert (await v.expect("typing"))["name"] == "Ann"
    for client in (v, ann):
        seqs = [f["seq"] for f in client.events()]
        assert seqs == sorted(set(seqs)), "in order, no duplicates"


async def test_kill_9_of_the_visitors_process_then_resume_on_the_other(deploy: DeployFactory) -> None:
    a = deploy()
    b = deploy()
    v, welcome, ann, conv = await open_chat(a.ws, b.ws, a.token("Ann"))
    await ann.send({"type": "message", "conversation_id": conv, "client_id": "before", "text": "before the crash"})
    await v.expect(lambda f: f["type"] == "event" and f.get("text") == "before the crash")
    last_seen = max(f["seq"] for f in v.events())

    a.server.kill()
    # While the visitor is away the agent keeps writing (its process is alive).
    for i in range(5):
        await ann.send({"type": "message", "conversation_id": conv, "client_id": f"gap{i}", "text": f"gap {i}"})
        await ann.expect(lambda f, i=i: f["type"] == "ack" and f["client_id"] == f"gap{i}")

    v2, welcome2 = await visitor(b.ws, token=welcome["token"], last_seq=last_seen)
    assert welcome2["conversation"]["id"] == conv
    # The visitor's unacknowledged send is retried with the same client id after the reconnect.
    await v2.send({"type": "message", "client_id": "after", "text": "are you there?"})
    await v2.send({"type": "message", "client_id": "after", "text": "are you there?"})
    acks = [await v2.expect("ack"), await v2.expect("ack")]
    assert sorted(a["duplicate"] for a in acks) == [False, True]
    got = await ann.expect(lambda f: f["type"] == "event" and f.get("client_id") == "after")
    assert got["text"] == "are you there?"
    await v2.quiet(0.5)
    texts = [f["text"] for f in v2.events("message") if f["role"] == "agent"]
    assert texts == [f"gap {i}" for i in range(5)], "exactly what was missed, in order, once"
    assert [f["client_id"] for f in ann.events("message")].count("after") == 1


async def test_agent_killed_with_its_process_gets_its_chats_reoffered(deploy: DeployFactory) -> None:
    a = deploy()
    b = deploy()
    v, _, ann, conv = await open_chat(b.ws, a.ws, a.token("Ann"))
    bob, _ = await agent(b.ws, a.token("Bob"))
    a.server.kill()  # Ann's process dies; she does not come back within the grace period
    offer = await bob.expect("offer", timeout=20)
    assert offer["offer"]["conversation_id"] == conv
    left = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_left", timeout=5)
    assert left["data"]["reason"] == "disconnected"
    await bob.send({"type": "accept", "conversation_id": conv})
    await bob.expect("assigned")
    await bob.send({"type": "message", "conversation_id": conv, "client_id": "b", "text": "Bob took over"})
    await v.expect(lambda f: f["type"] == "event" and f.get("text") == "Bob took over")
