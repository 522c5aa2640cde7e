"""The gap tables: the lease that makes one process run the job at a time, ingestion of the inputs, reads.

Inputs, copied into `gap_questions` once each (a unique (source, source_id) makes a second copy fail):
- `unanswered_questions` rows (no suggestion above the threshold, or a suggestion marked unhelpful);
- tickets closed with no article linked (no reply pointed to a /help/ article and no suggestion in their
  chat was marked helpful), unless their chat already gave an unanswered question: then that question
  gains the ticket instead of a second copy.

Beside them, the questions the bot did answer (its `suggestions` events), reason `answered`: they never
make a gap; they tell how often a topic's neighbourhood is answered already (`ANSWERED`, the ranking).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatsvc.live.service import as_utc
from chatsvc.store.tables import (
    conversations,
    events,
    gap_questions,
    kv,
    ticket_entries,
    tickets,
    unanswered_questions,
)

LEASE_KEY = "gaps_lease"
SEEN_UNANSWERED_KEY = "gaps_seen_unanswered"
SEEN_TICKETS_KEY = "gaps_seen_closed_ticket"
FULL_AT_KEY = "gaps_full_at"
SEEN_ANSWERED_KEY = "gaps_seen_suggestions"
COVERAGE_VERSION_KEY = "gaps_coverage_kb_version"
ARTICLE_VECTORS_KEY = "gaps_article_vectors"
RUNS_KEY = "gaps_runs"
RUNS_KEPT = 20
ANSWERED = "answered"  # the reason (and `placed`) of a question the bot answered: context, never clustered
_ARTICLE_LINK_RE = re.compile(r"/help/[a-z0-9][a-z0-9-]*", re.IGNORECASE)


async def kv_get(conn: AsyncConnection, key: str) -> str | None:
    return (await conn.execute(select(kv.c.value).where(kv.c.key == key))).scalar_one_or_none()


async def kv_set(conn: AsyncConnection, key: str, value: str) -> None:
    done = await conn.execute(update(kv).where(kv.c.key == key).values(value=value))
    if done.rowcount == 0:
        await conn.execute(insert(kv).values(key=key, value=value))


async def record_run(conn: AsyncConnection, run: dict[str, Any]) -> None:
    """Append a finished run (node, mode, started, finished, counts) to the last RUNS_KEPT; under the lease."""
    await kv_set(conn, RUNS_KEY, json.dumps([*(await recent_runs(conn))[-(RUNS_KEPT - 1):], run]))


async def recent_runs(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The last runs, oldest first: which process ran the job, when, and what it found."""
    try:
        runs = json.loads(await kv_get(conn, RUNS_KEY) or "[]")
    except ValueError:
        return []
    return runs if isinstance(runs, list) else []


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def encode_article_vectors(vectors: dict[str, tuple[str, bytes]], embedder: str) -> str:
    """Article id -> (digest of the embedded text, float16 vector), as the `kv` value (JSON, base64)."""
    return json.dumps({"embedder": embedder, "articles": {
        article: [digest, base64.b64encode(blob).decode("ascii")] for article, (digest, blob) in vectors.items()}})


def decode_article_vectors(value: str | None, embedder: str) -> dict[str, tuple[str, bytes]]:
    """The stored article vectors of `embedder`; none when nothing (or another embedder's) is stored."""
    try:
        data = json.loads(value) if value else {}
        if data.get("embedder") != embedder:
            return {}
        return {article: (str(digest), base64.b64decode(blob)) for article, (digest, blob) in data["articles"].items()}
    except (ValueError, KeyError, TypeError):  # a damaged value is only a cache: embed again
        return {}


@dataclass(frozen=True)
class Lease:
    """`node|expiry`: whoever holds an unexpired lease runs the job; a crashed holder's lease runs out."""

    engine: AsyncEngine
    node: str

    async def claim(self, now: datetime, ttl: timedelta) -> bool:
        mine = f"{self.node}|{(now + ttl).isoformat()}"
        async with self.engine.begin() as conn:
            current = await kv_get(conn, LEASE_KEY)
            if current is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(insert(kv).values(key=LEASE_KEY, value=mine))
                    return True
                except IntegrityError:
                    return False
            holder, _, expiry = current.partition("|")
            expired = not expiry or expiry == "released" or datetime.fromisoformat(expiry) <= now
            if holder != self.node and not expired:
                return False
            # Compare-and-set: of two processes that read the same expired lease, one update matches.
            done = await conn.execute(update(kv).where(kv.c.key == LEASE_KEY, kv.c.value == current)
                                      .values(value=mine))
            return done.rowcount == 1

    async def release(self) -> None:
        async with self.engine.begin() as conn:
            current = await kv_get(conn, LEASE_KEY)
            if current and current.partition("|")[0] == self.node:
                await conn.execute(update(kv).where(kv.c.key == LEASE_KEY, kv.c.value == current)
                                   .values(value=f"{self.node}|released"))


