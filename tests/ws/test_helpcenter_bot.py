"""The bot answers from the help center; answers and misses are recorded for ranking and gap detection."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from chatsvc.kb_suggest.store import ArticleStore
from chatsvc.server_commands import DEMO_HELPCENTER, import_articles
from chatsvc.settings import Settings
from chatsvc.store import db
from tests.support.server import agent, run_sync, visitor
from tests.ws.conftest import DeployFactory, Deployment


def with_demo_help_center(deploy: DeployFactory, database_url: str, **env: str) -> Deployment:
    run_sync(lambda: import_articles(Settings(database_url=database_url), DEMO_HELPCENTER))
    return deploy(**env)


async def unanswered(database_url: str) -> list[tuple[str, str]]:
    engine = db.create_engine(database_url)
    try:
        return [(r.reason, r.text) for r in await ArticleStore(engine).unanswered()]
    finally:
        await engine.dispose()


async def test_bot_suggests_articles_and_records_the_answer(deploy: DeployFactory, sqlite_url: str) -> None:
    live = with_demo_help_center(deploy, sqlite_url)
    v, _ = await visitor(live.ws)
    await v.send({"type": "message", "client_id": "q1", "text": "I forgot my pasword, how do I reset it?"})
    ack = await v.expect("ack")
    offer = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "suggestions")
    assert offer["role"] == "bot" and offer["data"]["question_seq"] == ack["seq"]
    articles = offer["data"]["articles"]
    assert articles and articles[0]["id"] == "reset-password"
    assert all(0 <= a["score"] <= 1 and a["url"].startswith("http") for a in articles)

    await v.send({"type": "feedback", "seq": offer["seq"], "article_id": articles[0]["id"], "helpful": False})
    await v.expect("done")
    fb = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "feedback")
    assert fb["data"] == {"suggestion_seq": offer["seq"], "article_id": "reset-password", "helpful": False}
    # Answering twice counts once.
    await v.send({"type": "feedback", "seq": offer["seq"], "article_id": articles[0]["id"], "helpful": False})
    await v.expect("done")
    assert [f for f in await v.quiet(0.3) if f.get("kind") == "feedback"] == []
    # A suggestion that is not in the conversation is refused.
    await v.send({"type": "feedback", "seq": offer["seq"], "article_id": "refunds", "helpful": True})
    assert (await v.expect("error"))["code"] == "not_found"

    engine = db.create_engine(sqlite_url)
    try:
        stored = await ArticleStore(engine).get("reset-password")
    finally:
        await engine.dispose()
    assert stored is not None and stored.unhelpful == 1
    assert ("unhelpful", "I forgot my pasword, how do I reset it?") in await unanswered(sqlite_url)


async def test_questions_no_article_answers_are_recorded(deploy: DeployFactory, sqlite_url: str) -> None:
    live = with_demo_help_center(deploy, sqlite_url)
    v, _ = await visitor(live.ws)
    question = "Can your robots water my tomato plants while I am on holiday in Peru?"
    await v.send({"type": "message", "client_id": "q", "text": question})
    reply = await v.expect(lambda f: f["type"] == "event" and f["role"] == "bot")
    assert reply["kind"] == "message" and reply["data"]["no_match"] is True
    assert ("no_match", question) in await unanswered(sqlite_url)


async def test_agents_get_suggestions_for_the_latest_visitor_message(deploy: DeployFactory, sqlite_url: str) -> None:
    live = with_demo_help_center(deploy, sqlite_url)
    ann, _ = await agent(live.ws, live.token("Ann"))
    v, vw = await visitor(live.ws)
    conv = vw["conversation"]["id"]
    await v.send({"type": "message", "client_id": "q", "text": "my card payment failed"})
    await v.send({"type": "request_agent"})
    await ann.expect("offer")
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.send({"type": "suggest", "conversation_id": conv, "ref": "s1"})
    result = await ann.expect("suggestions")
    assert result["ref"] == "s1" and result["question"] == "my card payment failed"
    assert {"payment-failed", "retry-payment", "update-payment-method"} & {a["id"] for a in result["articles"]}
    await ann.send({"type": "suggest", "conversation_id": conv, "text": "export all my data", "k": 1})
    result = await ann.expect("suggestions")
    assert [a["id"] for a in result["articles"]] == ["export-data"]
    # Another agent's conversation is not theirs to look into.
    bob, _ = await agent(live.ws, live.token("Bob"))
    await bob.send({"type": "suggest", "conversation_id": conv})
    assert (await bob.expect("error"))["code"] == "not_found"


@pytest.mark.parametrize("backend", ["postgres"])
async def test_article_changes_reach_other_processes(deploy: DeployFactory, backend: str) -> None:
    a = deploy()
    b = deploy()
    headers = {"Authorization": f"Bearer {a.token('Lee')}"}
    async with httpx.AsyncClient() as http:
        created = await http.post(f"{a.server.http}/api/v1/articles", headers=headers, json={
            "id": "parking", "title": "Guest parking permits",
            "body": "Residents request guest parking permits from the Amenities tab.", "status": "published"})
        assert created.status_code == 201
        started = time.monotonic()
        while True:
            found = await http.get(f"{b.server.http}/api/v1/suggest", headers=headers,
                                   params={"q": "guest parking permit"})
            ids = [x["id"] for x in found.json()["articles"]]
            if ids[:1] == ["parking"]:
                break
            assert time.monotonic() - started < 10, "the other process never saw the article"
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        print(f"article visible in the other process after {elapsed:.2f}s")
