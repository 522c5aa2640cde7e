"""Security headers on every response, a body-size cap on every request, and the per-address and
per-visitor rate limits (docs/security.md).

The headers are set by one ASGI middleware so that no route can forget them: a page that sends a policy of
its own (the widget frame, the demo page) keeps it; the console gets the strict console policy; every
other page at least refuses to be framed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from chatsvc.ops.logs import Outage
from chatsvc.ops.metrics import RATE_LIMIT_SHARED, RATE_LIMITED
from chatsvc.settings import Settings

log = logging.getLogger("chatsvc.security")

CONSOLE_PREFIXES = ("/console", "/static/console")
MAX_BODY_BYTES = 1_000_000  # the same cap as the REST API's JSON bodies; chatsvc takes no file uploads
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")


def console_csp(host: str) -> str:
    """Scripts, styles, images and fetches only from this origin; sockets only to this host; never framed."""
    sockets = f" ws://{host} wss://{host}" if _HOST.fullmatch(host) else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'{sockets}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
            "object-src 'none'")


# Pages outside the console (help center, CSAT survey, status page) style themselves inline; what matters
# there is that no other site can frame them (clickjacking) or re-point their links and forms.
PAGE_CSP = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"


class SecurityHeaders:
    """Pure ASGI middleware: adds the security headers and refuses request bodies over MAX_BODY_BYTES."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hsts = f"max-age={settings.hsts_max_age}; includeSubDomains" if settings.hsts_max_age > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        console = path.startswith(CONSOLE_PREFIXES)
        host = _header(scope, b"host")

        length = _header(scope, b"content-length")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            await _too_large(send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge
            return message

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}

                def add(name: bytes, value: str) -> None:
                    if name not in present:
                        headers.append((name, value.encode("latin-1")))
                        present.add(name)

                add(b"x-content-type-options", "nosniff")
                add(b"referrer-policy", "strict-origin-when-cross-origin")
                if self.hsts:
                    add(b"strict-transport-security", self.hsts)
                content_type = dict(headers).get(b"content-type", b"").decode("latin-1").lower()
                if console:
                    add(b"content-security-policy", console_csp(host))
                    add(b"x-frame-options", "DENY")
                elif content_type.startswith("text/html"):
                    add(b"content-security-policy", PAGE_CSP)
                    if b"frame-ancestors" not in dict(headers).get(b"content-security-policy", b""):
                        add(b"x-frame-options", "DENY")
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await _too_large(send)


class BodyTooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


async def _too_large(send: Send) -> None:
    body = (b'{"error": {"code": "too_large", "message": "request bodies are limited to '
            + str(MAX_BODY_BYTES).encode() + b' bytes"}}')
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ rate limits


