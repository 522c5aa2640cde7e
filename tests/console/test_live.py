"""The live queue and conversation view in headless Chromium against a real server and real visitors.

Visitors are websocket clients that speak the protocol (their frames are schema-checked); agents use the
console pages exactly as a person would: clicks, keys, the composer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.browser.conftest import expect
from tests.console.conftest import PASSWORD, Console, Team, console_page, screenshot, watch_errors
from tests.support.server import Client, visitor

TIMEOUT = 20_000  # ms: the machine may be busy; nothing here is a timing assertion


async def go_online(page: Any) -> None:
    await expect(page.locator("body[data-connection=online]")).to_be_attached(timeout=TIMEOUT)
    await page.get_by_role("button", name="Online", exact=True).click()
    await expect(page.locator("body[data-presence=online]")).to_be_attached(timeout=TIMEOUT)


async def waiting_visitor(console: Console, question: str, **hello: Any) -> tuple[Client, dict[str, Any]]:
    client, welcome = await visitor(console.ws, **hello)
    await client.send({"type": "message", "client_id": "q1", "text": question})
    await client.expect("ack")
    await client.send({"type": "request_agent", "ref": "ask"})
    await client.expect(lambda f: f["type"] == "done" and f.get("ref") == "ask")
    return client, welcome


def card(page: Any, conversation_id: str) -> Any:
    return page.locator(f'#offers li[data-conversation="{conversation_id}"]')


async def visitor_message(client: Client, text_part: str) -> dict[str, Any]:
    return await client.expect(lambda f: f["type"] == "event" and f["kind"] == "message"
                               and f["role"] == "agent" and text_part in (f.get("text") or ""), timeout=20)


async def test_log_in_accept_reply_suggest_macro_note_and_convert(console: Console, team: Team, chromium: Any) -> None:
    ann = team.add("agent", "Ann Agent")
    context = await chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=console.http)
    page = await context.new_page()
    page.errors = watch_errors(page)
    try:
        await page.goto("/console/queue")
        await expect(page).to_have_url(f"{console.http}/console/login?next=/console/queue")
        await screenshot(page, "login")
        await page.get_by_label("E-mail").fill(ann.email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(f"{console.http}/console/queue")
        await go_online(page)

        v, welcome = await waiting_visitor(console, "My payment failed when I tried to pay my dues, how do I retry it?",
                                           identity={"name": "Pat Resident", "plan": "Growth",
                                                     "community": "Maple Court"})
        conv_id = welcome["conversation"]["id"]
        offer = card(page, conv_id)
        await expect(offer).to_contain_text("My payment failed", timeout=TIMEOUT)
        await expect(offer).to_contain_text("Pat Resident")
        await expect(offer.locator(".badge[title='Predicted priority']")).to_have_text("P1")
        await expect(offer.locator(".badge[title='Predicted category']")).not_to_be_empty()
        await expect(offer).to_contain_text("offered to you")
        await screenshot(page, "queue")

        await page.keyboard.press("a")  # the shortcut accepts the highlighted offer
        await expect(page).to_have_url(f"{console.http}/console/conversations/{conv_id}", timeout=TIMEOUT)
        transcript = page.locator("#transcript")
        await expect(transcript.locator("li.from-visitor")).to_contain_text("My payment failed")
        await v.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined", timeout=20)

        suggestion = page.locator("#suggestions li").first
        await expect(suggestion).to_be_visible(timeout=TIMEOUT)
        title = (await suggestion.locator(".title").inner_text()).strip()
        await suggestion.get_by_role("button", name="Insert link").click()
        composer = page.locator("#composer-text")
        value = await composer.input_value()
        assert value.startswith(f"{title}: http") and "/help/" in value
        await composer.press("Enter")
        linked = await visitor_message(v, title)
        assert "/help/" in linked["text"]

        await page.locator("#macros").get_by_role("button", name="Payment Retry").click()
        await expect(composer).not_to_have_value("", timeout=TIMEOUT)
        macro_text = await composer.input_value()
        assert "Hi Pat Resident" in macro_text and "Maple Court" in macro_text and "Ann Agent" in macro_text
        assert not macro_text.rstrip().endswith("Ticket"), "a chat has no ticket number to sign with"
        await page.get_by_role("button", name="Send").click()
        await visitor_message(v, macro_text.strip()[:40])

        await page.keyboard.press("Alt+n")
        await expect(page.locator("#composer.note-mode")).to_be_visible()
        await composer.fill("Internal: Pat is on Growth, check the card processor logs")
        await composer.press("Enter")
        note = transcript.locator("li.note", has_text="check the card processor logs")
        await expect(note).to_be_visible(timeout=TIMEOUT)
        await expect(note).to_contain_text("only agents see this")
        await page.get_by_role("button", name="Reply", exact=True).click()
        await composer.fill("Thanks Pat, I'm looking at your payment now.")
        await composer.press("Enter")
        await visitor_message(v, "looking at your payment")
        await expect(transcript.locator("li.from-agent", has_text="looking at your payment")).to_have_count(1)
        await screenshot(page, "conversation")

        await page.get_by_role("button", name="Convert to ticket").click()
        await page.get_by_role("button", name="Click again to convert").click()
        ticket = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket", timeout=20)
        await expect(page.locator("#conv-ticket a")).to_have_text(f"#{ticket['data']['number']}", timeout=TIMEOUT)
        await expect(page.locator("#composer-text")).to_be_disabled()
        assert not [f for f in v.frames if f["type"] == "event" and f["kind"] == "note"]
        assert not [f for f in v.frames if "card processor" in str(f)], "a note reached the visitor"
        assert page.errors == []
    finally:
        await context.close()


async def test_decline_passes_the_offer_and_two_accepts_have_one_winner(console: Console, team: Team,
                                                                         chromium: Any) -> None:
    ann, bob = team.add("agent", "Ann Two"), team.add("agent", "Bob Two")
    pages = {ann.id: await console_page(chromium, console, ann), bob.id: await console_page(chromium, console, bob)}
    try:
        for page in pages.values():
            await go_online(page)
        v1, w1 = await waiting_visitor(console, "How do I invite residents to my community?")
        first_id = w1["conversation"]["id"]
        offered, other = await offered_page(pages, first_id)
        await offered.locator(f'#offers li[data-conversation="{first_id}"]').click()
        await offered.keyboard.press("d")
        await expect(card(other, first_id)).to_have_attribute("data-mine", "true", timeout=TIMEOUT)
        await expect(card(offered, first_id)).to_have_attribute("data-mine", "false", timeout=TIMEOUT)
        await card(other, first_id).get_by_role("button", name="Accept").click()
        await expect(other.locator("#transcript li.from-visitor")).to_contain_text("invite residents",
                                                                                  timeout=TIMEOUT)
        await expect(card(offered, first_id)).to_have_count(0, timeout=TIMEOUT)

        # Transfer it back to the agent who declined.
        offered_id = next(agent_id for agent_id, page in pages.items() if page is offered)
        await other.get_by_role("button", name="Transfer").click()
        await other.locator("#transfer-to").select_option(offered_id)
        await other.locator("#transfer-dialog").get_by_role("button", name="Transfer").click()
        moved = await v1.expect(lambda f: f["type"] == "event" and f["kind"] == "transferred", timeout=20)
        assert moved["data"]["to"]["id"] == offered_id
        await expect(offered.locator(f'#conversations a[data-conversation="{first_id}"]')).to_be_visible(
            timeout=TIMEOUT)
        await expect(other.locator(f'#conversations a[data-conversation="{first_id}"] .badge')).to_have_text(
            "transferred", timeout=TIMEOUT)

        # Two consoles accept the same waiting chat at once: exactly one wins, the other is told.
        v2, w2 = await waiting_visitor(console, "The mobile app crashes when I open the documents library")
        race_id = w2["conversation"]["id"]
        for page in pages.values():
            await expect(card(page, race_id).get_by_role("button", name="Accept")).to_be_visible(timeout=TIMEOUT)
        # Clicked from inside both pages at once (no waiting on either): the two accepts really race.
        click = f'document.querySelector(\'#offers li[data-conversation="{race_id}"] [data-action=accept]\').click()'
        await asyncio.gather(*(page.evaluate(click) for page in pages.values()))
        winners = []
        for agent_id, page in pages.items():
            told = page.get_by_text("Another agent took this chat.").first
            opened = page.locator(f'#conversations a[data-conversation="{race_id}"]')
            await expect(told.or_(opened)).to_be_visible(timeout=TIMEOUT)
            if await opened.count():
                winners.append(agent_id)
        assert len(winners) == 1
        joined = await v2.expect(lambda f: f["type"] == "event" and f["kind"] == "agent_joined", timeout=20)
        assert joined["author"]["id"] == winners[0]
        loser = next(page for agent_id, page in pages.items() if agent_id != winners[0])
        await expect(loser.get_by_text("Another agent took this chat.").first).to_be_visible()
        await expect(loser.locator(f'#conversations a[data-conversation="{race_id}"]')).to_have_count(0)
        for page in pages.values():
            assert page.errors == []
    finally:
        for page in pages.values():
            await page.context.close()


async def offered_page(pages: dict[str, Any], conversation_id: str) -> tuple[Any, Any]:
    """(the page the offer went to, the other one)."""
    mine = [card(page, conversation_id).and_(page.locator("[data-mine=true]")) for page in pages.values()]
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        for i, locator in enumerate(mine):
            if await locator.count():
                listed = list(pages.values())
                return listed[i], listed[1 - i]
        await asyncio.sleep(0.1)
    raise AssertionError("the offer reached neither console")


async def test_a_dropped_connection_resumes_with_nothing_missed_or_doubled(console: Console, team: Team,
                                                                          chromium: Any) -> None:
    ann = team.add("agent", "Ann Three")
    page = await console_page(chromium, console, ann)
    try:
        await go_online(page)
        v, welcome = await waiting_visitor(console, "I can't log in to my account")
        conv_id = welcome["conversation"]["id"]
        await card(page, conv_id).get_by_role("button", name="Accept").click()
        transcript = page.locator("#transcript")
        await expect(transcript.locator("li.from-visitor")).to_have_count(1, timeout=TIMEOUT)

        await page.context.set_offline(True)
        await page.evaluate("window.chatsvcConsole.drop()")
        await expect(page.locator("body[data-connection=online]")).to_have_count(0, timeout=TIMEOUT)
        for i in range(3):
            await v.send({"type": "message", "client_id": f"gap-{i}", "text": f"while you were away {i}"})
            await v.expect(lambda f, i=i: f["type"] == "ack" and f["client_id"] == f"gap-{i}")
        await page.locator("#composer-text").fill("Sent while the network was down")
        await page.locator("#composer-text").press("Enter")
        await expect(transcript.locator("li.pending")).to_have_count(1)
        await page.context.set_offline(False)
        await page.evaluate("window.dispatchEvent(new Event('online'))")

        await expect(page.locator("body[data-connection=online]")).to_be_attached(timeout=TIMEOUT)
        for i in range(3):
            await expect(transcript.locator("li.from-visitor", has_text=f"while you were away {i}")).to_have_count(
                1, timeout=TIMEOUT)
        await expect(transcript.locator("li.from-agent", has_text="Sent while the network was down")).to_have_count(1)
        await expect(transcript.locator("li.pending")).to_have_count(0, timeout=TIMEOUT)
        await visitor_message(v, "Sent while the network was down")

        # A second drop, with the page asleep (no online event): the backoff reconnects by itself.
        await page.evaluate("window.chatsvcConsole.drop()")
        await v.send({"type": "message", "client_id": "after-2", "text": "and one more"})
        await expect(transcript.locator("li.from-visitor", has_text="and one more")).to_have_count(1, timeout=TIMEOUT)
        seqs = await transcript.locator("li[data-seq]").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
        assert seqs == sorted(set(seqs)), f"duplicated or out of order: {seqs}"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a gap: {seqs}"
        replies = [f for f in v.frames if f["type"] == "event" and f.get("text") == "Sent while the network was down"]
        assert len(replies) == 1

        # Unread counts for the conversation not open; reading it clears the count.
        v2, w2 = await waiting_visitor(console, "Where do I download my invoices?")
        await card(page, w2["conversation"]["id"]).get_by_role("button", name="Accept").click()
        await expect(page).to_have_url(f"{console.http}/console/conversations/{w2['conversation']['id']}",
                                       timeout=TIMEOUT)
        for i in range(2):
            await v.send({"type": "message", "client_id": f"unread-{i}", "text": f"unread {i}"})
        first = page.locator(f'#conversations a[data-conversation="{conv_id}"]')
        await expect(first.locator(".unread")).to_have_text("2", timeout=TIMEOUT)
        await first.click()
        await expect(first.locator(".unread")).to_have_count(0)
        await page.get_by_role("button", name="End chat").click()
        await page.get_by_role("button", name="Click again to end").click()
        await v.expect(lambda f: f["type"] == "event" and f["kind"] == "state" and f["data"]["to"] == "ended",
                       timeout=20)
        await expect(page.locator("#conv-state")).to_have_text("ended", timeout=TIMEOUT)
        assert page.errors == []
    finally:
        await page.context.close()

