"""Prometheus metrics (prometheus-client), served at /metrics in the text exposition format.

Every server process counts for itself and exposes its own figures: Prometheus scrapes each process
(each is a target) and `sum()` across instances aggregates them. The exception are the `chatsvc_store_*`
gauges, read from the shared database at scrape time: every process reports the same store-wide value, so
aggregate those with `max()`. See docs/operations.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("chatsvc.ops")
disable_created_metrics()  # the `_created` series double the output and no dashboard reads them

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

WS_OPEN = Gauge("chatsvc_ws_connections", "Websocket sessions open now in this process", ["endpoint"])
WS_OPENED = Counter("chatsvc_ws_connections_opened", "Websocket sessions opened", ["endpoint"])
WS_CLOSED = Counter("chatsvc_ws_connections_closed", "Websocket sessions ended, by close code (client: the "
                    "client went away)", ["endpoint", "code"])
WS_FRAMES = Counter("chatsvc_ws_frames_received", "Websocket frames received from clients", ["endpoint"])
MESSAGES = Counter("chatsvc_messages", "Chat messages and notes stored (retried duplicates not counted)",
                   ["kind"])
MESSAGE_LATENCY = Histogram("chatsvc_message_ack_seconds", "From receiving a message frame to its ack: "
                            "validated, stored and committed", ["kind"], buckets=_LATENCY_BUCKETS)
OFFERS = Counter("chatsvc_offers", "Offers of waiting chats to agents, by outcome", ["outcome"])
SLA_BREACHES = Counter("chatsvc_sla_breaches", "SLA timers recorded as breached", ["timer"])
RATE_LIMITED = Counter("chatsvc_rate_limited", "Requests and frames refused by a rate limit", ["limit"])
RATE_LIMIT_SHARED = Counter("chatsvc_rate_limit_shared", "Requests other processes admitted, charged to this "
                            "process's rate limits (with Redis: the limits are cluster-wide)", ["limit"])
HTTP_REQUESTS = Counter("chatsvc_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram("chatsvc_http_request_seconds", "HTTP request duration", ["method", "route"],
                         buckets=_LATENCY_BUCKETS)
OUTBOX = Gauge("chatsvc_ws_outbox_frames", "Frames queued for sending in this process's websocket sessions")
STORE_CONVERSATIONS = Gauge("chatsvc_store_conversations", "Open conversations by state, store-wide (the same "
                            "in every process: aggregate with max)", ["state"])
STORE_TICKETS = Gauge("chatsvc_store_open_tickets", "Unresolved tickets by status, store-wide (aggregate with max)",
                      ["status"])

# The states conversations pass through, not the ones they end in: counted at every scrape through the
# (state, waiting_since) index, so the cost follows the live conversations, not the whole history.
CONVERSATION_STATES = ("bot", "waiting", "with_agent", "ticket_pending")
OPEN_TICKET_STATUSES = ("new", "open", "in_progress", "pending_customer", "escalated")

for _state in CONVERSATION_STATES:
    STORE_CONVERSATIONS.labels(_state)
for _status in OPEN_TICKET_STATUSES:
    STORE_TICKETS.labels(_status)
for _outcome in ("offered", "accepted", "declined", "expired"):
    OFFERS.labels(_outcome)
for _kind in ("visitor", "agent", "note"):
    MESSAGES.labels(_kind)


def watch_outbox(connections: Callable[[], Iterable[Any]]) -> None:
    """Report the queued frames of the process's live sessions at each scrape."""
    OUTBOX.set_function(lambda: float(sum(c.outbox.qsize() for c in list(connections()))))


async def refresh_store_gauges(engine: Any) -> None:
    from chatsvc.store.tables import conversations, tickets

    async with engine.connect() as conn:
        by_state = dict((await conn.execute(
            select(conversations.c.state, func.count()).where(conversations.c.state.in_(CONVERSATION_STATES))
            .group_by(conversations.c.state))).all())
        by_status = dict((await conn.execute(
            select(tickets.c.status, func.count()).where(tickets.c.status.in_(OPEN_TICKET_STATUSES))
            .group_by(tickets.c.status))).all())
    for state in CONVERSATION_STATES:
        STORE_CONVERSATIONS.labels(state).set(by_state.get(state, 0))
    for status in OPEN_TICKET_STATUSES:
        STORE_TICKETS.labels(status).set(by_status.get(status, 0))


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_allowed(request: Request, access: str, token: str) -> bool:
    if access == "open":
        return True
    if access == "token":
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
    # loopback: the peer itself, and no proxy in between (a proxy on this machine forwards the client's
    # address, which uvicorn then reports instead of its own).
    forwarded = "x-forwarded-for" in request.headers or "forwarded" in request.headers
    return not forwarded and _loopback(request.client.host if request.client else None)


async def metrics_endpoint(request: Request) -> Response:
    runtime = request.app.state.runtime
    settings = runtime.settings
    if not metrics_allowed(request, settings.metrics_access, settings.metrics_token):
        return PlainTextResponse("metrics are not available to this client (CHATSVC_METRICS_ACCESS)\n",
                                 status_code=403, headers={"Cache-Control": "no-store"})
    try:
        await refresh_store_gauges(runtime.service.engine)
    except Exception as exc:  # noqa: BLE001 - a scrape must still answer when the store is down
        log.warning("store gauges not refreshed: %s", exc.__class__.__name__)
    # The classic text format (0.0.4): what every Prometheus version and scraper reads.
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_PLAIN_0_0_4,
                    headers={"Cache-Control": "no-store"})


class HttpMetrics:
    """Pure ASGI middleware: counts each HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time

        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(scope)
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)


_routes_by_endpoint: dict[Any, list[Any]] = {}


def route_template(scope: Scope) -> str:
    """`/api/v1/tickets/{id}` rather than `/api/v1/tickets/1042`, so labels stay few."""
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return "unmatched"
    path: str = scope.get("path", "")
    mounted = [r for r in getattr(scope.get("app"), "routes", []) if getattr(r, "app", None) is endpoint]
    if mounted:  # static files: one label for everything under the mount
        return f"{mounted[0].path}/{{path}}"
    if not scope.get("path_params"):
        return path
    routes = _routes_by_endpoint.get(endpoint)
    if routes is None:
        routes = _routes_by_endpoint[endpoint] = [
            r for r in getattr(scope.get("app"), "routes", []) if getattr(r, "endpoint", None) is endpoint]
    for route in routes:
        if route.path_regex.match(path):
            return str(route.path)
    return "unmatched"
