"""Webhooks: queued with the change that causes them, signed, retried with backoff under an injected clock,
delivered once even when two processes' workers race, and managed over the API by admins and managers.
Deliveries go to a real HTTP server on a free port that checks the signature."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from chatsvc.broker import create_broker
from chatsvc.live.service import AgentRef, ChatService, as_utc
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.store.tables import tickets, webhook_deliveries, webhooks
from chatsvc.tickets import webhooks as hooks
from chatsvc.tickets.service import TicketService
from chatsvc.web.api import ApiError, api_error_handler
from chatsvc.web.openapi_spec import build_document, event_schema_name
from tests.support.poll import apoll

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HANG = 0  # in a receiver's script: answer only when released


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


# ------------------------------------------------------------------ the receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on a free port: answers with the scripted statuses (then 200), and 401 to a request
    whose signature does not verify with `secret`."""

    script: list[int] = field(default_factory=list)
    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    release: threading.Event = field(default_factory=threading.Event)  # lets a HANG answer go

    def __post_init__(self) -> None:
        receiver = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = receiver.secret is not None and hooks.signature_valid(
                    receiver.secret, headers.get("x-chatsvc-timestamp", ""), body,
                    headers.get("x-chatsvc-signature", ""))
                with lock:
                    if not ok:
                        receiver.refused += 1
                        status = 401
                    else:
                        receiver.received.append(Received(headers, body))
                        status = receiver.script.pop(0) if receiver.script else 200
                if status == HANG:
                    receiver.release.wait(10)
                    status = 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"nope!" if status >= 300 else b"thx\r\n")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # socketserver's 5 overflows under concurrent deliveries: resets

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/chatsvc"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


# ------------------------------------------------------------------ stores




@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"


@dataclass
class Store:
    url: str
    clock: Clock
    engines: list[AsyncEngine]
    service: ChatService

    @property
    def engine(self) -> AsyncEngine:
        return self.engines[0]

    def worker(self, process: int = 0, **kwargs: Any) -> hooks.WebhookWorker:
        """A worker as process `process` would run it: with its own engine (its own connection pool)."""
        while len(self.engines) <= process:
            self.engines.append(db.create_engine(self.url))
        kwargs.setdefault("jitter", lambda: 0.5)  # exactly the BACKOFF waits
        return hooks.WebhookWorker(self.engines[process], self.clock, **kwargs)


async def open_store(url: str) -> Store:
    engine = db.create_engine(url)
    await db.migrate(engine)
    clock = Clock(T0)
    broker = create_broker(None)
    await broker.connect()
    service = ChatService(engine, broker, Settings(database_url=url), secret_key="k", clock=clock)
    service.tickets = TicketService(service)
    return Store(url, clock, [engine], service)


async def close_store(store: Store) -> None:
    await store.service.broker.disconnect()
    for engine in store.engines:
        await engine.dispose()


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    s = await open_store(sqlite_url)
    try:
        yield s
    finally:
        await close_store(s)


@pytest.fixture
async def any_store(database_url: str) -> AsyncIterator[Store]:
    s = await open_store(database_url)
    try:
        yield s
    finally:
        await close_store(s)


@pytest.fixture
async def workers() -> AsyncIterator[list[hooks.WebhookWorker]]:
    """Workers a test made (append them), stopped after it so their HTTP clients close."""
    made: list[hooks.WebhookWorker] = []
    yield made
    for worker in made:
        await worker.stop()


async def add_hook(store: Store, url: str, events: list[str]) -> tuple[dict[str, Any], str]:
    return await hooks.create_webhook(store.engine, url, events, store.clock())


async def emit(store: Store, event: str, payload: dict[str, Any]) -> int:
    async with store.engine.begin() as conn:
        return await hooks.emit(conn, event, payload, store.clock())


async def deliveries(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.id))).all())


