"""A visitor asks the bot, gets articles, asks for a person, chats with an agent, reloads, and is ended."""

from __future__ import annotations

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

TOKEN_IN_COOKIE = "(document.cookie.match(/__Secure-chatsvc\\.default\\.token=([^;]*)/) || ['', ''])[1]"


async def test_bot_suggestions_then_an_agent_then_reload(context: Any, live: Live, hosts: HostPages) -> None:
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(host_page(live.http)))
    frame = await open_chat(page)
    await expect(frame.get_by_role("dialog", name="LotWize support")).to_be_visible()

    # The bot answers with help-center articles, linked safely, and asks whether they helped.
    await ask(frame, "I forgot my password, how do I reset it?")
    first = frame.locator(".article a").first
    await expect(first).to_have_attribute("href", f"{live.http}/help/reset-password")
    await expect(first).to_have_attribute("target", "_blank")
    await expect(first).to_have_attribute("rel", "noopener noreferrer")
    await expect(frame.locator(".article .snippet").first).not_to_be_empty()
    await frame.get_by_role("group", name="Did this answer your question?").get_by_role("button", name="No").click()
    await expect(frame.locator(".ask .thanks")).to_have_text("Sorry about that. Ask in other words, or talk to a person.")

    # Talk to a person: the visitor waits honestly, an agent accepts, and the agent's name shows.
    ann, _ = await agent(live.ws, live.token("Ann"))
    bob, _ = await agent(live.ws, live.token("Bob"), presence="away")
    await frame.get_by_role("button", name="Talk to a person").click()
    await expect(frame.locator("#chat-status")).to_have_text("Waiting for an agent")
    await expect(frame.locator(".actions .wait")).to_contain_text("Waiting for an agent")
    offer = await ann.expect("offer")
    conv = offer["offer"]["conversation_id"]
    assert offer["offer"]["first_question"] == "I forgot my password, how do I reset it?"
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    await expect(frame.locator("#chat-status")).to_have_text("Chatting with Ann")
    await expect(frame.locator(".note", has_text="Ann joined the chat")).to_be_visible()

    # Typing both ways; the agent's reply; the visitor's read receipt reaches the agent.
    await ann.send({"type": "typing", "conversation_id": conv, "active": True})
    await expect(frame.locator("#typing")).to_have_text("Ann is typing…")
    await ann.send({"type": "message", "conversation_id": conv, "client_id": "ann-1",
                    "text": "Hi, I'm Ann. Did the reset e-mail arrive?"})
    reply_seq = (await ann.expect("ack"))["seq"]
    reply = frame.locator(".msg.agent").last
    await expect(reply.locator(".bubble")).to_have_text("Hi, I'm Ann. Did the reset e-mail arrive?")
    await expect(reply.locator(".who")).to_have_text("Ann")
    await expect(frame.locator("#typing")).to_be_hidden()
    read = await ann.expect(lambda f: f["type"] == "receipt" and f["status"] == "read")
    assert read["role"] == "visitor" and read["seq"] == reply_seq

    await frame.get_by_label("Your message").press_sequentially("No")
    typing = await ann.expect(lambda f: f["type"] == "typing")
    assert typing["role"] == "visitor" and typing["active"] is True
    await frame.get_by_label("Your message").press_sequentially(", nothing came")
    await frame.get_by_label("Your message").press("Enter")
    visitor_msg = await ann.expect(lambda f: f["type"] == "event" and f["kind"] == "message" and f["role"] == "visitor"
                                   and f["text"] == "No, nothing came")
    stopped = await ann.expect(lambda f: f["type"] == "typing" and f["active"] is False)
    assert stopped["role"] == "visitor"
    await expect(frame.locator(".msg.me").last.locator(".receipt")).to_have_text(" · Sent")
    await ann.send({"type": "receipt", "conversation_id": conv, "seq": visitor_msg["seq"], "status": "read"})
    await expect(frame.locator(".msg.me").last.locator(".receipt")).to_have_text(" · Read")

    # A transfer is announced, and the new agent's name replaces the old one.
    await bob.send({"type": "presence", "status": "online"})
    await bob.expect("presence")
    await ann.send({"type": "transfer", "conversation_id": conv, "agent_id": live.id("Bob")})
    await ann.expect("done")
    await bob.expect("assigned")
    await expect(frame.locator(".note", has_text="Bob is now helping you")).to_be_visible()
    await expect(frame.locator("#chat-status")).to_have_text("Chatting with Bob")

    # A reload keeps the transcript: shown from the frame's storage, then resumed, nothing doubled.
    await page.reload()
    frame = await chat_frame(page)  # the live conversation loads the frame before the bubble is opened
    await online(frame)
    await page.get_by_role("button", name="Help").click()
    await expect(frame.locator(".msg.agent .bubble")).to_have_count(1)
    await expect(frame.locator(".msg.me .bubble")).to_have_text(
        ["I forgot my password, how do I reset it?", "No, nothing came"])
    await expect(frame.locator(".msg.bot.wide")).to_have_count(1)
    await expect(frame.locator(".ask .thanks")).to_have_count(1)
    await expect(frame.locator("#chat-status")).to_have_text("Chatting with Bob")

    # While the bubble is closed, a new reply shows as a count on the launcher (no content leaves the frame).
    await page.keyboard.press("Escape")
    await bob.send({"type": "message", "conversation_id": conv, "client_id": "bob-1", "text": "Bob here."})
    launcher = page.get_by_role("button", name="Help, new messages: 1")
    await expect(launcher).to_be_visible()
    await launcher.click()
    await expect(frame.locator(".msg.agent .bubble").last).to_have_text("Bob here.")
    await expect(page.get_by_role("button", name="Help", exact=True)).to_have_attribute("aria-expanded", "true")

    # The agent ends the chat.
    await bob.send({"type": "end", "conversation_id": conv})
    await expect(frame.locator(".note", has_text="This chat has ended.")).to_be_visible()
    await expect(frame.locator("#chat-status")).to_have_text("Chat ended")
    await expect(frame.get_by_role("button", name="Talk to a person")).to_be_visible()
    for client in (ann, bob):
        await client.send({"type": "presence", "status": "offline"})
    assert errors == []


async def test_tabs_share_one_conversation(context: Any, live: Live, hosts: HostPages) -> None:
    """Cross-site, so with the token in the frame's partitioned cookie (the same-site embedding, with
    localStorage, is covered by test_resilience and test_embedding)."""
    url = hosts.serve(host_page(live.http))
    first = await context.new_page()
    errors = watch_errors(first)
    await first.goto(url)
    a = await open_chat(first)
    await ask(a, "How do I book the clubhouse?")
    await expect(a.locator(".msg.bot").last).to_be_visible()

    second = await context.new_page()
    errors += watch_errors(second)
    await second.goto(url)
    b = await open_chat(second)
    await expect(b.locator(".msg.me .bubble")).to_have_text(["How do I book the clubhouse?"])
    await ask(b, "And can I cancel a booking?")
    await expect(a.locator(".msg.me .bubble")).to_have_text(["How do I book the clubhouse?",
                                                              "And can I cancel a booking?"])
    token = TOKEN_IN_COOKIE
    assert await a.evaluate(token) == await b.evaluate(token) != ""
    # The token is the frame's: nothing of it in the host page's storage or cookies.
    host_state = await first.evaluate("JSON.stringify(localStorage) + document.cookie")
    assert "token" not in host_state and (await a.evaluate(token))[:12] not in host_state
    assert errors == []
