"""Outgoing webhooks: ticket and SLA events POSTed, signed, to the URLs an administrator registers.

Queued in the transaction of the change: `emit` inserts one `webhook_deliveries` row per subscribed hook
with the caller's connection, so an event exists exactly when its change commits, and a rolled-back
change sends nothing. Delivered at least once: the `WebhookWorker` of every process claims due rows with
a conditional UPDATE that also moves `next_attempt_at` forward as a lease, so a delivery is attempted by
one process at a time, and a process that dies mid-attempt leaves a row that another claims once the
lease runs out. Receivers de-duplicate on the delivery id (`X-Chatsvc-Delivery`).

Each attempt is signed: `X-Chatsvc-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">` with the
hook's secret, `timestamp` being `X-Chatsvc-Timestamp` (Unix seconds). A 2xx answer delivers; anything
else (another status, a redirect, a timeout, a refused connection) is retried after BACKOFF, with jitter,
until MAX_ATTEMPTS, and then the delivery is `failed`. Every failed attempt leaves a line in the row's
`last_error` (its attempt log); the last status code is in `last_status_code`.

httpx is the HTTP client: asynchronous (no thread per request), explicit timeouts, and it does not
follow redirects unless asked, so a hook cannot be bounced to another address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatsvc.live.service import AgentRef, Clock, iso, utcnow
from chatsvc.ops.logs import Outage
from chatsvc.store.tables import tickets, webhook_deliveries, webhooks
from chatsvc.web.api import ApiError, int_param, json_body, require_agent

log = logging.getLogger("chatsvc.webhooks")

# Events, dotted noun.verb. Their payloads are specified in the OpenAPI document's `webhooks` section.
TICKET_CREATED: Final = "ticket.created"
TICKET_UPDATED: Final = "ticket.updated"
SLA_BREACHED: Final = "sla.breached"
CONVERSATION_TICKETED: Final = "conversation.ticketed"
EVENTS: Final = (TICKET_CREATED, TICKET_UPDATED, SLA_BREACHED, CONVERSATION_TICKETED)

# Delivery statuses.
PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
DELIVERY_STATUSES: Final = (PENDING, DELIVERED, FAILED)

# Wait after failed attempt n (1-based) before attempt n + 1; the attempt after the last wait is the last.
BACKOFF: Final = (timedelta(seconds=10), timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10),
                  timedelta(hours=1), timedelta(hours=3), timedelta(hours=6))
MAX_ATTEMPTS: Final = len(BACKOFF) + 1
JITTER: Final = 0.2  # each wait is stretched or shrunk by up to this share, so retries do not arrive in step

EVENT_HEADER: Final = "X-Chatsvc-Event"
DELIVERY_HEADER: Final = "X-Chatsvc-Delivery"
TIMESTAMP_HEADER: Final = "X-Chatsvc-Timestamp"
SIGNATURE_HEADER: Final = "X-Chatsvc-Signature"
USER_AGENT: Final = "chatsvc-webhooks/1"

ROLES: Final = ("admin", "manager")
MAX_WEBHOOKS: Final = 50
MAX_URL_CHARS: Final = 2000
ERROR_LINE_CHARS: Final = 300
RESPONSE_SNIPPET_BYTES: Final = 200


# ------------------------------------------------------------------ signing


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Chatsvc-Signature` value for a body sent at `timestamp` (Unix seconds, as text)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signature_valid(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver checks (in constant time); it should also refuse timestamps minutes old."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def delivery_body(delivery_id: int, event: str, occurred_at: datetime, payload: Mapping[str, Any]) -> bytes:
    """The POSTed JSON, the same bytes on every attempt of a delivery."""
    envelope = {"id": delivery_id, "event": event, "occurred_at": iso(occurred_at), "data": payload}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


# ------------------------------------------------------------------ queueing events


async def emit(conn: AsyncConnection, event: str, payload: Mapping[str, Any], now: datetime) -> int:
    """Queue `event` for every active hook subscribed to it, in the caller's transaction; returns how many."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}; known events: {', '.join(EVENTS)}")
    payload = dict(payload)
    json.dumps(payload)  # a payload that cannot be sent fails the change now, not the worker later
    hooks = (await conn.execute(select(webhooks.c.id, webhooks.c.events).where(webhooks.c.active.is_(True)))).all()
    targets = [hook.id for hook in hooks if event in (hook.events or ())]
    if targets:
        await conn.execute(insert(webhook_deliveries), [
            {"webhook_id": hook_id, "event": event, "payload": payload, "status": PENDING, "attempts": 0,
             "next_attempt_at": now, "created_at": now} for hook_id in targets])
    return len(targets)