def event_validator(event: str) -> jsonschema.Draft202012Validator:
    """The OpenAPI document's schema of the body POSTed for `event`."""
    doc = build_document()
    registry = Registry().with_resource("urn:chatsvc:openapi", Resource.from_contents(doc, DRAFT202012))
    schema = {"$ref": f"urn:chatsvc:openapi#/components/schemas/{event_schema_name(event)}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


# ------------------------------------------------------------------ queueing


async def test_an_event_is_queued_for_each_active_subscribed_hook_and_only_when_its_change_commits(
        store: Store) -> None:
    created, _ = await add_hook(store, "https://a.example/h", [hooks.TICKET_CREATED, hooks.SLA_BREACHED])
    await add_hook(store, "https://b.example/h", [hooks.SLA_BREACHED])
    gone, _ = await add_hook(store, "https://c.example/h", [hooks.TICKET_CREATED])
    assert await hooks.delete_webhook(store.engine, gone["id"], store.clock())

    assert await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}}) == 1
    assert await emit(store, hooks.SLA_BREACHED, {"ticket": {"id": 1}}) == 2
    assert await emit(store, hooks.CONVERSATION_TICKETED, {"ticket": {"id": 1}}) == 0

    with pytest.raises(RuntimeError):
        async with store.engine.begin() as conn:
            assert await hooks.emit(conn, hooks.TICKET_CREATED, {"ticket": {"id": 2}}, store.clock()) == 1
            raise RuntimeError("the change fails after the event was queued")
    rows = await deliveries(store)
    assert [(r.event, r.webhook_id == created["id"]) for r in rows] == [
        (hooks.TICKET_CREATED, True), (hooks.SLA_BREACHED, True), (hooks.SLA_BREACHED, False)]
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)

    with pytest.raises(ValueError, match="unknown webhook event"):
        await emit(store, "ticket.exploded", {})
    with pytest.raises(TypeError):
        await emit(store, hooks.TICKET_CREATED, {"when": object()})


async def test_ticket_events_carry_the_documented_payloads(store: Store, receiver: Receiver,
                                                           workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, list(hooks.EVENTS))
    async with store.engine.begin() as conn:
        ticket_id = (await conn.execute(insert(tickets).values(
            subject="Dues", status="new", priority="P3", channel="form", customer_name="Kim",
            customer_email="kim@example.com", escalation_level="l1", sla_policy="lotwize", created_at=T0,
            updated_at=T0, paused=[]).returning(tickets.c.id))).scalar_one()
    actor = AgentRef("a1", "Ann", "agent", "online")
    async with store.engine.begin() as conn:
        await hooks.emit_ticket(conn, hooks.TICKET_CREATED, ticket_id, store.clock())
        await hooks.emit_ticket(conn, hooks.TICKET_UPDATED, ticket_id, store.clock(), actor=actor, action="start",
                                changes={"status": {"from": "open", "to": "in_progress"}})
        await hooks.emit_ticket(conn, hooks.SLA_BREACHED, ticket_id, store.clock(), timer="first_response",
                                due="2026-03-02T19:00:00Z")
        await hooks.emit_ticket(conn, hooks.CONVERSATION_TICKETED, ticket_id, store.clock(),
                                conversation_id="c-1", reason="no_agent_online")
    workers.append(worker := store.worker())
    assert await worker.run_once() == 4
    received = sorted(receiver.received, key=lambda r: r.json["id"])  # sent concurrently: in any order
    assert [r.json["event"] for r in received] == list(hooks.EVENTS)
    for got in received:
        event_validator(got.json["event"]).validate(got.json)
        assert got.json["data"]["ticket"]["number"] == f"#{ticket_id}"
    assert received[1].json["data"]["actor"] == {"id": "a1", "name": "Ann"}


