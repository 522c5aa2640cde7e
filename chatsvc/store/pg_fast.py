"""The hot path on PostgreSQL: chat messages, a visitor's hello and resume, straight on asyncpg.

Through SQLAlchemy every message or resume is a pool checkout with a liveness ping, a `BEGIN`, several
statements and a `COMMIT`, each a round trip and a trip through the ORM-less but still deep Core layers.
Here each step is one or two prepared statements on a small asyncpg pool of its own, in autocommit:

- a chat message is one statement: the conversation's sequence number is bumped and the event inserted
  by a data-modifying CTE (the row lock on the conversation keeps numbers contiguous; a client id seen
  before violates the unique index and the whole statement, bump included, is undone);
- a resume is one statement: the visitor, their latest conversation and its agent, joined, with the
  socket's row inserted by a CTE; a new visitor is one statement inserting the visitor, the conversation
  and the socket;
- closed sockets are removed together: whatever closed while the last removal ran goes in the next one;
- a replay page is one indexed read.

Only the common case is handled, as in `chatsvc.store.batch` for SQLite: a message the lifecycle must
decide comes back as `FALLBACK` and the service takes its general path. Results have the shapes the
SQLite path returns, so the service treats both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from chatsvc.store.batch import DUPLICATE, FALLBACK, Message, Written

ACQUIRE_TIMEOUT = 10.0
GOODBYE_BATCH = 1000  # closed sockets removed by one statement at most

_VISITOR_MESSAGE = """
WITH bump AS (
    UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1,
           first_question = COALESCE(first_question, $2)
    WHERE id = $3 AND visitor_id = $4 AND state != 'ended'
    RETURNING last_seq, state, ticket_id
), ins AS (
    INSERT INTO events (conversation_id, seq, kind, role, author_id, author_name, text, client_id, internal,
                        data, created_at)
    SELECT $3, last_seq, 'message', 'visitor', $4, NULL, $5, $6, false, NULL, $1 FROM bump
)
SELECT last_seq, state, ticket_id FROM bump
"""

_AGENT_MESSAGE = """
WITH bump AS (
    UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1
    WHERE id = $2 AND (agent_id = $3 OR $4) AND (state = 'with_agent' OR $5)
    RETURNING last_seq, state, ticket_id
), ins AS (
    INSERT INTO events (conversation_id, seq, kind, role, author_id, author_name, text, client_id, internal,
                        data, created_at)
    SELECT $2, last_seq, $6, 'agent', $3, $7, $8, $9, $5, NULL, $1 FROM bump
)
SELECT last_seq, state, ticket_id FROM bump
"""

_RESUME = """
WITH found AS (
    SELECT v.name AS v_name, v.email AS v_email, v.plan AS v_plan, v.community AS v_community, c.*,
           a.name AS agent_name
    FROM visitors v
    LEFT JOIN LATERAL (SELECT * FROM conversations WHERE visitor_id = v.id ORDER BY created_at DESC LIMIT 1) c
           ON true
    LEFT JOIN agents a ON a.id = c.agent_id
    WHERE v.id = $1
), registered AS (
    INSERT INTO visitor_sessions (id, conversation_id, node, heartbeat_at)
    SELECT $2::text, found.id, $3, $4 FROM found
    WHERE $2::text IS NOT NULL AND found.id IS NOT NULL AND found.last_seq >= $5
)
SELECT * FROM found
"""

_NEW_VISITOR = """
WITH v AS (
    INSERT INTO visitors (id, site_key, created_at, verified) VALUES ($1, $3, $5, false) RETURNING id
), c AS (
    INSERT INTO conversations (id, visitor_id, site_key, state, last_seq, visitor_read_seq, agent_read_seq,
                               created_at, updated_at)
    SELECT $2, v.id, $3, 'bot', 0, 0, 0, $5, $5 FROM v
    RETURNING *
), s AS (
    INSERT INTO visitor_sessions (id, conversation_id, node, heartbeat_at)
    SELECT $4::text, c.id, $6, $5 FROM c WHERE $4::text IS NOT NULL
)
SELECT * FROM c
"""

_NEW_CONVERSATION = """
INSERT INTO conversations (id, visitor_id, site_key, state, last_seq, visitor_read_seq, agent_read_seq,
                           created_at, updated_at)
