"""The writers' gap pages in Chromium against a real server: log in, the ranked list, a gap, Dismiss, Merge,
Create article (prefilled with the questions and an agent's reply from a linked ticket), Publish, covered."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, browser_missing
from tests.conftest import need
from tests.console.conftest import PASSWORD, _create_agent
from tests.gaps.support import seed_store
from tests.support.server import FAST_SETTINGS, Server, run_sync

TIMEOUT = 60_000  # ms: the machine is shared and slow; nothing here is timed


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gaps.db'}"
    # The scheduled job is off: the writer's "Recompute now" runs it. TF-IDF keeps this test quick; the
    # sentence embedder is exercised by tests/gaps/test_service.py and tests/web/test_openapi.py.
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_GAPS_ASSIGN_INTERVAL": "0",
           "CHATSVC_GAPS_EMBEDDER": "tfidf"}
    running = Server(env, log_path=tmp_path / "server.log").start(timeout=60)
    try:
        yield running, database_url
    finally:
        running.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    need(browser_missing())
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def account(database_url: str, role: str) -> tuple[str, str, str]:
    email = f"{role}-{abs(hash(database_url)) % 10**8}@example.com"
    agent_id, token = run_sync(lambda: _create_agent(database_url, role.title(), email, role, 5))
    return email, token, agent_id


def closed_ticket_with_reply(base: str, token: str, agent_id: str) -> int:
    """A ticket about the gate code, answered by an agent without an article, then closed."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
        ticket = http.post("/api/v1/tickets", json={"channel": "phone", "subject": "Gate code not working after reset",
                                                    "text": "Caller says the gate code stopped working.",
                                                    "priority": "P2"}).json()
        number = ticket["id"]
        assert http.post(f"/api/v1/tickets/{number}/assign", json={"agent_id": agent_id}).status_code == 200
        assert http.post(f"/api/v1/tickets/{number}/replies",
                         json={"text": "Dial 4711 on the keypad, then press the bell twice to set a new gate code."}
                         ).status_code in (200, 201)
        for action in ("start", "resolve", "close"):
            assert http.post(f"/api/v1/tickets/{number}/status", json={"action": action}).status_code == 200
    return int(number)


async def test_writer_turns_a_gap_into_an_article(server: tuple[Server, str], browser: Any) -> None:
    from playwright.async_api import expect

    running, database_url = server
    seed_store(database_url)
    _, agent_token, agent_id = account(database_url, "agent")
    ticket = closed_ticket_with_reply(running.http, agent_token, agent_id)
    writer_email, _, _ = account(database_url, "writer")

    context = await browser.new_context(base_url=running.http)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto("/console/login")
    await page.get_by_label("E-mail").fill(writer_email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name=re.compile("log in", re.I)).click()
    await page.wait_for_url(re.compile(r"/console/gaps"))

    # The ranked list, computed on demand.
    await page.get_by_role("button", name="Recompute now").click()
    await expect(page.locator("#gaps .gap-row")).to_have_count(3)
    labels = await page.locator("#gaps .gap-label").all_inner_texts()
    assert any("gate code" in label for label in labels) and any("parking" in label for label in labels)
    assert "gate code" in labels[0]  # the most people asking, and the P2 ticket: first

    # A gap's detail: the questions as asked and the linked ticket.
    await page.locator("#gaps .gap-label", has_text="gate code").click()
    await expect(page.locator("#gap-questions li")).to_have_count(8)
    await expect(page.locator("#gap-questions")).to_contain_text("the gate code changed and I can't get in")
    await expect(page.locator("#gap-tickets")).to_contain_text(f"#{ticket}")
    gate_url = page.url

    # Dismiss one gap; it leaves the open list.
    await page.goto("/console/gaps")
    await page.locator("#gaps .gap-label", has_text="pool").click()
    await page.get_by_role("button", name="Dismiss").click()
    await expect(page.locator("#gap-status")).to_have_text("dismissed")
    await page.goto("/console/gaps")
    await expect(page.locator("#gaps .gap-row")).to_have_count(2)

    # Merge the parking gap into the gate gap: one gap holds both topics' questions.
    await page.goto(gate_url)
    parking = await page.locator("#merge-other option", has_text="parking").get_attribute("value")
    await page.get_by_label("Merge another gap into this one").select_option(parking)
    await page.get_by_role("button", name="Merge", exact=True).click()
    await expect(page.locator("#gap-volume")).to_have_text("15")
    await page.goto("/console/gaps")
    await expect(page.locator("#gaps .gap-row")).to_have_count(1)
    await page.goto(gate_url)

    # Create the article: a draft prefilled with a title, the questions as asked and the agent's reply.
    await page.get_by_role("button", name="Create article").click()
    await page.wait_for_url(re.compile(r"/article$"))
    await expect(page.locator("#article-status")).to_have_text("draft")
    title = await page.locator("#article-title").input_value()
    body = await page.locator("#article-body").input_value()
    assert "gate code" in title.lower()
    assert "- How do I change the gate code?" in body and "Dial 4711 on the keypad" in body
    await page.locator("#article-body").fill(
        "## Change the gate code\n\nDial 4711 on the keypad, then press the bell twice and enter the new gate code. "
        "If the gate code is not working or changed, reset the gate code the same way.\n\n" + body)
    await page.get_by_role("button", name="Publish").click()

    # Back on the gap: its questions were matched again and it shows as covered, with the share.
    await page.wait_for_url(re.compile(r"/console/gaps/[^/]+\?done=published$"))
    await expect(page.locator("#gap-status")).to_have_text("covered")
    coverage = await page.locator("#gap-coverage").inner_text()
    share = int(re.search(r"(\d+)%", coverage).group(1))  # type: ignore[union-attr]
    assert share >= 50
    await page.goto("/console/gaps?status=covered")
    await expect(page.locator("#gaps .badge.covered")).to_contain_text(f"covered {share}%")
    await context.close()


def test_pages_need_a_writer(server: tuple[Server, str]) -> None:
    running, database_url = server
    with httpx.Client(base_url=running.http, timeout=30) as http:
        answer = http.get("/console/gaps", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=/console/gaps")