def actor_json(actor: AgentRef | None) -> dict[str, Any] | None:
    return None if actor is None else {"id": actor.id, "name": actor.name}


async def emit_ticket(conn: AsyncConnection, event: str, ticket_id: int, now: datetime, *,
                      actor: AgentRef | None = None, **data: Any) -> int:
    """Queue a ticket event whose payload carries the ticket as the API shows it (read in this transaction,
    so after the change), plus `data`: `changes` for ticket.updated, `timer` and `due` for sla.breached,
    `conversation_id` and `reason` for conversation.ticketed."""
    from chatsvc.tickets.routes import ticket_json

    row = (await conn.execute(select(tickets).where(tickets.c.id == ticket_id))).one()
    payload: dict[str, Any] = {"ticket": ticket_json(row), **data}
    if event == TICKET_UPDATED:
        payload["actor"] = actor_json(actor)
    return await emit(conn, event, payload, now)


def changes(before: Any, after: Mapping[str, Any], fields: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """`{field: {"from", "to"}}` for the fields of `after` (all, or those named) that differ from `before`
    (a ticket row). Datetimes are written as the API writes them."""
    out = {}
    for name, value in after.items():
        if fields and name not in fields:
            continue
        old = getattr(before, name)
        if old != value:
            out[name] = {"from": _plain(old), "to": _plain(value)}
    return out


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


# ------------------------------------------------------------------ managing hooks


class WebhookError(ValueError):
    """A hook that may not be registered; the message says why."""


def validate_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise WebhookError("url is required")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise WebhookError(f"url is limited to {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise WebhookError("url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookError("url must start with http:// or https://")
    if not parts.hostname:
        raise WebhookError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("url must not carry credentials; receivers authenticate deliveries by their signature")
    if parts.fragment:
        raise WebhookError("url must not have a #fragment")
    return url


def validate_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise WebhookError(f"events must be a non-empty list of: {', '.join(EVENTS)}")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise WebhookError(f"unknown events {', '.join(unknown)}; known events: {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


def webhook_json(row: Any) -> dict[str, Any]:
    """A hook as the API lists it: never with its secret."""
    return {"id": row.id, "url": row.url, "events": list(row.events), "active": bool(row.active),
            "created_at": iso(row.created_at)}


async def create_webhook(engine: AsyncEngine, url: Any, events: Any, now: datetime) -> tuple[dict[str, Any], str]:
    """Register a hook; returns it and its secret, which is shown this once and never again."""
    url, events = validate_url(url), validate_events(events)
    secret = new_secret()
    hook_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        count = (await conn.execute(select(func.count()).select_from(webhooks)
                                    .where(webhooks.c.active.is_(True)))).scalar_one()
        if count >= MAX_WEBHOOKS:
            raise WebhookError(f"at most {MAX_WEBHOOKS} webhooks can be registered; delete one first")
        await conn.execute(insert(webhooks).values(id=hook_id, url=url, secret=secret, events=events, active=True,
                                                   created_at=now))
        row = (await conn.execute(select(webhooks).where(webhooks.c.id == hook_id))).one()
    log.info("webhook %s registered for %s", hook_id, ", ".join(events))
    return webhook_json(row), secret


async def delete_webhook(engine: AsyncEngine, hook_id: str, now: datetime) -> bool:
    """Deactivate a hook, erase its secret and give up its pending deliveries. Its delivery log stays in the
    store; the API no longer shows either. False when there is no such active hook."""
    async with engine.begin() as conn:
        gone = await conn.execute(update(webhooks).where(webhooks.c.id == hook_id, webhooks.c.active.is_(True))
                                  .values(active=False, secret=""))
        if gone.rowcount != 1:
            return False
        await conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.webhook_id == hook_id, webhook_deliveries.c.status == PENDING)
            .values(status=FAILED, next_attempt_at=now,
                    last_error=func.coalesce(webhook_deliveries.c.last_error + "\n", "") + "webhook deleted"))
    log.info("webhook %s deleted", hook_id)
    return True


def delivery_json(row: Any) -> dict[str, Any]:
    errors = (row.last_error or "").splitlines()
    return {"id": row.id, "webhook_id": row.webhook_id, "event": row.event, "status": row.status,
            "attempts": row.attempts, "next_attempt_at": iso(row.next_attempt_at) if row.status == PENDING else None,
            "last_status_code": row.last_status_code, "last_error": errors[-1] if errors else None,
            "errors": errors, "payload": row.payload, "created_at": iso(row.created_at),
            "delivered_at": iso(row.delivered_at)}


# ------------------------------------------------------------------ delivering


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code, or the error that kept it from getting one."""

    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class _Claimed:
    id: int
    webhook_id: str
    event: str
    payload: dict[str, Any]
    attempt: int  # this attempt's number; also the fencing token of the claim
    created_at: datetime
    last_error: str | None


def retry_delay(failed_attempts: int, jitter: float) -> timedelta:
    """The wait after `failed_attempts` failures; `jitter` in [0, 1) picks a point in ±JITTER."""
    base = BACKOFF[min(failed_attempts, len(BACKOFF)) - 1]
    return base * (1 - JITTER + 2 * JITTER * jitter)


def _describe(exc: BaseException) -> str:
    """The exception's name and the first message found down its chain (httpx's are often empty)."""
    cause: BaseException | None = exc
    while cause is not None and not str(cause):
        cause = cause.__cause__ or cause.__context__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None and cause is not exc else str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_LINE_CHARS else text[:ERROR_LINE_CHARS - 1] + "…"


class WebhookWorker:
    """Delivers due webhook deliveries, every `interval` seconds, in every process that runs one."""

    def __init__(self, engine: AsyncEngine, clock: Clock = utcnow, *, interval: float = 1.0, batch: int = 20,
                 timeout: float = 10.0, lease: timedelta = timedelta(minutes=2),
                 jitter: Callable[[], float] = random.random) -> None:
        if lease.total_seconds() < 2 * timeout:
            raise ValueError("the lease must be at least twice an attempt's timeout, or two processes could "
                             "send the same delivery at once")
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self.timeout = timeout
        self.lease = lease
        self.jitter = jitter
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(log, "webhook delivery")  # the store down: one warning, not a traceback a round

    async def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run_forever(), name="chatsvc-webhooks")

    async def stop(self) -> None:
        """Stop sending. An attempt cut short here is retried, by any process, once its lease runs out."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _run_forever(self) -> None:
        while True:
            try:
                attempted = await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive a bad round (the store restarting)
                self._outage.failed(exc)
                attempted = 0
            else:
                self._outage.succeeded()
            if attempted < self.batch:  # a full batch means more may be due: go on at once
                await asyncio.sleep(self.interval)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env: HTTP(S)_PROXY, NO_PROXY and SSL_CERT_FILE apply, as operators expect of outbound calls.
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False,
                                             headers={"User-Agent": USER_AGENT})
        return self._client

    async def run_once(self) -> int:
        """Claim the deliveries due now and attempt them; returns how many were attempted."""
        claimed = await self._claim(self.clock())
        if not claimed:
            return 0
        async with self.engine.connect() as conn:
            hooks = {row.id: row for row in (await conn.execute(select(webhooks).where(
                webhooks.c.id.in_({c.webhook_id for c in claimed})))).all()}
        results = await asyncio.gather(*(self._deliver(c, hooks.get(c.webhook_id)) for c in claimed),
                                       return_exceptions=True)
        for job, result in zip(claimed, results, strict=True):
            if isinstance(result, Exception):  # its lease runs out and another round retries it
                log.error("webhook delivery %d: result not recorded (%s)", job.id, type(result).__name__)
        return len(claimed)

    async def _claim(self, now: datetime) -> list[_Claimed]:
        d = webhook_deliveries
        due = (select(d.c.id).where(d.c.status == PENDING, d.c.next_attempt_at <= now)
               .order_by(d.c.next_attempt_at, d.c.id).limit(self.batch)
               .with_for_update(skip_locked=True))  # PostgreSQL: processes take different rows; SQLite: no-op
        # The WHERE is checked again on the row as it is when updated: a row another process claimed
        # meanwhile has moved its next_attempt_at past now and is left alone.
        claim = (update(d).where(d.c.id.in_(due.scalar_subquery()), d.c.status == PENDING, d.c.next_attempt_at <= now)
                 .values(next_attempt_at=now + self.lease, attempts=d.c.attempts + 1)
                 .returning(d.c.id, d.c.webhook_id, d.c.event, d.c.payload, d.c.attempts, d.c.created_at,
                            d.c.last_error))
        async with self.engine.begin() as conn:
            rows = (await conn.execute(claim)).all()
        return [_Claimed(r.id, r.webhook_id, r.event, r.payload, r.attempts, r.created_at, r.last_error)
                for r in sorted(rows, key=lambda r: r.id)]

    async def _deliver(self, job: _Claimed, hook: Any) -> None:
        started = self.clock()
        if hook is None or not hook.active:
            await self._record(job, Outcome(None, "webhook deleted"), started, final=True)
            return
        try:
            outcome = await self._post(job, hook, started)
        except Exception as exc:  # whatever went wrong, the attempt is logged and retried
            log.exception("webhook delivery %d: unexpected error", job.id)
            outcome = Outcome(None, f"{type(exc).__name__}: {exc}")
        await self._record(job, outcome, started)

    async def _post(self, job: _Claimed, hook: Any, started: datetime) -> Outcome:
        body = delivery_body(job.id, job.event, job.created_at, job.payload)
        timestamp = str(int(started.timestamp()))
        headers = {"Content-Type": "application/json", EVENT_HEADER: job.event, DELIVERY_HEADER: str(job.id),
                   TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(hook.secret, timestamp, body)}
        try:
            # One deadline for the whole attempt (httpx's timeouts are per phase), well inside the lease.
            async with asyncio.timeout(self.timeout), \
                    self._http().stream("POST", hook.url, content=body, headers=headers) as response:
                if 200 <= response.status_code < 300:
                    return Outcome(response.status_code, None)
                snippet = b""
                async for chunk in response.aiter_bytes():
                    snippet += chunk
                    if len(snippet) >= RESPONSE_SNIPPET_BYTES:
                        break
        except TimeoutError:
            return Outcome(None, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(None, _describe(exc))
        text = snippet[:RESPONSE_SNIPPET_BYTES].decode(errors="replace")
        reason = response.reason_phrase or ""
        return Outcome(response.status_code, f"HTTP {response.status_code} {reason}".rstrip()
                       + (f": {text}" if text.strip() else ""))

    async def _record(self, job: _Claimed, outcome: Outcome, started: datetime, *, final: bool = False) -> None:
        now = self.clock()
        d = webhook_deliveries
        values: dict[str, Any] = {"last_status_code": outcome.status_code}
        if outcome.delivered:
            values.update(status=DELIVERED, delivered_at=now, next_attempt_at=now)
        else:
            line = _one_line(f"attempt {job.attempt} at {iso(started)}: {outcome.error or 'no answer'}")
            values["last_error"] = f"{job.last_error}\n{line}" if job.last_error else line
            if final or job.attempt >= MAX_ATTEMPTS:
                values.update(status=FAILED, next_attempt_at=now)
            else:
                values["next_attempt_at"] = now + retry_delay(job.attempt, self.jitter())
        async with self.engine.begin() as conn:
            # Only the holder of this attempt's claim may write its result (a process that outlived its
            # lease finds the attempt count moved on).
            written = await conn.execute(update(d).where(d.c.id == job.id, d.c.status == PENDING,
                                                         d.c.attempts == job.attempt).values(**values))
        if written.rowcount != 1:
            log.warning("webhook delivery %d: attempt %d finished after its lease; result dropped", job.id,
                        job.attempt)
        elif outcome.delivered:
            log.info("webhook delivery %d (%s) delivered on attempt %d", job.id, job.event, job.attempt)
        else:
            log.warning("webhook delivery %d (%s) attempt %d failed: %s%s", job.id, job.event, job.attempt,
                        outcome.error, "; giving up" if values.get("status") == FAILED else "")


# ------------------------------------------------------------------ REST API


def _engine(request: Request) -> AsyncEngine:
    return request.app.state.runtime.service.engine  # type: ignore[no-any-return]


def _now(request: Request) -> datetime:
    return request.app.state.runtime.service.clock()  # type: ignore[no-any-return]


async def list_webhooks_route(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    async with _engine(request).connect() as conn:
        rows = (await conn.execute(select(webhooks).where(webhooks.c.active.is_(True))
                                   .order_by(webhooks.c.created_at, webhooks.c.id))).all()
    return JSONResponse({"items": [webhook_json(r) for r in rows]})


async def create_webhook_route(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    data = await json_body(request)
    unknown = set(data) - {"url", "events"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
    try:
        hook, secret = await create_webhook(_engine(request), data.get("url"), data.get("events"), _now(request))
    except WebhookError as exc:
        raise ApiError(422, "invalid_webhook", str(exc)) from None
    return JSONResponse({**hook, "secret": secret}, status_code=201)


async def delete_webhook_route(request: Request) -> Response:
    await require_agent(request, ROLES)
    if not await delete_webhook(_engine(request), request.path_params["id"], _now(request)):
        raise ApiError(404, "not_found", "no such webhook")
    return Response(status_code=204)


async def list_deliveries_route(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    hook_id = request.path_params["id"]
    status = request.query_params.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    d = webhook_deliveries
    where = [d.c.webhook_id == hook_id] + ([d.c.status == status] if status else [])
    async with _engine(request).connect() as conn:
        hook = (await conn.execute(select(webhooks.c.id).where(webhooks.c.id == hook_id,
                                                               webhooks.c.active.is_(True)))).first()
        if hook is None:
            raise ApiError(404, "not_found", "no such webhook")
        total = (await conn.execute(select(func.count()).select_from(d).where(*where))).scalar_one()
        rows = (await conn.execute(select(d).where(*where).order_by(d.c.id.desc()).limit(limit).offset(offset))).all()
    return JSONResponse({"items": [delivery_json(r) for r in rows], "total": total, "limit": limit,
                         "offset": offset})


routes = [
    Route("/api/v1/webhooks", list_webhooks_route, methods=["GET"]),
    Route("/api/v1/webhooks", create_webhook_route, methods=["POST"]),
    Route("/api/v1/webhooks/{id}", delete_webhook_route, methods=["DELETE"]),
    Route("/api/v1/webhooks/{id}/deliveries", list_deliveries_route, methods=["GET"]),
]
