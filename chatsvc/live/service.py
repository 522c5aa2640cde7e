"""The conversation service: every change to a live chat goes through here.

One write path: load → decide with the pure rules in chatsvc.domain → write in one transaction →
commit → publish to the broker. Nothing is published before it is committed, so a client that resumes
from the database never sees less than a live client saw.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatsvc.broker import Broker, BrokerUnavailable
from chatsvc.domain.assignment import AgentLoad, Need, choose_agent
from chatsvc.domain.conversation import IllegalTransition, State, Trigger, transition
from chatsvc.live import wire
from chatsvc.live.identity import TokenSigner, hash_token, identity_valid
from chatsvc.ops import metrics
from chatsvc.ops.logs import Outage, every
from chatsvc.settings import Settings
from chatsvc.store import batch, db, pg_fast
from chatsvc.store.tables import (
    agent_sessions,
    agents,
    conversations,
    events,
    nodes,
    offers,
    tickets,
    visitor_sessions,
    visitors,
)
from chatsvc.ws import protocol
from chatsvc.ws.protocol import ErrorCode

log = logging.getLogger("chatsvc.live")

LEAD_ROLES = frozenset({"lead", "manager", "admin"})
AGENT_ROLES = frozenset({"agent", "lead", "manager", "admin", "writer"})
REPLAY_PAGE = 500

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


class ServiceError(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool = False,
                 conversation_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.conversation_id = conversation_id


@dataclass(frozen=True)
class AgentRef:
    id: str
    name: str
    role: str
    presence: str


@dataclass(frozen=True)
class VisitorSession:
    visitor_id: str
    token: str
    conversation: protocol.ConversationInfo
    presence_id: str | None = None  # the open socket, when opening registered it already


@dataclass
class _Tx:
    """Frames to publish once the transaction has committed."""

    conn: AsyncConnection
    now: datetime
    outbox: list[tuple[str, bytes]] = field(default_factory=list)
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def publish(self, channel: str, payload: bytes) -> None:
        self.outbox.append((channel, payload))


TicketHook = Callable[[str], Awaitable[None]]

BOT_AUTHOR = protocol.Author(id=None, name="Help bot")
SUGGESTIONS_TEXT = "These articles may answer your question. Did one of them help?"
NO_MATCH_TEXT = "I couldn't find an article about that. You can talk to a person, or leave your e-mail."


class ChatService:
    def __init__(
        self,
        engine: AsyncEngine,
        broker: Broker,
        settings: Settings,
        *,
        secret_key: str,
        clock: Clock = utcnow,
        node: str | None = None,
        on_ticket_pending: TicketHook | None = None,
        kb: Any = None,
        classifier: Any = None,
    ) -> None:
        self.engine = engine
        self._reader = engine.execution_options(**db.READ_ONLY)  # same pool
        self.broker = broker
        self.settings = settings
        self.clock = clock
        self.node = node or f"node-{secrets.token_hex(4)}"
        self.tokens = TokenSigner(secret_key)
        self.on_ticket_pending = on_ticket_pending
        self.kb = kb  # chatsvc.kb_suggest.store.KnowledgeBase, or None for no bot answers
        self.classifier = classifier  # chatsvc.classifier.Classifier, or None
        self.tickets: Any = None  # chatsvc.tickets.service.TicketService once the app wires it
        self._background: set[asyncio.Task[None]] = set()
        # Group commit for chat messages on a SQLite file; None on PostgreSQL (and in-memory SQLite).
        path = batch.sqlite_path(str(engine.url)) if settings.group_commit else None
        self.writer = batch.MessageWriter(path) if path else None
        # Reads on the hot path (a resume's replay) on a plain `sqlite3` connection of their own, batched.
        self.reader = batch.Reader(path) if path else None
        # The same steps straight on asyncpg on PostgreSQL (see chatsvc.store.pg_fast).
        dsn = pg_fast.asyncpg_dsn(str(engine.url)) if settings.group_commit else None
        self.pg = pg_fast.PgFastPath(dsn) if dsn else None
        # Set by the ticket service: a visitor message to a ticketed conversation goes onto the ticket.
        self.on_ticketed_message: Callable[[str, protocol.Event], Awaitable[None]] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._local_agent_sessions: dict[str, str] = {}  # session id -> agent id
        self._dispatching = False
        self._dispatch_again = False
        self._last_heartbeat: datetime | None = None

    # ------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _tx(self):  # type: ignore[no-untyped-def]
        try:
            async with self.engine.begin() as conn:
                tx = _Tx(conn, self.clock())
                yield tx
        except PoolTimeout as exc:
            raise ServiceError(ErrorCode.UNAVAILABLE, "the store is busy; retry", retryable=True) from exc
        except DBAPIError as exc:
            if isinstance(exc, IntegrityError):
                raise
            problem = store_problem(exc)
            if problem is None:
                # The caller reports it (an error frame, a sweep's outage line): one line per failure is noise.
                log.debug("database error: %s", exc.__class__.__name__)
                raise ServiceError(ErrorCode.UNAVAILABLE, "the store is unavailable; retry", retryable=True) from exc
            log.error("the store cannot write: %s (%s)", problem, _driver_message(exc))
            raise ServiceError(ErrorCode.UNAVAILABLE, f"the store cannot write ({problem}); nothing was saved, "
                               "retry later", retryable=True) from exc
        except OSError as exc:
            raise ServiceError(ErrorCode.UNAVAILABLE, "the store is unavailable; retry", retryable=True) from exc
        if tx.outbox:
            # Committed: announce it even when the caller is being cancelled (a drain closing its socket),
            # or other processes would not hear of it until the conversation's next event.
            await asyncio.shield(self._publish_all(tx.outbox))
        for fn in tx.after:
            try:
                await fn()
            except (ServiceError, PoolTimeout, DBAPIError, OSError) as exc:
                # Committed already: a follow-up (offering a waiting chat, say) that finds the store busy
                # must not turn the command into an error; the sweep dispatches waiting chats again.
                log.warning("follow-up after commit deferred: %s", getattr(exc, "message", exc.__class__.__name__))

    async def _publish_all(self, outbox: list[tuple[str, bytes]]) -> None:
        for channel, payload in outbox:
            await self._publish(channel, payload)

    def _read(self) -> Any:
        """A connection for reads only: on SQLite it takes no write lock (a snapshot of the WAL)."""
        return self._reader.connect()

    def _publish_now(self, channel: str, payload: bytes) -> bool:
        """Publish without awaiting where the broker can (in-process): no task, nothing to cancel."""
        try:
            return self.broker.publish_now(channel, payload)
        except BrokerUnavailable:
            log.warning("broker unavailable; %s will be delivered on resume", channel)
            return True

    async def _publish(self, channel: str, payload: bytes) -> None:
        try:
            await self.broker.publish(channel, payload)
        except BrokerUnavailable:
            # Committed already: subscribers catch up from the database when the broker returns.
            log.warning("broker unavailable; %s will be delivered on resume", channel)

    async def _append(
        self,
        tx: _Tx,
        conv_id: str,
        *,
        kind: str,
        role: str,
        author: protocol.Author | None = None,
        text: str | None = None,
        client_id: str | None = None,
        internal: bool = False,
        data: dict[str, Any] | None = None,
    ) -> protocol.Event:
        seq = (
            await tx.conn.execute(
                update(conversations)
                .where(conversations.c.id == conv_id)
                .values(last_seq=conversations.c.last_seq + 1, updated_at=tx.now)
                .returning(conversations.c.last_seq)
            )
        ).scalar_one()
        await tx.conn.execute(
            insert(events).values(
                conversation_id=conv_id,
                seq=seq,
                kind=kind,
                role=role,
                author_id=author.id if author else None,
                author_name=author.name if author else None,
                text=text,
                client_id=client_id,
                internal=internal,
                data=data,
                created_at=tx.now,
            )
        )
        frame = protocol.Event(
            conversation_id=conv_id, seq=seq, kind=kind, role=role, author=author,  # type: ignore[arg-type]
            text=text, client_id=client_id, data=data, at=iso(tx.now) or "",
        )
        tx.publish(wire.conv_channel(conv_id), wire.event_payload(frame, internal))
        return frame

    async def _conv(self, conn: AsyncConnection, conv_id: str) -> Any:
        row = (await conn.execute(select(conversations).where(conversations.c.id == conv_id))).first()
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
        return row

    async def _state_change(self, tx: _Tx, conv: Any, trigger: Trigger, *, reason: str | None = None,
                            actor: protocol.Author | None = None, **values: Any) -> State:
        """Apply `trigger` if the conversation is still in the state we read; lose races cleanly."""
        old = State(conv.state)
        try:
            new = transition(old, trigger)
        except IllegalTransition as exc:
            raise ServiceError(ErrorCode.ILLEGAL_STATE, str(exc), conversation_id=conv.id) from None
        result = await tx.conn.execute(
            update(conversations)
            .where(conversations.c.id == conv.id, conversations.c.state == old.value)
            .values(state=new.value, updated_at=tx.now, **values)
        )
        if result.rowcount != 1:
            raise ServiceError(ErrorCode.ILLEGAL_STATE, "the conversation changed meanwhile; retry",
                               conversation_id=conv.id, retryable=True)
        if new is not old:
            await self._append(tx, conv.id, kind="state", role="system", author=actor,
                               data={"from": old.value, "to": new.value, "reason": reason or trigger.value})
        return new

    # ------------------------------------------------------------------ info

    async def conversation_info(self, conn: AsyncConnection, conv: Any) -> protocol.ConversationInfo:
        agent = None
        if conv.agent_id:
            row = (await conn.execute(select(agents.c.id, agents.c.name).where(agents.c.id == conv.agent_id))).first()
            if row:
                agent = protocol.Author(id=row.id, name=row.name)
        visitor = None
        vrow = (await conn.execute(select(visitors).where(visitors.c.id == conv.visitor_id))).first()
        if vrow is not None:
            visitor = protocol.Identity(name=vrow.name, email=vrow.email or conv.email, plan=vrow.plan,
                                        community=vrow.community)
        return protocol.ConversationInfo(
            id=conv.id, state=conv.state, last_seq=conv.last_seq, agent=agent, visitor=visitor,
            first_question=conv.first_question, waiting_since=iso(conv.waiting_since),
            visitor_read_seq=conv.visitor_read_seq, agent_read_seq=conv.agent_read_seq,
        )

    async def replay(self, conv_id: str, after_seq: int, *, include_internal: bool) -> list[protocol.Event]:
        """Every stored event of a conversation after `after_seq`, in order."""
        if self.reader is not None or self.pg is not None:
            return await self._replay_direct(conv_id, after_seq, include_internal)
        out: list[protocol.Event] = []
        cursor = after_seq
        async with self._read() as conn:
            while True:
                q = select(events).where(events.c.conversation_id == conv_id, events.c.seq > cursor)
                if not include_internal:
                    q = q.where(events.c.internal.is_(False))
                rows = (await conn.execute(q.order_by(events.c.seq).limit(REPLAY_PAGE))).all()
                out.extend(_event_frame(r) for r in rows)
                if len(rows) < REPLAY_PAGE:
                    return out
                cursor = rows[-1].seq

    async def _replay_direct(self, conv_id: str, after_seq: int, include_internal: bool) -> list[protocol.Event]:
        """`replay` on the SQLite reader thread or the PostgreSQL fast path."""
        sql = _REPLAY_ALL if include_internal else _REPLAY_PUBLIC

        def page(db: sqlite3.Connection, _now: str) -> list[tuple[Any, ...]]:
            return db.execute(sql, (conv_id, cursor, REPLAY_PAGE)).fetchall()

        out: list[protocol.Event] = []
        cursor = after_seq
        while True:
            if self.pg is not None:
                try:
                    rows = await self.pg.replay_page(conv_id, cursor, include_internal, REPLAY_PAGE)
                except pg_fast.StoreUnavailable as exc:
                    raise _pg_unavailable(exc) from exc
            else:
                try:
                    rows = await self.reader.read(page)  # type: ignore[union-attr]
                except sqlite3.Error as exc:
                    raise _sqlite_unavailable(exc) from exc
            out.extend(_event_from_tuple(conv_id, r) for r in rows)
            if len(rows) < REPLAY_PAGE:
                return out
            cursor = rows[-1][0]

    # ------------------------------------------------------------------ visitors

    async def open_visitor(self, hello: protocol.VisitorHello, *, register: bool = False) -> VisitorSession:
        """The visitor and their latest conversation, created when new. With `register`, the socket may be
        registered in the same step (the session's `presence_id` is then set; else call `register_visitor`)."""
        identity = hello.identity
        verified = False
        if identity is not None:
            fields = msgspec.structs.asdict(identity)
            if hello.identity_sig is not None or self.settings.identity_required:
                if not identity_valid(self.settings.identity_secret, fields, hello.identity_sig):
                    raise ServiceError(ErrorCode.IDENTITY_INVALID,
                                       "the identity signature does not match; see docs/protocol.md#identity")
                verified = True
        visitor_id = self.tokens.verify(hello.token, hello.site) if hello.token else None
        if identity is None and (self.writer is not None or self.pg is not None):
            return await self._open_plain_visitor(visitor_id, hello, register=register)
        async with self._tx() as tx:
            conv = None
            if visitor_id is not None:
                exists = (await tx.conn.execute(select(visitors.c.id).where(visitors.c.id == visitor_id))).first()
                if exists is None:
                    visitor_id = None  # a token from another database: start afresh
            if visitor_id is None:
                visitor_id = str(uuid.uuid4())
                await tx.conn.execute(insert(visitors).values(id=visitor_id, site_key=hello.site,
                                                              created_at=tx.now, verified=False))
            else:
                conv = (await tx.conn.execute(
                    select(conversations).where(conversations.c.visitor_id == visitor_id)
                    .order_by(conversations.c.created_at.desc()).limit(1))).first()
            if identity is not None:
                values = {k: v for k, v in msgspec.structs.asdict(identity).items() if v is not None}
                await tx.conn.execute(update(visitors).where(visitors.c.id == visitor_id)
                                      .values(verified=verified, **values))
            if conv is None:
                conv_id = str(uuid.uuid4())
                await tx.conn.execute(insert(conversations).values(
                    id=conv_id, visitor_id=visitor_id, site_key=hello.site, state=State.BOT.value,
                    last_seq=0, visitor_read_seq=0, agent_read_seq=0, created_at=tx.now, updated_at=tx.now))
                conv = await self._conv(tx.conn, conv_id)
            if hello.last_seq > conv.last_seq:
                raise ServiceError(ErrorCode.RESYNC_REQUIRED,
                                   f"last_seq {hello.last_seq} is ahead of the conversation ({conv.last_seq}); "
                                   "drop the local transcript and resume from 0", conversation_id=conv.id)
            info = await self.conversation_info(tx.conn, conv)
        return VisitorSession(visitor_id, self.tokens.issue(visitor_id, hello.site), info)

    async def _open_plain_visitor(self, visitor_id: str | None, hello: protocol.VisitorHello, *,
                                  register: bool) -> VisitorSession:
        """A visitor without identity: found or created, with their latest conversation (and the socket
        registered, with `register`), in one group-committed step on SQLite or one or two statements on
        PostgreSQL (the general path does the same through SQLAlchemy)."""
        site = hello.site
        presence_id = str(uuid.uuid4()) if register else None
        node = self.node

        def open_(db: sqlite3.Connection, now: str) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
            db.row_factory = sqlite3.Row
            try:
                vid, vrow, conv = visitor_id, None, None
                if vid is not None:
                    vrow = db.execute("SELECT name, email, plan, community FROM visitors WHERE id = ?",
                                      (vid,)).fetchone()
                if vrow is None:
                    vid = str(uuid.uuid4())  # no token, or one from another database: start afresh
                    db.execute("INSERT INTO visitors (id, site_key, created_at, verified) VALUES (?, ?, ?, 0)",
                               (vid, site, now))
                    vrow = {"name": None, "email": None, "plan": None, "community": None}
                else:
                    conv = db.execute("SELECT * FROM conversations WHERE visitor_id = ? "
                                      "ORDER BY created_at DESC LIMIT 1", (vid,)).fetchone()
                if conv is None:
                    conv_id = str(uuid.uuid4())
                    db.execute("INSERT INTO conversations (id, visitor_id, site_key, state, last_seq, "
                               "visitor_read_seq, agent_read_seq, created_at, updated_at) "
                               "VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)",
                               (conv_id, vid, site, State.BOT.value, now, now))
                    conv = db.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
                if presence_id is not None and hello.last_seq <= conv["last_seq"]:
                    db.execute("INSERT INTO visitor_sessions (id, conversation_id, node, heartbeat_at) "
                               "VALUES (?, ?, ?, ?)", (presence_id, conv["id"], node, now))
                agent = None
                if conv["agent_id"]:
                    agent = db.execute("SELECT id, name FROM agents WHERE id = ?", (conv["agent_id"],)).fetchone()
                return vid, dict(vrow), dict(conv), None if agent is None else dict(agent)
            finally:
                db.row_factory = None

        if self.pg is not None:
            try:
                vid, vrow, conv, agent = await self.pg.open_plain_visitor(
                    visitor_id, site, hello.last_seq, presence_id, node, self.clock())
            except pg_fast.StoreUnavailable as exc:
                raise _pg_unavailable(exc) from exc
        else:
            try:
                vid, vrow, conv, agent = await self.writer.write(open_, self.clock())  # type: ignore[union-attr]
            except sqlite3.Error as exc:
                raise _sqlite_unavailable(exc) from exc
        if hello.last_seq > conv["last_seq"]:
            raise ServiceError(ErrorCode.RESYNC_REQUIRED,
                               f"last_seq {hello.last_seq} is ahead of the conversation ({conv['last_seq']}); "
                               "drop the local transcript and resume from 0", conversation_id=conv["id"])
        info = protocol.ConversationInfo(
            id=conv["id"], state=conv["state"], last_seq=conv["last_seq"],
            agent=None if agent is None else protocol.Author(id=agent["id"], name=agent["name"]),
            visitor=protocol.Identity(name=vrow["name"], email=vrow["email"] or conv["email"], plan=vrow["plan"],
                                      community=vrow["community"]),
            first_question=conv["first_question"], waiting_since=iso(_stamp(conv["waiting_since"])),
            visitor_read_seq=conv["visitor_read_seq"], agent_read_seq=conv["agent_read_seq"],
        )
        # The token is a deterministic signature of (visitor, site): a valid one is handed back as it came.
        token = hello.token if vid == visitor_id and hello.token else self.tokens.issue(vid, site)
        return VisitorSession(vid, token, info, presence_id)

    def _check_text(self, text: str) -> str:
        if not text.strip():
            raise ServiceError(ErrorCode.EMPTY, "the message is empty")
        if len(text) > self.settings.max_message_chars:
            raise ServiceError(ErrorCode.TOO_LONG,
                               f"messages are limited to {self.settings.max_message_chars} characters")
        return text

    async def _duplicate(self, conn: AsyncConnection, conv_id: str, client_id: str) -> int | None:
        row = (await conn.execute(select(events.c.seq).where(
            events.c.conversation_id == conv_id, events.c.client_id == client_id))).first()
        return None if row is None else int(row.seq)

    async def _late_duplicate(self, conv_id: str, client_id: str) -> protocol.Ack:
        """Two sends of one client id raced, or a retry came after a crash; the first one holds the seq."""
        seen = await self._announce_again(conv_id, client_id)
        if seen is None:
            raise ServiceError(ErrorCode.UNAVAILABLE, "the message could not be stored; retry", retryable=True)
        return protocol.Ack(conversation_id=conv_id, client_id=client_id, seq=seen, duplicate=True)

    async def _announce_again(self, conv_id: str, client_id: str) -> int | None:
        """Publish a stored message again and return its seq. A process killed between a commit and its
        publish leaves other processes unaware of the event; the client's retry (same client id) repairs
        that. Subscribers drop what they already have by sequence number."""
        if self.reader is not None or self.pg is not None:
            found = await self._event_by_client(conv_id, client_id)
            if found is None:
                return None
            frame, internal = found
        else:
            try:
                async with self._read() as conn:
                    row = (await conn.execute(select(events).where(
                        events.c.conversation_id == conv_id, events.c.client_id == client_id))).first()
            except (DBAPIError, OSError, PoolTimeout) as exc:
                raise ServiceError(ErrorCode.UNAVAILABLE, "the store is unavailable; retry", retryable=True) from exc
            if row is None:
                return None
            frame, internal = _event_frame(row), bool(row.internal)
        await self._publish(wire.conv_channel(conv_id), wire.event_payload(frame, internal))
        return frame.seq

    async def _event_by_client(self, conv_id: str, client_id: str) -> tuple[protocol.Event, bool] | None:
        if self.pg is not None:
            try:
                row = await self.pg.event_by_client(conv_id, client_id)
            except pg_fast.StoreUnavailable as exc:
                raise _pg_unavailable(exc) from exc
        else:
            def read(db: sqlite3.Connection, _now: str) -> Any:
                return db.execute(_BY_CLIENT_ID, (conv_id, client_id)).fetchone()

            try:
                row = await self.reader.read(read)  # type: ignore[union-attr]
            except sqlite3.Error as exc:
                raise _sqlite_unavailable(exc) from exc
        if row is None:
            return None
        return _event_from_tuple(conv_id, tuple(row)[:-1]), bool(row[-1])

    async def _append_in_state(self, conv_id: str, state: State, *, kind: str, role: str,
                               author: protocol.Author | None, text: str | None,
                               data: dict[str, Any] | None) -> bool | None:
        """Append one event to a conversation still in `state` on the fast path, and publish it: True if
        appended, False if the state moved on, None without a fast path (take the general one)."""
        if self.reader is None and self.pg is None:
            return None
        now = self.clock()
        author_id, author_name = (author.id, author.name) if author else (None, None)
        data_json = None if data is None else msgspec.json.encode(data).decode()
        if self.pg is not None:
            try:
                seq = await self.pg.append_in_state(conv_id, state.value, kind=kind, role=role, author_id=author_id,
                                                    author_name=author_name, text=text, data_json=data_json, now=now)
            except pg_fast.StoreUnavailable as exc:
                raise _pg_unavailable(exc) from exc
        else:
            def append(db: sqlite3.Connection, stamp: str) -> int | None:
                row = db.execute("UPDATE conversations SET last_seq = last_seq + 1, updated_at = ? "
                                 "WHERE id = ? AND state = ? RETURNING last_seq", (stamp, conv_id, state.value)
                                 ).fetchone()
                if row is None:
                    return None
                db.execute("INSERT INTO events (conversation_id, seq, kind, role, author_id, author_name, text, "
                           "client_id, internal, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?)",
                           (conv_id, row[0], kind, role, author_id, author_name, text, data_json, stamp))
                return int(row[0])

            try:
                seq = await self.writer.write(append, now)  # type: ignore[union-attr]
            except sqlite3.Error as exc:
                raise _sqlite_unavailable(exc) from exc
        if seq is None:
            return False
        frame = protocol.Event(conversation_id=conv_id, seq=seq, kind=kind, role=role,  # type: ignore[arg-type]
                               author=author, text=text, client_id=None, data=data, at=iso(now) or "")
        channel, payload = wire.conv_channel(conv_id), wire.event_payload(frame, False)
        if not self._publish_now(channel, payload):
            await asyncio.shield(self._publish(channel, payload))
        return True

    async def _write_message(self, message: batch.Message) -> batch.Written | str:
        """The group-committed path for a chat message (SQLite); FALLBACK means: take the general path."""
        if self.pg is not None:
            try:
                return await self.pg.write_message(message, self.clock())
            except pg_fast.StoreUnavailable as exc:
                raise _pg_unavailable(exc) from exc
        if self.writer is None:
            return batch.FALLBACK
        try:
            return await self.writer.write(message, self.clock())
        except sqlite3.Error as exc:
            raise _sqlite_unavailable(exc) from exc

    async def _written(self, message: batch.Message, written: batch.Written) -> protocol.Event:
        author = protocol.Author(id=message.author_id, name=message.author_name)
        frame = protocol.Event(
            conversation_id=message.conversation_id, seq=written.seq,
            kind="note" if message.internal else "message", role=message.role,  # type: ignore[arg-type]
            author=author, text=message.text, client_id=message.client_id, data=None,
            at=iso(written.at) or "",
        )
        channel, payload = wire.conv_channel(message.conversation_id), wire.event_payload(frame, message.internal)
        if not self._publish_now(channel, payload):
            # Committed: announce it even when the caller is being cancelled (see _tx).
            await asyncio.shield(self._publish(channel, payload))
        return frame

    async def visitor_message(self, visitor_id: str, conv_id: str, client_id: str, text: str) -> protocol.Ack:
        self._check_text(text)
        message = batch.Message(conversation_id=conv_id, role="visitor", author_id=visitor_id, author_name=None,
                                text=text, client_id=client_id)
        written = await self._write_message(message)
        if written == batch.DUPLICATE:
            return await self._late_duplicate(conv_id, client_id)
        if isinstance(written, batch.Written):
            frame = await self._written(message, written)
            return await self._after_visitor_message(conv_id, visitor_id, client_id, text, frame,
                                                     with_bot=written.state == State.BOT.value,
                                                     ticketed=written.ticket_id is not None)
        try:
            # A retried client id is caught by the unique index (IntegrityError below), not by a lookup
            # before every insert: retries are rare, messages are not.
            async with self._tx() as tx:
                conv = await self._conv(tx.conn, conv_id)
                if conv.visitor_id != visitor_id:
                    raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
                if State(conv.state) is State.ENDED:
                    await self._state_change(tx, conv, Trigger.VISITOR_MESSAGE, reason="visitor_returned")
                if conv.first_question is None:
                    await tx.conn.execute(update(conversations).where(conversations.c.id == conv_id)
                                          .values(first_question=text[:500]))
                frame = await self._append(tx, conv_id, kind="message", role="visitor", text=text,
                                           client_id=client_id, author=protocol.Author(id=visitor_id, name=None))
                with_bot = State(conv.state) in (State.BOT, State.ENDED)
                ticketed = conv.ticket_id is not None
        except IntegrityError:
            return await self._late_duplicate(conv_id, client_id)
        return await self._after_visitor_message(conv_id, visitor_id, client_id, text, frame,
                                                 with_bot=with_bot, ticketed=ticketed)

    async def _after_visitor_message(self, conv_id: str, visitor_id: str, client_id: str, text: str,
                                     frame: protocol.Event, *, with_bot: bool, ticketed: bool) -> protocol.Ack:
        if ticketed and self.on_ticketed_message is not None:
            await self.on_ticketed_message(conv_id, frame)
        if with_bot and self.kb is not None and not self.kb.empty:
            self._spawn(self.bot_answer(conv_id, visitor_id, frame.seq, text))
        return protocol.Ack(conversation_id=conv_id, client_id=client_id, seq=frame.seq)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ the help-center bot

    def article_url(self, slug: str) -> str:
        return f"{self.settings.base_url}/help/{slug}"

    def _suggested(self, result: Any) -> list[protocol.SuggestedArticle]:
        return [protocol.SuggestedArticle(id=m.article_id, title=m.title, passage=m.passage,
                                          url=self.article_url(m.slug), score=round(float(m.score), 4))
                for m in result.matches]

    async def bot_answer(self, conv_id: str, visitor_id: str, question_seq: int, text: str) -> None:
        """Answer a question put to the bot with articles, or say honestly that none fits."""
        try:
            result = await self.kb.suggest(text, 3)
        except ValueError:
            return
        except Exception:  # noqa: BLE001 - the chat goes on without the bot's answer
            log.exception("suggestion failed for conversation %s", conv_id)
            return
        no_match = result.no_match or not result.matches
        if no_match:
            kind, answer, data = "message", NO_MATCH_TEXT, {"no_match": True, "question_seq": question_seq}
        else:
            kind, answer = "suggestions", SUGGESTIONS_TEXT
            data = {"question_seq": question_seq, "question": text[:500],
                    "articles": [msgspec.structs.asdict(a) for a in self._suggested(result)]}
        appended = await self._append_in_state(conv_id, State.BOT, kind=kind, role="bot", author=BOT_AUTHOR,
                                               text=answer, data=data)
        if appended is False:
            return  # an agent took over, or the chat ended, meanwhile
        if appended is None:
            async with self._tx() as tx:
                conv = await self._conv(tx.conn, conv_id)
                if State(conv.state) is not State.BOT:
                    return
                await self._append(tx, conv_id, kind=kind, role="bot", author=BOT_AUTHOR, text=answer, data=data)
        if no_match:
            best = result.matches[0] if result.matches else None
            await self.kb.store.record_unanswered(
                conversation_id=conv_id, visitor_id=visitor_id, question_seq=question_seq, text=text,
                reason="no_match", article_id=best.article_id if best else None,
                best_score=float(best.score) if best else None, locale="en", now=self.clock())

    async def feedback(self, visitor_id: str, conv_id: str, seq: int, article_id: str, helpful: bool) -> None:
        """Record "Did this answer your question?" for one suggested article, once."""
        async with self._read() as conn:
            conv = await self._conv(conn, conv_id)
            row = (await conn.execute(select(events.c.data).where(
                events.c.conversation_id == conv_id, events.c.seq == seq, events.c.kind == "suggestions"))).first()
        data = row.data if row is not None else None
        if conv.visitor_id != visitor_id or not data or article_id not in {a["id"] for a in data["articles"]}:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such suggestion in this conversation", conversation_id=conv_id)
        if self.kb is None or not await self.kb.store.record_feedback(conv_id, seq, article_id, helpful, self.clock()):
            return
        async with self._tx() as tx:
            await self._append(tx, conv_id, kind="feedback", role="visitor",
                               author=protocol.Author(id=visitor_id, name=None),
                               data={"suggestion_seq": seq, "article_id": article_id, "helpful": helpful})
        if not helpful:
            await self.kb.store.record_unanswered(
                conversation_id=conv_id, visitor_id=visitor_id, question_seq=data.get("question_seq"),
                text=data.get("question") or "", reason="unhelpful", article_id=article_id, best_score=None,
                locale="en", now=self.clock())

    async def suggestions_for(self, agent: AgentRef, conv_id: str, text: str | None, k: int) -> protocol.Suggestions:
        """Suggestions for the agent's sidebar: for `text`, or the latest visitor message."""
        await self.agent_can_see(agent, conv_id)
        if text is None:
            async with self._read() as conn:
                text = (await conn.execute(select(events.c.text).where(
                    events.c.conversation_id == conv_id, events.c.role == "visitor", events.c.kind == "message")
                    .order_by(events.c.seq.desc()).limit(1))).scalar_one_or_none()
        if not text or not text.strip() or self.kb is None:
            return protocol.Suggestions(conversation_id=conv_id, question=text, articles=[], no_match=True)
        result = await self.kb.suggest(text, k)
        return protocol.Suggestions(conversation_id=conv_id, question=text[:500], articles=self._suggested(result),
                                    no_match=bool(result.no_match or not result.matches))

    async def request_agent(self, visitor_id: str, conv_id: str, email: str | None) -> None:
        async with self._tx() as tx:
            conv = await self._conv(tx.conn, conv_id)
            if conv.visitor_id != visitor_id:
                raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
            extra: dict[str, Any] = {"waiting_since": tx.now, "offer_id": None, "visitor_seen_at": None}
            if email:
                extra["email"] = email
            if self.classifier is not None and conv.first_question and conv.priority is None:
                plan = (await tx.conn.execute(select(visitors.c.plan).where(visitors.c.id == visitor_id))).scalar()
                verdict = self.classifier.classify(conv.first_question, plan=plan)
                extra["category"] = verdict.category
                extra["priority"] = verdict.priority
            if State(conv.state) is State.WAITING:
                return
            await self._state_change(tx, conv, Trigger.REQUEST_AGENT, reason="visitor_asked", **extra)
            tx.after.append(lambda: self.dispatch(conv_id))

    async def leave_email(self, visitor_id: str, conv_id: str, email: str) -> None:
        async with self._tx() as tx:
            conv = await self._conv(tx.conn, conv_id)
            if conv.visitor_id != visitor_id:
                raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
            await tx.conn.execute(update(conversations).where(conversations.c.id == conv_id).values(email=email))
            await tx.conn.execute(update(visitors).where(visitors.c.id == visitor_id, visitors.c.email.is_(None))
                                  .values(email=email))
            if State(conv.state) in (State.BOT, State.WAITING):
                await self._revoke_offer(tx, conv, "ticketed")
                await self._state_change(tx, conv, Trigger.LEAVE_EMAIL, reason="visitor_left_email", offer_id=None)
                tx.after.append(lambda: self._ticket_pending(conv_id))
            elif conv.ticket_id is not None:
                # The ticket came first (nobody was online): the address is where its replies go.
                await tx.conn.execute(update(tickets).where(
                    tickets.c.id == int(conv.ticket_id), tickets.c.customer_email.is_(None)).values(customer_email=email))

    async def visitor_end(self, visitor_id: str, conv_id: str) -> None:
        async with self._tx() as tx:
            conv = await self._conv(tx.conn, conv_id)
            if conv.visitor_id != visitor_id:
                raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
            await self._end(tx, conv, reason="visitor_ended", actor=None)

    async def receipt(self, role: str, conv_id: str, seq: int, status: str) -> None:
        if status == "read":
            column = conversations.c.visitor_read_seq if role == "visitor" else conversations.c.agent_read_seq
            async with self._tx() as tx:
                await tx.conn.execute(update(conversations).where(
                    conversations.c.id == conv_id, column < seq, conversations.c.last_seq >= seq)
                    .values({column.key: seq}))
        frame = protocol.ReceiptNotice(conversation_id=conv_id, role=role, seq=seq, status=status)  # type: ignore[arg-type]
        await self._publish(wire.conv_channel(conv_id), wire.notice_payload(frame, role))

    async def typing(self, role: str, conv_id: str, active: bool, name: str | None) -> None:
        frame = protocol.TypingNotice(conversation_id=conv_id, role=role, name=name, active=active)  # type: ignore[arg-type]
        await self._publish(wire.conv_channel(conv_id), wire.notice_payload(frame, role))

    # ------------------------------------------------------------------ agents

    async def authenticate_agent(self, token: str) -> AgentRef | None:
        async with self._read() as conn:
            row = (await conn.execute(select(agents).where(agents.c.token_hash == hash_token(token)))).first()
        if row is None or row.role not in AGENT_ROLES:
            return None
        return AgentRef(row.id, row.name, row.role, row.presence)

    async def create_agent(self, name: str, email: str, role: str = "agent", *, capacity: int | None = None,
                           token: str | None = None, skills: Sequence[str] = (),
                           languages: Sequence[str] = ()) -> tuple[str, str]:
        """Create an agent; returns (agent id, API token). The token is shown once and stored hashed."""
        if role not in AGENT_ROLES:
            raise ValueError(f"role must be one of {sorted(AGENT_ROLES)}")
        token = token or secrets.token_urlsafe(32)
        agent_id = str(uuid.uuid4())
        async with self._tx() as tx:
            await tx.conn.execute(insert(agents).values(
                id=agent_id, name=name, email=email, role=role, token_hash=hash_token(token),
                presence="offline", capacity=capacity or self.settings.agent_capacity,
                skills=list(skills), languages=list(languages), created_at=tx.now))
        return agent_id, token

    async def agent_welcome(self, agent: AgentRef) -> protocol.AgentWelcome:
        async with self._read() as conn:
            row = (await conn.execute(select(agents).where(agents.c.id == agent.id))).one()
            owned = (await conn.execute(select(conversations).where(
                conversations.c.agent_id == agent.id, conversations.c.state == State.WITH_AGENT.value)
                .order_by(conversations.c.updated_at))).all()
            infos = [await self.conversation_info(conn, c) for c in owned]
            pending = (await conn.execute(select(offers).where(
                offers.c.agent_id == agent.id, offers.c.status == "pending"))).all()
            offer_infos = []
            for o in pending:
                conv = (await conn.execute(select(conversations).where(conversations.c.id == o.conversation_id))).one()
                offer_infos.append(await self._offer_info(conn, o.id, conv, o.expires_at))
        return protocol.AgentWelcome(
            v=protocol.PROTOCOL_LEVEL,
            agent=protocol.AgentInfo(id=row.id, name=row.name, role=row.role, presence=row.presence),
            conversations=infos, offers=offer_infos, limits=self.limits())

    def limits(self) -> dict[str, int]:
        return {"max_frame_bytes": self.settings.max_frame_bytes,
                "max_message_chars": self.settings.max_message_chars,
                "rate_burst": self.settings.rate_burst}

    async def agent_can_see(self, agent: AgentRef, conv_id: str) -> Any:
        """The conversation row if this agent may read it (its owner, or a lead), else not_found."""
        async with self._read() as conn:
            conv = await self._conv(conn, conv_id)
        if conv.agent_id != agent.id and agent.role not in LEAD_ROLES:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
        return conv

    async def set_presence(self, agent: AgentRef, status: str) -> None:
        async with self._tx() as tx:
            await tx.conn.execute(update(agents).where(agents.c.id == agent.id)
                                  .values(presence=status, last_seen_at=tx.now))
        if status == "online":
            await self.dispatch_waiting()

    async def register_session(self, agent_id: str) -> str:
        session_id = str(uuid.uuid4())
        async with self._tx() as tx:
            await tx.conn.execute(insert(agent_sessions).values(
                id=session_id, agent_id=agent_id, node=self.node, heartbeat_at=tx.now))
            await tx.conn.execute(update(agents).where(agents.c.id == agent_id).values(last_seen_at=tx.now))
        self._local_agent_sessions[session_id] = agent_id
        return session_id

    async def unregister_session(self, session_id: str) -> None:
        agent_id = self._local_agent_sessions.pop(session_id, None)
        try:
            async with self._tx() as tx:
                await tx.conn.execute(delete(agent_sessions).where(agent_sessions.c.id == session_id))
                await tx.conn.execute(update(agents).where(agents.c.id == agent_id).values(last_seen_at=tx.now))
        except ServiceError:
            log.warning("could not remove agent session %s; it expires by itself", session_id)

    async def _active_chats(self, conn: AsyncConnection, agent_id: str) -> int:
        return int((await conn.execute(select(func.count()).select_from(conversations).where(
            conversations.c.agent_id == agent_id, conversations.c.state == State.WITH_AGENT.value))).scalar_one())

    async def _assign(self, tx: _Tx, conv: Any, agent: AgentRef, trigger: Trigger, reason: str) -> None:
        capacity = (await tx.conn.execute(select(agents.c.capacity).where(agents.c.id == agent.id))).scalar_one()
        if await self._active_chats(tx.conn, agent.id) >= capacity:
            raise ServiceError(ErrorCode.AT_CAPACITY, "you are at your chat capacity", conversation_id=conv.id)
        author = protocol.Author(id=agent.id, name=agent.name)
        try:
            await self._state_change(tx, conv, trigger, reason=reason, actor=author, agent_id=agent.id, offer_id=None)
        except ServiceError as exc:
            if exc.code == ErrorCode.ILLEGAL_STATE:
                raise ServiceError(ErrorCode.ALREADY_TAKEN, "another agent has this conversation",
                                   conversation_id=conv.id) from None
            raise
        await tx.conn.execute(update(agents).where(agents.c.id == agent.id).values(last_assigned_at=tx.now))
        await self._revoke_offer(tx, conv, "taken", winner=agent.id)
        await self._append(tx, conv.id, kind="agent_joined", role="system", author=author)
        fresh = await self._conv(tx.conn, conv.id)
        info = await self.conversation_info(tx.conn, fresh)
        tx.publish(wire.agent_channel(agent.id),
                   wire.control_payload(protocol.Assigned(conversation=info, reason=reason)))  # type: ignore[arg-type]

    async def accept(self, agent: AgentRef, conv_id: str) -> None:
        async with self._tx() as tx:
            conv = await self._conv(tx.conn, conv_id)
            state = State(conv.state)
            if state is State.WITH_AGENT:
                raise ServiceError(ErrorCode.ALREADY_TAKEN, "another agent has this conversation",
                                   conversation_id=conv_id)
            if state is not State.WAITING:
                raise ServiceError(ErrorCode.ILLEGAL_STATE, f"the conversation is {state.value}",
                                   conversation_id=conv_id)
            await self._assign(tx, conv, agent, Trigger.ACCEPT, "accept")
        metrics.OFFERS.labels("accepted").inc()

    async def take_over(self, agent: AgentRef, conv_id: str) -> None:
        async with self._tx() as tx:
            conv = await self._conv(tx.conn, conv_id)
            if State(conv.state) is State.WITH_AGENT:
                raise ServiceError(ErrorCode.ALREADY_TAKEN, "another agent has this conversation",
                                   conversation_id=conv_id)
            await self._assign(tx, conv, agent, Trigger.TAKE_OVER, "take_over")

    async def decline(self, agent: AgentRef, conv_id: str) -> None:
        async with self._tx() as tx:
            row = (await tx.conn.execute(
                update(offers).where(offers.c.conversation_id == conv_id, offers.c.agent_id == agent.id,
                                     offers.c.status == "pending")
                .values(status="declined", closed_at=tx.now).returning(offers.c.id))).first()
            if row is None:
                raise ServiceError(ErrorCode.NOT_OFFERED, "this conversation is not offered to you",
                                   conversation_id=conv_id)
            await tx.conn.execute(update(conversations).where(
                conversations.c.id == conv_id, conversations.c.offer_id == row.id).values(offer_id=None))
            tx.publish(wire.agent_channel(agent.id), wire.control_payload(
                protocol.OfferRevoked(offer_id=row.id, conversation_id=conv_id, reason="declined")))
            metrics.OFFERS.labels("declined").inc()
            tx.after.append(lambda: self.dispatch(conv_id))

    async def _owned(self, conn: AsyncConnection, agent: AgentRef, conv_id: str, *, write: bool) -> Any:
        conv = await self._conv(conn, conv_id)
        if conv.agent_id != agent.id and agent.role not in LEAD_ROLES:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such conversation", conversation_id=conv_id)
        if write and State(conv.state) is not State.WITH_AGENT:
            raise ServiceError(ErrorCode.ILLEGAL_STATE,
                               f"the conversation is {conv.state}; chat messages need an accepted conversation",
                               conversation_id=conv_id)
        return conv

    async def agent_message(self, agent: AgentRef, conv_id: str, client_id: str, text: str, *,
                            internal: bool = False) -> protocol.Ack:
        self._check_text(text)
        message = batch.Message(conversation_id=conv_id, role="agent", author_id=agent.id, author_name=agent.name,
                                text=text, client_id=client_id, internal=internal,
                                lead=agent.role in LEAD_ROLES)
        written = await self._write_message(message)
        if written == batch.DUPLICATE:
            return await self._late_duplicate(conv_id, client_id)
        if isinstance(written, batch.Written):
            await self._written(message, written)
            return protocol.Ack(conversation_id=conv_id, client_id=client_id, seq=written.seq)
        try:
            async with self._tx() as tx:
                await self._owned(tx.conn, agent, conv_id, write=not internal)
                seen = await self._duplicate(tx.conn, conv_id, client_id)
                if seen is not None:
                    tx.after.append(lambda: self._announce_again(conv_id, client_id))  # type: ignore[arg-type,return-value]
                    return protocol.Ack(conversation_id=conv_id, client_id=client_id, seq=seen, duplicate=True)
                frame = await self._append(
                    tx, conv_id, kind="note" if internal else "message", role="agent", text=text,
                    client_id=client_id, internal=internal, author=protocol.Author(id=agent.id, name=agent.name))
        except IntegrityError:
            return await self._late_duplicate(conv_id, client_id)
        return protocol.Ack(conversation_id=conv_id, client_id=client_id, seq=frame.seq)

    async def transfer(self, agent: AgentRef, conv_id: str, to_agent_id: str) -> None:
        async with self._tx() as tx:
            conv = await self._owned(tx.conn, agent, conv_id, write=True)
            target = (await tx.conn.execute(select(agents).where(agents.c.id == to_agent_id))).first()
            if target is None or target.presence == "offline" or target.id == conv.agent_id:
                raise ServiceError(ErrorCode.NOT_FOUND, "no such online agent to transfer to",
                                   conversation_id=conv_id)
            if await self._active_chats(tx.conn, target.id) >= target.capacity:
                raise ServiceError(ErrorCode.AT_CAPACITY, "that agent is at capacity", conversation_id=conv_id)
            previous = conv.agent_id
            await self._state_change(tx, conv, Trigger.TRANSFER, reason="transfer", agent_id=target.id)
            await self._append(tx, conv_id, kind="transferred", role="system",
                               author=protocol.Author(id=agent.id, name=agent.name),
                               data={"from": previous, "to": {"id": target.id, "name": target.name}})
            info = await self.conversation_info(tx.conn, await self._conv(tx.conn, conv_id))
            if previous:
                tx.publish(wire.agent_channel(previous), wire.control_payload(
                    protocol.Unassigned(conversation_id=conv_id, reason="transferred")))
            tx.publish(wire.agent_channel(target.id),
                       wire.control_payload(protocol.Assigned(conversation=info, reason="transfer")))
            tx.after.append(self.dispatch_waiting)

    async def agent_end(self, agent: AgentRef, conv_id: str, resolution: str | None) -> None:
        async with self._tx() as tx:
            conv = await self._owned(tx.conn, agent, conv_id, write=False)
            await self._end(tx, conv, reason=resolution or "resolved",
                            actor=protocol.Author(id=agent.id, name=agent.name))

    async def _end(self, tx: _Tx, conv: Any, *, reason: str, actor: protocol.Author | None) -> None:
        await self._revoke_offer(tx, conv, "ended")
        await self._state_change(tx, conv, Trigger.END, reason=reason, actor=actor, ended_at=tx.now,
                                 resolution=reason[:64], offer_id=None)
        if conv.agent_id:
            await self._append(tx, conv.id, kind="agent_left", role="system",
                               author=protocol.Author(id=conv.agent_id, name=None), data={"reason": "ended"})
            tx.publish(wire.agent_channel(conv.agent_id),
                       wire.control_payload(protocol.Unassigned(conversation_id=conv.id, reason="ended")))
        tx.after.append(self.dispatch_waiting)

    # ------------------------------------------------------------------ offers

    async def _offer_info(self, conn: AsyncConnection, offer_id: str, conv: Any,
                          expires_at: datetime) -> protocol.OfferInfo:
        info = await self.conversation_info(conn, conv)
        return protocol.OfferInfo(offer_id=offer_id, conversation_id=conv.id, first_question=conv.first_question,
                                  visitor=info.visitor, waiting_since=iso(conv.waiting_since),
                                  expires_at=iso(expires_at) or "", category=conv.category,
                                  priority=conv.priority)

    async def _revoke_offer(self, tx: _Tx, conv: Any, reason: str, winner: str | None = None) -> None:
        rows = (await tx.conn.execute(
            update(offers).where(offers.c.conversation_id == conv.id, offers.c.status == "pending")
            .values(status="accepted" if winner else "revoked", closed_at=tx.now)
            .returning(offers.c.id, offers.c.agent_id))).all()
        for row in rows:
            if row.agent_id == winner:
                continue
            tx.publish(wire.agent_channel(row.agent_id), wire.control_payload(
                protocol.OfferRevoked(offer_id=row.id, conversation_id=conv.id, reason=reason)))  # type: ignore[arg-type]

    async def _agent_loads(self, conn: AsyncConnection) -> list[AgentLoad]:
        active = dict((await conn.execute(
            select(conversations.c.agent_id, func.count()).where(conversations.c.state == State.WITH_AGENT.value)
            .group_by(conversations.c.agent_id))).all())
        rows = (await conn.execute(select(agents).where(agents.c.presence == "online"))).all()
        return [AgentLoad(id=r.id, presence=r.presence, active_chats=int(active.get(r.id, 0)), capacity=r.capacity,
                          last_assigned_at=as_utc(r.last_assigned_at), skills=frozenset(r.skills or ()),
                          languages=frozenset(r.languages or ())) for r in rows]

    async def dispatch(self, conv_id: str) -> str | None:
        """Offer a waiting conversation to the next eligible agent; hand it to tickets when there is none."""
        async with self._tx() as tx:
            conv = (await tx.conn.execute(select(conversations).where(conversations.c.id == conv_id))).first()
            if conv is None or conv.state != State.WAITING.value or conv.offer_id is not None:
                return None
            waited_since = as_utc(conv.waiting_since) or tx.now
            tried = (await tx.conn.execute(select(offers.c.agent_id).where(
                offers.c.conversation_id == conv_id, offers.c.created_at >= waited_since,
                offers.c.status.in_(("declined", "expired"))))).scalars().all()
            agent_id = choose_agent(await self._agent_loads(tx.conn),
                                    Need(category=conv.category, language=conv.language), exclude=tried)
            if agent_id is None:
                await self._state_change(tx, conv, Trigger.NO_AGENT,
                                         reason="no_agent_accepted" if tried else "nobody_online")
                tx.after.append(lambda: self._ticket_pending(conv_id))
                return None
            offer_id = str(uuid.uuid4())
            claimed = await tx.conn.execute(update(conversations).where(
                conversations.c.id == conv_id, conversations.c.state == State.WAITING.value,
                conversations.c.offer_id.is_(None)).values(offer_id=offer_id))
            if claimed.rowcount != 1:
                return None
            expires = tx.now + timedelta(seconds=self.settings.offer_timeout)
            await tx.conn.execute(insert(offers).values(id=offer_id, conversation_id=conv_id, agent_id=agent_id,
                                                        status="pending", created_at=tx.now, expires_at=expires))
            info = await self._offer_info(tx.conn, offer_id, conv, expires)
            tx.publish(wire.agent_channel(agent_id), wire.control_payload(protocol.Offer(offer=info)))
            metrics.OFFERS.labels("offered").inc()
            return agent_id

    async def dispatch_waiting(self) -> None:
        """Offer every waiting chat. Calls that arrive while a pass runs are folded into one more pass:
        five thousand chats ending at once must not start five thousand identical scans."""
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        try:
            self._dispatch_again = True
            while self._dispatch_again:
                self._dispatch_again = False
                await self._dispatch_waiting_once()
        finally:
            self._dispatching = False

    async def _dispatch_waiting_once(self) -> None:
        async with self._read() as conn:
            ids = (await conn.execute(select(conversations.c.id).where(
                conversations.c.state == State.WAITING.value, conversations.c.offer_id.is_(None))
                .order_by(conversations.c.waiting_since).limit(100))).scalars().all()
        for conv_id in ids:
            await self.dispatch(conv_id)

    async def _ticket_pending(self, conv_id: str) -> None:
        if self.on_ticket_pending is not None:
            await self.on_ticket_pending(conv_id)

    # ------------------------------------------------------------------ sweeping

    async def sweep(self) -> None:
        """Expire offers, time out waits, re-queue chats of vanished agents. Safe in every process at once:
        each step claims its rows with a conditional update, so exactly one process acts on each."""
        now = self.clock()
        if self._last_heartbeat is None or now - self._last_heartbeat >= self._heartbeat_every():
            await self._heartbeat(now)
            self._last_heartbeat = now
        need = await self._sweep_probe(now)
        if need.offers:
            await self._expire_offers(now)
        if need.overdue:
            await self._time_out_waits(now)
        if need.agents:
            await self._requeue_lost_agents(now)
        if need.visitors:
            await self._visitors_gone(now)
        if need.waiting:
            await self.dispatch_waiting()
        if self.tickets is not None:
            await self.tickets.sweep()

    def _heartbeat_every(self) -> timedelta:
        """How often this process refreshes its own and its agent sockets' heartbeats: a quarter of the
        shortest time after which another process would take them for gone, and at most every sweep."""
        shortest = min(max(3 * self.settings.sweep_interval, 10.0), self.settings.agent_grace)
        return timedelta(seconds=max(self.settings.sweep_interval, shortest / 4))

    async def _sweep_probe(self, now: datetime) -> Any:
        """One read that says which of the sweep's steps have anything to do, so that an idle process
        reads once per sweep instead of running every step's transaction."""
        s = self.settings
        agent_stale = now - timedelta(seconds=s.agent_grace)
        gone = select(agents.c.id).where(
            agents.c.id.not_in(select(agent_sessions.c.agent_id)),
            or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at < agent_stale))
        node_stale = now - timedelta(seconds=max(3 * s.sweep_interval, 10.0))
        gone_since = now - timedelta(seconds=s.visitor_grace)
        waiting = conversations.c.state == State.WAITING.value
        probe = select(
            exists().where(offers.c.status == "pending", offers.c.expires_at < now).label("offers"),
            exists().where(waiting, conversations.c.waiting_since < now - timedelta(seconds=s.wait_timeout))
            .label("overdue"),
            or_(exists().where(agent_sessions.c.heartbeat_at < agent_stale),
                exists().where(agents.c.presence != "offline", agents.c.id.in_(gone)),
                exists().where(conversations.c.state == State.WITH_AGENT.value, conversations.c.agent_id.in_(gone)))
            .label("agents"),
            or_(exists().where(nodes.c.heartbeat_at < node_stale),
                exists().where(waiting, conversations.c.id.not_in(select(visitor_sessions.c.conversation_id)),
                               func.coalesce(conversations.c.visitor_seen_at, conversations.c.waiting_since)
                               < gone_since)).label("visitors"),
            exists().where(waiting, conversations.c.offer_id.is_(None)).label("waiting"),
        )
        async with self._read() as conn:
            return (await conn.execute(probe)).one()

    async def _expire_offers(self, now: datetime) -> None:
        async with self._tx() as tx:
            expired = (await tx.conn.execute(
                update(offers).where(offers.c.status == "pending", offers.c.expires_at < now)
                .values(status="expired", closed_at=now)
                .returning(offers.c.id, offers.c.conversation_id, offers.c.agent_id))).all()
            metrics.OFFERS.labels("expired").inc(len(expired))
            for row in expired:
                await tx.conn.execute(update(conversations).where(
                    conversations.c.id == row.conversation_id, conversations.c.offer_id == row.id)
                    .values(offer_id=None))
                tx.publish(wire.agent_channel(row.agent_id), wire.control_payload(protocol.OfferRevoked(
                    offer_id=row.id, conversation_id=row.conversation_id, reason="expired")))

    async def _time_out_waits(self, now: datetime) -> None:
        deadline = now - timedelta(seconds=self.settings.wait_timeout)
        async with self._read() as conn:
            overdue = (await conn.execute(select(conversations.c.id).where(
                conversations.c.state == State.WAITING.value, conversations.c.waiting_since < deadline))).scalars().all()
        for conv_id in overdue:
            await self._time_out_wait(conv_id)

    async def _time_out_wait(self, conv_id: str) -> None:
        try:
            async with self._tx() as tx:
                conv = await self._conv(tx.conn, conv_id)
                await self._revoke_offer(tx, conv, "expired")
                await self._state_change(tx, conv, Trigger.NO_AGENT, reason="wait_timeout", offer_id=None)
                tx.after.append(lambda: self._ticket_pending(conv_id))
        except ServiceError as exc:
            if exc.code != ErrorCode.ILLEGAL_STATE:
                raise

    async def _heartbeat(self, now: datetime) -> None:
        async with self._tx() as tx:
            refreshed = await tx.conn.execute(update(nodes).where(nodes.c.id == self.node).values(heartbeat_at=now))
            if refreshed.rowcount == 0:
                await tx.conn.execute(insert(nodes).values(id=self.node, heartbeat_at=now))
            if self._local_agent_sessions:
                await tx.conn.execute(update(agent_sessions).where(
                    agent_sessions.c.id.in_(list(self._local_agent_sessions))).values(heartbeat_at=now))

    async def register_visitor(self, conv_id: str) -> str:
        """Note an open visitor socket; its process's heartbeat keeps it alive."""
        session_id = str(uuid.uuid4())
        if self.pg is not None:
            try:
                await self.pg.register(session_id, conv_id, self.node, self.clock())
            except pg_fast.StoreUnavailable as exc:
                raise _pg_unavailable(exc) from exc
            return session_id
        if self.writer is not None:
            node = self.node

            def register(db: sqlite3.Connection, now: str) -> None:
                db.execute("INSERT INTO visitor_sessions (id, conversation_id, node, heartbeat_at) "
                           "VALUES (?, ?, ?, ?)", (session_id, conv_id, node, now))

            try:
                await self.writer.write(register, self.clock())
            except sqlite3.Error as exc:
                raise _sqlite_unavailable(exc) from exc
            return session_id
        async with self._tx() as tx:
            await tx.conn.execute(insert(visitor_sessions).values(
                id=session_id, conversation_id=conv_id, node=self.node, heartbeat_at=tx.now))
        return session_id

    async def unregister_visitor(self, session_id: str, conv_id: str) -> None:
        if self.pg is not None:
            try:
                await self.pg.unregister(session_id, conv_id, self.clock())
            except pg_fast.StoreUnavailable:
                log.warning("could not remove visitor session %s; it expires with its process", session_id)
            return
        if self.writer is not None:

            def unregister(db: sqlite3.Connection, now: str) -> None:
                db.execute("DELETE FROM visitor_sessions WHERE id = ?", (session_id,))
                db.execute("UPDATE conversations SET visitor_seen_at = ? WHERE id = ?", (now, conv_id))

            try:
                await self.writer.write(unregister, self.clock())
            except sqlite3.Error:
                log.warning("could not remove visitor session %s; it expires with its process", session_id)
            return
        try:
            async with self._tx() as tx:
                await tx.conn.execute(delete(visitor_sessions).where(visitor_sessions.c.id == session_id))
                await tx.conn.execute(update(conversations).where(conversations.c.id == conv_id)
                                      .values(visitor_seen_at=tx.now))
        except ServiceError:
            log.warning("could not remove visitor session %s; it expires with its process", session_id)

    async def _visitors_gone(self, now: datetime) -> None:
        """Waiting conversations whose visitor has had no open tab for `visitor_grace` become tickets."""
        stale = now - timedelta(seconds=max(3 * self.settings.sweep_interval, 10.0))
        async with self._tx() as tx:
            dead_nodes = select(nodes.c.id).where(nodes.c.heartbeat_at < stale)
            orphans = (await tx.conn.execute(delete(visitor_sessions).where(
                visitor_sessions.c.node.in_(dead_nodes)).returning(visitor_sessions.c.conversation_id))).scalars().all()
            if orphans:
                await tx.conn.execute(update(conversations).where(
                    conversations.c.id.in_(set(orphans)), conversations.c.visitor_seen_at.is_(None))
                    .values(visitor_seen_at=now))
            await tx.conn.execute(delete(nodes).where(nodes.c.heartbeat_at < stale))
        gone_since = now - timedelta(seconds=self.settings.visitor_grace)
        async with self._read() as conn:
            left = (await conn.execute(select(conversations.c.id).where(
                conversations.c.state == State.WAITING.value,
                conversations.c.id.not_in(select(visitor_sessions.c.conversation_id)),
                func.coalesce(conversations.c.visitor_seen_at, conversations.c.waiting_since) < gone_since,
            ))).scalars().all()
        for conv_id in left:
            try:
                async with self._tx() as tx:
                    conv = await self._conv(tx.conn, conv_id)
                    if conv.visitor_seen_at is not None and as_utc(conv.visitor_seen_at) >= gone_since:  # type: ignore[operator]
                        continue
                    await self._revoke_offer(tx, conv, "ended")
                    await self._state_change(tx, conv, Trigger.VISITOR_LEFT, reason="visitor_left", offer_id=None)
                    tx.after.append(lambda conv_id=conv_id: self._ticket_pending(conv_id))
            except ServiceError as exc:
                if exc.code != ErrorCode.ILLEGAL_STATE:
                    raise

    async def _requeue_lost_agents(self, now: datetime) -> None:
        """Agents with no live session for longer than the grace go offline; their chats wait again."""
        stale = now - timedelta(seconds=self.settings.agent_grace)
        async with self._tx() as tx:
            await tx.conn.execute(delete(agent_sessions).where(agent_sessions.c.heartbeat_at < stale))
            gone = select(agents.c.id).where(
                agents.c.id.not_in(select(agent_sessions.c.agent_id)),
                or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at < stale))
            await tx.conn.execute(update(agents).where(agents.c.presence != "offline", agents.c.id.in_(gone))
                                  .values(presence="offline"))
            lost = (await tx.conn.execute(select(conversations).where(
                conversations.c.state == State.WITH_AGENT.value, conversations.c.agent_id.in_(gone)))).all()
            for conv in lost:
                name = (await tx.conn.execute(select(agents.c.name).where(agents.c.id == conv.agent_id))).scalar()
                await self._state_change(tx, conv, Trigger.AGENT_LOST, reason="agent_disconnected",
                                         agent_id=None, waiting_since=now, offer_id=None)
                await self._append(tx, conv.id, kind="agent_left", role="system",
                                   author=protocol.Author(id=conv.agent_id, name=name),
                                   data={"reason": "disconnected"})
                tx.publish(wire.agent_channel(conv.agent_id), wire.control_payload(
                    protocol.Unassigned(conversation_id=conv.id, reason="agent_lost")))

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="chatsvc-sweeper")

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
        if self.writer is not None:
            await self.writer.close()
        if self.reader is not None:
            await self.reader.close()
        if self.pg is not None:
            await self.pg.close()

    async def _sweep_forever(self) -> None:
        # While the store is down every sweep fails alike: one warning, one line on recovery (see Outage).
        await every(self.settings.sweep_interval, self.sweep,
                    Outage(log, "live-chat sweep", "offers, timeouts and presence wait until it recovers"))


