"""The live suggestion index follows the stored help center: added, edited, unpublished, deleted."""

from __future__ import annotations

from datetime import UTC, datetime

from chatsvc.kb_suggest import Article
from chatsvc.kb_suggest.store import ArticleStore, KnowledgeBase
from chatsvc.store import db

NOW = datetime(2026, 5, 1, tzinfo=UTC)


async def top(kb: KnowledgeBase, question: str) -> str | None:
    result = await kb.suggest(question, 1)
    return result.matches[0].article_id if result.matches else None


async def test_changes_are_applied_to_the_index(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.migrate(engine)
        store = ArticleStore(engine)
        await store.save_many([Article(id=f"a{i}", title=f"Topic number {i}", body=f"Body about subject {i}.")
                               for i in range(30)], NOW)
        kb = KnowledgeBase(store)
        assert await kb.refresh() is True and len(kb.index) == 30
        assert await kb.refresh() is False

        await store.save(Article(id="pool", title="Book the swimming pool", body="Amenities, then pool."), NOW)
        assert await kb.refresh() is True
        assert await top(kb, "how do I book the swimming pool") == "pool"
        await store.save(Article(id="pool", title="Reserve the sauna", body="Amenities, then sauna."), NOW)
        await kb.refresh()
        assert await top(kb, "reserve the sauna") == "pool" and len(kb.index) == 31

        await store.set_status("pool", "draft", NOW)
        await kb.refresh()
        assert "pool" not in kb.index
        await store.set_status("pool", "published", NOW)
        await kb.refresh()
        assert "pool" in kb.index
        await store.delete("pool")
        await kb.refresh()
        assert "pool" not in kb.index and len(kb.index) == 30
    finally:
        await engine.dispose()