def test_changes_lists_only_what_differs() -> None:
    before = SimpleNamespace(status="new", assignee_id=None, priority="P2", resolved_at=None)
    after = {"status": "open", "assignee_id": "a1", "priority": "P2", "resolved_at": T0, "updated_at": T0}
    assert hooks.changes(before, after, ("status", "assignee_id", "priority", "resolved_at")) == {
        "status": {"from": "new", "to": "open"}, "assignee_id": {"from": None, "to": "a1"},
        "resolved_at": {"from": None, "to": "2026-03-02T15:00:00Z"}}


async def test_ticket_changes_queue_their_events(store: Store) -> None:
    """The ticket service queues each event in the transaction of its change."""
    await add_hook(store, "https://hooks.example.com/in", list(hooks.EVENTS))
    tickets_service, ann = store.service.tickets, AgentRef("a1", "Ann", "agent", "online")
    ticket_id = await tickets_service.create(channel="agent", subject="Portal down", text="the portal is down",
                                             customer_name="Al", customer_email="al@example.com", priority="P1",
                                             actor=ann)
    assignee = (await store.service.create_agent("Bea", "bea@example.com", "agent"))[0]
    await tickets_service.assign(ann, ticket_id, assignee)
    await tickets_service.update_fields(ann, ticket_id, {"priority": "P2"})
    store.clock.advance(hours=2)  # P2 is due in one business hour
    await tickets_service.sweep()
    await tickets_service.act(ann, ticket_id, "resolve")
    store.clock.advance(hours=73)
    await tickets_service.sweep()  # auto-closes

    rows = await deliveries(store)
    got = [(r.event, r.payload.get("action"), r.payload.get("timer"), sorted(r.payload.get("changes", {})))
           for r in rows]
    assert got == [
        ("ticket.created", None, None, []),
        ("ticket.updated", "assign", None, ["assignee_id", "status"]),
        ("ticket.updated", None, None, ["priority"]),
        ("sla.breached", None, "first_response", []),
        ("ticket.updated", "resolve", None, ["status"]),
        ("ticket.updated", "auto_close", None, ["status"]),
    ], "one event per change, in order"
    assert rows[-1].payload["ticket"]["status"] == "closed" and rows[-1].payload["actor"] is None
    for row in rows:
        event_validator(row.event).validate(json.loads(hooks.delivery_body(row.id, row.event, row.created_at,
                                                                           row.payload)))


# ------------------------------------------------------------------ delivering


async def test_a_delivery_is_signed_and_the_receiver_verifies_it(store: Store, receiver: Receiver,
                                                                 workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_CREATED])
    assert receiver.secret.startswith("whsec_") and len(receiver.secret) > 40
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 7}})
    workers.append(worker := store.worker())
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0, "a delivered event is not sent again"

    [got] = receiver.received
    row = (await deliveries(store))[0]
    assert got.headers["x-chatsvc-event"] == "ticket.created"
    assert got.headers["x-chatsvc-delivery"] == str(row.id)
    assert got.headers["x-chatsvc-timestamp"] == str(int(T0.timestamp()))
    assert got.headers["content-type"] == "application/json"
    assert got.json == {"id": row.id, "event": "ticket.created", "occurred_at": "2026-03-02T15:00:00Z",
                        "data": {"ticket": {"id": 7}}}
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 1, 200, None)
    assert receiver.refused == 0

    # A receiver holding another secret refuses it: the signature really depends on the secret.
    receiver.secret = "whsec_not-the-one"
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 8}})
    await worker.run_once()
    assert receiver.refused == 1
    assert (await deliveries(store))[1].last_error.endswith("HTTP 401 Unauthorized: nope!")


