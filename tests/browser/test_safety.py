"""Hostile strings from agents and from help-center articles are shown as text; nothing in them runs."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import jsonschema

from chatsvc.kb_suggest.articles import make_slug
from chatsvc.kb_suggest.markdown import plain_text
from tests.browser.conftest import HostPages, Live, ask, expect, host_page, open_chat, watch_errors
from tests.support.poll import apoll
from tests.support.server import SCHEMAS, agent

VISITOR_FRAMES = jsonschema.Draft202012Validator(SCHEMAS["server_to_visitor"])

# Each would run script, load something or restyle the chat if it were parsed as HTML, put in a URL or
# evaluated as a template. window.__pwned must stay undefined.
HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "<svg onload=window.__pwned=3></svg>",
    "javascript:window.__pwned=4",
    '<a href="javascript:window.__pwned=5">click me</a>',
    '"><iframe src="javascript:window.__pwned=6"></iframe>',
    "</textarea></li></ol><script>window.__pwned=7</script>",
    "<b>broken <i>markup <a href='",
    "<style>*{display:none!important}</style>",
    "{{constructor.constructor('window.__pwned=8')()}} ${window.__pwned=9}",
    "see http://example.com/\"onmouseover=\"window.__pwned=10 and javascript://%0Awindow.__pwned=11",
    "\u202egnp.exe <details open ontoggle=window.__pwned=12>",
]
# The help center strips tags from titles and passages before they reach a visitor (chatsvc.kb_suggest);
# what it keeps (quotes, ampersands, a lone "<", "javascript:", template syntax) must stay text too.
ARTICLE_TITLE = 'Quokka parking "permits" & a < b <img src=x onerror=window.__pwned=20> javascript:window.__pwned=21 ${window.__pwned=22}'
ARTICLE_BODY = ("Quokka parking permits for visitors: <svg onload=window.__pwned=23></svg> ask the board. "
                "[a link](javascript:window.__pwned=24) <iframe src=javascript:window.__pwned=25></iframe>")
HOOK_DIALOGS = """() => {
  window.__alerts = 0;
  window.alert = window.confirm = window.prompt = () => { window.__alerts++; };
}"""
INERT_CHECK = """() => ({
  pwned: window.__pwned,
  alerts: window.__alerts,
  live: document.querySelectorAll('#log script, #log img, #log svg, #log iframe, #log style, #log details, #log b, #log i').length,
  handlers: [...document.querySelectorAll('#log *')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
  badLinks: [...document.querySelectorAll('#log a')].filter(a => !/^https?:/.test(a.href)
      || a.target !== '_blank' || a.rel !== 'noopener noreferrer').length,
})"""


async def publish_hostile_article(live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.token('Lee')}"}
    async with httpx.AsyncClient(base_url=live.http, headers=headers, timeout=10) as http:
        created = await http.post("/api/v1/articles", json={"id": "hostile-quokka", "title": ARTICLE_TITLE,
                                                            "body": ARTICLE_BODY, "status": "published"})
        assert created.status_code == 201, created.text
        # The help center reindexes in the background.
        found = await apoll(lambda: http.get("/api/v1/suggest", params={"q": "quokka parking permits"}),
                            lambda found: [a["id"] for a in found.json()["articles"]][:1] == ["hostile-quokka"])
        assert [a["id"] for a in found.json()["articles"]][:1] == ["hostile-quokka"], \
            "the hostile article never became suggestable"


async def test_hostile_agent_messages_and_article_titles_stay_inert(context: Any, live: Live,
                                                                      hosts: HostPages) -> None:
    await publish_hostile_article(live)
    page = await context.new_page()
    errors = watch_errors(page)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    await page.goto(hosts.serve(host_page(live.http)))
    frame = await open_chat(page)
    await frame.evaluate(HOOK_DIALOGS)

    await ask(frame, "quokka parking permits?")
    title = frame.locator(".article .title").first
    await expect(title).to_have_text(plain_text(ARTICLE_TITLE))
    await expect(title).to_have_attribute("href", f"{live.http}/help/{make_slug(ARTICLE_TITLE)}")

    ann, _ = await agent(live.ws, live.token("Ann"))
    await frame.get_by_role("button", name="Talk to a person").click()
    conv = (await ann.expect("offer"))["offer"]["conversation_id"]
    await ann.send({"type": "accept", "conversation_id": conv})
    await ann.expect("assigned")
    for i, text in enumerate(HOSTILE):
        await ann.send({"type": "message", "conversation_id": conv, "client_id": f"h{i}", "text": text})
        await ann.expect("ack")
    await expect(frame.locator(".msg.agent .bubble")).to_have_text(HOSTILE)
    # The visitor's own hostile text is inert too.
    await ask(frame, HOSTILE[1])
    await expect(frame.locator(".msg.me .bubble").last).to_have_text(HOSTILE[1])

    # Only real http(s) addresses became links, and only what was written there.
    links = await frame.locator(".msg.agent .bubble a").evaluate_all("els => els.map(a => a.textContent)")
    assert links == ["http://example.com/"]
    await frame.locator(".msg.agent .bubble").last.hover()
    state = await frame.evaluate(INERT_CHECK)
    assert state == {"pwned": None, "alerts": 0, "live": 0, "handlers": 0, "badLinks": 0}
    assert await page.evaluate("window.__pwned === undefined")
    assert dialogs == []
    await ann.send({"type": "presence", "status": "offline"})
    assert errors == []


# A server that is not ours to trust: it sends article titles, passages and URLs exactly as given.
RAW_ARTICLES = [
    {"id": "a1", "title": "<img src=x onerror=window.__pwned=30>Reset <b>now</b>", "passage": "<script>window.__pwned=31</script>",
     "url": "javascript:window.__pwned=32", "score": 0.9},
    {"id": "a2", "title": "<a href=javascript:window.__pwned=33>Data</a>", "passage": "<svg onload=window.__pwned=34>",
     "url": "data:text/html,<script>parent.__pwned=35</script>", "score": 0.8},
    {"id": "a3", "title": "Relative", "passage": "plain", "url": "//evil.example/x", "score": 0.7},
    {"id": "a4", "title": "Fine", "passage": "fine", "url": "https://help.example/fine?a=1&b=<2>", "score": 0.6},
]


async def test_the_frame_does_not_trust_the_server_either(context: Any, live: Live, hosts: HostPages) -> None:
    """A stand-in for the server (Playwright answers the websocket) sends raw markup and bad URLs."""
    at = "2026-05-01T10:00:00Z"
    conversation = {"id": "c1", "state": "bot", "last_seq": 1, "agent": None, "visitor": None,
                    "first_question": None, "waiting_since": None, "visitor_read_seq": 0, "agent_read_seq": 0}
    frames = [
        {"type": "welcome", "v": 2, "token": "t", "visitor_id": "v", "conversation": conversation,
         "limits": {"max_frame_bytes": 16384, "max_message_chars": 4000, "rate_burst": 30}},
        {"type": "event", "conversation_id": "c1", "seq": 1, "kind": "suggestions", "role": "bot",
         "author": {"id": None, "name": "<i>Help bot</i>"}, "text": "<b onmouseover=window.__pwned=36>hi</b>",
         "client_id": None, "data": {"question_seq": 0, "question": "q", "articles": RAW_ARTICLES}, "at": at},
        {"type": "replayed", "conversation_id": "c1", "last_seq": 1},
    ]
    for frame in frames:
        VISITOR_FRAMES.validate(frame)

    def fake_server(ws: Any) -> None:
        def answer(message: str | bytes) -> None:
            if json.loads(message)["type"] == "hello":
                for frame in frames:
                    ws.send(json.dumps(frame))

        ws.on_message(answer)

    await context.route_web_socket(re.compile(r".*/ws/visitor$"), fake_server)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(hosts.serve(host_page(live.http)))
    frame = await open_chat(page)
    await frame.evaluate(HOOK_DIALOGS)
    titles = frame.locator(".article .title")
    await expect(titles).to_have_text([a["title"] for a in RAW_ARTICLES])
    await expect(frame.locator(".article .snippet")).to_have_text([a["passage"] for a in RAW_ARTICLES])
    await expect(frame.locator(".msg.bot.wide .who")).to_have_text("<i>Help bot</i>")
    # Only the https URL became a link; the others are plain text titles.
    assert await frame.locator(".article a").evaluate_all("els => els.map(a => a.href)") == \
        ["https://help.example/fine?a=1&b=%3C2%3E"]
    await context.route("https://help.example/**", lambda route: route.fulfill(body="article"))
    for title in (await titles.all())[:-1]:
        await title.click()
    async with context.expect_page() as opened:
        await titles.last.click()
    article = await opened.value
    assert article.url == "https://help.example/fine?a=1&b=%3C2%3E"
    assert await article.evaluate("window.opener") is None
    state = await frame.evaluate(INERT_CHECK)
    assert state == {"pwned": None, "alerts": 0, "live": 0, "handlers": 0, "badLinks": 0}
    assert await page.evaluate("window.__pwned === undefined")
    assert len(context.pages) == 2  # only the https article opened a tab, without a handle on the chat
    assert errors == []
