"""Structured logs from a real server at debug level: JSON lines with request and conversation ids, and
not one secret in them after a whole chat and ticket flow."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import httpx
import websockets

from chatsvc.live.identity import sign_identity
from tests.conftest import need
from tests.support import services
from tests.support.server import FAST_SETTINGS, Client, Server, agent, make_agent, run_sync, visitor

IDENTITY = {"name": "Dana Reyes", "email": "dana@example.com", "plan": "Pro"}


async def _set_password(database_url: str, agent_id: str, password: str) -> None:
    from chatsvc.console.auth import set_password
    from chatsvc.store import db

    engine = db.create_engine(database_url)
    try:
        await set_password(engine, agent_id, password)
    finally:
        await engine.dispose()


async def _csat_link(database_url: str) -> str:
    from sqlalchemy import select

    from chatsvc.store import db
    from chatsvc.store.tables import outbound_messages

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            bodies = (await conn.execute(select(outbound_messages.c.body))).scalars().all()
    finally:
        await engine.dispose()
    return next(m.group(0) for b in bodies if (m := re.search(r"/csat/\S+", b)))


def login(base: str, email: str, password: str) -> tuple[str, str]:
    """A console log-in through the form: (session cookie, the session's CSRF token)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/console/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text[:300]
        done = client.post("/console/login", data={"email": email, "password": password,
                                                   "csrf_token": csrf.group(1)})
        assert done.status_code == 303, done.text[:300]
        cookie = client.cookies["chatsvc_session"]
        form = client.get("/console/password")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        return cookie, token.group(1)


async def test_no_secret_reaches_the_log_at_debug_level(tmp_path: Path) -> None:
    need(services.postgres_missing())
    scratch = services.create_postgres_database()
    password = "pg-" + secrets.token_hex(12)
    database_url = scratch.replace("postgres@", f"postgres:{password}@", 1)  # trust auth: accepted as given
    secret_key, identity_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    console_password = "console-" + secrets.token_hex(8)
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_LOG_LEVEL": "debug",
                     "CHATSVC_LOG_FORMAT": "json", "CHATSVC_SECRET_KEY": secret_key,
                     "CHATSVC_IDENTITY_SECRET": identity_secret, "CHATSVC_IDENTITY_REQUIRED": "1",
                     "CHATSVC_METRICS_ACCESS": "token", "CHATSVC_METRICS_TOKEN": "metrics-" + secrets.token_hex(8)},
                    log_path=tmp_path / "server.log")
    try:
        ann_id, ann_token = make_agent(database_url, "Ann")
        mia_id, mia_token = make_agent(database_url, "Mia", role="manager")
        run_sync(lambda: _set_password(database_url, mia_id, console_password))
        server.start(timeout=40)
        base = server.http

        # Chat: a signed visitor, an agent, a note, a conversion; the websocket opened with a request id.
        ann, _ = await agent(server.ws, ann_token)
        signature = sign_identity(identity_secret, IDENTITY)
        v = Client(await websockets.connect(f"{server.ws}/ws/visitor", additional_headers={
            "X-Request-ID": "ws-req-1", "Cookie": "chatsvc_session=not-for-visitors"}), "server_to_visitor")
        await v.send({"type": "hello", "identity": IDENTITY, "identity_sig": signature})
        welcome = await v.expect("welcome")
        visitor_token, conv = welcome["token"], welcome["conversation"]["id"]
        await v.send({"type": "message", "client_id": "q1", "text": "my payment failed"})
        await v.expect("ack")
        await v.send({"type": "request_agent"})
        await ann.expect("offer")
        await ann.send({"type": "accept", "conversation_id": conv})
        await ann.expect("assigned")
        await ann.send({"type": "note", "conversation_id": conv, "client_id": "n1", "text": "VIP"})
        await ann.send({"type": "convert", "conversation_id": conv})
        number = (await v.expect(lambda f: f["type"] == "event" and f["kind"] == "ticket", 20))["data"]["ticket_id"]
        await v.close()
        again, _ = await visitor(server.ws, token=visitor_token, identity=IDENTITY, identity_sig=signature)
        await again.close()

        # Tickets and the console: bearer tokens, a log-in, a session cookie with its CSRF token, a CSAT link.
        cookie, csrf = login(base, await _email(database_url, mia_id), console_password)
        with httpx.Client(base_url=base, timeout=30) as http:
            bearer = {"Authorization": f"Bearer {ann_token}", "X-Request-ID": "rest-req-1"}
            assert http.post(f"/api/v1/tickets/{number}/assign", headers=bearer,
                             json={"agent_id": ann_id}).status_code == 200
            for action in ("start", "resolve"):
                assert http.post(f"/api/v1/tickets/{number}/status", headers=bearer,
                                 json={"action": action}).status_code == 200
            csat = run_sync(lambda: _csat_link(database_url))
            assert http.get(csat).status_code == 200
            assert http.post(csat, data={"rating": "good"}).status_code == 200
            hook = http.post("/api/v1/webhooks", headers={"Authorization": f"Bearer {mia_token}"},
                             json={"url": "http://127.0.0.1:9/hook", "events": ["ticket.created"]}).json()
            assert http.post("/api/v1/contact", json={"email": "kim@example.com", "message": "hi"}).status_code == 201
            assert http.get("/console/password", headers={"Cookie": f"chatsvc_session={cookie}"}).status_code == 200
            http.post("/console/password", headers={"Cookie": f"chatsvc_session={cookie}", "X-CSRF-Token": csrf},
                      data={"csrf_token": csrf, "current_password": "wrong-" + console_password,
                            "new_password": "x" + console_password, "confirm_password": "x" + console_password})
            http.get("/api/v1/tickets", headers={"Authorization": "Bearer not-a-real-token-" + secrets.token_hex(6)})
            http.get("/metrics", headers={"Authorization": "Bearer wrong"})
    finally:
        server.stop()
        services.drop_postgres_database(scratch)

    text = (tmp_path / "server.log").read_text()
    csat_token = csat.rsplit("/", 1)[1]
    found = {name: value for name, value in {
        "database password": password, "secret key": secret_key, "identity secret": identity_secret,
        "identity signature": signature, "agent token": ann_token, "manager token": mia_token,
        "visitor token": visitor_token, "CSAT token": csat_token, "console password": console_password,
        "session cookie": cookie, "CSRF token": csrf, "webhook secret": hook["secret"],
        "metrics token": server.env["CHATSVC_METRICS_TOKEN"]}.items() if value in text}
    assert not found, f"secrets in the log: {sorted(found)}"

    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line["level"] == "debug" for line in lines), "the server logged at debug level"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    rest = [line for line in lines if line.get("request_id") == "rest-req-1"]
    assert rest and all(line["logger"] == "chatsvc.access" for line in rest)
    session = [line for line in lines if line.get("request_id") == "ws-req-1"]
    assert session and all(line.get("conversation_id") == conv for line in session if "session" in line["message"])
    assert any(line.get("conversation_id") == conv and "opened" in line["message"] for line in session)


async def _email(database_url: str, agent_id: str) -> str:
    from sqlalchemy import select

    from chatsvc.store import db
    from chatsvc.store.tables import agents

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(select(agents.c.email).where(agents.c.id == agent_id))).scalar_one())
    finally:
        await engine.dispose()