async def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(
        store: Store, receiver: Receiver, workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_UPDATED])
    receiver.script = [500, 503]
    await emit(store, hooks.TICKET_UPDATED, {"ticket": {"id": 1}})
    workers.append(worker := store.worker())

    assert await worker.run_once() == 1  # attempt 1: 500
    row = (await deliveries(store))[0]
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert as_utc(row.next_attempt_at) == T0 + timedelta(seconds=10)
    store.clock.advance(seconds=9)
    assert await worker.run_once() == 0, "not before its backoff"
    store.clock.advance(seconds=1)
    assert await worker.run_once() == 1  # attempt 2: 503
    store.clock.advance(seconds=29)
    assert await worker.run_once() == 0
    store.clock.advance(seconds=1)
    assert await worker.run_once() == 1  # attempt 3: 200

    row = (await deliveries(store))[0]
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 200)
    assert row.last_error.splitlines() == [
        "attempt 1 at 2026-03-02T15:00:00Z: HTTP 500 Internal Server Error: nope!",
        "attempt 2 at 2026-03-02T15:00:10Z: HTTP 503 Service Unavailable: nope!"]
    assert len({r.headers["x-chatsvc-delivery"] for r in receiver.received}) == 1, "one delivery id throughout"
    assert len({r.body for r in receiver.received}) == 1, "the same body on every attempt"
    assert [r.headers["x-chatsvc-timestamp"] for r in receiver.received] == [
        str(int((T0 + timedelta(seconds=s)).timestamp())) for s in (0, 10, 40)]


async def test_failures_back_off_and_give_up_after_the_last_attempt(
        store: Store, receiver: Receiver, workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.SLA_BREACHED])
    receiver.script = [302, 404] + [500] * 10  # a redirect is not followed: it is a failure like any other
    await emit(store, hooks.SLA_BREACHED, {"ticket": {"id": 1}})
    workers.append(worker := store.worker())
    for attempt in range(1, hooks.MAX_ATTEMPTS + 1):
        assert await worker.run_once() == 1, f"attempt {attempt} was due"
        row = (await deliveries(store))[0]
        if attempt < hooks.MAX_ATTEMPTS:
            assert as_utc(row.next_attempt_at) - store.clock() == hooks.BACKOFF[attempt - 1]
            store.clock.now = as_utc(row.next_attempt_at)
    row = (await deliveries(store))[0]
    assert (row.status, row.attempts, row.last_status_code) == ("failed", hooks.MAX_ATTEMPTS, 500)
    log = row.last_error.splitlines()
    assert len(log) == hooks.MAX_ATTEMPTS and "HTTP 302 Found" in log[0] and "HTTP 404 Not Found" in log[1]
    store.clock.advance(days=2)
    assert await worker.run_once() == 0, "a failed delivery is not tried again"
    assert len(receiver.received) == hooks.MAX_ATTEMPTS


async def test_an_unreachable_receiver_is_logged_and_retried(store: Store, workers: list[hooks.WebhookWorker]) -> None:
    closed = Receiver()
    url = closed.url
    closed.close()  # nothing listens there any more
    await add_hook(store, url, [hooks.TICKET_CREATED])
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}})
    workers.append(worker := store.worker(timeout=2.0, lease=timedelta(seconds=30)))
    assert await worker.run_once() == 1
    row = (await deliveries(store))[0]
    assert row.status == "pending" and row.last_status_code is None
    assert row.last_error.startswith("attempt 1 at 2026-03-02T15:00:00Z: ConnectError")


async def test_a_receiver_that_does_not_answer_in_time_is_retried(
        store: Store, receiver: Receiver, workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_CREATED])
    receiver.script = [HANG]
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}})
    workers.append(worker := store.worker(timeout=0.2))
    assert await worker.run_once() == 1
    receiver.release.set()
    row = (await deliveries(store))[0]
    assert (row.status, row.last_status_code) == ("pending", None)
    assert row.last_error.endswith("no answer within 0.2 s")
    with pytest.raises(ValueError, match="lease"):
        hooks.WebhookWorker(store.engine, store.clock, timeout=60, lease=timedelta(seconds=90))


def test_retry_delays_follow_the_backoff_with_bounded_jitter() -> None:
    assert hooks.retry_delay(1, 0.5) == timedelta(seconds=10)
    assert hooks.retry_delay(1, 0.0) == timedelta(seconds=8)
    assert hooks.retry_delay(2, 0.999999) < timedelta(seconds=36)
    assert hooks.retry_delay(5, 0.5) == timedelta(hours=1)
    assert sum(hooks.BACKOFF, timedelta()) < timedelta(hours=11)