VALUES ($1, $2, $3, 'bot', 0, 0, 0, $4, $4) RETURNING *
"""

_REGISTER = "INSERT INTO visitor_sessions (id, conversation_id, node, heartbeat_at) VALUES ($1, $2, $3, $4)"

_UNREGISTER = """
WITH gone AS (DELETE FROM visitor_sessions WHERE id = ANY($1::text[]))
UPDATE conversations SET visitor_seen_at = $2 WHERE id = ANY($3::text[])
"""

_APPEND_IN_STATE = """
WITH bump AS (
    UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 WHERE id = $2 AND state = $3
    RETURNING last_seq
), ins AS (
    INSERT INTO events (conversation_id, seq, kind, role, author_id, author_name, text, client_id, internal,
                        data, created_at)
    SELECT $2, last_seq, $4, $5, $6, $7, $8, NULL, false, $9::json, $1 FROM bump
)
SELECT last_seq FROM bump
"""

_REPLAY_COLUMNS = "seq, kind, role, author_id, author_name, text, client_id, data, created_at"
_REPLAY_ALL = (f"SELECT {_REPLAY_COLUMNS} FROM events WHERE conversation_id = $1 AND seq > $2 "
               "ORDER BY seq LIMIT $3")
_REPLAY_PUBLIC = (f"SELECT {_REPLAY_COLUMNS} FROM events WHERE conversation_id = $1 AND seq > $2 "
                  "AND NOT internal ORDER BY seq LIMIT $3")
_BY_CLIENT_ID = f"SELECT {_REPLAY_COLUMNS}, internal FROM events WHERE conversation_id = $1 AND client_id = $2"

_CONVERSATION_FIELDS = ("id", "visitor_id", "site_key", "state", "agent_id", "last_seq", "visitor_read_seq",
                        "agent_read_seq", "first_question", "email", "waiting_since", "ticket_id")


class StoreUnavailable(Exception):
    """The database could not be reached or refused the statement; nothing was written. Retryable."""


def asyncpg_dsn(url: str) -> str | None:
    """The asyncpg DSN for a PostgreSQL URL, or None for any other database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PgFastPath:
    """A small asyncpg pool for the hot path, beside the SQLAlchemy engine that does everything else."""

    def __init__(self, dsn: str, *, max_size: int = 8) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._creating = asyncio.Lock()
        self._goodbyes: list[tuple[str, str, datetime, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.goodbye_statements = 0  # how many statements removed closed sockets (for tests and metrics)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._creating:  # the first callers at once must not each create a pool
            if self._pool is not None:
                return self._pool
            try:
                self._pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.max_size,
                                                       max_inactive_connection_lifetime=60.0,
                                                       server_settings={"application_name": "chatsvc-hot"})
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                raise StoreUnavailable(exc.__class__.__name__) from exc
            return self._pool

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), 10)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except Exception:  # noqa: BLE001 - a pool whose server went away: drop its connections
                pool.terminate()

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                return await getattr(conn, method)(sql, *args)
        except asyncpg.UniqueViolationError:
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreUnavailable(exc.__class__.__name__) from exc

    # ------------------------------------------------------------------ messages

    async def write_message(self, m: Message, now: datetime) -> Written | str:
        try:
            if m.role == "visitor":
                row = await self._run("fetchrow", _VISITOR_MESSAGE, now, m.text[:500], m.conversation_id,
                                      m.author_id, m.text, m.client_id)
            else:
                row = await self._run("fetchrow", _AGENT_MESSAGE, now, m.conversation_id, m.author_id, m.lead,
                                      m.internal, "note" if m.internal else "message", m.author_name, m.text,
                                      m.client_id)
        except asyncpg.UniqueViolationError:
            return DUPLICATE
        if row is None:
            return FALLBACK
        return Written(seq=int(row[0]), state=str(row[1]), ticket_id=row[2], at=now)

    async def append_in_state(self, conv_id: str, state: str, *, kind: str, role: str, author_id: str | None,
                              author_name: str | None, text: str | None, data_json: str | None,
                              now: datetime) -> int | None:
        """Append one event if the conversation is in `state`; its seq, or None (the state moved on)."""
        return await self._run("fetchval", _APPEND_IN_STATE, now, conv_id, state, kind, role, author_id,
                               author_name, text, data_json)

    # ------------------------------------------------------------------ visitors

    async def open_plain_visitor(self, visitor_id: str | None, site: str, last_seq: int, presence_id: str | None,
                                 node: str, now: datetime) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
        """(visitor id, identity fields, latest conversation, its agent or None); the socket is registered
        under `presence_id` unless the client is ahead of the conversation (a resync follows)."""
        row = None
        if visitor_id is not None:  # found, with the socket registered in the same statement
            row = await self._run("fetchrow", _RESUME, visitor_id, presence_id, node, now, last_seq)
        if row is None:  # no token, or one from another database: start afresh
            vid, conv_id = str(uuid.uuid4()), str(uuid.uuid4())
            conv = await self._run("fetchrow", _NEW_VISITOR, vid, conv_id, site,
                                   presence_id if last_seq <= 0 else None, now, node)
            identity = {"name": None, "email": None, "plan": None, "community": None}
            return vid, identity, _conversation(conv), None
        identity = {"name": row["v_name"], "email": row["v_email"], "plan": row["v_plan"],
                    "community": row["v_community"]}
        if row["id"] is None:  # a visitor without a conversation yet
            conv = _conversation(await self._run("fetchrow", _NEW_CONVERSATION, str(uuid.uuid4()), visitor_id,
                                                 site, now))
            if presence_id is not None and last_seq <= conv["last_seq"]:
                await self._run("execute", _REGISTER, presence_id, conv["id"], node, now)
            return visitor_id, identity, conv, None
        agent = None if row["agent_id"] is None else {"id": row["agent_id"], "name": row["agent_name"]}
        return visitor_id, identity, _conversation(row), agent

    async def register(self, session_id: str, conv_id: str, node: str, now: datetime) -> None:
        await self._run("execute", _REGISTER, session_id, conv_id, node, now)

    async def unregister(self, session_id: str, conv_id: str, now: datetime) -> None:
        """Remove a closed socket's row. Goodbyes are written together: whatever closed while the last
        statement ran goes in the next one (a thousand sockets dropping at once cost a few statements)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._goodbyes.append((session_id, conv_id, now, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._say_goodbyes())
        await future

    async def _say_goodbyes(self) -> None:
        while self._goodbyes:
            batch, self._goodbyes = self._goodbyes[:GOODBYE_BATCH], self._goodbyes[GOODBYE_BATCH:]
            self.goodbye_statements += 1
            try:
                await self._run("execute", _UNREGISTER, [s for s, _, _, _ in batch], max(n for _, _, n, _ in batch),
                                sorted({c for _, c, _, _ in batch}))
            except StoreUnavailable as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for *_, future in batch:
                    if not future.done():
                        future.set_result(None)

    # ------------------------------------------------------------------ reads

    async def replay_page(self, conv_id: str, after_seq: int, include_internal: bool, limit: int) -> list[Any]:
        """Rows of (seq, kind, role, author_id, author_name, text, client_id, data, created_at)."""
        return list(await self._run("fetch", _REPLAY_ALL if include_internal else _REPLAY_PUBLIC, conv_id,
                                    after_seq, limit))


    async def event_by_client(self, conv_id: str, client_id: str) -> Any:
        """The event a client id stored, as a replay row plus its `internal` flag, or None."""
        return await self._run("fetchrow", _BY_CLIENT_ID, conv_id, client_id)


def _conversation(row: Any) -> dict[str, Any]:
    return {name: row[name] for name in _CONVERSATION_FIELDS}
