"""The ticket dashboard, the ticket view and the metrics page in Chromium against a real server.

An agent works a chat's ticket to Resolved through the pages (the customer gets the reply in the chat,
never the note); escalation needs the manual's checklist; a lead bulk-assigns and merges; the SLA timer
goes from normal to yellow to red as the injected clock moves; the metrics page draws the numbers of the
tickets the test made; an agent cannot open what the API keeps for leads and managers.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
from playwright.async_api import expect
from sqlalchemy import select

from chatsvc.store import db
from chatsvc.store.tables import outbound_messages
from tests.console_tickets.conftest import PASSWORD, Account, Desk, Team, log_in, screenshot
from tests.support.server import run_sync, visitor

ALL_CHECKS = ("documented", "priority", "customer_updated", "asked", "category")


async def count(page: Any, key: str) -> int:
    return int(await page.locator(f"[data-count={key}] .count-value").inner_text())


def row(page: Any, ticket_id: int) -> Any:
    return page.locator(f"tr[data-ticket='{ticket_id}']")


def http_login(desk: Desk, account: Account) -> tuple[httpx.Client, str]:
    """An HTTP client with a console session, and the session's CSRF token."""
    client = httpx.Client(base_url=desk.http, timeout=20, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").text)
    assert token
    answer = client.post("/console/login", data={"csrf_token": token.group(1), "email": account.email,
                                                 "password": PASSWORD, "next": ""})
    assert answer.status_code == 303, answer.text
    page = client.get("/console/password")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert csrf, page.text[:300]
    return client, csrf.group(1)


async def test_an_agent_works_a_chat_ticket_to_resolved(desk: Desk, team: Team, browser_context: Any) -> None:
    desk.new_day()
    ann = team.ann
    tag = uuid.uuid4().hex[:6]
    v, _ = await visitor(desk.ws, identity={"name": "Rosa Diaz", "email": f"rosa-{tag}@example.com",
                                            "plan": "Growth", "community": "Oak Park HOA"})
    await v.send({"type": "message", "client_id": "q", "text": f"how do I update my card {tag}"})
    await v.send({"type": "request_agent"})
    notice = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket", timeout=20)
    ticket_id = int(notice["data"]["ticket_id"])

    page = await log_in(browser_context, desk, ann)
    resolved_before = await count(page, "resolved")
    await expect(row(page, ticket_id)).to_contain_text("Rosa Diaz")
    await expect(row(page, ticket_id)).to_contain_text("Oak Park HOA")
    await expect(row(page, ticket_id)).to_contain_text("New")
    await row(page, ticket_id).get_by_role("link", name=f"#{ticket_id}").click()
    await expect(page.locator("h1")).to_contain_text(f"how do I update my card {tag}", ignore_case=True)
    await expect(page.locator(".entry-customer")).to_contain_text(f"how do I update my card {tag}")

    await page.get_by_label("Assign to").select_option("me")
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(page.locator("#ticket-done")).to_have_text("Ticket assigned.")
    await expect(page.locator(".ticket-head .status")).to_have_text("Open")
    await page.get_by_role("button", name="Start work").click()
    await expect(page.locator(".ticket-head .status")).to_have_text("In progress")

    # A macro fills the reply with the customer's details; the agent edits it and sends it.
    await page.get_by_label("Insert macro").select_option("browser-cache")
    await page.get_by_role("button", name="Insert").click()
    await expect(page.get_by_label("Reply to the customer")).to_have_value(re.compile("Rosa Diaz"))
    reply = f"Hi Rosa, go to Billing > Payment method to update the card. {tag}"
    await page.get_by_label("Reply to the customer").fill(reply)
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.locator("#ticket-done")).to_have_text("Reply sent to the customer.")
    await expect(page.locator(".entry-reply").last).to_contain_text(reply)
    got = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "message" and f.get("role") == "agent",
                         timeout=20)
    assert got["text"] == reply

    note = f"Card processor shows two failed retries {tag}"
    await page.get_by_label("Internal note").fill(note)
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator(".entry-note").last).to_contain_text(note)
    await expect(page.locator(".entry-note").last).to_contain_text("Internal note")

    await page.get_by_role("button", name="Wait for customer").click()
    await expect(page.locator(".ticket-head .status")).to_have_text("Pending customer")
    await expect(page.locator(".sla-line").nth(1)).to_contain_text("paused")
    await page.get_by_role("button", name="Resolve").click()
    await expect(page.locator(".ticket-head .status")).to_have_text("Resolved")
    await expect(page.locator("#ticket-done")).to_contain_text("Ticket resolved")
    audit = page.locator(".audit-table tbody")
    for what in ("Created", "nobody → Ann Archer", "Start work: Open → In progress", "Reply sent", "Internal note",
                 "Wait for customer: In progress → Pending customer", "Resolve: Pending customer → Resolved"):
        await expect(audit).to_contain_text(what)
    await screenshot(page, "tickets-view", full_page=True)

    # The customer never received the note, by any frame.
    await v.quiet(0.5)
    assert all(note not in str(frame) for frame in v.frames)
    state = desk.ticket(ann, ticket_id)
    assert state["status"] == "resolved" and state["assignee_id"] == ann.id
    assert [e["internal"] for e in state["entries"] if e["text"] == note] == [True]

    await page.get_by_role("link", name="← Tickets").click()
    assert await count(page, "resolved") == resolved_before + 1


