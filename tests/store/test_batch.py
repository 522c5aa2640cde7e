"""The group-committing message writer on a real SQLite file, beside the SQLAlchemy engine."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from chatsvc.store import batch, db
from chatsvc.store.tables import agents, conversations, events, visitors

NOW = datetime(2026, 3, 2, 15, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "chat.db"
    engine = db.create_engine(f"sqlite:///{path}")
    await db.migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(insert(agents).values(id="ann", name="Ann", email="ann@example.com", role="agent",
                                                 presence="online", capacity=5, skills=[], languages=[],
                                                 created_at=NOW))
        for v in ("v1", "v2"):
            await conn.execute(insert(visitors).values(id=v, site_key="default", created_at=NOW, verified=False))
            await conn.execute(insert(conversations).values(
                id=f"c-{v}", visitor_id=v, site_key="default", state="bot", last_seq=0, visitor_read_seq=0,
                agent_read_seq=0, created_at=NOW, updated_at=NOW))
    writer = batch.MessageWriter(str(path))
    yield engine, writer
    await writer.close()
    await engine.dispose()


def visitor_says(v: str, client_id: str, text: str = "hello") -> batch.Message:
    return batch.Message(conversation_id=f"c-{v}", role="visitor", author_id=v, author_name=None, text=text,
                         client_id=client_id)


async def test_concurrent_messages_get_contiguous_numbers_and_read_back_through_sqlalchemy(store) -> None:  # type: ignore[no-untyped-def]
    engine, writer = store
    sent = [visitor_says("v1", f"m{i}", f"message {i}") for i in range(300)]
    written = await asyncio.gather(*(writer.write(m, NOW) for m in sent))
    assert sorted(w.seq for w in written) == list(range(1, 301))
    assert all(w.state == "bot" and w.ticket_id is None for w in written)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(events).where(events.c.conversation_id == "c-v1")
                                   .order_by(events.c.seq))).all()
        conv = (await conn.execute(select(conversations).where(conversations.c.id == "c-v1"))).one()
    assert [r.seq for r in rows] == list(range(1, 301))
    by_client = {m.client_id: m.text for m in sent}
    assert all(by_client[r.client_id] == r.text and r.kind == "message" and not r.internal for r in rows)
    assert rows[0].created_at.replace(tzinfo=UTC) == NOW  # stored as SQLAlchemy stores it
    assert conv.last_seq == 300
    assert conv.first_question == "message 0"  # queued first, written first


async def test_a_client_id_seen_before_is_a_duplicate_and_writes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    engine, writer = store
    first = await writer.write(visitor_says("v1", "same"), NOW)
    again, other = await asyncio.gather(writer.write(visitor_says("v1", "same"), NOW),
                                        writer.write(visitor_says("v1", "next"), NOW))
    assert first.seq == 1 and again == batch.DUPLICATE and other.seq == 2
    async with engine.connect() as conn:
        assert (await conn.execute(select(conversations.c.last_seq)
                                   .where(conversations.c.id == "c-v1"))).scalar_one() == 2


async def test_what_the_common_case_does_not_cover_falls_back(store) -> None:  # type: ignore[no-untyped-def]
    engine, writer = store
    async with engine.begin() as conn:
        await conn.execute(update(conversations).where(conversations.c.id == "c-v2").values(state="ended"))
    # Another visitor's conversation, an ended one, an agent who does not own it: nothing written.
    intruder = batch.Message(conversation_id="c-v1", role="visitor", author_id="v2", author_name=None,
                             text="hi", client_id="x")
    assert await writer.write(intruder, NOW) == batch.FALLBACK
    assert await writer.write(visitor_says("v2", "y"), NOW) == batch.FALLBACK
    agent_message = batch.Message(conversation_id="c-v1", role="agent", author_id="ann", author_name="Ann",
                                  text="hello", client_id="a1")
    assert await writer.write(agent_message, NOW) == batch.FALLBACK
    # A note needs no accepted chat, only ownership (or a lead).
    note = batch.Message(conversation_id="c-v1", role="agent", author_id="ann", author_name="Ann",
                         text="internal", client_id="n1", internal=True, lead=True)
    written = await writer.write(note, NOW)
    assert isinstance(written, batch.Written) and written.seq == 1
    async with engine.connect() as conn:
        row = (await conn.execute(select(events).where(events.c.conversation_id == "c-v1"))).one()
        seqs = (await conn.execute(select(conversations.c.last_seq).order_by(conversations.c.id))).scalars().all()
    assert row.kind == "note" and row.internal and seqs == [1, 0]


async def test_operations_run_in_the_batches_and_their_errors_reach_only_their_caller(store) -> None:  # type: ignore[no-untyped-def]
    engine, writer = store

    def broken(conn: sqlite3.Connection, now: str) -> None:
        conn.execute("INSERT INTO visitors (id, site_key, created_at, verified) VALUES ('v3', 'default', ?, 0)",
                     (now,))
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    def count(conn: sqlite3.Connection, now: str) -> int:
        return conn.execute("SELECT count(*) FROM visitors").fetchone()[0]

    results = await asyncio.gather(writer.write(broken, NOW), writer.write(visitor_says("v1", "ok"), NOW),
                                   writer.write(count, NOW), return_exceptions=True)
    assert isinstance(results[0], sqlite3.OperationalError)
    assert isinstance(results[1], batch.Written) and results[2] == 2  # the broken one was rolled back alone


async def test_a_closed_writer_refuses_and_a_locked_store_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    engine = db.create_engine(f"sqlite:///{path}")
    await db.migrate(engine)
    await engine.dispose()
    writer = batch.MessageWriter(str(path), busy_timeout_ms=200)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(sqlite3.OperationalError):
            await writer.write(visitor_says("v1", "m"), NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await writer.close()
    with pytest.raises(sqlite3.OperationalError):
        await writer.write(visitor_says("v1", "m"), NOW)


def test_only_sqlite_files_get_a_writer() -> None:
    assert batch.sqlite_path("sqlite+aiosqlite:////tmp/x.db") == "/tmp/x.db"
    assert batch.sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert batch.sqlite_path("postgresql+asyncpg://localhost/test") is None


async def test_the_reader_reads_committed_rows_in_batches_and_never_writes(store) -> None:  # type: ignore[no-untyped-def]
    engine, writer = store
    await asyncio.gather(*(writer.write(visitor_says("v1", f"m{i}"), NOW) for i in range(5)))
    reader = batch.Reader(writer.path)

    def seqs_after(after: int):  # type: ignore[no-untyped-def]
        def op(conn: sqlite3.Connection, _now: str) -> list[int]:
            return [r[0] for r in conn.execute(
                "SELECT seq FROM events WHERE conversation_id = 'c-v1' AND seq > ? ORDER BY seq", (after,))]
        return op

    def writes(conn: sqlite3.Connection, _now: str) -> None:
        conn.execute("DELETE FROM events")

    try:
        results = await asyncio.gather(*(reader.read(seqs_after(n)) for n in range(5)))
        assert results == [[1, 2, 3, 4, 5], [2, 3, 4, 5], [3, 4, 5], [4, 5], [5]]
        outcome = await asyncio.gather(reader.read(writes), reader.read(seqs_after(3)), return_exceptions=True)
        assert isinstance(outcome[0], sqlite3.OperationalError)  # query_only: a read can never write
        assert outcome[1] == [4, 5]
    finally:
        await reader.close()
    with pytest.raises(sqlite3.OperationalError):
        await reader.read(seqs_after(0))


async def test_a_message_alone_in_its_batch_is_undone_whole_when_it_is_a_duplicate(store) -> None:  # type: ignore[no-untyped-def]
    engine, writer = store
    first = await writer.write(visitor_says("v2", "same"), NOW)
    again = await writer.write(visitor_says("v2", "same"), NOW)  # alone in its batch: no savepoint
    failed = await asyncio.gather(writer.write(lambda conn, now: conn.execute("SELECT * FROM nowhere"), NOW),
                                  return_exceptions=True)
    assert isinstance(first, batch.Written) and again == batch.DUPLICATE
    assert isinstance(failed[0], sqlite3.OperationalError)
    async with engine.connect() as conn:
        last_seq = (await conn.execute(select(conversations.c.last_seq).where(conversations.c.id == "c-v2"))).scalar()
        stored = (await conn.execute(select(events.c.seq).where(events.c.conversation_id == "c-v2"))).scalars().all()
    assert last_seq == 1 and stored == [1]
