"""Group commit for chat messages on SQLite: many messages, one transaction, one thread hop.

Chat messages are the hot path: every one bumps its conversation's sequence number and appends an event.
Through SQLAlchemy and aiosqlite that costs some twenty thread round trips per message. This writer owns a
plain `sqlite3` connection in a thread of its own and writes whatever messages are queued when it wakes in
one `BEGIN IMMEDIATE … COMMIT`, each message under a savepoint of its own, with SQL prepared once. While a
batch is being written the next one queues up, so the batch grows with the load (group commit).

Only the common case is written here: a message to a conversation in a state that takes it. Anything else
(an ended conversation the visitor returns to, a conversation that is not the sender's) comes back as
`FALLBACK` and the service takes its general path, which decides with the lifecycle rules. A client id seen
before comes back as `DUPLICATE` with nothing written.

Several connections to one SQLite file are safe (WAL, `BEGIN IMMEDIATE`, a busy timeout); the order of
events in a conversation is still its sequence order, assigned inside each transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_BATCH = 512

FALLBACK = "fallback"
DUPLICATE = "duplicate"

_VISITOR_BUMP = (
    "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?, "
    "first_question = COALESCE(first_question, ?) "
    "WHERE id = ? AND visitor_id = ? AND state != 'ended' "
    "RETURNING last_seq, state, ticket_id"
)
_AGENT_BUMP = (
    "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ? "
    "WHERE id = ? AND (agent_id = ? OR ?) AND (state = 'with_agent' OR ?) "
    "RETURNING last_seq, state, ticket_id"
)
_INSERT = (
    "INSERT INTO events (conversation_id, seq, kind, role, author_id, author_name, text, client_id, "
    "internal, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)"
)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message to write. `lead` lets an agent write to a conversation that is not theirs."""

    conversation_id: str
    role: str  # visitor | agent
    author_id: str
    author_name: str | None
    text: str
    client_id: str
    internal: bool = False
    lead: bool = False


@dataclass(frozen=True, slots=True)
class Written:
    seq: int
    state: str  # the conversation's state when the message was written
    ticket_id: str | None
    at: datetime


Operation = Callable[[sqlite3.Connection, str], Any]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: Exception


def parse_stamp(value: str | None) -> datetime | None:
    """A stored DateTime back as an aware UTC datetime."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def sqlite_path(url: str) -> str | None:
    """The file behind a SQLite URL, or None for anything else (PostgreSQL, in-memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database


def _stamp(now: datetime) -> str:
    # The text SQLAlchemy stores for DateTime on SQLite: UTC, no offset, microseconds.
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Batched:
    """A `sqlite3` connection in a thread of its own, fed from the event loop in batches: whatever is queued
    when the thread is free runs in one transaction and one thread hop."""

    begin = "BEGIN"
    thread_name = "chatsvc-sqlite"

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[Any, datetime, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True, cached_statements=64,
                             timeout=self.busy_timeout_ms / 1000)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _batch(self, batch: Sequence[tuple[Any, datetime]]) -> list[Any]:
        if self._db is None:
            self._db = self._open()
        db = self._db
        results: list[Any] = []
        db.execute(self.begin)
        try:
            for item, now in batch:
                results.append(self._one(db, item, now))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    def _one(self, db: sqlite3.Connection, item: Any, now: datetime) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- the event loop side

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.thread_name)

    async def _submit(self, item: Any, now: datetime) -> Any:
        if self._closed:
            raise sqlite3.OperationalError(f"the {self.thread_name} thread is closed")
        if self._task is None:
            self.start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, now, future))
        self._wake.set()
        result = await future
        if isinstance(result, _Failed):
            raise result.error
        return result

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    results = await loop.run_in_executor(self._pool, self._batch,
                                                          [(m, now) for m, now, _ in batch])
                except asyncio.CancelledError:
                    for _, _, future in batch:
                        if not future.done():
                            future.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - each waiting caller gets the store's error
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
            if self._closed:
                return

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, 30)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        for _, _, future in self._queue:
            if not future.done():
                future.set_exception(sqlite3.OperationalError(f"the {self.thread_name} thread is closed"))
        self._queue = []
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close_db)
        self._pool.shutdown(wait=True)


class MessageWriter(_Batched):
    """Writes chat messages in group-committed batches on a `sqlite3` connection of its own."""

    begin = "BEGIN IMMEDIATE"
    thread_name = "chatsvc-sqlite-writer"

    def _one(self, db: sqlite3.Connection, item: Message | Operation, now: datetime) -> Any:
        if isinstance(item, Message):
            return self._write_one(db, item, now)
        return self._run_one(db, item, now)

    # -- the writer thread

    @staticmethod
    def _run_one(db: sqlite3.Connection, operation: Operation, now: datetime) -> Any:
        db.execute("SAVEPOINT operation")
        try:
            result = operation(db, _stamp(now))
        except Exception as exc:  # noqa: BLE001 - handed to the caller that queued it
            db.execute("ROLLBACK TO operation")
            db.execute("RELEASE operation")
            return _Failed(exc)
        db.execute("RELEASE operation")
        return result

    @staticmethod
    def _write_one(db: sqlite3.Connection, m: Message, now: datetime) -> Written | str | BaseException:
        stamp = _stamp(now)
        db.execute("SAVEPOINT message")
        try:
            if m.role == "visitor":
                row = db.execute(_VISITOR_BUMP, (stamp, m.text[:500], m.conversation_id, m.author_id)).fetchone()
            else:
                row = db.execute(_AGENT_BUMP, (stamp, m.conversation_id, m.author_id, int(m.lead),
                                               int(m.internal))).fetchone()
            if row is None:
                db.execute("ROLLBACK TO message")
                db.execute("RELEASE message")
                return FALLBACK
            seq, state, ticket_id = row
            kind = "note" if m.internal else "message"
            db.execute(_INSERT, (m.conversation_id, seq, kind, m.role, m.author_id, m.author_name, m.text,
                                 m.client_id, int(m.internal), stamp))
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO message")
            db.execute("RELEASE message")
            return DUPLICATE
        db.execute("RELEASE message")
        return Written(seq=int(seq), state=str(state), ticket_id=ticket_id, at=now)

    async def write(self, message: Message | Operation, now: datetime) -> Any:
        """Queue one message; returns what was written, FALLBACK or DUPLICATE. Store errors raise.

        An `Operation` (a function of the connection and the current time as stored) runs in the same
        batches under a savepoint of its own; its result is returned, its exception raised.
        """
        return await self._submit(message, now)


class Reader(_Batched):
    """Runs reads on a `sqlite3` connection of its own, batched like the writer: whatever is queued when the
    thread is free is read in one snapshot (a plain `BEGIN`, which takes no write lock), one thread hop."""

    thread_name = "chatsvc-sqlite-reader"

    def _open(self) -> sqlite3.Connection:
        db = super()._open()
        db.execute("PRAGMA query_only=ON")
        return db

    def _one(self, db: sqlite3.Connection, item: Operation, now: datetime) -> Any:
        try:
            return item(db, _stamp(now))
        except Exception as exc:  # noqa: BLE001 - handed to the caller that queued it
            return _Failed(exc)

    async def read(self, operation: Operation, now: datetime | None = None) -> Any:
        """Run `operation(connection, now)` in the reader thread; its result is returned, its exception raised."""
        return await self._submit(operation, now or datetime.now(UTC))
