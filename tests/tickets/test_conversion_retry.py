"""A chat whose conversion to a ticket failed is converted later by the retry pass, exactly once although
two server processes retry it, with its whole transcript. Two real servers on one PostgreSQL database and
Redis; the database really refuses new tickets (a trigger) while the visitor is sent to ticket_pending."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import need
from tests.support import services
from tests.support.poll import apoll
from tests.support.server import FAST_SETTINGS, Server, visitor

REFUSE = """
CREATE FUNCTION refuse_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'new tickets are refused'; END $$;
CREATE TRIGGER refuse_tickets BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION refuse_tickets();
"""
ACCEPT = "DROP TRIGGER refuse_tickets ON tickets; DROP FUNCTION refuse_tickets();"


@dataclass
class Pair:
    one: Server
    two: Server
    database_url: str

    async def logs(self) -> list[list[dict]]:
        """Each server's JSON log lines so far."""
        return [[json.loads(line) for line in server.log_path.read_text(errors="replace").splitlines()  # type: ignore[union-attr]
                 if line.startswith("{") and line.endswith("}")] for server in (self.one, self.two)]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    need(services.postgres_missing())
    need(services.redis_missing())
    database_url = services.create_postgres_database()
    redis_url = f"{services.REDIS_URL}?channel_prefix=retry-{uuid.uuid4().hex[:8]}:"
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_REDIS_URL": redis_url,
           "CHATSVC_TICKET_RETRY_INTERVAL": "0.3", "CHATSVC_LOG_LEVEL": "info", "CHATSVC_LOG_FORMAT": "json"}
    one = Server(env, log_path=tmp_path / "one.log")
    two = Server(env, log_path=tmp_path / "two.log")
    try:
        with ThreadPoolExecutor(2) as pool:  # both migrate the new database: one waits for the other
            list(pool.map(lambda server: server.start(timeout=40), (one, two)))
        yield Pair(one, two, database_url)
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Server.stop, (one, two)))
        services.drop_postgres_database(database_url)


async def sql(database_url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        if args:
            return list(await conn.fetch(statement, *args))
        await conn.execute(statement)
        return []
    finally:
        await conn.close()


def said(log: list[dict], start: str) -> bool:
    return any(r["message"].startswith(start) for r in log)


async def test_a_failed_conversion_is_retried_into_one_ticket(pair: Pair) -> None:
    await sql(pair.database_url, REFUSE)
    v, welcome = await visitor(pair.one.ws, identity={"name": "Rosa Diaz", "email": "rosa@example.com"})
    conv = welcome["conversation"]["id"]
    for i, text in enumerate(["I was charged twice for March", "the second charge is on my card statement"]):
        await v.send({"type": "message", "client_id": f"m{i}", "text": text})
        await v.expect(lambda f, i=i: f["type"] == "ack" and f.get("client_id") == f"m{i}")
    await v.send({"type": "request_agent"})  # nobody is online: straight to ticket_pending
    await v.expect(lambda f: f["type"] == "event" and f["kind"] == "state" and f["data"]["to"] == "ticket_pending")

    # The conversion after the state change failed, and both processes' retries fail while it is refused.
    failing = await apoll(pair.logs, lambda logs: said(logs[0], f"conversion of {conv} deferred")
                          and all(said(log, "ticket conversion retry failing") for log in logs))
    assert said(failing[0], f"conversion of {conv} deferred")
    assert all(said(log, "ticket conversion retry failing") for log in failing)
    stuck = await sql(pair.database_url, "SELECT state, ticket_id FROM conversations WHERE id = $1", conv)
    assert [tuple(r) for r in stuck] == [("ticket_pending", None)]

    await sql(pair.database_url, ACCEPT)
    notice = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket", timeout=60)
    number = notice["data"]["ticket_id"]
    # Both processes went on retrying until a pass succeeded: neither made a second ticket.
    recovered = await apoll(pair.logs, lambda logs: all(said(log, "ticket conversion retry recovered")
                                                        for log in logs))
    assert all(said(log, "ticket conversion retry recovered") for log in recovered)
    made = await sql(pair.database_url, "SELECT id, channel, customer_email FROM tickets WHERE conversation_id = $1",
                     conv)
    assert [tuple(r) for r in made] == [(number, "chat", "rosa@example.com")]
    assert sum(said(log, f"conversion of {conv} retried") for log in recovered) == 1

    # The whole transcript up to the conversion, each event once, the visitor's words included.
    ticketed = await sql(pair.database_url, "SELECT seq FROM events WHERE conversation_id = $1 AND kind = 'state' "
                         "AND data->>'to' = 'ticketed'", conv)
    assert len(ticketed) == 1
    events = await sql(pair.database_url, "SELECT seq, kind, text FROM events WHERE conversation_id = $1 "
                       "AND seq < $2 ORDER BY seq", conv, ticketed[0]["seq"])
    entries = await sql(pair.database_url, "SELECT source, text FROM ticket_entries WHERE ticket_id = $1 "
                        "ORDER BY id", number)
    assert [e["source"] for e in entries] == [f"conv:{conv}:{e['seq']}" for e in events]
    assert [e["text"] for e in entries] == [e["text"] for e in events]
    assert [e["text"] for e in events if e["kind"] == "message"] == [
        "I was charged twice for March", "the second charge is on my card statement"]
    state = await sql(pair.database_url, "SELECT state FROM conversations WHERE id = $1", conv)
    assert state[0]["state"] == "ticketed"
