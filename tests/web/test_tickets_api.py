"""The ticket API: a chat becomes a ticket, agents reply and note; notes never reach the customer."""

from __future__ import annotations

import httpx

from tests.support.server import agent, make_agent, visitor
from tests.ws.conftest import Deployment


async def chat_to_ticket(live: Deployment) -> tuple[object, int]:
    v, _ = await visitor(live.ws, identity={"name": "Ola Berg", "email": "ola@example.com"})
    await v.send({"type": "message", "client_id": "q", "text": "I can't log in since this morning"})
    await v.send({"type": "request_agent"})
    notice = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket")
    return v, int(notice["data"]["ticket_id"])


async def test_reply_reaches_the_visitor_and_notes_never_do(live: Deployment) -> None:
    v, ticket_id = await chat_to_ticket(live)
    headers = {"Authorization": f"Bearer {live.token('Ann')}"}
    async with httpx.AsyncClient(base_url=live.server.http, headers=headers, timeout=10) as http:
        listing = (await http.get("/api/v1/tickets")).json()
        assert [t["id"] for t in listing["items"]] == [ticket_id]
        assert listing["items"][0]["priority"] == "P2" and listing["items"][0]["status"] == "new"

        note = await http.post(f"/api/v1/tickets/{ticket_id}/notes", json={"text": "INTERNAL: SSO outage suspected"})
        assert note.status_code == 201 and note.json()["internal"] is True
        reply = await http.post(f"/api/v1/tickets/{ticket_id}/replies", json={"text": "We reset your session."})
        assert reply.status_code == 201 and reply.json()["delivery"] == "widget+email"
        got = await v.expect(lambda f: f["type"] == "event" and f.get("text") == "We reset your session.")  # type: ignore[attr-defined]
        assert got["role"] == "agent"
        await v.quiet(0.3)  # type: ignore[attr-defined]
        assert all("INTERNAL" not in str(f) for f in v.frames)  # type: ignore[attr-defined]

        ticket = (await http.get(f"/api/v1/tickets/{ticket_id}")).json()
        kinds = [(e["kind"], e["internal"]) for e in ticket["entries"]]
        assert ("note", True) in kinds and ("reply", False) in kinds
        assert ticket["first_response_at"] is not None
        audit = (await http.get(f"/api/v1/tickets/{ticket_id}/audit")).json()["items"]
        assert [a["action"] for a in audit] == ["created", "note", "reply"]

        # The visitor's later messages land on the ticket.
        await v.send({"type": "message", "client_id": "more", "text": "thanks, it works now"})  # type: ignore[attr-defined]
        await v.expect("ack")  # type: ignore[attr-defined]
        ticket = (await http.get(f"/api/v1/tickets/{ticket_id}")).json()
        assert ticket["entries"][-1]["text"] == "thanks, it works now"


async def test_ticket_api_refuses_the_wrong_callers(live: Deployment) -> None:
    _, ticket_id = await chat_to_ticket(live)
    _, writer_token = make_agent(live.database_url, "Wes", role="writer")
    async with httpx.AsyncClient(base_url=live.server.http, timeout=10) as http:
        assert (await http.get("/api/v1/tickets")).status_code == 401
        writer = {"Authorization": f"Bearer {writer_token}"}
        assert (await http.get(f"/api/v1/tickets/{ticket_id}", headers=writer)).status_code == 403
        agent = {"Authorization": f"Bearer {live.token('Ann')}"}
        missing = await http.get("/api/v1/tickets/99999", headers=agent)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        empty = await http.post(f"/api/v1/tickets/{ticket_id}/replies", headers=agent, json={"text": " "})
        assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty"
        bad = await http.post(f"/api/v1/tickets/{ticket_id}/notes", headers=agent, content=b"{")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_json"
        assert (await http.get("/api/v1/tickets", headers=agent, params={"sort": "random"})).status_code == 400


