"""Bad input gets a documented error frame or close code, recoverable errors leave the socket usable,
and nothing already stored is lost or altered."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chatsvc.live.identity import sign_identity
from chatsvc.ws.protocol import CloseCode
from tests.support.rawws import RawWebSocket
from tests.support.server import Client, agent, visitor
from tests.ws.conftest import DeployFactory, Deployment


async def closed_with(client: Client, timeout: float = 10.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            client.frames.append(json.loads(await asyncio.wait_for(client.ws.recv(), timeout)))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_recoverable_errors_leave_the_connection_usable(live: Deployment) -> None:
    v, welcome = await visitor(live.ws)
    await v.send({"type": "message", "client_id": "keep", "text": "stored before the noise"})
    await v.expect("ack")
    cases = [
        ("{not json", "bad_json"),
        (json.dumps([1, 2]), "bad_frame"),
        (json.dumps({"type": "launch_missiles"}), "unknown_type"),
        (json.dumps({"type": "message", "text": "no client id"}), "bad_frame"),
        (json.dumps({"type": "message", "client_id": "x", "text": "hi", "extra": 1}), "bad_frame"),
        (json.dumps({"type": "message", "client_id": "", "text": "empty id"}), "bad_frame"),
        (json.dumps({"type": "message", "client_id": "e", "text": "   "}), "empty"),
        (json.dumps({"type": "message", "client_id": "l", "text": "x" * 4001}), "too_long"),
        (json.dumps({"type": "receipt", "seq": -1, "status": "read"}), "bad_frame"),
        (json.dumps({"type": "leave_email", "email": "not-an-email"}), "bad_frame"),
        (json.dumps({"type": "hello"}), "bad_frame"),
        (json.dumps({"type": 7}), "bad_frame"),
    ]
    for raw, code in cases:
        await v.ws.send(raw)
        err = await v.expect("error")
        assert err["code"] == code, raw
    await v.send({"type": "ping", "ref": "still-alive"})
    assert (await v.expect("pong"))["ref"] == "still-alive"
    await v.close()
    again, _ = await visitor(live.ws, token=welcome["token"])
    texts = [f["text"] for f in again.events("message")]
    assert texts == ["stored before the noise"]


async def test_error_frames_echo_the_ref(live: Deployment) -> None:
    v, _ = await visitor(live.ws)
    await v.send({"type": "message", "client_id": "x", "text": " ", "ref": "my-ref"})
    err = await v.expect("error")
    assert err["ref"] == "my-ref" and err["code"] == "empty"


async def test_binary_frames_close_with_1003(live: Deployment) -> None:
    v, _ = await visitor(live.ws)
    await v.ws.send(b"\x00\x01binary")
    assert await closed_with(v) == CloseCode.UNSUPPORTED_DATA


async def test_oversize_frames_close_with_1009(live: Deployment) -> None:
    v, _ = await visitor(live.ws)
    await v.ws.send(json.dumps({"type": "message", "client_id": "big", "text": "x" * 20000}))
    assert await closed_with(v) == CloseCode.MESSAGE_TOO_BIG


async def test_first_frame_must_be_hello(live: Deployment) -> None:
    client = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor")
    await client.send({"type": "message", "client_id": "a", "text": "hi"})
    err = await client.expect("error")
    assert err["code"] == "hello_required"
    assert await closed_with(client) == CloseCode.HELLO_REQUIRED


async def test_unknown_agent_token_is_refused(live: Deployment) -> None:
    client = await Client.connect(f"{live.ws}/ws/agent", "server_to_agent")
    await client.send({"type": "hello", "token": "not-a-token"})
    err = await client.expect("error")
    assert err["code"] == "unauthorized"
    assert await closed_with(client) == CloseCode.UNAUTHORIZED


async def test_floods_are_refused_then_closed(live: Deployment) -> None:
    v, welcome = await visitor(live.ws)
    await v.send({"type": "message", "client_id": "before", "text": "before the flood"})
    await v.expect("ack")
    for i in range(200):
        try:
            await v.send({"type": "ping", "ref": str(i)})
        except ConnectionClosed:
            break
    code = await closed_with(v)
    assert code == CloseCode.FLOOD
    limited = [f for f in v.frames if f["type"] == "error" and f["code"] == "rate_limited"]
    assert limited, "the client was told before it was closed"
    again, _ = await visitor(live.ws, token=welcome["token"])
    assert [f["text"] for f in again.events("message")] == ["before the flood"]


async def test_origins_outside_the_allowlist_are_refused(deploy: DeployFactory) -> None:
    live = deploy(CHATSVC_ALLOWED_ORIGINS="https://shop.example.com")
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(f"{live.ws}/ws/visitor", origin="https://evil.example.net")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    ok = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor", origin="https://shop.example.com")
    await ok.send({"type": "hello"})
    assert (await ok.expect("welcome"))["conversation"]["state"] == "bot"


async def test_default_allowlist_is_the_servers_own_origin(live: Deployment) -> None:
    with pytest.raises(InvalidStatus):
        await websockets.connect(f"{live.ws}/ws/visitor", origin="https://evil.example.net")  # type: ignore[arg-type]
    own = live.server.http
    ok = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor", origin=own)
    await ok.send({"type": "hello"})
    await ok.expect("welcome")


IDENTITY = {"name": "Dana Reyes", "email": "dana@example.com", "plan": "Pro"}


async def test_signed_identity_is_verified_and_enforced(deploy: DeployFactory) -> None:
    live = deploy(CHATSVC_IDENTITY_SECRET="s3cret", CHATSVC_IDENTITY_REQUIRED="1")
    good = sign_identity("s3cret", IDENTITY)
    v, welcome = await visitor(live.ws, identity=IDENTITY, identity_sig=good)
    assert welcome["conversation"]["visitor"]["email"] == "dana@example.com"
    assert welcome["conversation"]["visitor"]["plan"] == "Pro"

    for sig in (None, sign_identity("wrong", IDENTITY), good[:-2] + "00"):
        client = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor")
        await client.send({"type": "hello", "identity": IDENTITY, "identity_sig": sig})
        err = await client.expect("error")
        assert err["code"] == "identity_invalid"
        assert await closed_with(client) == CloseCode.UNAUTHORIZED
    # A tampered field breaks the signature.
    client = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor")
    await client.send({"type": "hello", "identity": {**IDENTITY, "plan": "Starter"}, "identity_sig": good})
    assert (await client.expect("error"))["code"] == "identity_invalid"


async def test_unsigned_identity_is_accepted_when_not_enforced_but_a_bad_signature_never(live: Deployment) -> None:
    v, welcome = await visitor(live.ws, identity=IDENTITY)
    assert welcome["conversation"]["visitor"]["name"] == "Dana Reyes"
    client = await Client.connect(f"{live.ws}/ws/visitor", "server_to_visitor")
    await client.send({"type": "hello", "identity": IDENTITY, "identity_sig": "00" * 32})
    assert (await client.expect("error"))["code"] == "identity_invalid"


async def test_a_slow_consumer_is_closed_with_4008_and_resumes(deploy: DeployFactory) -> None:
    live = deploy(CHATSVC_SUBSCRIBER_QUEUE="16", CHATSVC_RATE_PER_SECOND="100000", CHATSVC_RATE_BURST="100000",
                  CHATSVC_MAX_MESSAGE_CHARS="15000",
                  # The raw client answers no keep-alive pings; on a slow machine those would close it first.
                  CHATSVC_PING_INTERVAL="600")
    ann, _ = await agent(live.ws, live.token("Ann"))
    # A visitor that stops reading altogether: its socket buffers fill, then the server's bounded queue.
    slow = RawWebSocket(live.server.port, "/ws/visitor")
    slow.send_text(json.dumps({"type": "hello"}))
    conv = slow.read_until(rb'"conversation":\{"id":"([^"]+)"').group(1).decode()
    token = slow.read_until(rb'"token":"([^"]+)"').group(1).decode()
    slow.send_text(json.dumps({"type": "request_agent"}))
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    # More than the server's socket buffers hold (Linux caps a send buffer at 4 MiB by default).
    text = "y" * 15000
    closed = False
    # Ann sends a few at a time and reads her acks, so that only the visitor is the slow consumer.
    for start in range(0, 700, 4):
        window = {f"flood{i}" for i in range(start, start + 4)}
        for client_id in sorted(window):
            await ann.send({"type": "message", "conversation_id": conv, "client_id": client_id, "text": text})
        while window:
            ack = await ann.expect(lambda f, w=window: f["type"] == "ack" and f["client_id"] in w, timeout=60)
            window.discard(ack["client_id"])
    frames = await asyncio.to_thread(slow.read_all_frames)
    slow.close()
    close_frames = [payload for opcode, payload in frames if opcode == 0x8]
    assert close_frames, "the server closed the connection with a close frame"
    assert int.from_bytes(close_frames[-1][:2], "big") == CloseCode.SLOW_CONSUMER
    closed = True
    # It resumes from the database with nothing lost and nothing doubled.
    again, _ = await visitor(live.ws, token=token, last_seq=0, timeout=60)
    await again.quiet(1.0)
    got = [f["client_id"] for f in again.events("message") if f["role"] == "agent"]
    acked = {f["client_id"] for f in ann.frames if f["type"] == "ack"}
    assert closed and acked and acked <= set(got)
    assert len(got) == len(set(got))