async def test_escalation_asks_for_the_checklist(desk: Desk, team: Team, browser_context: Any) -> None:
    desk.new_day()
    ann = team.ann
    ticket_id = desk.create_ticket(ann, subject="Export gives a 500 error", customer_email="kim@example.com",
                                   priority="P2")
    with desk.api(ann) as api:
        assert api.post(f"/api/v1/tickets/{ticket_id}/assign", json={"agent_id": ann.id}).status_code == 200
    page = await log_in(browser_context, desk, ann, f"/console/tickets/{ticket_id}")

    await page.get_by_role("link", name="Escalate…").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Technical").check()
    await dialog.get_by_label("Reason").fill("Export fails for every community with more than 500 lots")
    await dialog.get_by_label("Note for the next level").fill(
        "Tried: cleared cache, other browsers. Customer: Pro plan, 600 lots. Need: investigate the export job.")
    for key in ALL_CHECKS[:-1]:
        await dialog.locator(f"input[name=check][value={key}]").check()
    await screenshot(page, "tickets-escalate")

    # The browser refuses the form while a box is unticked ...
    await dialog.get_by_role("button", name="Escalate", exact=True).click()
    await expect(dialog).to_be_visible()
    assert desk.ticket(ann, ticket_id)["status"] == "open"
    # ... and so does the server, for a form that skips the browser's check.
    await page.evaluate("document.querySelector('#escalate form').noValidate = true")
    await dialog.get_by_role("button", name="Escalate", exact=True).click()
    await expect(page.locator("#ticket-error")).to_contain_text("complete the checklist")
    await expect(page.locator("#ticket-error")).to_contain_text("correct category")
    assert desk.ticket(ann, ticket_id)["status"] == "open"
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Reason")).to_have_value(re.compile("more than 500 lots"))

    await dialog.locator("input[name=check][value=category]").check()
    await dialog.get_by_role("button", name="Escalate", exact=True).click()
    await expect(page.locator("#ticket-done")).to_contain_text("escalated")
    await expect(page.locator(".ticket-head .status")).to_have_text("Escalated")
    await expect(page.locator(".ticket-head .level")).to_contain_text("Level 2")
    await expect(page.locator(".entry-note").last).to_contain_text("Escalated to l2 (technical)")
    await expect(page.locator(".audit-table")).to_contain_text("Escalated")
    state = desk.ticket(ann, ticket_id)
    assert (state["status"], state["escalation_level"]) == ("escalated", "l2")

    # The specialist team hands it back to the agent.
    await page.get_by_role("button", name="Hand back to agent").click()
    await expect(page.locator(".ticket-head .status")).to_have_text("In progress")


