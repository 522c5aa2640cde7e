"""The help center in the database, and the live suggestion index every server process keeps in step.

Every write bumps a `kb_version` counter in the `kv` table in the same transaction. Each process polls that
counter (a one-row read) every `POLL_SECONDS`; when it moved, the process compares each article's
(version, status) with what it indexed and applies the few changed articles to its index off the event
loop (0.7 s at 10,000 articles), so an article change reaches suggestions in every process within about
a second, without a restart. Many changes at once rebuild the index instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Text, cast, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatsvc.kb_suggest.articles import Article, ArticleDiff
from chatsvc.ops.logs import Outage
from chatsvc.store.tables import article_feedback, articles, kv, unanswered_questions

log = logging.getLogger("chatsvc.kb")

POLL_SECONDS = 0.5
INCREMENTAL_LIMIT = 20  # more changed articles than this at once: rebuild the index instead
VERSION_KEY = "kb_version"


@dataclass(frozen=True)
class StoredArticle:
    article: Article
    helpful: int
    unhelpful: int
    version: int
    created_at: datetime
    updated_at: datetime


def _article(row: Any) -> Article:
    return Article(id=row.id, title=row.title, body=row.body, tags=list(row.tags or []), locale=row.locale,
                   slug=row.slug, status=row.status)


def _stored(row: Any) -> StoredArticle:
    return StoredArticle(_article(row), row.helpful, row.unhelpful, row.version, row.created_at, row.updated_at)


async def _bump_version(conn: AsyncConnection) -> None:
    """Atomic in SQL, so two processes writing at once both move the counter."""
    updated = await conn.execute(update(kv).where(kv.c.key == VERSION_KEY)
                                 .values(value=cast(cast(kv.c.value, Integer) + 1, Text)))
    if updated.rowcount == 0:
        await conn.execute(insert(kv).values(key=VERSION_KEY, value="1"))


class ArticleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def version(self) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(kv.c.value).where(kv.c.key == VERSION_KEY))).scalar_one_or_none()
        return int(value or 0)

    async def list(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> list[StoredArticle]:
        q = select(articles).order_by(articles.c.title, articles.c.id).limit(limit).offset(offset)
        if status:
            q = q.where(articles.c.status == status)
        async with self.engine.connect() as conn:
            return [_stored(r) for r in (await conn.execute(q)).all()]

    async def count(self, *, status: str | None = None) -> int:
        q = select(func.count()).select_from(articles)
        if status:
            q = q.where(articles.c.status == status)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def get(self, article_id: str) -> StoredArticle | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(articles).where(articles.c.id == article_id))).first()
        return None if row is None else _stored(row)

    async def by_slug(self, slug: str) -> StoredArticle | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(articles).where(articles.c.slug == slug)
                                      .order_by(articles.c.status.desc()).limit(1))).first()
        return None if row is None else _stored(row)

    async def stamps(self) -> dict[str, tuple[int, str]]:
        """Every article's (version, status): what a process compares to find what changed."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(articles.c.id, articles.c.version, articles.c.status))).all()
        return {r.id: (int(r.version), r.status) for r in rows}

    async def published(self) -> list[Article]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(articles).where(articles.c.status == "published")
                                       .order_by(articles.c.id))).all()
        return [_article(r) for r in rows]

    async def save(self, article: Article, now: datetime) -> str:
        """Insert or update by id; returns "added", "updated" or "unchanged"."""
        async with self.engine.begin() as conn:
            result = await self._save(conn, article, now)
            if result != "unchanged":
                await _bump_version(conn)
        return result

    async def _save(self, conn: AsyncConnection, article: Article, now: datetime) -> str:
        row = (await conn.execute(select(articles).where(articles.c.id == article.id))).first()
        values = {"title": article.title, "body": article.body, "tags": list(article.tags),
                  "locale": article.locale, "slug": article.slug, "status": article.status}
        if row is None:
            await conn.execute(insert(articles).values(id=article.id, created_at=now, updated_at=now, version=1,
                                                       helpful=0, unhelpful=0, **values))
            return "added"
        if all(getattr(row, k) == v for k, v in values.items()):
            return "unchanged"
        await conn.execute(update(articles).where(articles.c.id == article.id)
                           .values(updated_at=now, version=articles.c.version + 1, **values))
        return "updated"

    async def save_many(self, items: Iterable[Article], now: datetime) -> ArticleDiff:
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        async with self.engine.begin() as conn:
            for article in items:
                {"added": added, "updated": updated, "unchanged": unchanged}[
                    await self._save(conn, article, now)].append(article.id)
            if added or updated:
                await _bump_version(conn)
        return ArticleDiff(added=sorted(added), updated=sorted(updated), unchanged=sorted(unchanged), removed=[])

    async def set_status(self, article_id: str, status: str, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(update(articles).where(articles.c.id == article_id)
                                        .values(status=status, updated_at=now, version=articles.c.version + 1))
            if result.rowcount:
                await _bump_version(conn)
        return bool(result.rowcount)

    async def delete(self, article_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(articles).where(articles.c.id == article_id))
            if result.rowcount:
                await _bump_version(conn)
        return bool(result.rowcount)

    async def record_feedback(self, conversation_id: str, suggestion_seq: int, article_id: str, helpful: bool,
                              now: datetime) -> bool:
        """Count one answer per (suggestion, article); False when it was already counted."""
        async with self.engine.begin() as conn:
            seen = (await conn.execute(select(article_feedback.c.id).where(
                article_feedback.c.conversation_id == conversation_id,
                article_feedback.c.suggestion_seq == suggestion_seq,
                article_feedback.c.article_id == article_id))).first()
            if seen is not None:
                return False
            await conn.execute(insert(article_feedback).values(
                conversation_id=conversation_id, suggestion_seq=suggestion_seq, article_id=article_id,
                helpful=helpful, created_at=now))
            column = articles.c.helpful if helpful else articles.c.unhelpful
            await conn.execute(update(articles).where(articles.c.id == article_id).values({column.key: column + 1}))
        return True

    async def record_unanswered(self, *, conversation_id: str | None, visitor_id: str | None,
                                question_seq: int | None, text: str, reason: str, article_id: str | None,
                                best_score: float | None, locale: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(unanswered_questions).values(
                conversation_id=conversation_id, visitor_id=visitor_id, question_seq=question_seq,
                text=text[:4000], reason=reason, article_id=article_id, best_score=best_score, locale=locale,
                created_at=now))

    async def unanswered(self, limit: int = 1000) -> Sequence[Any]:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(unanswered_questions)
                                       .order_by(unanswered_questions.c.id.desc()).limit(limit))).all()