_STORE_PROBLEMS = (
    ("database or disk is full", "the disk is full"),
    ("disk is full", "the disk is full"),
    ("no space left", "the disk is full"),
    ("readonly database", "the database is read-only"),
    ("read-only", "the database is read-only"),
    ("disk i/o error", "disk I/O error"),
)


def _driver_message(exc: DBAPIError) -> str:
    """The driver's own message, first line only: never the statement or its parameters."""
    lines = str(exc.orig).splitlines() if exc.orig is not None else []
    return lines[0][:200] if lines else exc.__class__.__name__


def store_problem(exc: DBAPIError) -> str | None:
    """A write the operator must fix (disk full, read-only file, I/O error), named plainly; None otherwise."""
    return _problem_in(_driver_message(exc))


def _problem_in(message: str) -> str | None:
    message = message.lower()
    return next((problem for needle, problem in _STORE_PROBLEMS if needle in message), None)


def _pg_unavailable(exc: pg_fast.StoreUnavailable) -> ServiceError:
    log.debug("database error: %s", exc)
    return ServiceError(ErrorCode.UNAVAILABLE, "the store is unavailable; retry", retryable=True)


def _stamp(value: datetime | str | None) -> datetime | None:
    """A timestamp as a driver returns it: text from sqlite3, a datetime from asyncpg."""
    return batch.parse_stamp(value) if isinstance(value, str) else value