async def test_two_processes_racing_deliver_each_event_once(any_store: Store, receiver: Receiver,
                                                            workers: list[hooks.WebhookWorker]) -> None:
    store = any_store
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_CREATED])
    for i in range(24):
        await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": i}})
    workers.extend([store.worker(0, batch=5), store.worker(1, batch=5)])
    for _ in range(20):
        await asyncio.gather(*(w.run_once() for w in workers))
        if all(r.status == "delivered" for r in await deliveries(store)):
            break
    rows = await deliveries(store)
    assert all(r.status == "delivered" and r.attempts == 1 for r in rows)
    sent = [r.headers["x-chatsvc-delivery"] for r in receiver.received]
    assert sorted(sent, key=int) == [str(r.id) for r in rows], "every delivery sent exactly once"


async def test_an_attempt_that_outlives_its_lease_is_retried_and_its_late_result_dropped(
        store: Store, receiver: Receiver, workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_CREATED])
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}})
    workers.extend([stuck := store.worker(0), other := store.worker(1)])
    [job] = await stuck._claim(store.clock())  # process 0 claims it, then hangs (or dies)
    assert await other.run_once() == 0, "leased: nobody else sends it meanwhile"
    store.clock.advance(seconds=stuck.lease.total_seconds())
    assert await other.run_once() == 1  # the lease ran out: process 1 delivers
    await stuck._record(job, hooks.Outcome(500, "HTTP 500"), T0)  # process 0 wakes up with an old answer
    row = (await deliveries(store))[0]
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)


async def test_the_worker_loop_delivers_in_the_background(store: Store, receiver: Receiver,
                                                          workers: list[hooks.WebhookWorker]) -> None:
    _, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_CREATED])
    workers.append(worker := store.worker(interval=0.05))
    await worker.start()
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}})
    await apoll(lambda: deliveries(store), lambda rows: rows[0].status == "delivered")
    await worker.stop()
    assert (await deliveries(store))[0].status == "delivered"


async def test_a_deleted_hook_gets_nothing_more(any_store: Store, receiver: Receiver,
                                                workers: list[hooks.WebhookWorker]) -> None:
    store = any_store
    hook, receiver.secret = await add_hook(store, receiver.url, [hooks.TICKET_CREATED])
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}})
    workers.append(worker := store.worker())
    [job] = await worker._claim(store.clock())  # claimed just before the hook is deleted
    await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 2}})
    assert await hooks.delete_webhook(store.engine, hook["id"], store.clock())
    assert not await hooks.delete_webhook(store.engine, hook["id"], store.clock())
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(webhooks).where(webhooks.c.id == hook["id"]))).one()
    assert (row.active, row.secret) == (False, ""), "the secret is erased"
    await worker._deliver(job, row)
    assert receiver.received == []
    assert [(r.status, r.last_error.splitlines()[-1].split(": ")[-1]) for r in await deliveries(store)] == [
        ("failed", "webhook deleted"), ("failed", "webhook deleted")]


@pytest.mark.parametrize("url", [
    "ftp://example.com/h", "javascript:alert(1)", "example.com/h", "http://", "https://user:pw@example.com/h",
    "https://example.com/h#frag", "https://exa mple.com/h", "http://example.com:port/h", "https://x.io/" + "a" * 2000,
    "", None, 42])
def test_webhook_urls_must_be_plain_http_or_https(url: Any) -> None:
    with pytest.raises(hooks.WebhookError):
        hooks.validate_url(url)


