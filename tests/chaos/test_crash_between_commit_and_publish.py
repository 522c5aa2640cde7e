"""A process that dies after committing a message but before publishing it leaves the other processes
unaware of it. The client never got its ack, so it retries with the same client id: the server answers
`duplicate` and publishes the stored event again, so the agent gets it live, once.

The dead process's commit is written into the store with SQL (what that process's transaction did); the
retry, the re-announcement and the delivery are the real server's."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from tests.support.server import agent, visitor
from tests.ws.conftest import Deployment


def commit_without_publish(database_url: str, conv: str, visitor_id: str, client_id: str, text: str) -> int:
    conn = sqlite3.connect(database_url.removeprefix("sqlite+aiosqlite:///"), timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        seq = conn.execute("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                           (conv,)).fetchone()[0]
        conn.execute("INSERT INTO events (conversation_id, seq, kind, role, author_id, text, client_id, internal, "
                     "created_at) VALUES (?, ?, 'message', 'visitor', ?, ?, ?, 0, ?)",
                     (conv, seq, visitor_id, text, client_id, datetime.now(UTC).isoformat()))
        conn.execute("COMMIT")
        return int(seq)
    finally:
        conn.close()


async def test_a_retry_after_a_crash_announces_the_stored_message(live: Deployment) -> None:
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, welcome = await visitor(live.ws)
    conv = welcome["conversation"]["id"]
    await v.send({"type": "message", "client_id": "q", "text": "The app logs me out every hour"})
    await v.expect("ack")
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.expect(lambda f: f["type"] == "replayed")
    await ann.quiet(0.5)

    seq = commit_without_publish(live.database_url, conv, welcome["visitor_id"], "lost-ack", "Still happening")
    assert not [f for f in await ann.quiet(0.5) if f["type"] == "event"], "nobody announced it"

    await v.send({"type": "message", "client_id": "lost-ack", "text": "Still happening"})
    ack = await v.expect("ack")
    assert ack["duplicate"] is True and ack["seq"] == seq
    got = await ann.expect(lambda f: f["type"] == "event" and f.get("client_id") == "lost-ack")
    assert got["seq"] == seq and got["text"] == "Still happening"
    await v.send({"type": "message", "client_id": "lost-ack", "text": "Still happening"})  # and once more
    await v.expect("ack")
    await ann.quiet(0.5)
    assert [f["seq"] for f in ann.events()].count(seq) == 1, "announced again, delivered once"
