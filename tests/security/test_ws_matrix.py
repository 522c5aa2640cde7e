"""The websocket half of the authorisation matrix (docs/security.md, "Websocket frames"): every frame type
of both endpoints, sent as the visitor, another visitor, the owning agent, another agent, a lead and a
writer, against a real server."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from chatsvc.ws import protocol
from chatsvc.ws.protocol import CloseCode
from tests.security.conftest import Site
from tests.support.server import Client, agent, visitor

ANSWERS = ("ack", "done", "error", "suggestions", "pong", "presence")


async def answer(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    """The frame's answer; for frames that are not answered when they succeed (typing, receipt), a `pong`
    to a ping sent right after. (Few frames: the per-connection rate limit stays out of the way.)"""
    ref = uuid.uuid4().hex[:12]
    silent = frame["type"] in ("typing", "receipt")
    await client.send({**frame, "ref": ref})
    if silent:
        await client.send({"type": "ping", "ref": ref + "-p"})
    got = await client.expect(lambda f: (f["type"] in ANSWERS and f.get("ref") in (ref, ref + "-p"))
                              or (f["type"] == "error" and f["code"] == "rate_limited"), 30)
    assert got.get("code") != "rate_limited", "the test sent too fast"
    if silent and got["ref"] == ref and got["type"] != "error":
        await client.expect(lambda f: f["type"] == "pong" and f.get("ref") == ref + "-p", 30)
    return got


def agent_frames(conv: str, target_agent: str) -> dict[str, dict[str, Any]]:
    """One frame of every agent type that names a conversation."""
    c = uuid.uuid4().hex[:8]
    return {
        "message": {"type": "message", "conversation_id": conv, "client_id": f"m-{c}", "text": f"reply {c}"},
        "note": {"type": "note", "conversation_id": conv, "client_id": f"n-{c}", "text": f"NOTE {c}"},
        "typing": {"type": "typing", "conversation_id": conv, "active": True},
        "receipt": {"type": "receipt", "conversation_id": conv, "seq": 1, "status": "read"},
        "suggest": {"type": "suggest", "conversation_id": conv, "text": "how do I pay dues", "k": 2},
        "decline": {"type": "decline", "conversation_id": conv},
        "accept": {"type": "accept", "conversation_id": conv},
        "take_over": {"type": "take_over", "conversation_id": conv},
        "transfer": {"type": "transfer", "conversation_id": conv, "agent_id": target_agent},
        "convert": {"type": "convert", "conversation_id": conv},
        "end": {"type": "end", "conversation_id": conv},
        "resume": {"type": "resume", "cursors": {conv: 0}},
    }


async def with_agent(site: Site) -> tuple[Client, Client, str]:
    """A visitor chatting with the `agent` member: (visitor, agent, conversation id)."""
    ann, _ = await agent(site.ws, site.members["agent"].token)
    v, welcome = await visitor(site.ws)
    conv = welcome["conversation"]["id"]
    await v.send({"type": "message", "client_id": "q1", "text": "my gate code does not work"})
    await v.expect("ack")
    # Taken over from the bot: whichever agents other tests left online, no offer can go elsewhere.
    assert (await answer(ann, {"type": "take_over", "conversation_id": conv}))["type"] == "done"
    await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined", 30)
    return v, ann, conv


async def closed_with(client: Client) -> int | None:
    try:
        while True:
            await asyncio.wait_for(client.ws.recv(), 15)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_agent_frames_as_every_caller(site: Site) -> None:
    v, ann, conv = await with_agent(site)
    bob, _ = await agent(site.ws, site.members["agent2"].token, presence="away")
    lead, _ = await agent(site.ws, site.members["lead"].token, presence="away")
    frames = agent_frames(conv, site.members["agent2"].id)

    # Another agent: nothing about a conversation it does not own, not even whether it exists.
    refused = {"message": "not_found", "note": "not_found", "typing": "not_found", "receipt": "not_found",
               "suggest": "not_found", "decline": "not_offered", "accept": "already_taken",
               "take_over": "already_taken", "transfer": "not_found", "convert": "not_found", "end": "not_found"}
    for kind, code in refused.items():
        got = await answer(bob, frames[kind])
        assert got["type"] == "error" and got["code"] == code, (kind, got)
    for kind in sorted(set(protocol.VISITOR_TYPES) - set(protocol.AGENT_TYPES)):  # visitor-only frames
        got = await answer(bob, {"type": kind})
        assert got["type"] == "error" and got["code"] == "unknown_type", (kind, got)
    resumed = await answer(bob, frames["resume"])
    assert resumed["type"] == "done"
    assert [f["code"] for f in bob.frames if f["type"] == "error" and f.get("conversation_id") == conv
            and f.get("ref") is None] == ["not_found"]
    assert not [f for f in bob.frames if f["type"] == "event"], "the other agent saw nothing of it"

    # The owner and a lead: every frame works (the lead supervises any conversation).
    for client in (ann, lead):
        fresh = agent_frames(conv, site.members["agent2"].id)
        for kind in ("message", "note", "typing", "receipt", "suggest"):
            got = await answer(client, fresh[kind])
            assert got["type"] != "error", (kind, got)
    got = await answer(lead, frames["resume"])
    assert got["type"] == "done" and any(f["type"] == "event" for f in lead.frames)

    # What the visitor got: the replies of the owner and the lead, none of the notes, none of Bob's.
    await asyncio.sleep(0.3)
    await v.quiet(1.0)
    texts = [f["text"] for f in v.frames if f["type"] == "event" and f["kind"] == "message"]
    assert sum(t.startswith("reply ") for t in texts) == 2
    assert not [f for f in v.frames if f["type"] == "event" and f["kind"] == "note"]
    assert frames["message"]["text"] not in texts

    # The owner ends it; Bob cannot end it for them, nor can he end it afterwards.
    assert (await answer(ann, agent_frames(conv, "")["end"]))["type"] == "done"


async def test_agent_frames_on_the_visitor_endpoint_are_refused(site: Site) -> None:
    v, welcome = await visitor(site.ws)
    conv = welcome["conversation"]["id"]
    for kind, frame in agent_frames(conv, site.members["agent"].id).items():
        got = await answer(v, frame)
        assert got["type"] == "error" and got["code"] in ("unknown_type", "bad_frame"), (kind, got)
    assert set(protocol.AGENT_TYPES) - set(agent_frames(conv, "")) == {"hello", "presence", "ping"}
    got = await answer(v, {"type": "presence", "status": "online"})
    assert got["code"] == "unknown_type"
    again, _ = await visitor(site.ws, token=welcome["token"])
    assert not again.events(), "nothing was stored"


async def test_another_visitor_reaches_nothing_of_the_first(site: Site) -> None:
    v, welcome = await visitor(site.ws, identity={"name": "Dana", "email": "dana@example.com"})
    await v.send({"type": "message", "client_id": "private", "text": "my account number is 1234"})
    await v.expect("ack")
    token = welcome["token"]
    # A token tampered with, one from another site, and a made-up one: each is a new visitor of its own.
    for hello in ({"token": token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")},
                  {"token": token, "site": "no-such-site"}, {"token": "not.a.token"}):
        try:
            other, other_welcome = await visitor(site.ws, **hello)
        except Exception:  # noqa: BLE001 - refusing outright is as good
            continue
        assert other_welcome["conversation"]["id"] != welcome["conversation"]["id"]
        assert other_welcome["visitor_id"] != welcome["visitor_id"]
        # Every visitor frame, sent by the other visitor, acts on its own conversation only.
        for frame in ({"type": "receipt", "seq": 1, "status": "read"}, {"type": "typing", "active": True},
                      {"type": "feedback", "seq": 1, "article_id": "x", "helpful": False},
                      {"type": "csat", "rating": "bad"}, {"type": "leave_email", "email": "x@example.com"},
                      {"type": "end"}, {"type": "message", "client_id": "private", "text": "overwrite?"}):
            await answer(other, frame)
        assert not [f for f in other.frames if "1234" in json.dumps(f)]
    # Claiming the first visitor's identity (unsigned: this server has no identity secret) opens nothing of it.
    claimant, claimed = await visitor(site.ws, identity={"name": "Dana", "email": "dana@example.com"})
    assert claimed["conversation"]["id"] != welcome["conversation"]["id"] and not claimant.events()
    again, _ = await visitor(site.ws, token=token)
    assert [f["text"] for f in again.events("message") if f["role"] == "visitor"] == ["my account number is 1234"]
    assert again.events()[-1]["kind"] != "state" or again.events()[-1]["data"]["to"] != "ended"


async def test_writers_and_unknown_tokens_get_no_agent_socket(site: Site) -> None:
    for token in (site.members["writer"].token, "not-a-token", site.members["agent"].token[:-1]):
        client = await Client.connect(f"{site.ws}/ws/agent", "server_to_agent")
        await client.send({"type": "hello", "token": token, "presence": "online"})
        err = await client.expect("error")
        assert err["code"] == "unauthorized"
        assert await closed_with(client) == CloseCode.UNAUTHORIZED


async def test_the_agent_socket_refuses_other_sites_pages(site: Site) -> None:
    try:
        await websockets.connect(f"{site.ws}/ws/agent", origin="https://evil.example.net")  # type: ignore[arg-type]
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 403
    else:
        raise AssertionError("a page of another site opened an agent socket")
    own = await Client.connect(f"{site.ws}/ws/agent", "server_to_agent", origin=site.http)  # the console
    await own.send({"type": "hello", "token": site.members["agent"].token})
    await own.expect("welcome")