def test_valid_urls_and_events() -> None:
    assert hooks.validate_url(" https://hooks.example.com:8443/chatsvc?team=1 ") == \
        "https://hooks.example.com:8443/chatsvc?team=1"
    assert hooks.validate_url("http://10.0.0.5/in") == "http://10.0.0.5/in"
    assert hooks.validate_events(["sla.breached", "ticket.created", "sla.breached"]) == ["sla.breached",
                                                                                        "ticket.created"]
    for bad in ([], ["ticket.deleted"], "ticket.created", [1]):
        with pytest.raises(hooks.WebhookError):
            hooks.validate_events(bad)


# ------------------------------------------------------------------ the API


def api_app(service: ChatService, *route_lists: list[Any]) -> Starlette:
    """The REST routes under test in a small app, with the runtime the real one gives them."""
    app = Starlette(routes=[r for routes in route_lists for r in routes],
                    exception_handlers={ApiError: api_error_handler})
    app.state.runtime = SimpleNamespace(service=service)
    return app


async def token(service: ChatService, name: str, role: str) -> dict[str, str]:
    _, secret = await service.create_agent(name, f"{name.lower()}@example.com", role)
    return {"Authorization": f"Bearer {secret}"}


async def test_the_webhook_api_is_for_admins_and_managers_and_shows_the_secret_once(
        store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="chatsvc")
    app = api_app(store.service, hooks.routes)
    manager = await token(store.service, "Mia", "manager")
    admin = await token(store.service, "Ada", "admin")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatsvc") as http:
        assert (await http.get("/api/v1/webhooks")).status_code == 401
        for role in ("agent", "lead", "writer"):
            headers = await token(store.service, f"Who{role}", role)
            refused = await http.post("/api/v1/webhooks", headers=headers,
                                      json={"url": receiver.url, "events": ["ticket.created"]})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

        created = await http.post("/api/v1/webhooks", headers=manager,
                                  json={"url": receiver.url, "events": ["ticket.created", "sla.breached"]})
        assert created.status_code == 201
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["ticket.created", "sla.breached"]
        listed = (await http.get("/api/v1/webhooks", headers=admin)).json()["items"]
        assert listed == [{k: v for k, v in hook.items() if k != "secret"}]
        assert hook["secret"] not in caplog.text, "the secret is never logged"

        for body, message in (({"url": "ftp://x.example/h", "events": ["ticket.created"]}, "http"),
                              ({"url": receiver.url, "events": ["ticket.gone"]}, "unknown events"),
                              ({"url": receiver.url}, "events")):
            bad = await http.post("/api/v1/webhooks", headers=admin, json=body)
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_webhook"
            assert message in bad.json()["error"]["message"]
        extra = await http.post("/api/v1/webhooks", headers=admin,
                                json={"url": receiver.url, "events": ["ticket.created"], "secret": "mine"})
        assert extra.status_code == 400, "the secret is chosen by the server"

        await emit(store, hooks.TICKET_CREATED, {"ticket": {"id": 1}})
        await emit(store, hooks.SLA_BREACHED, {"ticket": {"id": 1}, "timer": "resolution", "due": None})
        page = (await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=admin,
                               params={"limit": 1})).json()
        assert page["total"] == 2 and [d["event"] for d in page["items"]] == ["sla.breached"]
        assert page["items"][0]["status"] == "pending" and page["items"][0]["errors"] == []
        pending = (await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=admin,
                                  params={"status": "delivered"})).json()
        assert pending["total"] == 0
        bad_status = await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=admin,
                                    params={"status": "lost"})
        assert bad_status.status_code == 400

        assert (await http.delete(f"/api/v1/webhooks/{hook['id']}", headers=manager)).status_code == 204
        assert (await http.delete(f"/api/v1/webhooks/{hook['id']}", headers=manager)).status_code == 404
        assert (await http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=admin)).status_code == 404
        assert (await http.get("/api/v1/webhooks", headers=admin)).json()["items"] == []
    async with store.engine.connect() as conn:
        statuses = (await conn.execute(select(webhook_deliveries.c.status, func.count())
                                       .group_by(webhook_deliveries.c.status))).all()
    assert dict(statuses) == {"failed": 2}, "a deleted hook's pending deliveries are given up"