async def ingest(engine: AsyncEngine, now: datetime, since: datetime | None = None) -> int:
    """Copy new inputs into gap_questions; returns how many rows were added. Answers of the bot older than
    `since` are skipped (they would only be read inside the window)."""
    added = 0
    async with engine.begin() as conn:
        seen = int(await kv_get(conn, SEEN_UNANSWERED_KEY) or 0)
        rows = (await conn.execute(select(unanswered_questions).where(unanswered_questions.c.id > seen)
                                   .order_by(unanswered_questions.c.id).limit(50_000))).all()
        values = [{"source": "unanswered", "source_id": str(row.id), "reason": row.reason,
                   "text": row.text.strip()[:4000], "visitor_id": row.visitor_id,
                   "conversation_id": row.conversation_id, "ticket_id": None, "priority": None,
                   "locale": row.locale or "en", "created_at": row.created_at,
                   "rejected_article_id": row.article_id if row.reason == "unhelpful" else None}
                  for row in rows if (row.text or "").strip()]
        if values:
            await conn.execute(insert(gap_questions), values)
            added += len(values)
        if rows:
            await kv_set(conn, SEEN_UNANSWERED_KEY, str(rows[-1].id))
    async with engine.begin() as conn:
        added += await _ingest_tickets(conn)
    async with engine.begin() as conn:
        added += await _ingest_answered(conn, since)
    return added


async def _ingest_answered(conn: AsyncConnection, since: datetime | None) -> int:
    """The bot's answers (suggestions offered), as context for the ranking; a later "No" is seen at use."""
    seen = int(await kv_get(conn, SEEN_ANSWERED_KEY) or 0)
    rows = (await conn.execute(select(events.c.id, events.c.conversation_id, events.c.data, events.c.created_at,
                                      conversations.c.visitor_id)
                               .join(conversations, conversations.c.id == events.c.conversation_id)
                               .where(events.c.id > seen, events.c.kind == "suggestions", events.c.role == "bot",
                                      events.c.created_at >= since if since is not None else true())
                               .order_by(events.c.id).limit(50_000))).all()
    values = []
    for row in rows:
        text = str((row.data or {}).get("question") or "").strip()
        if text:
            values.append({"source": ANSWERED, "source_id": str(row.id), "reason": ANSWERED, "text": text[:4000],
                           "visitor_id": row.visitor_id, "conversation_id": row.conversation_id, "ticket_id": None,
                           "priority": None, "locale": "en", "created_at": row.created_at, "placed": ANSWERED})
    if values:
        await conn.execute(insert(gap_questions), values)
    if rows:
        await kv_set(conn, SEEN_ANSWERED_KEY, str(rows[-1].id))
    return len(values)


async def _ingest_tickets(conn: AsyncConnection) -> int:
    seen = int(await kv_get(conn, SEEN_TICKETS_KEY) or 0)
    closed = (await conn.execute(select(tickets).where(
        tickets.c.id > seen, tickets.c.status == "closed", tickets.c.merged_into.is_(None))
        .order_by(tickets.c.id).limit(10_000))).all()
    # Tickets are closed out of id order: remember the highest id below which every ticket is settled.
    still_open = (await conn.execute(select(func.min(tickets.c.id)).where(
        tickets.c.id > seen, tickets.c.status != "closed", tickets.c.merged_into.is_(None)))).scalar_one_or_none()
    added = 0
    for ticket in closed:
        if still_open is not None and ticket.id > still_open:
            break
        entries = (await conn.execute(select(ticket_entries).where(ticket_entries.c.ticket_id == ticket.id)
                                      .order_by(ticket_entries.c.id))).all()
        if _links_article(entries):
            await kv_set(conn, SEEN_TICKETS_KEY, str(ticket.id))
            continue
        if ticket.conversation_id:
            done = await conn.execute(update(gap_questions).where(
                gap_questions.c.conversation_id == ticket.conversation_id, gap_questions.c.ticket_id.is_(None),
                gap_questions.c.reason != ANSWERED)
                .values(ticket_id=ticket.id, priority=ticket.priority))
            if done.rowcount:
                await kv_set(conn, SEEN_TICKETS_KEY, str(ticket.id))
                continue
        first = next((e.text for e in entries if e.role == "visitor" and e.kind == "message" and not e.internal
                      and (e.text or "").strip()), None)
        text = (first or ticket.subject or "").strip()
        if text:
            exists = (await conn.execute(select(gap_questions.c.id).where(
                gap_questions.c.source == "ticket", gap_questions.c.source_id == str(ticket.id)))).first()
            if exists is None:
                await conn.execute(insert(gap_questions).values(
                    source="ticket", source_id=str(ticket.id), reason="ticket", text=text[:4000],
                    visitor_id=ticket.visitor_id, conversation_id=ticket.conversation_id, ticket_id=ticket.id,
                    priority=ticket.priority, locale="en", created_at=ticket.closed_at or ticket.created_at))
                added += 1
        await kv_set(conn, SEEN_TICKETS_KEY, str(ticket.id))
    return added


