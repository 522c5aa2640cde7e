"""Rate and size limits against a real server (docs/security.md, "Limits"). Clients come from their own
loopback addresses (127.0.0.2, 127.0.0.3, ...): to the server they are different machines, and 127.0.0.1
is exempt from the per-address limits by default."""

from __future__ import annotations

import uuid

import httpx
import pytest
import websockets

from tests.security.conftest import STRICT_LIMITS, Site
from tests.support.server import Client

CONNECTS = int(STRICT_LIMITS["CHATSVC_CONNECT_RATE"])
PER_VISITOR = int(STRICT_LIMITS["CHATSVC_VISITOR_MESSAGE_RATE"])
PER_ADDRESS = int(STRICT_LIMITS["CHATSVC_IP_MESSAGE_RATE"])
CONTACT = int(STRICT_LIMITS["CHATSVC_CONTACT_RATE"])


def http_from(site: Site, address: str) -> httpx.Client:
    return httpx.Client(base_url=site.http, timeout=30, transport=httpx.HTTPTransport(local_address=address))


async def open_visitor(site: Site, address: str, token: str | None = None) -> tuple[Client, dict]:
    client = await Client.connect(f"{site.ws}/ws/visitor", "server_to_visitor", local_addr=(address, 0))
    await client.send({"type": "hello", "token": token})
    welcome = await client.expect("welcome")
    await client.expect("replayed")
    return client, welcome


async def send(client: Client, text: str) -> dict:
    client_id = uuid.uuid4().hex[:10]
    await client.send({"type": "message", "client_id": client_id, "text": text, "ref": client_id})
    return await client.expect(lambda f: f.get("ref") == client_id and f["type"] in ("ack", "error"))


async def test_connections_per_address(strict: Site) -> None:
    for _ in range(CONNECTS):
        await Client.connect(f"{strict.ws}/ws/visitor", "server_to_visitor", local_addr=("127.0.0.2", 0))
    for endpoint in ("visitor", "agent"):  # one budget for both endpoints
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{strict.ws}/ws/{endpoint}", local_addr=("127.0.0.2", 0))
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["retry-after"]) >= 1
    # Another address has a budget of its own; the exempt one (127.0.0.1) has none.
    await Client.connect(f"{strict.ws}/ws/visitor", "server_to_visitor", local_addr=("127.0.0.3", 0))
    for _ in range(CONNECTS + 2):
        await Client.connect(f"{strict.ws}/ws/visitor", "server_to_visitor")


async def test_messages_per_visitor_over_all_their_tabs(strict: Site) -> None:
    first, welcome = await open_visitor(strict, "127.0.0.7")
    second, _ = await open_visitor(strict, "127.0.0.7", welcome["token"])
    answers = [await send(tab, f"message {i}") for i, tab in enumerate([first, second] * PER_VISITOR)]
    acked = [a for a in answers if a["type"] == "ack"]
    refused = [a for a in answers if a["type"] == "error"]
    assert len(acked) == PER_VISITOR
    assert refused and all(a["code"] == "rate_limited" and a["retryable"] for a in refused)
    # Someone else is not slowed down by it, and nothing refused was stored.
    other, _ = await open_visitor(strict, "127.0.0.7")
    assert (await send(other, "hello"))["type"] == "ack"
    again, _ = await open_visitor(strict, "127.0.0.7", welcome["token"])
    assert len(again.events("message")) == PER_VISITOR
    # A trusted address (127.0.0.1: exempt by default) is not limited at all.
    exempt, _ = await open_visitor(strict, "127.0.0.1")
    assert all([(await send(exempt, f"m{i}"))["type"] == "ack" for i in range(PER_VISITOR + 2)])


async def test_messages_per_address_over_all_visitors(strict: Site) -> None:
    visitors = [(await open_visitor(strict, "127.0.0.4"))[0] for _ in range(3)]
    answers = [await send(v, f"from a shared address {i}") for i in range(3) for v in visitors]
    assert [a["type"] for a in answers].count("ack") == PER_ADDRESS
    assert [a["code"] for a in answers if a["type"] == "error"] == ["rate_limited"] * (9 - PER_ADDRESS)


def test_contact_form_per_address(strict: Site) -> None:
    form = {"email": "kim@example.com", "message": "my payment failed", "name": "Kim"}
    with http_from(strict, "127.0.0.5") as client:
        statuses = [client.post("/api/v1/contact", json=form).status_code for _ in range(CONTACT + 1)]
        assert statuses == [201] * CONTACT + [429]
        assert client.post("/api/v1/contact", json=form).json()["error"]["code"] == "rate_limited"
    with http_from(strict, "127.0.0.6") as client:
        assert client.post("/api/v1/contact", json=form).status_code == 201
    # Behind a proxy on this machine (127.0.0.1, trusted by uvicorn's FORWARDED_ALLOW_IPS), the forwarded
    # client address is the one limited.
    with httpx.Client(base_url=strict.http, timeout=30) as client:
        forwarded = {"X-Forwarded-For": "203.0.113.50"}
        statuses = [client.post("/api/v1/contact", json=form, headers=forwarded).status_code
                    for _ in range(CONTACT + 1)]
        assert statuses == [201] * CONTACT + [429]
        assert client.post("/api/v1/contact", json=form).status_code == 201  # the proxy itself is exempt


def test_request_bodies_are_capped_everywhere(strict: Site) -> None:
    big = b"x" * 1_100_000
    with httpx.Client(base_url=strict.http, timeout=60) as client:
        for method, path in (("POST", "/api/v1/contact"), ("POST", "/csat/anything"),
                             ("POST", "/console/login"), ("POST", "/api/v1/tickets")):
            got = client.request(method, path, content=big, headers={"Content-Type": "application/json"})
            assert got.status_code == 413, (path, got.status_code)

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b"y" * 60_000

        got = client.post("/api/v1/contact", content=chunks(), headers={"Content-Type": "application/json"})
        assert got.status_code == 413
        assert client.get("/healthz").status_code == 200


async def test_connections_per_visitor_from_any_address(strict: Site) -> None:
    _, welcome = await open_visitor(strict, "127.0.0.9")
    for n in range(CONNECTS - 1):  # the same visitor from ever new addresses
        await open_visitor(strict, f"127.0.1.{n + 1}", welcome["token"])
    client = await Client.connect(f"{strict.ws}/ws/visitor", "server_to_visitor", local_addr=("127.0.2.1", 0))
    await client.send({"type": "hello", "token": welcome["token"]})
    error = await client.expect("error")
    assert error["code"] == "rate_limited" and error["retryable"]
    try:
        while True:
            await client.ws.recv()
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 4029


async def test_message_and_frame_sizes(strict: Site) -> None:
    client, _ = await open_visitor(strict, "127.0.0.1")
    too_long = await send(client, "x" * 4001)  # CHATSVC_MAX_MESSAGE_CHARS
    assert too_long["type"] == "error" and too_long["code"] == "too_long"
    assert (await send(client, "x" * 4000))["type"] == "ack"
    await client.send({"type": "message", "client_id": "big", "text": "y" * 17000})  # CHATSVC_MAX_FRAME_BYTES
    try:
        while True:
            await client.ws.recv()
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 1009