async def test_a_lead_bulk_assigns_and_merges(desk: Desk, team: Team, browser_context: Any) -> None:
    desk.new_day()
    lee, bob = team.lee, team.bob
    tag = uuid.uuid4().hex[:6]
    first = desk.create_ticket(lee, subject=f"Gate code wrong {tag}", customer_name="Ivy Chen",
                               customer_email=f"ivy-{tag}@example.com", community="Maple Court")
    second = desk.create_ticket(lee, subject=f"Gate code still wrong {tag}", customer_name="Ivy Chen",
                                customer_email=f"ivy-{tag}@example.com", community="Maple Court")
    other = desk.create_ticket(lee, subject=f"Dues receipt missing {tag}", customer_name="Omar Haddad",
                               customer_email=f"omar-{tag}@example.com", priority="P4")

    page = await log_in(browser_context, desk, lee, f"/console/tickets?q={tag}&assignee=none")
    await expect(page.locator("tr.ticket-row")).to_have_count(3)
    await row(page, first).locator("input[name=ticket_id]").check()
    await row(page, other).locator("input[name=ticket_id]").check()
    await expect(page.locator("[data-bulk-count]")).to_have_text("2 selected")
    await page.get_by_label("Assign selected tickets to").select_option(bob.id)
    await screenshot(page, "tickets-dashboard", full_page=True)
    await page.get_by_role("button", name="Assign selected").click()
    await expect(page.locator("#bulk-result")).to_contain_text("Assigned 2 tickets.")
    # The filters stay: only the ticket still unassigned is listed.
    await expect(page.locator("tr.ticket-row")).to_have_count(1)
    await expect(row(page, second)).to_be_visible()
    for ticket_id in (first, other):
        state = desk.ticket(lee, ticket_id)
        assert (state["assignee_id"], state["status"]) == (bob.id, "open")

    await page.goto(f"{desk.http}/console/tickets?q={tag}&sort=priority")
    await expect(page.locator("tr.ticket-row").last).to_have_attribute("data-ticket", str(other))  # P4 last
    await expect(row(page, first)).to_contain_text("Bob Builder")

    await row(page, second).get_by_role("link", name=f"#{second}").click()
    await page.get_by_text("Merge into another ticket…").click()
    await page.get_by_label("Keep this ticket's thread in").select_option(str(first))
    await page.get_by_role("button", name=f"Merge #{second}").click()
    await page.wait_for_url(f"{desk.http}/console/tickets/{first}?done=merged")
    await expect(page.locator("#ticket-done")).to_contain_text("merged into this ticket")
    await expect(page.locator(".thread")).to_contain_text(f"Ticket #{second} was merged into this one.")
    await expect(page.locator(".thread")).to_contain_text("The community page does not load")
    merged = desk.ticket(lee, second)
    assert (merged["status"], merged["merged_into"]) == ("closed", first)


async def test_the_sla_timer_turns_yellow_then_red_with_the_clock(desk: Desk, team: Team, browser_context: Any) -> None:
    created = desk.new_day()
    ann = team.ann
    tag = uuid.uuid4().hex[:6]
    # P1: a first response within 15 minutes, around the clock; yellow from 75 % of it (11 min 15 s).
    ticket_id = desk.create_ticket(ann, subject=f"Payment failed for every owner {tag}", priority="P1",
                                   customer_email=f"board-{tag}@example.com")
    page = await log_in(browser_context, desk, ann, f"/console/tickets?q={tag}")
    timer = row(page, ticket_id).locator("[data-sla-timer]")
    await expect(timer).to_have_attribute("data-sla-colour", "normal")
    await expect(timer).to_have_class(re.compile(r"\bsla-normal\b"))
    await expect(timer).to_contain_text(re.compile(r"due in 1[45] min"))
    await screenshot(page, "tickets-sla-normal")

    # With the page left open, the table refreshes itself every minute, and its script turns the timer
    # yellow, then red, on time (the browser's clock is Playwright's fake one here; the server's has not
    # moved).
    watcher = await browser_context.new_page()
    await watcher.clock.install()
    await watcher.goto(page.url)
    live = row(watcher, ticket_id).locator("[data-sla-timer]")
    await expect(live).to_have_attribute("data-sla-colour", "normal")
    later = desk.create_ticket(ann, subject=f"Invoice copy please {tag}", priority="P4")
    await watcher.clock.fast_forward("01:01")
    await expect(row(watcher, later)).to_be_visible()
    await watcher.get_by_role("searchbox").focus()  # the agent types: no refresh under their hands
    await watcher.clock.fast_forward("10:00")
    await expect(live).to_have_attribute("data-sla-colour", "normal")
    await watcher.clock.fast_forward("02:00")
    await expect(live).to_have_attribute("data-sla-colour", "yellow")
    await expect(live).to_have_class(re.compile(r"\bsla-yellow\b"))
    await watcher.clock.fast_forward("04:00")
    await expect(live).to_have_attribute("data-sla-colour", "red")
    await expect(live).to_contain_text("overdue by")
    await expect(row(watcher, ticket_id)).to_have_class(re.compile(r"\bsla-row-red\b"))
    await watcher.close()

    desk.advance(minutes=12)
    await page.reload()
    await expect(timer).to_have_attribute("data-sla-colour", "yellow")
    await expect(timer).to_have_class(re.compile(r"\bsla-yellow\b"))
    await expect(timer).to_contain_text(re.compile(r"due in (2|3) min"))
    await expect(row(page, ticket_id)).to_have_class(re.compile(r"\bsla-row-yellow\b"))
    await screenshot(page, "tickets-sla-yellow")

    desk.advance(minutes=4)
    await page.reload()
    await expect(timer).to_have_attribute("data-sla-colour", "red")
    await expect(timer).to_have_class(re.compile(r"\bsla-red\b"))
    await expect(timer).to_contain_text("overdue by")
    await expect(row(page, ticket_id)).to_have_class(re.compile(r"\bsla-row-red\b"))
    await screenshot(page, "tickets-sla-red")

    # The overdue filter (the "Overdue" count's link) lists it, and the ticket view agrees.
    await page.locator("[data-count=overdue]").click()
    await expect(row(page, ticket_id)).to_be_visible()
    await page.goto(f"{desk.http}/console/tickets/{ticket_id}")
    await expect(page.locator(".sla-line").first.locator("[data-sla-timer]")).to_have_attribute("data-sla-colour",
                                                                                                "red")
    assert desk.ticket(ann, ticket_id)["sla"]["first_response"]["state"] == "breached"
    assert desk.now() - created < timedelta(minutes=20)


