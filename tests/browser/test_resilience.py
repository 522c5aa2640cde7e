"""The server dies mid-chat and comes back on the same port and database: nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

from tests.browser.conftest import (
    HostPages,
    Live,
    ask,
    chat_frame,
    expect,
    host_page,
    online,
    open_chat,
    watch_errors,
)
from tests.support.server import agent


def stored(database_url: str, conversation_id: str, text: str) -> int:
    """How many events of the conversation carry `text`."""
    path = database_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM events WHERE conversation_id = ? AND text = ?",
                              (conversation_id, text)).fetchone()[0])


async def test_restart_mid_chat_loses_and_doubles_nothing(context: Any, hosts: HostPages, live: Live) -> None:
    """The shared server is killed (kill -9) and started again on the same port and database; agents keep
    their chats across it (the test server's agent grace is long), as across a quick deploy."""
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(host_page(live.same_site)))
    frame = await open_chat(page)
    ann, _ = await agent(live.ws, live.token("Ann"))
    await ask(frame, "My card payment failed")
    await frame.get_by_role("button", name="Talk to a person").click()
    conv = (await ann.expect("offer"))["offer"]["conversation_id"]
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.send({"type": "message", "conversation_id": conv, "client_id": "a1", "text": "Which card was it?"})
    await ann.expect("ack")
    await expect(frame.locator(".msg.agent .bubble")).to_have_text(["Which card was it?"])

    # A message goes out and the server is killed at once: it may or may not have been stored.
    await ask(frame, "The Visa ending 4242")
    await asyncio.to_thread(live.server.kill)
    await expect(frame.locator("#banner")).to_have_text("Connection lost. Reconnecting…")
    await frame.wait_for_selector("body[data-connection=offline]")
    # Typed while offline: kept in the outbox and shown as sending.
    await ask(frame, "It worked last month")
    await expect(frame.locator(".msg.me.pending .meta").last).to_have_text("Sending…")

    await asyncio.to_thread(live.server.start)
    await online(frame, timeout=40_000)
    await expect(frame.locator("#banner")).to_be_hidden()
    await expect(frame.locator(".msg.me.pending")).to_have_count(0)

    ann, _ = await agent(live.ws, live.token("Ann"))
    sent = ["My card payment failed", "The Visa ending 4242", "It worked last month"]
    await expect(frame.locator(".msg.me .bubble")).to_have_text(sent)
    for text in sent:
        assert stored(live.database_url, conv, text) == 1, text

    # The agent, reconnected, answers; the visitor sees it once, and once again after a reload.
    await ann.send({"type": "message", "conversation_id": conv, "client_id": "a2", "text": "Thanks, retrying."})
    await expect(frame.locator(".msg.agent .bubble")).to_have_text(["Which card was it?", "Thanks, retrying."])
    await page.reload()
    frame = await chat_frame(page)
    await online(frame)
    await expect(frame.locator(".msg.me .bubble")).to_have_text(sent)
    await expect(frame.locator(".msg.agent .bubble")).to_have_text(["Which card was it?", "Thanks, retrying."])
    await ann.send({"type": "presence", "status": "offline"})
    assert [e for e in errors if "WebSocket" not in e] == []
