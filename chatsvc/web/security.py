"""Security headers on every response, a body-size cap on every request, and the per-address and
per-visitor rate limits (docs/security.md).

The headers are set by one ASGI middleware so that no route can forget them: a page that sends a policy of
its own (the widget frame, the demo page) keeps it; the console gets the strict console policy; every
other page at least refuses to be framed.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from chatsvc.ops.metrics import RATE_LIMITED
from chatsvc.settings import Settings

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
    forgotten client a fresh bucket. 0 per minute means no limit. Each server process keeps its own table.
    """

    def __init__(self, per_minute: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

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
        return allowed

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
