"""Prometheus metrics at /metrics and /readyz from two real server processes on one PostgreSQL and Redis:
the exposition format, what the metrics count, who may read them, that each process exposes its own
figures and they add up; and readiness that follows the broker and the database as they really go away."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import need
from tests.ops.private_redis import PrivateRedis
from tests.support import services
from tests.support.server import FAST_SETTINGS, Server, agent, make_agent, visitor

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


@dataclass
class Pair:
    """Two server processes on one PostgreSQL database and one Redis of their own: metrics with a token on
    the first, open on the second."""

    one: Server
    two: Server
    redis: PrivateRedis
    database_url: str
    ann_token: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    need(services.postgres_missing())
    if shutil.which("redis-server") is None:
        need("redis-server is not installed")
    tmp = tmp_path_factory.mktemp("pair")
    redis = PrivateRedis(tmp)
    redis.start()
    database_url = services.create_postgres_database()
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_REDIS_URL": redis.url}
    one = Server({**env, "CHATSVC_METRICS_ACCESS": "token", "CHATSVC_METRICS_TOKEN": TOKEN},
                 log_path=tmp / "one.log")
    two = Server({**env, "CHATSVC_METRICS_ACCESS": "open"}, log_path=tmp / "two.log")
    try:
        _, ann_token = make_agent(database_url, "Ann")
        one.start(timeout=40)
        two.start(timeout=40)
        yield Pair(one, two, redis, database_url, ann_token)
    finally:
        one.stop()
        two.stop()
        redis.stop()
        services.drop_postgres_database(database_url)


async def test_metrics_count_a_chat_and_need_the_token(pair: Pair) -> None:
    """Process one: metrics only with CHATSVC_METRICS_TOKEN."""
    base, ws = pair.one.http, pair.one.ws
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {pair.ann_token}"}):
        assert httpx.get(f"{base}/metrics", headers=headers, timeout=30).status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = scrape(base, **auth)
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "checks": {"database": True, "broker": True}})

    ann, _ = await agent(ws, pair.ann_token)
    v, welcome = await visitor(ws)
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
    httpx.get(f"{base}/api/v1/tickets/12345", headers={"Authorization": f"Bearer {pair.ann_token}"}, timeout=30)

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
    assert value(after, "chatsvc_store_conversations", state="with_agent") >= 1
    assert value(after, "chatsvc_http_requests_total", method="GET", route="/api/v1/tickets/{id}", status="404") == 1
    assert value(after, "chatsvc_http_request_seconds_count", method="GET", route="/api/v1/tickets/{id}") == 1
    assert "chatsvc_ws_outbox_frames" in {name for name, _ in after}
    assert value(after, "process_resident_memory_bytes") > 0

    await v.close()
    await asyncio.sleep(0.5)
    closed = scrape(base, **auth)
    assert value(closed, "chatsvc_ws_connections", endpoint="visitor") == 0
    assert value(closed, "chatsvc_ws_connections_closed_total", endpoint="visitor", code="client") >= 1


async def test_each_process_exposes_its_own_figures_and_they_add_up(pair: Pair) -> None:
    """Scraped one by one as Prometheus does; process two's metrics are open, so readable through a proxy."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert httpx.get(f"{pair.one.http}/metrics", headers=forwarded, timeout=30).status_code == 403
    before = [scrape(pair.one.http, **auth), scrape(pair.two.http, **forwarded)]
    sent = (3, 2)
    for server, count in zip((pair.one, pair.two), sent):
        v, _ = await visitor(server.ws)
        for i in range(count):
            await v.send({"type": "message", "client_id": f"m{i}", "text": f"hello {i}"})
            await v.expect("ack")
    after = [scrape(pair.one.http, **auth), scrape(pair.two.http, **forwarded)]
    grew = [value(a, "chatsvc_messages_total", kind="visitor") - value(b, "chatsvc_messages_total", kind="visitor")
            for a, b in zip(after, before)]
    assert grew == list(sent), "each process counts what it served"
    assert sum(grew) == 5, "and the processes add up"
    # Store-wide gauges are the same in every process: aggregate them with max(), not sum().
    assert value(after[0], "chatsvc_store_conversations", state="bot") == \
        value(after[1], "chatsvc_store_conversations", state="bot") >= 2


def wait_for_ready(base: str, status: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{base}/readyz", timeout=30)
        if got.status_code == status or time.monotonic() > deadline:
            assert got.status_code == status, got.text
            return got.json()["checks"]
        time.sleep(0.2)


def test_readyz_follows_the_broker_and_the_database(pair: Pair) -> None:
    """Last in this module: it takes Redis and the database away from both processes."""
    for server in (pair.one, pair.two):
        assert wait_for_ready(server.http, 200) == {"database": True, "broker": True}
    pair.redis.stop()  # the broker goes away: not ready, but alive
    for server in (pair.one, pair.two):
        assert wait_for_ready(server.http, 503) == {"database": True, "broker": False}
        assert httpx.get(f"{server.http}/healthz", timeout=30).status_code == 200
    pair.redis.start()  # and comes back: ready again by itself
    for server in (pair.one, pair.two):
        assert wait_for_ready(server.http, 200) == {"database": True, "broker": True}
    services.drop_postgres_database(pair.database_url)  # the database goes away (its connections with it)
    for server in (pair.one, pair.two):
        assert wait_for_ready(server.http, 503) == {"database": False, "broker": True}
        assert httpx.get(f"{server.http}/healthz", timeout=30).status_code == 200
