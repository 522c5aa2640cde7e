"""Prometheus metrics at /metrics from a real server: the exposition format, what they count, who may read
them, and that several processes each expose their own figures, which add up."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import need
from tests.support import services
from tests.support.server import FAST_SETTINGS, Server, agent, visitor
from tests.ws.conftest import DeployFactory

TOKEN = "scrape-me-9f1c2e"


def scrape(base: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    got = httpx.get(f"{base}/metrics", headers=headers, timeout=30)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(got.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_a_chat_and_need_the_token(deploy: DeployFactory) -> None:
    live = deploy(CHATSVC_METRICS_ACCESS="token", CHATSVC_METRICS_TOKEN=TOKEN)
    base = live.server.http
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {live.token('Ann')}"}):
        assert httpx.get(f"{base}/metrics", headers=headers, timeout=30).status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = scrape(base, **auth)
    ready = httpx.get(f"{base}/readyz", timeout=30)  # the SQLite default and the in-process broker
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "checks": {"database": True, "broker": True}})

    ann, _ = await agent(live.ws, live.token("Ann"))
    v, welcome = await visitor(live.ws)
    conv = welcome["conversation"]["id"]
    for i in range(2):
        await v.send({"type": "message", "client_id": f"q{i}", "text": f"question {i}"})
        await v.expect("ack")
    await v.send({"type": "message", "client_id": "q0", "text": "question 0"})  # a retry: not counted again
    assert (await v.expect("ack"))["duplicate"]
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.send({"type": "message", "conversation_id": conv, "client_id": "a1", "text": "Hi, I'm Ann"})
    await ann.send({"type": "note", "conversation_id": conv, "client_id": "n1", "text": "regular customer"})
    await ann.expect(lambda f: f["type"] == "ack" and f["client_id"] == "n1")
    httpx.get(f"{base}/api/v1/tickets/12345", headers={"Authorization": f"Bearer {live.token('Ann')}"}, timeout=30)

    after = scrape(base, **auth)
    assert value(after, "chatsvc_messages_total", kind="visitor") - value(before, "chatsvc_messages_total",
                                                                          kind="visitor") == 2
    assert value(after, "chatsvc_messages_total", kind="agent") - value(before, "chatsvc_messages_total",
                                                                        kind="agent") == 1
    assert value(after, "chatsvc_messages_total", kind="note") - value(before, "chatsvc_messages_total",
                                                                       kind="note") == 1
    assert value(after, "chatsvc_message_ack_seconds_count", kind="visitor") >= 3
    assert value(after, "chatsvc_ws_connections", endpoint="visitor") == 1
    assert value(after, "chatsvc_ws_connections", endpoint="agent") == 1
    assert value(after, "chatsvc_offers_total", outcome="offered") >= 1
    assert value(after, "chatsvc_offers_total", outcome="accepted") >= 1
    assert value(after, "chatsvc_store_conversations", state="with_agent") == 1
    assert value(after, "chatsvc_http_requests_total", method="GET", route="/api/v1/tickets/{id}", status="404") == 1
    assert value(after, "chatsvc_http_request_seconds_count", method="GET", route="/api/v1/tickets/{id}") == 1
    assert "chatsvc_ws_outbox_frames" in {name for name, _ in after}
    assert value(after, "process_resident_memory_bytes") > 0

    await v.close()
    await asyncio.sleep(0.5)
    closed = scrape(base, **auth)
    assert value(closed, "chatsvc_ws_connections", endpoint="visitor") == 0
    assert value(closed, "chatsvc_ws_connections_closed_total", endpoint="visitor", code="client") >= 1


async def test_each_process_exposes_its_own_figures_and_they_add_up(tmp_path: Path) -> None:
    """Two processes on one PostgreSQL and Redis, scraped one by one as Prometheus does (metrics open, so
    readable through a proxy too)."""
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    need(services.postgres_missing())
    need(services.redis_missing())
    database_url = services.create_postgres_database()
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_METRICS_ACCESS": "open",
           "CHATSVC_REDIS_URL": f"{services.REDIS_URL}?channel_prefix={uuid.uuid4().hex[:10]}"}
    servers = [Server(env, log_path=tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start(timeout=40)
        sent = {servers[0].http: 3, servers[1].http: 2}
        for server in servers:
            v, _ = await visitor(server.ws)
            for i in range(sent[server.http]):
                await v.send({"type": "message", "client_id": f"m{i}", "text": f"hello {i}"})
                await v.expect("ack")
        per_process = await asyncio.to_thread(lambda: {base: scrape(base, **forwarded) for base in sent})
    finally:
        for server in servers:
            server.stop()
        services.drop_postgres_database(database_url)
    for base, samples in per_process.items():
        assert value(samples, "chatsvc_messages_total", kind="visitor") == sent[base]
    assert sum(value(s, "chatsvc_messages_total", kind="visitor") for s in per_process.values()) == 5
    # Store-wide gauges are the same in every process: aggregate them with max(), not sum().
    bots = {value(s, "chatsvc_store_conversations", state="bot") for s in per_process.values()}
    assert bots == {2.0}
