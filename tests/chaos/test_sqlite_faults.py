"""The SQLite default when the disk fills up or the database turns read-only under a running server: each
send is refused with a clear, retryable `unavailable` error, nothing acknowledged is lost, the database stays
intact (PRAGMA integrity_check), and the same send succeeds once the operator has fixed the disk.

Disk full is a real full filesystem: a 4 MB tmpfs mounted for the test and filled with a file. Read-only is
the filesystem refusing writes to the open database files (`chattr +i`, as root), as after an ext4 error."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.support.server import FAST_SETTINGS, Server, visitor

LIMITS = {"CHATSVC_VISITOR_MESSAGE_RATE": "0", "CHATSVC_IP_MESSAGE_RATE": "0", "CHATSVC_RATE_PER_SECOND": "1000",
          "CHATSVC_RATE_BURST": "1000"}


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount))
    need(None if done.returncode == 0 else f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if run("umount", str(mount)).returncode != 0:
            run("umount", "-l", str(mount))


def check_store(db: Path, acked: dict[str, int]) -> None:
    """The database is intact and holds every acknowledged message exactly once, at its seq."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT client_id, seq FROM events WHERE kind = 'message' AND role = 'visitor'").fetchall()
    finally:
        conn.close()
    assert sorted(rows) == sorted(acked.items())


async def send(client, client_id: str, text: str) -> dict:  # type: ignore[no-untyped-def]
    await client.send({"type": "message", "client_id": client_id, "text": text, "ref": client_id})
    return await client.expect(lambda f: f.get("ref") == client_id and f["type"] in ("ack", "error"))


async def test_disk_full_is_a_clear_retryable_error_and_nothing_is_lost(small_disk: Path, tmp_path: Path) -> None:
    db = small_disk / "chat.db"
    server = Server({**FAST_SETTINGS, **LIMITS, "CHATSVC_DATABASE_URL": f"sqlite+aiosqlite:///{db}"},
                    log_path=tmp_path / "server.log").start()
    try:
        v, welcome = await visitor(server.ws)
        acked = {}
        first = await send(v, "m0", "My card was charged twice")
        acked["m0"] = first["seq"]
        filler = small_disk / "filler"
        run("dd", "if=/dev/zero", f"of={filler}", "bs=64k")  # until the filesystem is full
        refused = None
        for i in range(1, 80):
            answer = await send(v, f"m{i}", "Here are the details of both charges. " * 80)
            if answer["type"] == "error":
                refused = (f"m{i}", answer)
                break
            acked[f"m{i}"] = answer["seq"]
        assert refused is not None, "a full disk must refuse writes"
        client_id, error = refused
        assert error["code"] == "unavailable" and error["retryable"] is True
        assert "disk is full" in error["message"] and "nothing was saved" in error["message"]
        assert httpx.get(f"{server.http}/healthz", timeout=10).status_code == 200, "the process stays up"

        filler.unlink()  # the operator frees space; the client retries the same send
        retried = await send(v, client_id, "Here are the details of both charges. " * 80)
        assert retried["type"] == "ack" and retried["duplicate"] is False
        acked[client_id] = retried["seq"]
        after = await send(v, "later", "Thanks")
        acked["later"] = after["seq"]

        resumed, _ = await visitor(server.ws, token=welcome["token"], last_seq=0)
        replayed = [f for f in resumed.frames if f["type"] == "event" and f["kind"] == "message"]
        assert sorted(f["client_id"] for f in replayed) == sorted(acked)
    finally:
        server.stop()
    assert "the store cannot write: the disk is full" in server.read_log()
    check_store(db, acked)


async def test_read_only_database_is_a_clear_retryable_error_and_recovers(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    server = Server({**FAST_SETTINGS, **LIMITS, "CHATSVC_DATABASE_URL": f"sqlite+aiosqlite:///{db}"},
                    log_path=tmp_path / "server.log").start()
    files = [db, db.with_name("chat.db-wal")]
    try:
        v, _ = await visitor(server.ws)
        acked = {"m0": (await send(v, "m0", "Where is my invoice?"))["seq"]}
        need(None if shutil.which("chattr") else "chattr is not installed (e2fsprogs)")
        frozen = run("chattr", "+i", *map(str, files))
        need(None if frozen.returncode == 0 else
             f"cannot make the database files immutable here (needs root and ext4): {frozen.stderr.strip()}")
        try:
            error = await send(v, "m1", "Is it in the documents library?")
            assert error["type"] == "error" and error["code"] == "unavailable" and error["retryable"] is True
            assert "cannot write" in error["message"] and "nothing was saved" in error["message"]
        finally:
            run("chattr", "-i", *map(str, files))
        retried = await send(v, "m1", "Is it in the documents library?")
        assert retried["type"] == "ack" and retried["duplicate"] is False
        acked["m1"] = retried["seq"]
    finally:
        server.stop()
    assert "the store cannot write" in server.read_log()
    check_store(db, acked)
