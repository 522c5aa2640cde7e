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
INLINE_BATCH = 64  # at most this many items are written on the event loop at once (about a millisecond)
CHECKPOINT_EVERY = 200  # inline batches between passive checkpoints in the thread

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


class _Busy(Exception):
    """The event loop's connection would have to wait for a lock."""


def _busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a failed checkpoint is retried with the next one; nothing was lost


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
    return now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class _Batched:
    """A `sqlite3` connection in a thread of its own, fed from the event loop in batches: whatever is queued
    when the thread is free runs in one transaction and one thread hop."""

    begin = "BEGIN"
    thread_name = "chatsvc-sqlite"
    writes = False  # a writer's inline commits call for checkpoints

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000, inline: bool = True) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.inline = inline
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        self._db: sqlite3.Connection | None = None  # the thread's
        self._inline_db: sqlite3.Connection | None = None  # the event loop's, which never waits for a lock
        self._inline_commits = 0
        self._checkpoint: asyncio.Future[Any] | None = None
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
        return self._run_batch(self._db, batch)

    def _batch_inline(self, batch: Sequence[tuple[Any, datetime]]) -> list[Any] | None:
        """The batch on the event loop's own connection, or None when that would mean waiting for a lock
        another connection holds (the thread then waits for it, under the busy timeout)."""
        if self._inline_db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True, cached_statements=64,
                                 timeout=0)
            db.execute("PRAGMA busy_timeout=0")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            # Checkpoints copy the log into the database file and sync it: the thread does them (see _run).
            db.execute("PRAGMA wal_autocheckpoint=0")
            self._prepare_inline(db)
            self._inline_db = db
        try:
            return self._run_batch(self._inline_db, batch)
        except _Busy:
            return None

    def _prepare_inline(self, db: sqlite3.Connection) -> None:
        """Hook for subclasses: settings of the event loop's connection."""

    def _run_batch(self, db: sqlite3.Connection, batch: Sequence[tuple[Any, datetime]]) -> list[Any]:
        results: list[Any] = []
        try:
            db.execute(self.begin)
        except sqlite3.OperationalError as exc:
            if db is self._inline_db and _busy(exc):
                raise _Busy from exc
            raise
        try:
            if len(batch) == 1:
                # Alone in its transaction, an item needs no savepoint: what it must undo, a rollback undoes.
                item, now = batch[0]
                result = self._one(db, item, now, alone=True)
                db.execute("ROLLBACK" if result is DUPLICATE or isinstance(result, _Failed) else "COMMIT")
                return [result]
            for item, now in batch:
                results.append(self._one(db, item, now))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    def _one(self, db: sqlite3.Connection, item: Any, now: datetime,
             alone: bool = False) -> Any:  # pragma: no cover - overridden
        """One item of a batch; `alone`: the only one, so it may skip its savepoint (see `_run_batch`)."""
        raise NotImplementedError

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _checkpoint_now(self) -> None:
        if self._db is None:
            self._db = self._open()
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

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
                items = [(m, now) for m, now, _ in batch]
                try:
                    # A small batch is cheaper on the event loop than a trip to the thread and back, as
                    # long as it never waits for a lock: SQLite in WAL mode commits without syncing.
                    results = self._batch_inline(items) if self.inline and len(batch) <= INLINE_BATCH else None
                    if results is not None:
                        self._after_inline_commit(loop)
                    else:
                        results = await loop.run_in_executor(self._pool, self._batch, items)
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

    def _after_inline_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every CHECKPOINT_EVERY inline batches, a passive checkpoint in the thread keeps the log short."""
        if not self.writes:
            return
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = loop.run_in_executor(self._pool, self._checkpoint_now)
            self._checkpoint.add_done_callback(_ignore_result)

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
        if self._inline_db is not None:
            self._inline_db.close()
            self._inline_db = None
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close_db)
        self._pool.shutdown(wait=True)


class MessageWriter(_Batched):
    """Writes chat messages in group-committed batches on a `sqlite3` connection of its own."""

    begin = "BEGIN IMMEDIATE"
    thread_name = "chatsvc-sqlite-writer"
    writes = True

    def _one(self, db: sqlite3.Connection, item: Message | Operation, now: datetime, alone: bool = False) -> Any:
        if isinstance(item, Message):
            return self._write_one(db, item, now, alone)
        return self._run_one(db, item, now, alone)

    # -- the writer thread

    @staticmethod
    def _run_one(db: sqlite3.Connection, operation: Operation, now: datetime, alone: bool = False) -> Any:
        if alone:
            try:
                return operation(db, _stamp(now))
            except Exception as exc:  # noqa: BLE001 - handed to the caller; the batch is rolled back
                return _Failed(exc)
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
    def _write_one(db: sqlite3.Connection, m: Message, now: datetime,
                   alone: bool = False) -> Written | str | BaseException:
        if alone:  # no savepoint: a duplicate rolls the whole (one-item) transaction back
            try:
                return MessageWriter._write_message(db, m, now)
            except sqlite3.IntegrityError:
                return DUPLICATE
        db.execute("SAVEPOINT message")
        try:
            written = MessageWriter._write_message(db, m, now)
        except sqlite3.IntegrityError:
            written = DUPLICATE
        if written is FALLBACK or written is DUPLICATE:
            db.execute("ROLLBACK TO message")
        db.execute("RELEASE message")
        return written

    @staticmethod
    def _write_message(db: sqlite3.Connection, m: Message, now: datetime) -> Written | str:
        """Bump the conversation's sequence number and append the event; FALLBACK (nothing written) when
        the conversation does not take this message here. A client id seen before raises IntegrityError."""
        stamp = _stamp(now)
        if m.role == "visitor":
            row = db.execute(_VISITOR_BUMP, (stamp, m.text[:500], m.conversation_id, m.author_id)).fetchone()
        else:
            row = db.execute(_AGENT_BUMP, (stamp, m.conversation_id, m.author_id, int(m.lead),
                                           int(m.internal))).fetchone()
        if row is None:
            return FALLBACK
        seq, state, ticket_id = row
        kind = "note" if m.internal else "message"
        db.execute(_INSERT, (m.conversation_id, seq, kind, m.role, m.author_id, m.author_name, m.text,
                             m.client_id, int(m.internal), stamp))
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

    def _prepare_inline(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA query_only=ON")

    def _one(self, db: sqlite3.Connection, item: Operation, now: datetime, alone: bool = False) -> Any:
        try:
            return item(db, _stamp(now))
        except Exception as exc:  # noqa: BLE001 - handed to the caller that queued it
            return _Failed(exc)

    async def read(self, operation: Operation, now: datetime | None = None) -> Any:
        """Run `operation(connection, now)` in the reader thread; its result is returned, its exception raised."""
        return await self._submit(operation, now or datetime.now(UTC))
