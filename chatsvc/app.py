"""The composition root: settings in, one ASGI app out. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from chatsvc.broker import Broker, create_broker
from chatsvc.console import auth as console_auth
from chatsvc.console.live import routes as console_live_routes
from chatsvc.console.metrics import routes as console_metrics_routes
from chatsvc.console.tickets import routes as console_ticket_routes
from chatsvc.console.users import routes as console_user_routes
from chatsvc.domain.sla import policy_named
from chatsvc.gaps.pages import routes as gap_pages
from chatsvc.gaps.routes import routes as gap_routes
from chatsvc.gaps.service import GapService
from chatsvc.kb_suggest.routes import routes as kb_routes
from chatsvc.kb_suggest.store import ArticleStore, KnowledgeBase
from chatsvc.live.service import ChatService
from chatsvc.ops import metrics as ops_metrics
from chatsvc.ops.logs import RequestContext
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.tickets.metrics import routes as metrics_routes
from chatsvc.tickets.routes import routes as ticket_routes
from chatsvc.tickets.service import TicketService
from chatsvc.tickets.webhooks import WebhookWorker
from chatsvc.tickets.webhooks import routes as webhook_routes
from chatsvc.web.api import ApiError, api_error_handler
from chatsvc.web.openapi import routes as openapi_routes
from chatsvc.web.security import SecurityHeaders, refuse_flooding_socket, start_limit_exchange
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
    draining: bool = False  # set on SIGTERM: /readyz fails and new sockets are refused with 503


def load_classifier(models_dir: str = "") -> Any:
    """The shipped or operator-trained classifier; without one, conversations keep the rules' defaults."""
    try:
        from chatsvc.classifier import Classifier

        return Classifier.load(models_dir or None)
    except Exception as exc:  # noqa: BLE001 - a broken artifact must not keep chat down; it is logged
        log.warning("classifier not loaded (%s); conversations get no predicted category or priority", exc)
        return None


async def drain(app: Starlette) -> None:
    """Graceful shutdown, before uvicorn's own: fail /readyz, refuse new sockets with HTTP 503 (a proxy
    retries them on another process), then close every open socket with 1001 (going away) so its client
    reconnects elsewhere and resumes, and wait until their sessions are torn down."""
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    if runtime is None:
        return
    runtime.draining = True
    settings = runtime.settings
    log.info("draining %d socket(s)", len(runtime.connections))
    if settings.drain_delay > 0:
        await asyncio.sleep(settings.drain_delay)
    open_now = list(runtime.connections)
    for connection in open_now:
        connection.abort(CloseCode.GOING_AWAY, "server shutting down: reconnect and resume")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.finished.wait() for c in open_now)), settings.drain_timeout)
    if runtime.connections:
        log.warning("%d socket(s) still open after %.0f s of draining", len(runtime.connections),
                    settings.drain_timeout)