def _sqlite_unavailable(exc: sqlite3.Error) -> ServiceError:
    """What the group-commit writer's SQLite error means for the client (as `_tx` does for SQLAlchemy's)."""
    message = (str(exc).splitlines() or [exc.__class__.__name__])[0][:200]
    problem = _problem_in(message)
    if problem is None:
        log.warning("database error: %s", exc.__class__.__name__)
        return ServiceError(ErrorCode.UNAVAILABLE, "the store is unavailable; retry", retryable=True)
    log.error("the store cannot write: %s (%s)", problem, message)
    return ServiceError(ErrorCode.UNAVAILABLE, f"the store cannot write ({problem}); nothing was saved, "
                        "retry later", retryable=True)


_REPLAY_COLUMNS = "seq, kind, role, author_id, author_name, text, client_id, data, created_at"
_REPLAY_ALL = (f"SELECT {_REPLAY_COLUMNS} FROM events WHERE conversation_id = ? AND seq > ? "
               "ORDER BY seq LIMIT ?")
_REPLAY_PUBLIC = (f"SELECT {_REPLAY_COLUMNS} FROM events WHERE conversation_id = ? AND seq > ? AND internal = 0 "
                  "ORDER BY seq LIMIT ?")
_BY_CLIENT_ID = f"SELECT {_REPLAY_COLUMNS}, internal FROM events WHERE conversation_id = ? AND client_id = ?"
_json_decode = msgspec.json.Decoder().decode


def _event_from_tuple(conv_id: str, row: tuple[Any, ...]) -> protocol.Event:
    """An event read by `_REPLAY_*` on a plain `sqlite3` connection (JSON and timestamps as stored)."""
    seq, kind, role, author_id, author_name, text, client_id, data, created_at = row
    return protocol.Event(conversation_id=conv_id, seq=seq, kind=kind, role=role,
                          author=protocol.Author(id=author_id, name=author_name) if author_id or author_name else None,
                          text=text, client_id=client_id, data=None if data is None else _json_decode(data),
                          at=iso(_stamp(created_at)) or "")


def _event_frame(row: Any) -> protocol.Event:
    author = None
    if row.author_id or row.author_name:
        author = protocol.Author(id=row.author_id, name=row.author_name)
    return protocol.Event(conversation_id=row.conversation_id, seq=row.seq, kind=row.kind, role=row.role,
                          author=author, text=row.text, client_id=row.client_id, data=row.data,
                          at=iso(row.created_at) or "")
