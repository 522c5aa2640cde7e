"""Where the test suite finds PostgreSQL and Redis, and whether they answer."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

POSTGRES_URL = os.environ.get("CHATSVC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CHATSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _port_missing(url: str, default_port: int, what: str) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return f"{what} not reachable at {host}:{port} ({exc.__class__.__name__}); set {what.upper()} URL env"


def postgres_missing() -> str | None:
    return _port_missing(POSTGRES_URL, 5432, "PostgreSQL")


def redis_missing() -> str | None:
    return _port_missing(REDIS_URL, 6379, "Redis")


def create_postgres_database() -> str:
    """A new empty database on the test server; returns its URL. Drop it with drop_postgres_database."""
    import uuid

    import asyncpg

    name = f"chatsvc_t_{uuid.uuid4().hex[:12]}"

    async def run() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _run(run)
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


def drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rpartition("/")[2]

    async def run() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(run)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _run(coro_fn):  # type: ignore[no-untyped-def]
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()
