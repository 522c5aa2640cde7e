"""Engine creation and schema migrations for the SQLite default and PostgreSQL."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chatsvc.store.tables import kv

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every process that migrates the same database.
_PG_MIGRATION_LOCK = 7_234_001


# Execution options for connections that only read (`engine.execution_options(**READ_ONLY).connect()`).
READ_ONLY = {"chatsvc_read_only": True}


class StoreError(Exception):
    """The database could not be opened or migrated; the message says why and what to do."""


def normalise_url(url: str) -> str:
    """Accept the plain driver names people type and pick the async driver for them."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif driver not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise StoreError(f"unsupported database URL scheme {driver!r}: use sqlite:///FILE or postgresql://...")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str) -> AsyncEngine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer anyway, and a single connection makes the
        # in-process order of transactions the commit order. BEGIN IMMEDIATE keeps a second
        # process (a CLI command beside the server) from deadlocking on lock upgrades.
        # The connection rolls back its own transaction when closed; the pool need not do it again.
        # The driver's busy timeout covers the pragmas below: switching a new file to WAL waits for a
        # process that is migrating it instead of failing at once.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60,
                                     pool_reset_on_return=None, connect_args={"timeout": 60})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Reads marked READ_ONLY read a snapshot and take no lock; everything else may write.
            if conn.get_execution_options().get("chatsvc_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _alembic_config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once."""

    def upgrade(sync_conn: Any) -> None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        command.upgrade(_alembic_config(sync_conn), "head")

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
    except OSError as exc:
        raise StoreError(f"cannot reach the database: {exc}") from exc


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(sync_conn: Any) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def secret_key(conn: AsyncConnection) -> str:
    """The key that signs visitor tokens, created once per database so every process shares it."""
    row = (await conn.execute(select(kv.c.value).where(kv.c.key == "secret_key"))).first()
    if row is not None:
        return str(row[0])
    value = secrets.token_urlsafe(32)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        await conn.execute(pg_insert(kv).values(key="secret_key", value=value).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        await conn.execute(sqlite_insert(kv).values(key="secret_key", value=value).on_conflict_do_nothing())
    row = (await conn.execute(select(kv.c.value).where(kv.c.key == "secret_key"))).one()
    return str(row[0])


def head_revision() -> str:
    """The newest migration shipped with this version."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return head