class GracefulServer(uvicorn.Server):
    """uvicorn closes websockets with 1012 on shutdown; chatsvc drains its own first (see `drain`)."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: Any = None) -> None:
        if not self.force_exit:
            # uvicorn logs each refused handshake (HTTP 503) as an error; during a drain it is expected.
            logging.getLogger("uvicorn.error").addFilter(_quiet_refusals)
            draining = asyncio.ensure_future(drain(self.app))
            while not draining.done() and not self.force_exit:  # a second Ctrl-C stops waiting
                await asyncio.wait({draining}, timeout=0.1)
            if not draining.done():
                draining.cancel()
                await asyncio.wait({draining})
            elif draining.exception() is not None:
                log.warning("drain failed: %r", draining.exception())
        await super().shutdown(sockets)


def _quiet_refusals(record: logging.LogRecord) -> bool:
    return record.getMessage() != "ASGI callable returned without completing handshake."


def serve(app: Starlette, **config: Any) -> None:
    """`uvicorn.run` with the drain on SIGTERM and SIGINT."""
    GracefulServer(uvicorn.Config(app, **config), app).run()


async def refuse_while_draining(websocket: WebSocket) -> bool:
    """A socket opened on a draining process is refused with HTTP 503, which nginx retries elsewhere."""
    runtime: Runtime = websocket.app.state.runtime
    if not runtime.draining:
        return False
    await websocket.send_denial_response(JSONResponse(
        {"status": "draining"}, status_code=503, headers={"Retry-After": "1"}))
    return True


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
        classifier = await asyncio.to_thread(load_classifier, settings.models_dir)
        # A model written by `chatsvc train` into the models directory is picked up without a restart.
        reloading = (asyncio.create_task(classifier.watch(settings.classifier_reload_interval))
                     if classifier is not None and settings.classifier_reload_interval > 0 else None)
        service = ChatService(engine, broker, settings, secret_key=secret, kb=kb, classifier=classifier)
        tickets = TicketService(service)
        service.tickets = tickets
        service.on_ticket_pending = tickets.on_ticket_pending
        service.on_ticketed_message = tickets.on_visitor_message
        await service.start()
        await tickets.start()  # retries conversions that failed (CHATSVC_TICKET_RETRY_INTERVAL)
        limit_exchange = await start_limit_exchange(settings)  # with Redis: cluster-wide rate limits
        webhook_worker = WebhookWorker(engine, service.clock)
        await webhook_worker.start()
        app.state.gaps = await GapService.started(engine, kb, settings, clock=service.clock)
        app.state.runtime = Runtime(settings, service, broker, articles, kb)
        ops_metrics.watch_outbox(lambda: app.state.runtime.connections)
        # Everything loaded so far (modules, the help-center index, the classifier) lives as long as the
        # process: moved out of the collector's sight, a full collection under load scans only what the
        # live chats create, which keeps its pauses short.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            runtime: Runtime = app.state.runtime
            # Going away: clients reconnect (to this process after a restart, or to another) and resume.
            for connection in list(runtime.connections):
                connection.abort(CloseCode.GOING_AWAY, "server shutting down")
            if reloading is not None:
                reloading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reloading
            await webhook_worker.stop()
            if limit_exchange is not None:
                await limit_exchange.stop()
            await tickets.stop()
            await app.state.gaps.stop()
            await service.stop()
            await kb.stop()
            await broker.disconnect()
            await engine.dispose()

    async def visitor_socket(websocket: WebSocket) -> None:
        runtime: Runtime = websocket.app.state.runtime
        if await refuse_while_draining(websocket) or await refuse_flooding_socket(websocket):
            return
        if not origin_allowed(websocket, runtime.settings.origin_allowlist):
            await websocket.close(CloseCode.ORIGIN_FORBIDDEN)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept()
        await VisitorConnection(websocket, runtime.service, runtime.connections).run()

    async def agent_socket(websocket: WebSocket) -> None:
        runtime: Runtime = websocket.app.state.runtime
        if await refuse_while_draining(websocket) or await refuse_flooding_socket(websocket):
            return
        if not origin_allowed(websocket, ("self", *runtime.settings.origin_allowlist)):
            await websocket.close(CloseCode.ORIGIN_FORBIDDEN)  # the console is on this origin; no other page
            return
        await websocket.accept()
        await AgentConnection(websocket, runtime.service, runtime.connections).run()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        if runtime.draining:
            return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
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
        exception_handlers={ApiError: api_error_handler, **console_auth.exception_handlers},
        routes=[
            # Websocket routes first: the router tries routes in order, and handshakes are the hot path.
            WebSocketRoute("/ws/visitor", visitor_socket),
            WebSocketRoute("/ws/agent", agent_socket),
            *kb_routes,
            *gap_routes,
            *gap_pages,
            *widget_routes,
            *ticket_routes,
            *webhook_routes,
            *metrics_routes,
            *openapi_routes,
            *console_auth.routes,
            *console_live_routes,
            *console_user_routes,
            *console_ticket_routes,
            *console_metrics_routes,
            Route("/", index),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", ops_metrics.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
        # Outermost first: ids and timing around everything, then the headers every response carries.
        middleware=[Middleware(RequestContext), Middleware(ops_metrics.HttpMetrics),
                    Middleware(SecurityHeaders, settings=settings)],
    )
