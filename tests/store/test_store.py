"""Migrations and store facts, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

import pytest

from chatsvc.cli import main
from chatsvc.store import db


async def test_migrate_is_idempotent_and_safe_to_run_concurrently(database_url: str) -> None:
    engines = [db.create_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(db.migrate(e) for e in engines))
        await db.migrate(engines[0])
        assert await db.current_revision(engines[0]) == db.head_revision()
    finally:
        for e in engines:
            await e.dispose()


async def test_the_secret_key_is_created_once_and_shared(database_url: str) -> None:
    a, b = db.create_engine(database_url), db.create_engine(database_url)
    try:
        await db.migrate(a)
        async with a.begin() as conn:
            first = await db.secret_key(conn)
        async with b.begin() as conn:
            second = await db.secret_key(conn)
        assert first == second and len(first) >= 32
    finally:
        await a.dispose()
        await b.dispose()


def test_migrate_command(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--database-url", database_url]) == 0
    assert f"store at revision {db.head_revision()}" in capsys.readouterr().out


def test_agent_add_prints_a_token_once(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "add", "--name", "Ann", "--email", "ann@example.com", "--database-url", database_url]) == 0
    assert "API token (shown once):" in capsys.readouterr().out
    assert main(["agent", "add", "--name", "Ann", "--email", "ann@example.com", "--database-url", database_url]) == 2
    assert "already exists" in capsys.readouterr().err


def test_plain_driver_names_are_accepted_and_others_refused() -> None:
    assert db.normalise_url("sqlite:///x.db").startswith("sqlite+aiosqlite://")
    assert db.normalise_url("postgresql://u@h/d").startswith("postgresql+asyncpg://")
    with pytest.raises(db.StoreError, match="mysql"):
        db.normalise_url("mysql://u@h/d")