async def test_contact_form_and_agent_created_tickets(live: Deployment) -> None:
    agent = {"Authorization": f"Bearer {live.token('Ann')}"}
    # A visitor behind a proxy on this machine: 127.0.0.1 itself is exempt from per-address limits.
    async with httpx.AsyncClient(base_url=live.server.http, timeout=10,
                                 headers={"X-Forwarded-For": "198.51.100.20"}) as http:
        ok = await http.post("/api/v1/contact", json={"name": "Kim", "email": "kim@example.com",
                                                     "subject": "Refund", "message": "payment failed twice"})
        assert ok.status_code == 201 and ok.json()["ticket"].startswith("#")
        bot = await http.post("/api/v1/contact", json={"email": "x@example.com", "message": "buy pills",
                                                      "website": "http://spam.example"})
        assert bot.status_code == 202
        for body, code in (({"email": "nope", "message": "hi"}, "invalid"), ({"email": "a@b.co"}, "invalid"),
                           ({"email": "a@b.co", "message": "x" * 10001}, "invalid")):
            bad = await http.post("/api/v1/contact", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["code"] == code
        limited = await http.post("/api/v1/contact", json={"email": "kim@example.com", "message": "again"})
        assert limited.status_code == 429, "five a minute per address"

        created = await http.post("/api/v1/tickets", headers=agent, json={
            "channel": "phone", "subject": "Called about dues", "text": "Caller cannot find the invoice",
            "customer_name": "Pat", "customer_email": "pat@example.com", "priority": "P4"})
        assert created.status_code == 201
        assert (created.json()["channel"], created.json()["priority"]) == ("phone", "P4")
        listing = (await http.get("/api/v1/tickets", headers=agent, params={"sort": "age"})).json()
        channels = [t["channel"] for t in listing["items"]]
        assert channels == ["form", "phone"], "the honeypot submission made no ticket"
        form = listing["items"][0]
        assert form["priority"] == "P1" and form["customer"]["email"] == "kim@example.com"
        bad = await http.post("/api/v1/tickets", headers=agent, json={"text": "x", "priority": "P9"})
        assert bad.status_code == 422


async def test_lifecycle_escalation_and_macros_over_the_api(live: Deployment) -> None:
    v, ticket_id = await chat_to_ticket(live)
    ann = {"Authorization": f"Bearer {live.token('Ann')}"}
    lee = {"Authorization": f"Bearer {live.token('Lee')}"}
    async with httpx.AsyncClient(base_url=live.server.http, timeout=10) as http:
        async def act(action: str, expect: int = 200) -> dict:  # type: ignore[type-arg]
            r = await http.post(f"/api/v1/tickets/{ticket_id}/status", headers=ann, json={"action": action})
            assert r.status_code == expect, r.text
            return r.json()

        assert (await act("resolve", 409))["error"]["code"] == "invalid_transition"
        assigned = await http.post(f"/api/v1/tickets/{ticket_id}/assign", headers=ann,
                                   json={"agent_id": live.id("Ann")})
        assert assigned.json()["status"] == "open"
        assert (await act("start"))["status"] == "in_progress"
        assert (await act("wait_for_customer"))["status"] == "pending_customer"
        await v.send({"type": "message", "client_id": "back", "text": "here is the screenshot"})  # type: ignore[attr-defined]
        await v.expect("ack")  # type: ignore[attr-defined]
        ticket = (await http.get(f"/api/v1/tickets/{ticket_id}", headers=ann)).json()
        assert ticket["status"] == "open", "a customer reply ends the wait"
        assert ticket["sla"]["first_response"]["state"] in ("ok", "approaching", "breached")
        assert (await act("resolve"))["status"] == "resolved"
        ann_ws, _ = await agent(live.ws, live.token("Ann"))
        await v.send({"type": "message", "client_id": "again", "text": "it broke again"})  # type: ignore[attr-defined]
        await v.expect("ack")  # type: ignore[attr-defined]
        notice = await ann_ws.expect("ticket_notice")
        assert (notice["ticket_id"], notice["event"], notice["status"]) == (ticket_id, "reopened", "open")
        assert (await http.get(f"/api/v1/tickets/{ticket_id}", headers=ann)).json()["status"] == "open"

        no_note = await http.post(f"/api/v1/tickets/{ticket_id}/escalate", headers=ann,
                                  json={"type": "technical", "reason": "SSO bug", "note": " "})
        assert no_note.status_code == 422 and no_note.json()["error"]["code"] == "invalid_escalation"
        up = await http.post(f"/api/v1/tickets/{ticket_id}/escalate", headers=ann, json={
            "type": "technical", "reason": "SSO bug", "note": "Tried reset and cache clear; needs an SSO log check."})
        assert up.json() == {"id": ticket_id, "status": "escalated", "escalation_level": "l2"}
        up = await http.post(f"/api/v1/tickets/{ticket_id}/escalate", headers=lee, json={
            "type": "management", "reason": "VIP at risk", "note": "Customer threatens to cancel; please call."})
        assert up.json()["escalation_level"] == "management"
        assert (await act("de_escalate"))["status"] == "in_progress"

        macros = (await http.get("/api/v1/macros", headers=ann)).json()["items"]
        assert len(macros) == 6
        rendered = await http.post(f"/api/v1/tickets/{ticket_id}/macros/{macros[0]['id']}", headers=ann)
        assert "Ola Berg" in rendered.json()["text"] and f"#{ticket_id}" in rendered.json()["text"]

        audit = [a["action"] for a in (await http.get(f"/api/v1/tickets/{ticket_id}/audit", headers=ann)).json()["items"]]
        assert audit.count("escalated") == 2 and "reopened" in audit and "assigned" in audit
        entries = (await http.get(f"/api/v1/tickets/{ticket_id}", headers=ann)).json()["entries"]
        assert sum(1 for e in entries if e["kind"] == "note" and e["internal"]) == 2
        await v.quiet(0.3)  # type: ignore[attr-defined]
        assert all("SSO log" not in str(f) for f in v.frames)  # type: ignore[attr-defined]

        bulk = await http.post("/api/v1/tickets-bulk/assign", headers=ann, json={"ticket_ids": [ticket_id],
                                                                                "agent_id": live.id("Bob")})
        assert bulk.status_code == 403
        bulk = await http.post("/api/v1/tickets-bulk/assign", headers=lee, json={"ticket_ids": [ticket_id, 4242],
                                                                                "agent_id": live.id("Bob")})
        assert [r["ok"] for r in bulk.json()["results"]] == [True, False]


async def test_corrections_merge_and_csat(live: Deployment) -> None:
    v, first = await chat_to_ticket(live)
    ann = {"Authorization": f"Bearer {live.token('Ann')}"}
    async with httpx.AsyncClient(base_url=live.server.http, headers=ann, timeout=10) as http:
        second = (await http.post("/api/v1/tickets", json={
            "channel": "email", "text": "Following up on my login problem", "customer_email": "ola@example.com",
            "customer_name": "Ola Berg"})).json()["id"]
        other = (await http.post("/api/v1/tickets", json={"text": "unrelated", "customer_email": "z@example.com"})
                 ).json()["id"]

        fixed = await http.patch(f"/api/v1/tickets/{first}", json={"priority": "P1", "category": "billing"})
        assert (fixed.json()["priority"], fixed.json()["category"]) == ("P1", "billing")
        assert (await http.patch(f"/api/v1/tickets/{first}", json={"status": "closed"})).status_code == 400

        refused = await http.post(f"/api/v1/tickets/{other}/merge", json={"into": first})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_merge"
        merged = await http.post(f"/api/v1/tickets/{second}/merge", json={"into": first})
        assert merged.json() == {"id": second, "status": "closed", "merged_into": first}
        target = (await http.get(f"/api/v1/tickets/{first}")).json()
        texts = [e["text"] for e in target["entries"]]
        assert "Following up on my login problem" in texts and f"Ticket #{second} was merged into this one." in texts
        times = [e["at"] for e in target["entries"]]
        assert times == sorted(times), "the merged thread reads in time order"
        source = (await http.get(f"/api/v1/tickets/{second}")).json()
        assert (source["status"], source["merged_into"]) == ("closed", first)
        audit = [a["action"] for a in (await http.get(f"/api/v1/tickets/{first}/audit")).json()["items"]]
        assert "priority_changed" in audit and "category_changed" in audit and "merged" in audit

    # CSAT in the widget, then by the e-mailed link (the link's answer replaces the first).
    await v.send({"type": "csat", "rating": "okay", "comment": "slow"})  # type: ignore[attr-defined]
    await v.expect("done")  # type: ignore[attr-defined]
    from sqlalchemy import select

    from chatsvc.store import db
    from chatsvc.store.tables import csat_responses, outbound_messages

    engine = db.create_engine(live.database_url)
    try:
        async with httpx.AsyncClient(base_url=live.server.http, headers=ann, timeout=10) as http:
            await http.post(f"/api/v1/tickets/{first}/assign", json={"agent_id": live.id("Ann")})
            await http.post(f"/api/v1/tickets/{first}/status", json={"action": "resolve"})
        async with engine.connect() as conn:
            mails = (await conn.execute(select(outbound_messages.c.body).where(
                outbound_messages.c.ticket_id == first))).scalars().all()
        link = next(m for m in mails if "How did we do?" in m).rsplit(" ", 1)[-1]
        async with httpx.AsyncClient(timeout=10) as http:
            page = await http.get(link)
            assert page.status_code == 200 and "How did we do?" in page.text
            assert (await http.get(link + "x")).status_code == 404
            thanks = await http.post(link, data={"rating": "bad", "comment": "still broken"})
            assert "manager will follow up" in thanks.text
        async with engine.connect() as conn:
            answers = (await conn.execute(select(csat_responses))).all()
        assert [(a.ticket_id, a.rating, a.comment) for a in answers] == [(first, "bad", "still broken")]
    finally:
        await engine.dispose()


async def test_custom_macros_are_sandboxed(live: Deployment) -> None:
    _, ticket_id = await chat_to_ticket(live)
    lee = {"Authorization": f"Bearer {live.token('Lee')}"}
    ann = {"Authorization": f"Bearer {live.token('Ann')}"}
    async with httpx.AsyncClient(base_url=live.server.http, timeout=10) as http:
        body = {"name": "Gate code", "body": "Hi {{ customer_name }}, the gate code for {{ community_name }} changed."}
        assert (await http.post("/api/v1/macros", headers=ann, json=body)).status_code == 403
        created = await http.post("/api/v1/macros", headers=lee, json=body)
        assert created.status_code == 201 and created.json()["id"] == "gate-code"
        assert (await http.post("/api/v1/macros", headers=lee, json=body)).status_code == 409
        for hostile in ("{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}", "{{ config }}",
                        "{% for x in range(10**9) %}x{% endfor %}", "{{ customer_name.upper() }}",
                        "{% import 'os' as os %}"):
            refused = await http.post("/api/v1/macros", headers=lee, json={"name": "evil", "body": hostile})
            assert refused.status_code == 422, hostile
            assert refused.json()["error"]["code"] == "invalid_macro"
        items = (await http.get("/api/v1/macros", headers=ann)).json()["items"]
        assert len(items) == 7 and [m["id"] for m in items if not m["builtin"]] == ["gate-code"]
        text = (await http.post(f"/api/v1/tickets/{ticket_id}/macros/gate-code", headers=ann)).json()["text"]
        assert text == "Hi Ola Berg, the gate code for  changed."
        assert (await http.delete("/api/v1/macros/gate-code", headers=lee)).status_code == 204
        assert (await http.delete("/api/v1/macros/gate-code", headers=lee)).status_code == 404