class KeyedLimiter:
    """A token bucket per key (a client address, a visitor): `per_minute` on average, bursts of as many.

    The table is bounded: the least recently used keys are forgotten first, which only ever gives a
    forgotten client a fresh bucket. 0 per minute means no limit. Each server process keeps its own table;
    with Redis, `LimitExchange` makes it cluster-wide by charging each process's buckets with what the
    others admitted (`taken` collects this process's side between two exchanges).
    """

    def __init__(self, per_minute: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)
        self.taken: dict[str, int] | None = None  # admitted per key since the last exchange, when shared

    def take(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if allowed and self.taken is not None:
            self.taken[key] = self.taken.get(key, 0) + 1
        return allowed

    def charge(self, key: str, count: int) -> None:
        """Take `count` tokens that other processes admitted for `key` out of this process's bucket. A
        burst admitted by several processes at once can leave the bucket in debt, down to minus one burst:
        the client then waits that much longer."""
        if self.per_minute <= 0 or count <= 0:
            return
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        self._buckets[key] = (max(-self.burst, tokens - count), now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key` has a token again."""
        tokens, _ = self._buckets.get(key, (self.burst, 0.0))
        return max(1, int((1.0 - tokens) / self.rate) + 1) if self.rate else 1


@dataclass
class Limits:
    """The limiters of one server process, built from its settings."""

    connects: KeyedLimiter  # per client address, both websocket endpoints
    visitor_connects: KeyedLimiter  # per visitor, from any address
    visitor_messages: KeyedLimiter  # per visitor, over all their connections
    ip_messages: KeyedLimiter  # per client address, over all visitors behind it
    contact: KeyedLimiter  # per client address, the public contact form
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def by_name(self) -> dict[str, KeyedLimiter]:
        """The limiters by the names they have in metrics and between processes."""
        return {"connect": self.connects, "visitor_connect": self.visitor_connects,
                "visitor_message": self.visitor_messages, "ip_message": self.ip_messages, "contact": self.contact}

    def address_exempt(self, address: str | None) -> bool:
        if not address:
            return True  # no peer address (a unix socket): nothing to key on
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.exempt)

    def allow_address(self, limiter: KeyedLimiter, address: str | None) -> bool:
        return self.address_exempt(address) or limiter.take(address or "")


def _networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in spec.split(","):
        item = item.strip()
        if item:
            nets.append(ipaddress.ip_network(item, strict=False))
    return tuple(nets)


@lru_cache(maxsize=32)
def limits_for(settings: Settings) -> Limits:
    """One set of limiters per settings object, that is per server process (tests start several apps)."""
    return Limits(connects=KeyedLimiter(settings.connect_rate),
                  visitor_connects=KeyedLimiter(settings.connect_rate),
                  visitor_messages=KeyedLimiter(settings.visitor_message_rate),
                  ip_messages=KeyedLimiter(settings.ip_message_rate),
                  contact=KeyedLimiter(settings.contact_rate),
                  exempt=_networks(settings.rate_limit_exempt))


class LimitExchange:
    """Makes the rate limits of this process cluster-wide, through a Redis stream all processes share.

    `take` stays local and synchronous (no round trip on the message path). Every `interval` seconds a
    background task sends, in one pipelined round trip, what this process admitted per limit and key since
    the last exchange (one XADD) and reads what the others sent meanwhile (XREAD from the last entry it
    saw), charging that to its own buckets. Each bucket thus approximates one bucket shared by the cluster:
    a client's requests spread over the processes are counted together, within one exchange interval.

    When Redis cannot be reached, each process goes on counting for itself (one warning, and an info line
    when the exchange recovers); what was admitted meanwhile is not sent later, and a process that
    reconnects reads only what is new.
    """

    STREAM = "chatsvc:rate-limits"
    # Entries kept, about one per process and interval: with 4 processes at 0.25 s, a minute, far more than
    # the quarter of a second a process reads behind; small, since a busy entry holds hundreds of keys.
    STREAM_LENGTH = 1_000
    READ_COUNT = 500  # entries read per round trip

    def __init__(self, limits: Limits, redis_url: str, interval: float, *, node: str | None = None) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        url, prefix = _split_channel_prefix(redis_url)
        self.limits = limits
        self.limiters = limits.by_name()
        self.interval = interval
        self.stream = f"{prefix}{self.STREAM}"  # the broker's channel_prefix keeps deployments apart
        self.node = (node or uuid.uuid4().hex).encode()
        # Short timeouts and no retries: a slow or absent Redis costs a round, never the request path.
        self.redis = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0),
                                    client_name="chatsvc-limits", decode_responses=False)
        self._last_id: bytes | None = None  # the last stream entry read; None: start from the newest
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(log, "rate-limit exchange", "each process counts for itself until it recovers")

    async def start(self) -> None:
        """Before the process serves: what others admit from now on is charged here."""
        try:
            await self._read_from_newest()
        except Exception as exc:  # noqa: BLE001 - Redis down at start: per process until it is back
            self._outage.failed(exc)
        for limiter in self.limiters.values():
            limiter.taken = {}
        self._task = asyncio.create_task(self._run_forever(), name="chatsvc-rate-limits")

    async def _read_from_newest(self) -> None:
        newest = await self.redis.xrevrange(self.stream, count=1)
        self._last_id = newest[0][0] if newest else b"0-0"

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for limiter in self.limiters.values():
            limiter.taken = None
        await self.redis.aclose()

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.exchange()
            except Exception as exc:  # noqa: BLE001 - limits fall back to per process; the task goes on
                self._last_id = None  # after an outage, read only what is new (the rest is stale)
                self._outage.failed(exc)
            else:
                self._outage.succeeded()

    async def exchange(self) -> None:
        """One round: send what this process admitted, charge what the others did."""
        taken = {}
        for name, limiter in self.limiters.items():
            if limiter.taken:
                taken[name], limiter.taken = limiter.taken, {}
        if self._last_id is None:
            await self._read_from_newest()
        pipe = self.redis.pipeline(transaction=False)
        if taken:
            pipe.xadd(self.stream, {b"node": self.node, b"taken": json.dumps(taken).encode()},
                      maxlen=self.STREAM_LENGTH, approximate=True)
        pipe.xread({self.stream: self._last_id}, count=self.READ_COUNT)
        read = (await pipe.execute())[-1]
        while read:
            entries = read[0][1]
            for entry_id, fields in entries:
                self._last_id = entry_id
                if fields.get(b"node") != self.node:
                    self._charge(fields.get(b"taken", b"{}"))
            if len(entries) < self.READ_COUNT:
                break
            read = await self.redis.xread({self.stream: self._last_id}, count=self.READ_COUNT)

    def _charge(self, raw: bytes) -> None:
        try:
            taken = json.loads(raw)
        except ValueError:
            return
        if not isinstance(taken, dict):
            return
        for name, counts in taken.items():
            limiter = self.limiters.get(name)
            if limiter is None or not isinstance(counts, dict):
                continue  # a limit another version of chatsvc has and this one does not
            total = 0
            for key, count in counts.items():
                if isinstance(count, int) and count > 0:
                    limiter.charge(str(key), count)
                    total += count
            RATE_LIMIT_SHARED.labels(name).inc(total)


def _split_channel_prefix(url: str) -> tuple[str, str]:
    """The Redis URL without the broker's `channel_prefix` query parameter, and that prefix ('' if none)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for key, value in query if key == "channel_prefix"), "")
    kept = [(key, value) for key, value in query if key != "channel_prefix"]
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


async def start_limit_exchange(settings: Settings) -> LimitExchange | None:
    """With CHATSVC_REDIS_URL and CHATSVC_RATE_LIMIT_SYNC > 0, the exchange that makes this process's
    limits cluster-wide, started; otherwise None (each process counts for itself)."""
    if not settings.redis_url or settings.rate_limit_sync <= 0:
        return None
    exchange = LimitExchange(limits_for(settings), settings.redis_url, settings.rate_limit_sync)
    await exchange.start()
    return exchange


def client_address(scope_client: Iterable[object] | None) -> str | None:
    """The peer address uvicorn reports: the client's own, or the one a trusted proxy forwarded
    (uvicorn trusts X-Forwarded-For from FORWARDED_ALLOW_IPS, 127.0.0.1 by default)."""
    if not scope_client:
        return None
    host = list(scope_client)[0]
    return str(host) if host else None


async def refuse_flooding_socket(websocket: WebSocket) -> bool:
    """Over CHATSVC_CONNECT_RATE, a new socket from the same address is refused at the handshake with HTTP
    429 and Retry-After; returns True when it was refused."""
    limits = limits_for(websocket.app.state.runtime.settings)
    address = client_address(websocket.client)
    if limits.allow_address(limits.connects, address):
        return False
    RATE_LIMITED.labels("connect").inc()
    retry = limits.connects.retry_after(address or "")
    try:
        await websocket.send_denial_response(JSONResponse(
            {"error": {"code": "rate_limited", "message": "too many connections from this address"}},
            status_code=429, headers={"Retry-After": str(retry)}))
    except RuntimeError:  # a server without the denial-response extension: HTTP 403 instead
        await websocket.close(1008)
    return True
