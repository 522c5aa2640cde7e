"""The PostgreSQL hot path (chatsvc/store/pg_fast.py) on a real PostgreSQL database: contiguous sequence
numbers under concurrent senders, duplicates undone whole, a resume that registers its socket in the same
statement, and closed sockets removed together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from chatsvc.store import batch, db, pg_fast
from chatsvc.store.tables import conversations, events, visitor_sessions
from tests.conftest import need
from tests.support import services

NOW = datetime(2026, 3, 2, 15, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def fast() -> AsyncIterator[tuple[object, pg_fast.PgFastPath]]:
    need(services.postgres_missing())
    url = services.create_postgres_database()
    engine = db.create_engine(url)
    path = pg_fast.PgFastPath(pg_fast.asyncpg_dsn(url))  # type: ignore[arg-type]
    try:
        await db.migrate(engine)
        yield engine, path
    finally:
        await path.close()
        await engine.dispose()
        services.drop_postgres_database(url)


def says(conv_id: str, visitor_id: str, client_id: str) -> batch.Message:
    return batch.Message(conversation_id=conv_id, role="visitor", author_id=visitor_id, author_name=None,
                         text="hello", client_id=client_id)


async def test_messages_resumes_and_goodbyes(fast) -> None:  # type: ignore[no-untyped-def]
    engine, path = fast
    pools = await asyncio.gather(*(path._get_pool() for _ in range(10)))  # the first callers at once
    assert len({id(pool) for pool in pools}) == 1
    vid, _, conv, _ = await path.open_plain_visitor(None, "default", 0, "s-0", "node-a", NOW)
    conv_id = conv["id"]
    assert conv["state"] == "bot" and conv["last_seq"] == 0

    written = await asyncio.gather(*(path.write_message(says(conv_id, vid, f"m{i}"), NOW) for i in range(60)))
    assert sorted(w.seq for w in written) == list(range(1, 61))  # type: ignore[union-attr]
    assert await path.write_message(says(conv_id, vid, "m7"), NOW) == batch.DUPLICATE
    assert await path.write_message(says(conv_id, "someone-else", "x"), NOW) == batch.FALLBACK
    async with engine.connect() as conn:
        last_seq = (await conn.execute(select(conversations.c.last_seq).where(conversations.c.id == conv_id))).scalar()
        stored = (await conn.execute(select(events.c.seq).where(events.c.conversation_id == conv_id))).scalars().all()
    assert last_seq == 60 and sorted(stored) == list(range(1, 61))  # the duplicate's bump was undone with it

    # A resume finds the same visitor and conversation and registers its socket in the same statement;
    # a client ahead of the conversation registers nothing (it is told to resync).
    again, identity, conv2, agent = await path.open_plain_visitor(vid, "default", 59, "s-1", "node-a", NOW)
    assert (again, conv2["id"], conv2["last_seq"], agent) == (vid, conv_id, 60, None)
    assert identity == {"name": None, "email": None, "plan": None, "community": None}
    await path.open_plain_visitor(vid, "default", 61, "s-2", "node-a", NOW)
    replayed = await path.replay_page(conv_id, 58, False, 10)
    assert [r[0] for r in replayed] == [59, 60]

    # Fifty sockets closing at once are removed by a few statements, not fifty.
    async with engine.begin() as conn:
        await conn.execute(insert(visitor_sessions), [
            {"id": f"t-{i}", "conversation_id": conv_id, "node": "node-a", "heartbeat_at": NOW} for i in range(50)])
    await asyncio.gather(*(path.unregister(f"t-{i}", conv_id, NOW) for i in range(50)))
    assert path.goodbye_statements <= 2
    async with engine.connect() as conn:
        left = (await conn.execute(select(visitor_sessions.c.id))).scalars().all()
        seen = (await conn.execute(select(conversations.c.visitor_seen_at)
                                   .where(conversations.c.id == conv_id))).scalar()
    assert sorted(left) == ["s-0", "s-1"] and seen is not None
