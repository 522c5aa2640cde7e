"""Keyboard and screen-reader use, right-to-left sites, small phones, business hours, and the demo page
(whose screenshots docs/widget.md shows)."""

from __future__ import annotations

import datetime as dt
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
    screenshot,
    watch_errors,
)
from tests.support.server import agent

SUNDAY = dt.datetime(2026, 5, 3, 15, 0, tzinfo=dt.UTC)
WEDNESDAY_11_NEW_YORK = dt.datetime(2026, 5, 6, 15, 0, tzinfo=dt.UTC)


async def test_keyboard_focus_escape_and_live_regions(context: Any, live: Live, hosts: HostPages) -> None:
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(host_page(live.http)))
    launcher = page.get_by_role("button", name="Help")
    await launcher.focus()
    await page.keyboard.press("Enter")
    frame = await chat_frame(page)
    await online(frame)
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    box = frame.get_by_label("Your message")
    await expect(box).to_be_focused()

    dialog = frame.get_by_role("dialog", name="LotWize support")
    await expect(dialog).to_have_attribute("aria-describedby", "chat-status")
    await expect(frame.get_by_role("log", name="Conversation")).to_have_attribute("aria-live", "polite")
    await expect(frame.locator("#banner")).to_have_attribute("role", "status")
    await page.keyboard.press("Tab")
    await expect(frame.get_by_role("button", name="Send")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(box).to_be_focused()

    # Everything works from the keyboard: ask, answer "Did this answer your question?".
    await page.keyboard.type("How do I turn on two-factor authentication?")
    await page.keyboard.press("Enter")
    yes = frame.get_by_role("button", name="Yes")
    await yes.focus()
    await page.keyboard.press("Space")
    await expect(frame.locator(".ask .thanks")).to_have_text("Glad it helped!")

    # Escape closes from anywhere in the chat and gives the focus back to the launcher.
    await page.keyboard.press("Escape")
    await expect(page.locator("chatsvc-widget iframe")).to_be_hidden()
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    assert errors == []


async def test_right_to_left_site(context: Any, live: Live, hosts: HostPages) -> None:
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(host_page(live.http, site="rtl")))
    launcher = page.get_by_role("button", name="مساعدة")
    assert (await launcher.bounding_box() or {})["x"] < 40  # the site puts its bubble bottom left
    frame = await open_chat(page, "مساعدة")
    assert await frame.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
    await ask(frame, "كلمة المرور", label="رسالتك")
    await expect(frame.locator(".msg.me:not(.pending)")).to_have_count(1)
    chat = await page.locator("chatsvc-widget iframe").bounding_box()
    mine = await frame.locator(".msg.me .bubble").bounding_box()
    greeting = await frame.locator(".msg.intro .bubble").bounding_box()
    assert chat and mine and greeting
    # The visitor's messages sit at the end of the line, on the left in a right-to-left language; the
    # greeting at the start, on the right.
    assert mine["x"] - chat["x"] < 30
    assert chat["x"] + chat["width"] - (greeting["x"] + greeting["width"]) < 30
    await expect(frame.get_by_role("button", name="تحدث إلى شخص")).to_be_visible()
    assert errors == []


async def test_business_hours_message(context: Any, live: Live, hosts: HostPages) -> None:
    url = hosts.serve(host_page(live.http))
    for now, away in ((SUNDAY, True), (WEDNESDAY_11_NEW_YORK, False)):
        page = await context.new_page()
        await page.clock.set_fixed_time(now)
        await page.goto(url)
        await page.get_by_role("button", name="Help").click()
        frame = await chat_frame(page)
        note = frame.locator(".note.away")
        if away:
            await expect(note).to_contain_text("Our team works 9:00 to 18:00 Eastern")
        else:
            await expect(note).to_be_hidden()
        await page.close()


async def test_demo_page_states_and_a_small_phone(browser: Any, live: Live) -> None:
    """The demo page (a sample community portal under a strict CSP of its own) in the states the docs show."""
    desktop = await browser.new_context(viewport={"width": 960, "height": 680})
    phone = await browser.new_context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    try:
        page = await desktop.new_page()
        errors = watch_errors(page)
        await page.clock.set_fixed_time(WEDNESDAY_11_NEW_YORK)
        response = await page.goto(f"{live.http}/demo")
        assert response and "script-src 'self'" in (await response.header_value("content-security-policy") or "")
        launcher = page.get_by_role("button", name="Help")
        await expect(launcher).to_be_visible()
        await screenshot(page, "closed")
        frame = await open_chat(page)
        panel = {"x": 960 - 440, "y": 680 - 680, "width": 440, "height": 680}
        await screenshot(page, "open", clip=panel)
        await ask(frame, "How do I reset my password?")
        await expect(frame.locator(".article").first).to_be_visible()
        await screenshot(page, "suggestions", clip=panel)

        ann, _ = await agent(live.ws, live.token("Ann"))
        await frame.get_by_role("button", name="Talk to a person").click()
        conv = (await ann.expect("offer"))["offer"]["conversation_id"]
        await ann.send({"type": "accept", "conversation_id": conv})
        await ann.send({"type": "message", "conversation_id": conv, "client_id": "demo-1",
                        "text": "Hi, I'm Ann from LotWize. I've sent you a fresh reset link; it's valid for an hour."})
        await ask(frame, "Got it, thank you!")
        await ann.expect(lambda f: f["type"] == "event" and f.get("text") == "Got it, thank you!")
        await ann.send({"type": "typing", "conversation_id": conv, "active": True})
        await expect(frame.locator("#typing")).to_be_visible()
        await screenshot(page, "with-agent", clip=panel)
        await ann.send({"type": "presence", "status": "offline"})

        mobile = await phone.new_page()
        errors += watch_errors(mobile)
        await mobile.clock.set_fixed_time(WEDNESDAY_11_NEW_YORK)
        await mobile.goto(f"{live.http}/demo")
        small = await open_chat(mobile)
        assert await mobile.locator("chatsvc-widget iframe").bounding_box() == {"x": 0, "y": 0, "width": 375,
                                                                                  "height": 667}
        await expect(mobile.get_by_role("button", name="Help")).to_be_hidden()  # under the full-screen chat
        await ask(small, "My card payment failed")
        await expect(small.locator(".article").first).to_be_visible()
        await screenshot(mobile, "mobile")
        await small.get_by_role("button", name="Close chat").click()
        await expect(mobile.get_by_role("button", name="Help")).to_be_visible()
        assert errors == []
    finally:
        await desktop.close()
        await phone.close()
