"""Internal notes never reach a visitor, by any path: the live socket, the replay after a reconnect, a
ticket reply sent into the chat, the e-mails queued for the customer, the CSAT page, webhook payloads."""

from __future__ import annotations

import json
import re
import uuid

import httpx

from tests.security.conftest import Site
from tests.security.test_ws_matrix import answer, with_agent
from tests.support.server import run_sync, visitor


async def _outbound(database_url: str) -> list[str]:
    from sqlalchemy import select

    from chatsvc.store import db
    from chatsvc.store.tables import outbound_messages

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(outbound_messages.c.subject, outbound_messages.c.body))).all()
        return [f"{r.subject}\n{r.body}" for r in rows]
    finally:
        await engine.dispose()


async def test_internal_notes_reach_no_visitor_by_any_path(site: Site) -> None:
    marker = f"INTERNAL-{uuid.uuid4().hex}"
    admin, manager = site.bearer("admin"), site.bearer("manager")
    with httpx.Client(base_url=site.http, timeout=30) as http:
        hook = http.post("/api/v1/webhooks", headers=manager, json={
            "url": "http://127.0.0.1:9/hook", "events": ["ticket.created", "ticket.updated",
                                                          "conversation.ticketed"]})
        assert hook.status_code == 201

        # In the chat: a note over the agent socket, then the chat becomes a ticket (the note goes with it).
        v, ann, conv = await with_agent(site)
        await v.send({"type": "leave_email", "email": "dana@example.com"})
        await v.expect("done")
        got = await answer(ann, {"type": "note", "conversation_id": conv, "client_id": "n1",
                                 "text": f"chat note {marker}"})
        assert got["type"] == "ack"
        assert (await answer(ann, {"type": "message", "conversation_id": conv, "client_id": "m1",
                                   "text": "Let me check that for you"}))["type"] == "ack"
        assert (await answer(ann, {"type": "convert", "conversation_id": conv}))["type"] == "done"
        ticket_event = await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket", 20)
        number = ticket_event["data"]["ticket_id"]

        # On the ticket: a note, an escalation (its note is internal), a reply, resolution (the CSAT e-mail).
        assert http.post(f"/api/v1/tickets/{number}/assign", headers=admin,
                         json={"agent_id": site.members["admin"].id}).status_code == 200
        assert http.post(f"/api/v1/tickets/{number}/status", headers=admin, json={"action": "start"}).status_code \
            == 200
        for path, body in ((f"/api/v1/tickets/{number}/notes", {"text": f"ticket note {marker}"}),
                           (f"/api/v1/tickets/{number}/escalate", {"type": "technical", "reason": f"why {marker}",
                                                                   "note": f"escalation note {marker}"}),
                           (f"/api/v1/tickets/{number}/replies", {"text": "The gate code is reset now."})):
            done = http.post(path, headers=admin, json=body)
            assert done.status_code in (200, 201), (path, done.text)
        for action in ("de_escalate", "resolve"):
            http.post(f"/api/v1/tickets/{number}/status", headers=admin, json={"action": action})
        detail = http.get(f"/api/v1/tickets/{number}", headers=admin).json()
        assert detail["status"] == "resolved", detail["status"]
        internal = [e for e in detail["entries"] if marker in (e["text"] or "")]
        assert internal and all(e["internal"] for e in internal), "agents see the notes, marked internal"

        # The visitor, live and after a reconnect from nothing.
        reply = await v.expect(lambda f: f["type"] == "event" and "gate code is reset" in (f["text"] or ""), 20)
        assert reply["role"] == "agent"
        await v.quiet(0.5)
        again, _ = await visitor(site.ws, token=(await _token(v)))
        await again.quiet(0.5)
        for client in (v, again):
            assert marker not in json.dumps(client.frames)
        assert any("gate code is reset" in (f.get("text") or "") for f in again.events())

        # E-mails, the CSAT page they link to, and webhook payloads.
        mails = run_sync(lambda: _outbound(site.database_url))
        assert any("How did we do?" in m for m in mails) and any("gate code is reset" in m for m in mails)
        assert not [m for m in mails if marker in m]
        link = next(re.search(r"/csat/\S+", m).group(0) for m in mails if "/csat/" in m)  # type: ignore[union-attr]
        page = http.get(link)
        assert page.status_code == 200 and marker not in page.text
        deliveries = http.get(f"/api/v1/webhooks/{hook.json()['id']}/deliveries", headers=manager).json()
        assert deliveries["items"] and marker not in json.dumps(deliveries)


async def _token(client: object) -> str:
    welcome = next(f for f in client.frames if f["type"] == "welcome")  # type: ignore[attr-defined]
    return str(welcome["token"])
