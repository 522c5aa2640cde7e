"""Questions for the gap tests: four topics a residents' portal gets asked about, each by several people."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

TOPICS = {
    "gate": ["How do I change the gate code?", "what is the gate code for visitors", "gate code not working",
             "reset the community gate code", "where do I find the gate access code", "can I get a new gate code",
             "the gate code changed and I can't get in"],
    "parking": ["how do I get a parking permit", "parking permit for my guest", "where do I apply for a parking permit",
                "renew my parking permit", "lost my parking permit sticker", "visitor parking permit rules",
                "parking permit for a second car"],
    "pool": ["what are the pool hours", "when does the swimming pool open", "is the pool open on sundays",
             "pool closing time in winter", "can guests use the pool", "pool opening hours this summer",
             "why is the pool closed today"],
}


async def seed(store, now: datetime, topics: dict[str, list[str]] | None = None, *, days: int = 10) -> None:  # noqa: ANN001
    """Record every question as asked by a different visitor, spread over the last `days` days."""
    i = 0
    for questions in (topics or TOPICS).values():
        for text in questions:
            i += 1
            await store.record_unanswered(conversation_id=None, visitor_id=str(uuid.uuid4()), question_seq=None,
                                          text=text, reason="no_match", article_id=None, best_score=0.1,
                                          locale="en", now=now - timedelta(days=i % days, hours=i))


def seed_store(database_url: str, topics: dict[str, list[str]] | None = None) -> None:
    """Record the questions in a store a server runs on (the same call the bot makes)."""
    from datetime import UTC

    from chatsvc.kb_suggest.store import ArticleStore
    from chatsvc.store import db
    from tests.support.server import run_sync

    async def run() -> None:
        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)
            await seed(ArticleStore(engine), datetime.now(UTC), topics)
        finally:
            await engine.dispose()

    run_sync(run)
