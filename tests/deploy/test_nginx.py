"""Two chatsvc processes on PostgreSQL and Redis behind nginx, configured from deploy/nginx/: the websocket
upgrade passes through, there are no sticky sessions, /readyz steers traffic, and a drained process's clients
are told 1001 (going away), reconnect through nginx to the other process and resume with nothing lost or
doubled."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from tests.conftest import need
from tests.deploy.conftest import nginx_binary, render, start_nginx, stop_nginx
from tests.support import services
from tests.support.server import FAST_SETTINGS, Client, Server, agent, free_port, make_agent, visitor


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    need(services.postgres_missing())
    need(services.redis_missing())
    url = services.create_postgres_database()
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": url,
           "CHATSVC_REDIS_URL": f"{services.REDIS_URL}?channel_prefix={uuid.uuid4().hex[:10]}",
           "CHATSVC_AGENT_GRACE": "30", "CHATSVC_DRAIN_DELAY": "1.5"}
    servers = [Server(env, log_path=tmp_path / f"server{i}.log") for i in range(2)]
    try:
        with ThreadPoolExecutor(3) as pool:  # two cold starts and the agent at once
            agent_row = pool.submit(make_agent, url, "Ann")
            list(pool.map(lambda s: s.start(60.0), servers))
            ann = agent_row.result()
        yield {"url": url, "servers": servers, "ann": ann}
    finally:
        for server in servers:
            server.stop()
        services.drop_postgres_database(url)


async def session_node(database_url: str, table: str, column: str, value: str) -> str:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for _ in range(100):
            node = await conn.fetchval(f"SELECT node FROM {table} WHERE {column} = $1", value)
            if node is not None:
                return str(node)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"no {table} row for {value}")


def test_the_rendered_config_is_valid_nginx(tmp_path: Path) -> None:
    binary = nginx_binary()
    need(None if binary else "nginx is not installed (apt-get install -y nginx)")
    conf = tmp_path / "nginx.conf"
    conf.write_text(render("127.0.0.1:8001", "10.0.0.2:8000", "unix:/run/chatsvc.sock",
                           "--listen", f"127.0.0.1:{free_port()}", "--main", str(tmp_path)))
    done = subprocess.run([binary or "nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    directives = [line.split("#")[0].strip() for line in conf.read_text().splitlines()]
    assert not any(d.startswith(("ip_hash", "hash ", "sticky")) for d in directives), "no sticky sessions"
    text = conf.read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in text and "http_503" in text


async def test_upgrade_no_sticky_sessions_readyz_and_drain_through_nginx(
        cluster: dict[str, Any], nginx_prefix: Path) -> None:
    a, b = cluster["servers"]
    url = cluster["url"]
    ann_id, ann_token = cluster["ann"]
    proxy = start_nginx(nginx_prefix, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    try:
        assert httpx.get(f"{proxy.http}/readyz", timeout=10).json()["status"] == "ok"
        # Which node is process `a`: a visitor connected to it directly, bypassing nginx.
        probe, probe_welcome = await visitor(a.ws)
        node_a = await session_node(url, "visitor_sessions", "conversation_id", probe_welcome["conversation"]["id"])
        await probe.close()

        # The websocket upgrade through nginx, for the agent and the visitor.
        ann, _ = await agent(proxy.ws, ann_token)
        ann_node = await session_node(url, "agent_sessions", "agent_id", ann_id)
        for _ in range(6):  # no stickiness: least_conn sends the next socket to the other process
            v, welcome = await visitor(proxy.ws)
            conv = welcome["conversation"]["id"]
            v_node = await session_node(url, "visitor_sessions", "conversation_id", conv)
            if v_node != ann_node:
                break
            await v.close()
        assert v_node != ann_node, "the visitor and the agent should be served by different processes"

        await v.send({"type": "message", "client_id": "q", "text": "My invoice shows the wrong VAT number"})
        await v.expect("ack")
        await v.send({"type": "request_agent"})
        await ann.expect("offer")
        await ann.send({"type": "accept", "conversation_id": conv})
        await ann.expect("assigned")
        await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined")
        await ann.send({"type": "message", "conversation_id": conv, "client_id": "a1", "text": "Let me look"})
        await v.expect(lambda f: f["type"] == "event" and f.get("text") == "Let me look")

        # Drain the visitor's process. During CHATSVC_DRAIN_DELAY it fails /readyz and refuses new sockets
        # with 503, which nginx retries on the other process; then it closes its sockets with 1001.
        draining, staying = (a, b) if v_node == node_a else (b, a)
        await v.send({"type": "message", "client_id": "in-flight", "text": "Is it fixed on the next invoice?"})
        assert draining.proc is not None
        draining.proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            status = httpx.get(f"{draining.http}/readyz", timeout=5)
            if status.status_code == 503:
                break
            await asyncio.sleep(0.02)
        assert status.json()["status"] == "draining"
        assert httpx.get(f"{proxy.http}/readyz", timeout=10).status_code == 200, "nginx skips the draining one"
        other, other_welcome = await visitor(proxy.ws)  # a new socket meanwhile lands on the other process
        assert await session_node(url, "visitor_sessions", "conversation_id",
                                  other_welcome["conversation"]["id"]) != v_node
        await other.close()

        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await v.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        seen = [f["seq"] for f in v.events()]
        # Ann keeps writing while the visitor is away.
        for i in range(3):
            await ann.send({"type": "message", "conversation_id": conv, "client_id": f"gap{i}", "text": f"gap {i}"})
            await ann.expect(lambda f, i=i: f["type"] == "ack" and f["client_id"] == f"gap{i}")

        # Reconnect through nginx with the token and cursor, retrying the send that may not have been acked.
        v2, welcome2 = await visitor(proxy.ws, token=welcome["token"], last_seq=max(seen))
        assert welcome2["conversation"]["id"] == conv
        assert await session_node(url, "visitor_sessions", "conversation_id", conv) != v_node
        await v2.send({"type": "message", "client_id": "in-flight", "text": "Is it fixed on the next invoice?"})
        await v2.expect(lambda f: f["type"] == "ack" and f["client_id"] == "in-flight")
        await ann.send({"type": "message", "conversation_id": conv, "client_id": "after", "text": "Back with you"})
        await v2.expect(lambda f: f["type"] == "event" and f.get("text") == "Back with you")
        await ann.expect(lambda f: f["type"] == "event" and f.get("client_id") == "in-flight")
        await ann.quiet(0.3)

        # Nothing lost, nothing doubled: the visitor's two sockets together saw each visible event once.
        seqs = seen + [f["seq"] for f in v2.events()]
        assert len(seqs) == len(set(seqs)), "no event twice"
        visible = sorted(set(seqs))
        assert visible == list(range(1, welcome2["conversation"]["last_seq"] + 1)) or visible[-1] > max(seen)
        texts = [f.get("text") for f in v2.events("message") if f["role"] == "agent"]
        assert texts == ["gap 0", "gap 1", "gap 2", "Back with you"]
        assert [f.get("client_id") for f in ann.events("message")].count("in-flight") == 1
        assert draining.proc.wait(20) is not None
        assert staying.proc is not None and staying.proc.poll() is None
    finally:
        await Client.close_all()
        stop_nginx(proxy)
