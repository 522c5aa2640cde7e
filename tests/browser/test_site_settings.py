"""A site's settings in use: e-mail before the first message, the end-of-chat rating card, its colours, and
which pages may embed its chat frame."""

from __future__ import annotations

import contextlib
import json
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
    queue_stub,
    watch_errors,
)
from tests.support.server import agent


class AnyRef(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith("r-")

    __hash__ = str.__hash__


ANY_REF = AnyRef()

# What the visitor side of docs/protocol.md (level 2) lets a client send.
VISITOR_FRAME_TYPES = {"hello", "message", "typing", "receipt", "request_agent", "leave_email", "feedback", "csat",
                       "end", "ping"}


def stored_rating(database_url: str, conversation_id: str) -> list[tuple[str, str | None]]:
    path = database_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [(r[0], r[1]) for r in db.execute(
            "SELECT rating, comment FROM csat_responses WHERE conversation_id = ?", (conversation_id,))]


async def test_pre_chat_email_and_the_rating_card(context: Any, live: Live, hosts: HostPages) -> None:
    html = host_page(live.http, site="strict", head=queue_stub() + """
<script>window.__csat = []; ChatSvc.on("csat", function (e) { __csat.push(e); });</script>""")
    page = await context.new_page()
    errors = watch_errors(page)
    sent: list[str] = []
    sockets: list[str] = []

    def on_socket(ws: Any) -> None:
        sockets.append(ws.url)
        ws.on("framesent", lambda payload: sent.append(payload))

    page.on("websocket", on_socket)
    frame_csp: list[str] = []
    page.on("response", lambda r: frame_csp.append(r.headers.get("content-security-policy", ""))
            if "/widget/frame/strict" in r.url else None)
    await page.goto(hosts.serve(html))
    await page.get_by_role("button", name="Chat").click()
    frame = await chat_frame(page)
    assert frame_csp and f"frame-ancestors 'self' {hosts.origin}" in frame_csp[0]

    # The e-mail comes first; nothing connects before it.
    await expect(frame.locator("#composer")).to_be_hidden()
    await expect(frame.locator(".email .prompt")).to_have_text(
        "Before we start, what's your e-mail? We'll reply there if the chat is interrupted.")
    email = frame.get_by_role("textbox", name="Your e-mail")
    await expect(email).to_be_focused()
    assert sockets == []
    await email.fill("casey@example.net")
    await frame.get_by_role("button", name="Start chat").click()
    await online(frame)
    await expect(frame.get_by_label("Your message")).to_be_focused()
    # A yellow brand colour gets black text.
    assert await frame.locator(".head").evaluate("h => getComputedStyle(h).color") == "rgb(0, 0, 0)"

    ann, _ = await agent(live.ws, live.token("Ann"))
    await ask(frame, "The gate code does not work")
    await frame.get_by_role("button", name="Talk to a person").click()
    offer = await ann.expect("offer")
    assert offer["offer"]["visitor"]["email"] == "casey@example.net"
    conv = offer["offer"]["conversation_id"]
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await ann.send({"type": "end", "conversation_id": conv, "resolution": "solved"})

    # The rating card: good / okay / bad and a comment, sent with the protocol's `csat` frame.
    card = frame.locator(".csat")
    await expect(card.get_by_role("group", name="How was this chat?")).to_be_visible()
    send = card.get_by_role("button", name="Send rating")
    await expect(send).to_be_disabled()
    await card.get_by_role("button", name="Good").click()
    await expect(card.get_by_role("button", name="Good")).to_have_attribute("aria-pressed", "true")
    await card.get_by_label("Anything to add? (optional)").fill("Quick and kind")
    await send.click()
    await expect(card).to_have_text("Thanks for your feedback!")
    assert await page.evaluate("window.__csat") == [{"rating": "good"}]  # the host page never gets the comment
    assert stored_rating(live.database_url, conv) == [("good", "Quick and kind")]
    frames = [json.loads(p) for p in sent]
    assert {f["type"] for f in frames} <= VISITOR_FRAME_TYPES, frames
    assert [f for f in frames if f["type"] == "csat"] == [
        {"type": "csat", "rating": "good", "comment": "Quick and kind", "ref": ANY_REF}]

    await page.reload()
    await page.get_by_role("button", name="Chat").click()
    frame = await chat_frame(page)
    await online(frame)
    await expect(frame.locator(".note", has_text="This chat has ended.")).to_be_visible()
    await expect(frame.locator(".csat")).to_have_count(0)
    await ann.send({"type": "presence", "status": "offline"})
    assert errors == []
