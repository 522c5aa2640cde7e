"""Backup and restore with the real commands: `chatsvc backup` of a SQLite store that a live server keeps
writing, restored and served again with every acknowledged message; and pg_dump/pg_restore of a PostgreSQL
store into a scratch database."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import need
from tests.support import services
from tests.support.server import FAST_SETTINGS, Client, Server, visitor

WRITERS = 3
# Which processes are alive and which sockets they hold: rewritten by every running server, not data.
EPHEMERAL = {"nodes", "visitor_sessions", "agent_sessions"}
UNLIMITED = {"CHATSVC_VISITOR_MESSAGE_RATE": "0", "CHATSVC_RATE_PER_SECOND": "1000", "CHATSVC_RATE_BURST": "1000"}


async def chatsvc_in_process(*args: str) -> str:
    """The same command through `chatsvc.cli.main`, in a thread (no interpreter to start)."""
    import contextlib
    import io

    from chatsvc.cli import main

    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main(list(args))

    assert await asyncio.to_thread(run) == 0, args
    return out.getvalue()


async def chatsvc(*args: str) -> str:
    """Run `python -m chatsvc ...` without blocking the event loop (the writers keep writing)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "chatsvc", *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()


async def write_until(client: Client, prefix: str, acked: list[tuple[str, int]], stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        client_id = f"{prefix}-{i}"
        await client.send({"type": "message", "client_id": client_id, "text": f"message {client_id}"})
        ack = await client.expect(lambda f, c=client_id: f["type"] == "ack" and f["client_id"] == c, 30)
        acked.append((client_id, ack["seq"]))
        i += 1


async def test_sqlite_online_backup_while_writing_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    live_db = tmp_path / "live.db"
    server = Server({**FAST_SETTINGS, **UNLIMITED, "CHATSVC_DATABASE_URL": f"sqlite:///{live_db}"},
                    log_path=tmp_path / "live.log")
    server.start(timeout=40)
    try:
        writers = [await visitor(server.ws) for _ in range(WRITERS)]
        acked: list[list[tuple[str, int]]] = [[] for _ in writers]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(write_until(client, f"w{n}", acked[n], stop))
                 for n, (client, _) in enumerate(writers)]
        while sum(map(len, acked)) < 15:
            await asyncio.sleep(0.05)
        before = [list(a) for a in acked]  # acknowledged before the backup started
        printed = await chatsvc("backup", str(tmp_path / "backup.db"), "--database-url", f"sqlite:///{live_db}")
        during = sum(map(len, acked)) - sum(map(len, before))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        server.stop()
    assert "SQLite online backup" in printed
    assert during > 0, "the server kept acknowledging messages while the backup ran"

    # Restore it as a new store (and refuse to overwrite one without --force), then serve it.
    restored = tmp_path / "restored.db"
    await chatsvc_in_process("restore", str(tmp_path / "backup.db"), "--database-url", f"sqlite:///{restored}")
    from chatsvc.cli import main

    assert main(["restore", str(tmp_path / "backup.db"), "--database-url", f"sqlite:///{restored}"]) == 2
    with sqlite3.connect(restored) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": f"sqlite:///{restored}"}, log_path=tmp_path / "r.log")
    again.start(timeout=40)
    try:
        for n, (_, welcome) in enumerate(writers):
            # The visitor's token still opens its conversation: the signing key is in the store.
            client, back = await visitor(again.ws, token=welcome["token"])
            assert back["conversation"]["id"] == welcome["conversation"]["id"]
            events = client.events("message")
            got = {e["client_id"]: e["seq"] for e in events}
            assert set(dict(before[n]).items()) <= set(got.items()), "every message acknowledged before the backup"
            assert set(got) <= {c for c, _ in acked[n]}, "nothing that was never acknowledged"
            seqs = [e["seq"] for e in client.events()]
            assert seqs == list(range(1, len(seqs) + 1)), "no gap in the restored conversation"
    finally:
        again.stop()


async def _pg(statement: str) -> None:
    conn = await asyncpg.connect(services._asyncpg_dsn(services.POSTGRES_URL))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _rows(url: str) -> dict[str, Any]:
    """Every table's row count, and the events in full."""
    conn = await asyncpg.connect(services._asyncpg_dsn(url))
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        counts = {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in tables if t not in EPHEMERAL}
        events = [tuple(r) for r in await conn.fetch(
            "SELECT conversation_id, seq, kind, text, client_id FROM events ORDER BY conversation_id, seq")]
        return {"counts": counts, "events": events}
    finally:
        await conn.close()


async def test_pg_dump_and_pg_restore_round_trip(tmp_path: Path) -> None:
    need(services.postgres_missing())
    base = services.POSTGRES_URL.rpartition("/")[0]
    names = [f"chatsvc_backup_test_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    source, target = (f"{base}/{name}" for name in names)
    for name in names:
        await _pg(f'CREATE DATABASE "{name}"')
    try:
        server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": source}, log_path=tmp_path / "pg.log")
        server.start(timeout=40)
        try:
            client, _ = await visitor(server.ws)
            for i in range(5):
                await client.send({"type": "message", "client_id": f"m{i}", "text": f"pg message {i}"})
                await client.expect("ack")
            await client.send({"type": "leave_email", "email": "dana@example.com"})
            await client.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket", 30)
            assert httpx.post(f"{server.http}/api/v1/contact", timeout=30,
                              json={"email": "kim@example.com", "message": "hello"}).status_code == 201
            printed = await chatsvc_in_process("backup", str(tmp_path / "chat.dump"), "--database-url", source)
        finally:
            server.stop()
        assert "pg_dump" in printed
        await chatsvc_in_process("restore", str(tmp_path / "chat.dump"), "--database-url", target)
        original, copy = await _rows(source), await _rows(target)
        assert copy == original
        assert copy["counts"]["tickets"] == 2 and len(copy["events"]) >= 5

    finally:
        for name in names:
            assert name.startswith("chatsvc_backup_test_")  # never anything else, never `test`
            await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
