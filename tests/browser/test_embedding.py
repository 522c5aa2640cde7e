"""Embedding: nothing connects before the chat is opened, the page cannot style or read the chat, and the
global API (with its queue stub) behaves."""

from __future__ import annotations

import re
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
    queue_stub,
    watch_errors,
)
from tests.support.poll import apoll
from tests.support.server import agent

LOADER_BUDGET = 3 * 1024
FIRST_MESSAGE_BUDGET = 20 * 1024


async def test_nothing_connects_before_the_chat_is_opened(context: Any, live: Live, hosts: HostPages) -> None:
    page = await context.new_page()
    errors = watch_errors(page)
    requests: list[Any] = []
    sockets: list[str] = []
    page.on("request", lambda request: requests.append(request))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(hosts.serve(host_page(live.http)))
    await expect(page.get_by_role("button", name="Help")).to_be_visible()
    await page.wait_for_timeout(500)
    assert [r.url for r in requests if r.url.startswith(live.http)] == [
        f"{live.http}/widget.js", f"{live.http}/widget/settings/default"]
    assert sockets == []
    assert [f.url for f in page.frames if "/widget/" in f.url] == []

    frame = await open_chat(page)
    await ask(frame, "How do I pay my dues online?")
    await expect(frame.locator(".msg.bot").last).to_be_visible()
    assert sockets == [f"{live.ws}/ws/visitor"]

    # What a visitor downloads before the first message, as the browser received it (gzipped).
    downloaded = {r.url.removeprefix(live.http): (await r.sizes())["responseBodySize"]
                  for r in requests if r.url.startswith(live.http)}
    loader = next(r for r in requests if r.url == f"{live.http}/widget.js")
    assert (await (await loader.response()).header_value("content-encoding")) == "gzip"
    print(f"downloaded before the first message: {downloaded} = {sum(downloaded.values())} bytes")
    assert set(downloaded) == {"/widget.js", "/widget/settings/default", "/widget/frame/default",
                               *(p for p in downloaded if re.fullmatch(r"/widget/frame\.[0-9a-f]{12}\.(js|css)", p))}
    assert len(downloaded) == 5
    assert downloaded["/widget.js"] <= LOADER_BUDGET
    assert sum(downloaded.values()) <= FIRST_MESSAGE_BUDGET
    assert errors == []


HOSTILE_HOST = """
<style>
button, iframe, div, span, p, section, ol, li { display: none !important; background: red !important;
  color: red !important; font-size: 2px !important; }
</style>
"""


async def test_the_host_page_can_neither_restyle_nor_read_the_chat(context: Any, live: Live,
                                                                  hosts: HostPages) -> None:
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(host_page(live.http, head=HOSTILE_HOST)))
    launcher = page.get_by_role("button", name="Help")
    await expect(launcher).to_be_visible()
    assert await launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(31, 111, 92)"
    frame = await open_chat(page)
    await ask(frame, "Where are my invoices?")
    await expect(frame.locator(".msg.me .bubble")).to_have_text(["Where are my invoices?"])
    await expect(frame.locator(".msg.me .bubble")).to_have_css("font-size", "15px")
    box = await page.locator("chatsvc-widget iframe").bounding_box()
    assert box and box["width"] == 380 and box["height"] > 300

    # Scripts of the host page reach the launcher at most, never the conversation or the token.
    seen = await page.evaluate("""() => {
        const iframe = document.querySelector('chatsvc-widget').shadowRoot.querySelector('iframe');
        let read = 'nothing';
        try { read = iframe.contentWindow.document.body.innerText; } catch (e) { read = e.name; }
        return {doc: iframe.contentDocument, read, storage: JSON.stringify(localStorage), cookie: document.cookie};
    }""")
    assert seen == {"doc": None, "read": "SecurityError", "storage": "{}", "cookie": ""}
    assert errors == []


async def test_api_queue_stub_double_load_identify_and_reset(context: Any, live: Live, hosts: HostPages) -> None:
    script = f'<script src="{live.same_site}/widget.js" data-site="default" async></script>'
    page_html = host_page(live.same_site, head=queue_stub() + """
<script>
window.__events = [];
ChatSvc.on("open", function () { __events.push("open"); });
ChatSvc.on("close", function () { __events.push("close"); });
ChatSvc.on("state", function (e) { __events.push("state:" + e.state); });
ChatSvc.identify({name: "Jordan Reyes", email: "jordan@example.com", plan: "pro"});
ChatSvc.open();
</script>""" + script)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(page_html))
    frame = await chat_frame(page)
    await online(frame)
    await expect(frame.get_by_role("dialog", name="LotWize support")).to_be_visible()
    assert await page.locator("chatsvc-widget").count() == 1, "the loader ran once although included twice"
    assert await page.evaluate("window.__events") == ["open", "state:bot"]

    # The identity given before the widget loaded reaches the agent with the visitor's request.
    ann, _ = await agent(live.ws, live.token("Ann"))
    await ask(frame, "Can I get a copy of my last invoice?")
    await frame.get_by_role("button", name="Talk to a person").click()
    offer = await ann.expect("offer")
    assert offer["offer"]["visitor"] == {"name": "Jordan Reyes", "email": "jordan@example.com", "plan": "pro",
                                         "community": None}
    await expect(frame.locator("#chat-status")).to_have_text("Waiting for an agent")
    assert await page.evaluate("localStorage.getItem('chatsvc.default.live')") == "1"

    await page.evaluate("ChatSvc.close()")
    await expect(page.locator("chatsvc-widget iframe")).to_be_hidden()
    await page.evaluate("ChatSvc.toggle()")
    await expect(page.locator("chatsvc-widget iframe")).to_be_visible()

    # reset() (the host page's sign-out) forgets the visitor: a new one, an empty transcript, no live flag.
    token = await frame.evaluate("localStorage.getItem('chatsvc.default.token')")
    await page.evaluate("ChatSvc.reset()")
    await expect(frame.locator(".msg.me")).to_have_count(0)
    await online(frame)
    fresh = await apoll(lambda: frame.evaluate("localStorage.getItem('chatsvc.default.token')"),
                        lambda fresh: fresh not in (token, None))
    assert fresh not in (token, None)
    await expect(frame.locator("#chat-status")).to_have_text("The help bot answers right away")
    assert await page.evaluate("localStorage.getItem('chatsvc.default.live')") is None
    assert await page.evaluate("window.__events") == ["open", "state:bot", "state:waiting", "close", "open",
                                                      "state:bot"]
    await ann.send({"type": "presence", "status": "offline"})
    assert errors == []


async def test_the_frame_is_also_a_page_of_its_own(context: Any, live: Live) -> None:
    """Opened directly (a "chat with us" link), the frame is a full-page chat: no host page, no close button."""
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(f"{live.http}/widget/frame/default")
    await online(page.main_frame)
    await expect(page.get_by_role("button", name="Close chat")).to_be_hidden()
    await ask(page.main_frame, "How do I reset my password?")
    await expect(page.locator(".article a").first).to_have_attribute("href", f"{live.http}/help/reset-password")
    assert errors == []
