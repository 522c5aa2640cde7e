"""The composition root: settings in, one ASGI app out. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from chatsvc.broker import Broker, create_broker
from chatsvc.domain.sla import policy_named
from chatsvc.kb_suggest.routes import routes as kb_routes
from chatsvc.kb_suggest.store import ArticleStore, KnowledgeBase
from chatsvc.live.service import ChatService
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.tickets.metrics import routes as metrics_routes
from chatsvc.tickets.routes import routes as ticket_routes
from chatsvc.tickets.service import TicketService
from chatsvc.tickets.webhooks import WebhookWorker
from chatsvc.tickets.webhooks import routes as webhook_routes
from chatsvc.web.api import ApiError, api_error_handler
from chatsvc.web.openapi import routes as openapi_routes
from chatsvc.web.widget import routes as widget_routes
from chatsvc.ws.agent import AgentConnection
from chatsvc.ws.connection import Connection
from chatsvc.ws.protocol import CloseCode
from chatsvc.ws.visitor import VisitorConnection, origin_allowed

log = logging.getLogger("chatsvc")


@dataclass
class Runtime:
    settings: Settings
    service: ChatService
    broker: Broker
    articles: ArticleStore
    kb: KnowledgeBase
    connections: set[Connection] = field(default_factory=set)


def load_classifier() -> object | None:
    """The shipped or operator-trained classifier; without one, conversations keep the rules' defaults."""
    try:
        from chatsvc.classifier import Classifier

        return Classifier.load()
    except Exception as exc:  # noqa: BLE001 - a broken artifact must not keep chat down; it is logged
        log.warning("classifier not loaded (%s); conversations get no predicted category or priority", exc)
        return None


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        policy_named(settings.sla_policy)  # an unknown preset stops the start with its name
        engine = db.create_engine(settings.database_url)
        await db.migrate(engine)
        async with engine.begin() as conn:
            secret = settings.secret_key or await db.secret_key(conn)
        broker = create_broker(settings.redis_url or None)
        await broker.connect()
        articles = ArticleStore(engine)
        kb = KnowledgeBase(articles)
        await kb.start()
        classifier = await asyncio.to_thread(load_classifier)
        service = ChatService(engine, broker, settings, secret_key=secret, kb=kb, classifier=classifier)
        tickets = TicketService(service)
        service.tickets = tickets
        service.on_ticket_pending = tickets.on_ticket_pending
        service.on_ticketed_message = tickets.on_visitor_message
        await service.start()
        webhook_worker = WebhookWorker(engine, service.clock)
        await webhook_worker.start()
        app.state.runtime = Runtime(settings, service, broker, articles, kb)
        try:
            yield
        finally:
            runtime: Runtime = app.state.runtime
            # Going away: clients reconnect (to this process after a restart, or to another) and resume.
            for connection in list(runtime.connections):
                connection.abort(CloseCode.GOING_AWAY, "server shutting down")
            await webhook_worker.stop()
            await service.stop()
            await kb.stop()
            await broker.disconnect()
            await engine.dispose()

    async def visitor_socket(websocket: WebSocket) -> None:
        runtime: Runtime = websocket.app.state.runtime
        if not origin_allowed(websocket, runtime.settings.origin_allowlist):
            await websocket.close(CloseCode.ORIGIN_FORBIDDEN)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept()
        await VisitorConnection(websocket, runtime.service, runtime.connections).run()

    async def agent_socket(websocket: WebSocket) -> None:
        runtime: Runtime = websocket.app.state.runtime
        await websocket.accept()
        await AgentConnection(websocket, runtime.service, runtime.connections).run()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = {"database": False, "broker": False}
        with contextlib.suppress(Exception):
            async with runtime.service.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            checks["database"] = True
        with contextlib.suppress(Exception):
            checks["broker"] = bool(await runtime.broker.ping())
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>chatsvc</title>"
            "<h1>chatsvc is running</h1><ul>"
            "<li>Visitor websocket: <code>/ws/visitor</code></li>"
            "<li>Agent websocket: <code>/ws/agent</code></li>"
            "<li>Help center: <a href=/help>/help</a></li>"
            "<li>Health: <a href=/healthz>/healthz</a>, readiness: <a href=/readyz>/readyz</a></li></ul>"
        )

    return Starlette(
        exception_handlers={ApiError: api_error_handler},
        routes=[
            *kb_routes,
            *widget_routes,
            *ticket_routes,
            *webhook_routes,
            *metrics_routes,
            *openapi_routes,
            Route("/", index),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            WebSocketRoute("/ws/visitor", visitor_socket),
            WebSocketRoute("/ws/agent", agent_socket),
        ],
        lifespan=lifespan,
    )