def _links_article(entries: list[Any]) -> bool:
    for entry in entries:
        if entry.kind == "reply" and entry.text and _ARTICLE_LINK_RE.search(entry.text):
            return True
        data = entry.data or {}
        if data.get("event") == "feedback" and data.get("helpful") is True:
            return True
    return False


async def window_rows(engine: AsyncEngine, since: datetime, *, unplaced_only: bool = False) -> list[Any]:
    """The unanswered questions of the window (what gaps are made of), oldest first."""
    query = select(gap_questions).where(gap_questions.c.created_at >= since, gap_questions.c.reason != ANSWERED) \
        .order_by(gap_questions.c.id)
    if unplaced_only:
        query = query.where(gap_questions.c.placed.is_(None))
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def oldest_answered_to_embed(conn: AsyncConnection, since: datetime, keep: int) -> int:
    """Id from which answered questions are embedded: the window's `keep` most recent (older ones are
    never read, so they are never embedded)."""
    cutoff = (await conn.execute(select(gap_questions.c.id).where(
        gap_questions.c.created_at >= since, gap_questions.c.reason == ANSWERED)
        .order_by(gap_questions.c.id.desc()).offset(keep - 1).limit(1))).scalar_one_or_none()
    return int(cutoff or 0)


async def answered_blobs(engine: AsyncEngine, since: datetime, embedder: str, limit: int) -> tuple[list[bytes], float]:
    """Stored vectors of the window's most recent `limit` answered questions (embedded by `embedder`), less
    those the visitor then marked unhelpful; and the weight of each (how many answered questions one
    stands for when there are more than `limit`)."""
    where = (gap_questions.c.created_at >= since, gap_questions.c.reason == ANSWERED)
    async with engine.connect() as conn:
        total = int((await conn.execute(select(func.count()).select_from(gap_questions).where(*where))).scalar_one())
        rows = (await conn.execute(select(gap_questions.c.conversation_id, gap_questions.c.text,
                                          gap_questions.c.embedding).where(*where, gap_questions.c.embedder == embedder)
                                   .order_by(gap_questions.c.id.desc()).limit(limit))).all()
        rejected = {(r.conversation_id, r.text) for r in (await conn.execute(
            select(gap_questions.c.conversation_id, gap_questions.c.text).where(
                gap_questions.c.created_at >= since, gap_questions.c.reason == "unhelpful"))).all()}
    blobs = [r.embedding for r in rows if r.embedding and (r.conversation_id, r.text) not in rejected]
    return blobs, (total / len(rows) if rows else 1.0)


async def ticket_priorities(engine: AsyncEngine, conversation_ids: set[str], ticket_ids: set[int]) -> dict[str, Any]:
    """Tickets linked to the questions: by conversation id ("c:<id>") and by ticket id ("t:<id>")."""
    out: dict[str, Any] = {}
    if not conversation_ids and not ticket_ids:
        return out
    clauses = []
    if conversation_ids:
        clauses.append(tickets.c.conversation_id.in_(sorted(conversation_ids)))
    if ticket_ids:
        clauses.append(tickets.c.id.in_(sorted(ticket_ids)))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tickets.c.id, tickets.c.conversation_id, tickets.c.priority,
                                          tickets.c.subject, tickets.c.status).where(or_(*clauses)))).all()
    for row in rows:
        out[f"t:{row.id}"] = row
        if row.conversation_id:
            out[f"c:{row.conversation_id}"] = row
    return out


def when(value: Any) -> datetime:
    out = as_utc(value)
    assert out is not None
    return out