def resolution_survey(database_url: str, ticket_id: int) -> str:
    async def read() -> str:
        engine = db.create_engine(database_url)
        try:
            async with engine.connect() as conn:
                body = (await conn.execute(select(outbound_messages.c.body).where(
                    outbound_messages.c.ticket_id == ticket_id, outbound_messages.c.subject.like("%How did we do%"))
                )).scalar_one()
        finally:
            await engine.dispose()
        found = re.search(r"/csat/\S+", body)
        assert found, body
        return found.group(0)

    return run_sync(read)  # type: ignore[no-any-return]


async def test_the_metrics_page_charts_the_day(desk: Desk, team: Team, browser_context: Any) -> None:
    day = desk.new_day()
    lee, ann = team.lee, team.ann
    tag = uuid.uuid4().hex[:6]
    ids = [desk.create_ticket(ann, subject=f"{subject} {tag}", priority=priority,
                              customer_email=f"c{n}-{tag}@example.com")
           for n, (subject, priority) in enumerate([("Site down", "P1"), ("Payments failing", "P1"),
                                                    ("Report totals wrong", "P2")])]
    with desk.api(ann) as api:
        for ticket_id in ids:
            assert api.post(f"/api/v1/tickets/{ticket_id}/assign", json={"agent_id": ann.id}).status_code == 200
        desk.advance(minutes=30)
        # P1 answered after 30 minutes (its target is 15: breached); P2 after 30 (target 1 h: met).
        for ticket_id in (ids[0], ids[2]):
            assert api.post(f"/api/v1/tickets/{ticket_id}/replies", json={"text": "On it."}).status_code == 201
        desk.advance(minutes=30)
        assert api.post(f"/api/v1/tickets/{ids[0]}/status", json={"action": "resolve"}).status_code == 200
    survey = resolution_survey(desk.database_url, ids[0])
    assert httpx.post(desk.http + survey, data={"rating": "good"}).status_code == 200

    local_day = day.date().isoformat()
    page = await log_in(browser_context, desk, lee,
                        f"/console/metrics?from={local_day}&to={local_day}&tz=America/New_York")
    await expect(page.locator("[data-metric=created]")).to_have_text("3")
    created = page.locator("#chart-created rect.bar")
    await expect(created).to_have_count(1)
    await expect(created).to_have_attribute("data-value", "3")
    await expect(created).to_have_attribute("data-label", day.strftime("%d %b"))

    first = page.locator("#chart-first-response")
    median_p1 = first.locator("rect.bar.series-median[data-label^='P1']")
    await expect(median_p1).to_have_attribute("data-label", "P1 (n=1), Median")
    assert 30 <= float(await median_p1.get_attribute("data-value")) < 31
    assert 30 <= float(await first.locator("rect.bar.series-median[data-label^='P2']").get_attribute("data-value")) < 31
    resolution = page.locator("#chart-resolution rect.bar.series-median")
    await expect(resolution).to_have_count(1)
    assert 60 <= float(await resolution.get_attribute("data-value")) < 61

    sla = page.locator("#chart-sla")
    await expect(sla.locator("rect[data-label='P1, First response']")).to_have_attribute("data-value", "0")
    await expect(sla.locator("rect[data-label='P2, First response']")).to_have_attribute("data-value", "100")
    await expect(page.locator("#chart-csat rect[data-label=Good]")).to_have_attribute("data-value", "1")
    await expect(page.locator("[data-metric=csat]")).to_have_text("100 %")
    await expect(page.locator("#chart-agents rect[data-label='Ann Archer, Assigned']")).to_have_attribute(
        "data-value", "3")
    await expect(page.locator("#chart-agents rect[data-label='Ann Archer, Resolved']")).to_have_attribute(
        "data-value", "1")
    await expect(page.locator(f"tr[data-agent='{ann.id}']")).to_contain_text("30 min")
    # Charts are drawn on the server: no script in them, and every chart is labelled for screen readers.
    for chart in await page.locator("svg.chart").all():
        assert await chart.locator("script").count() == 0
        assert await chart.get_attribute("aria-labelledby")
    await screenshot(page, "metrics-page", full_page=True)