class KnowledgeBase:
    """The suggestion index of this process, rebuilt whenever the help center changes anywhere."""

    def __init__(self, store: ArticleStore) -> None:
        self.store = store
        self.index: Any = None
        self.version = -1
        self._stamps: dict[str, tuple[int, str]] = {}  # article id -> (version, status) indexed
        self._poller: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # While the store is down: one warning, no traceback per round; the previous index keeps serving.
        self._outage = Outage(log, "help-center refresh", "the bot answers from the last index built, if any, "
                              "until it recovers")

    async def refresh(self) -> bool:
        """Catch up with the stored help center; True when the index changed.

        A few changed articles are applied to the index one by one (well under a second at 10,000
        articles); many changes, or the first load, rebuild it."""
        async with self._lock:
            version = await self.store.version()
            if version == self.version and self.index is not None:
                return False
            stamps = await self.store.stamps()
            changed = [i for i, stamp in stamps.items() if self._stamps.get(i) != stamp]
            gone = [i for i in self._stamps if i not in stamps]
            from chatsvc.kb_suggest.engine import SuggestionIndex

            if self.index is None or len(changed) + len(gone) > INCREMENTAL_LIMIT:
                items = await self.store.published()
                self.index = await asyncio.to_thread(SuggestionIndex.build, items)
            else:
                index = self.index
                for article_id in gone:
                    if article_id in index:
                        index = await asyncio.to_thread(index.without, article_id)
                for article_id in changed:
                    item = await self.store.get(article_id)
                    if item is not None:
                        index = await asyncio.to_thread(index.with_article, item.article)
                self.index = index
            self._stamps = stamps
            self.version = version
            log.info("suggestion index at help-center version %d: %d articles", version, len(self.index))
            return True

    @property
    def empty(self) -> bool:
        """No published article: the site has no help center, so the bot stays silent."""
        return self.index is None or len(self.index) == 0

    async def suggest(self, text: str, k: int = 3) -> Any:
        """Suggestions for a question, computed off the event loop."""
        if self.index is None:
            await self.refresh()
        return await asyncio.to_thread(self.index.suggest, text, k)

    async def start(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - chat must start even when the help center cannot be indexed
            self._outage.failed(exc)  # the bot stays silent until the index can be built
        self._poller = asyncio.create_task(self._poll(), name="chatsvc-kb-poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - a failed rebuild keeps the previous index serving
                self._outage.failed(exc)
            else:
                self._outage.succeeded()