async def test_roles_match_the_api(desk: Desk, team: Team, browser_context: Any) -> None:
    desk.new_day()
    ann, wes = team.ann, team.wes
    ticket_id = desk.create_ticket(ann, subject="Cannot open the calendar")

    page = await log_in(browser_context, desk, ann)
    nav = page.get_by_role("navigation", name="Console sections")
    await expect(nav.get_by_role("link", name="Tickets")).to_be_visible()
    await expect(nav.get_by_role("link", name="Metrics")).to_have_count(0)
    await expect(page.locator("#bulk")).to_have_count(0)
    await expect(page.locator("input[name=ticket_id]")).to_have_count(0)
    answer = await page.goto(f"{desk.http}/console/metrics")
    assert answer is not None and answer.status == 403
    await expect(page.locator("h1")).to_have_text("Not for your role")

    client, csrf = http_login(desk, ann)
    try:
        # A lead's bulk assignment, with the agent's valid CSRF token: refused, as by the API.
        answer = client.post("/console/tickets/assign", data={"csrf_token": csrf, "agent_id": ann.id,
                                                              "ticket_id": str(ticket_id)})
        assert answer.status_code == 403
        assert desk.ticket(ann, ticket_id)["assignee_id"] is None
        # A form posted without the CSRF token changes nothing.
        answer = client.post(f"/console/tickets/{ticket_id}/note", data={"text": "sneaky"})
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "csrf_failed"
        assert all(e["text"] != "sneaky" for e in desk.ticket(ann, ticket_id)["entries"])
    finally:
        client.close()
    with desk.api(ann) as api:
        assert api.get("/api/v1/metrics").status_code == 403
        assert api.post("/api/v1/tickets-bulk/assign", json={"ticket_ids": [ticket_id], "agent_id": ann.id}
                        ).status_code == 403

    writer, _ = http_login(desk, wes)
    try:
        assert writer.get(f"/console/tickets/{ticket_id}").status_code == 403
        assert writer.get("/console/tickets").status_code == 403
        assert writer.get("/console/metrics").status_code == 403
    finally:
        writer.close()
    with desk.api(wes) as api:
        assert api.get("/api/v1/tickets").status_code == 403


async def test_the_ticket_pages_do_not_count_time_spent_resolved(desk: Desk, team: Team) -> None:
    """A P1 (resolution within 4 hours, around the clock) resolved after one hour and reopened ten hours
    later still has three hours left, on the dashboard and the ticket view as in the API."""
    desk.new_day()
    ann = team.ann
    tag = uuid.uuid4().hex[:6]
    ticket_id = desk.create_ticket(ann, subject=f"Payment failed again {tag}", priority="P1",
                                   customer_email=f"reopen-{tag}@example.com")
    with desk.api(ann) as api:
        assert api.post(f"/api/v1/tickets/{ticket_id}/assign", json={"agent_id": ann.id}).status_code == 200
        assert api.post(f"/api/v1/tickets/{ticket_id}/replies", json={"text": "On it."}).status_code == 201
        desk.advance(hours=1)
        assert api.post(f"/api/v1/tickets/{ticket_id}/status", json={"action": "resolve"}).status_code == 200
        desk.advance(hours=10)
        assert api.post(f"/api/v1/tickets/{ticket_id}/status", json={"action": "reopen"}).status_code == 200
    assert desk.ticket(ann, ticket_id)["sla"]["resolution"]["state"] == "ok"

    client, _ = http_login(desk, ann)
    try:
        view = client.get(f"/console/tickets/{ticket_id}").text
        listed = client.get(f"/console/tickets?q={tag}").text
    finally:
        client.close()
    timers = re.findall(r'data-sla-timer data-sla-colour="(\w+)"', view)
    assert timers and "red" not in timers, timers
    line = re.search(rf"<tr[^>]*data-ticket=.{ticket_id}.[\s\S]*?</tr>", listed)
    assert line, listed[:500]
    assert 'data-sla-colour="red"' not in line.group(0)
