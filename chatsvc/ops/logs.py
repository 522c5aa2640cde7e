"""Logging: readable lines or JSON lines, each with the request id and the conversation id where there is
one, and secrets kept out.

- The request id is the client's `X-Request-ID` (when it is a short token) or a new one; every HTTP
  response carries it back. A websocket session keeps the id of its upgrade request for its whole life.
- The conversation id is set by the websocket sessions (the visitor's conversation; the conversation an
  agent's frame is about) and inherited by the tasks they start.
- Secrets never reach a log line: libraries that dump payloads at debug level (websocket frames, database
  rows) are held at INFO, and every line passes through `redact`, which masks bearer tokens, signed link
  tokens, cookies and URL passwords whatever logged them.
- A periodic job whose store or broker is down reports it through `Outage`: one warning when it starts
  failing, one info line when it recovers, no traceback per round (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("chatsvc_request_id", default=None)
conversation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("chatsvc_conversation_id",
                                                                                 default=None)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Libraries whose debug or info output carries payloads: websocket frames with tokens, SQL with its
# parameters (sqlalchemy logs statements at INFO), rows with secrets, request headers. They log warnings only.
QUIET_LIBRARIES = ("websockets", "aiosqlite", "asyncpg", "sqlalchemy", "httpx", "httpcore", "multipart",
                   "python_multipart", "hpack", "redis")

_SECRETS = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"(/csat/)[^\s/?\"']+"), r"\1***"),
    (re.compile(r"(?i)\b(token|secret|password|passwd|identity_sig|csrf_token|sig)([\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"'&,;}]+"), r"\1\2***"),
    (re.compile(r"(?i)\b(cookie|set-cookie|authorization)([\"']?\s*[:=]\s*[\"']?)[^\"'\n]+"), r"\1\2***"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
)
_FRAME_DUMP = re.compile(r"^[<>] (TEXT|BINARY|CONT|PING|PONG|CLOSE)\b")


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds request_id and conversation_id to every record, drops websocket frame dumps, masks secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.conversation_id = getattr(record, "conversation_id", None) or conversation_id_var.get()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call is the handler's to report, not the caller's crash
            return True
        if _FRAME_DUMP.match(message):
            return False
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "conversation_id"):
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = ""
        if getattr(record, "request_id", None):
            ids += f" req={record.request_id}"
        if getattr(record, "conversation_id", None):
            ids += f" conv={record.conversation_id}"
        record.ids = ids
        text = super().format(record)
        return redact(text) if record.exc_info else text


def configure(level: str = "info", fmt: str = "text", stream: object = None) -> None:
    """One handler on the root logger; uvicorn's loggers propagate to it (serve passes log_config=None)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"CHATSVC_LOG_FORMAT={fmt!r} is not text or json")
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"CHATSVC_LOG_LEVEL={level!r} is not one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class RequestContext:
    """Pure ASGI middleware: a request id for every HTTP request and websocket session, echoed in
    X-Request-ID, and one access line per HTTP request (`chatsvc.access`, at INFO)."""

    access = logging.getLogger("chatsvc.access")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = ""
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                given = value.decode("latin-1").strip()
                break
        request_id = given if _REQUEST_ID.fullmatch(given) else new_request_id()
        token = request_id_var.set(request_id)
        conv_token = conversation_id_var.set(None)
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                conversation_id_var.reset(conv_token)
                request_id_var.reset(token)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-",)
                self.access.info("%s %s %s %d %.1fms", client[0], scope.get("method", ""), scope.get("path", ""),
                                 status, (time.perf_counter() - started) * 1000)
            conversation_id_var.reset(conv_token)
            request_id_var.reset(token)


# ------------------------------------------------------------------ periodic jobs that fail for a while

# SQLSTATEs of a PostgreSQL that cannot be reached or is going away: class 08 (connection exceptions),
# 57P01-57P03 (shut down by the administrator, crashed, starting up or shutting down).
_UNREACHABLE_SQLSTATES = ("57P01", "57P02", "57P03")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (`orig` of a SQLAlchemy error) and what caused it, nearest first."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < 16:
        item = pending.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, item.__cause__, item.__context__]
    return seen


def unreachable(exc: BaseException) -> bool:
    """True when `exc` says a store or broker could not be reached (refused, reset, timed out, shutting
    down, locked): an outage to wait out, not a bug in chatsvc."""
    for item in _chain(exc):
        if isinstance(item, OSError):  # refused, reset, unreachable, timed out (TimeoutError is an OSError)
            return True
        if getattr(item, "code", None) == "unavailable":  # chatsvc's own ServiceError for a store gone away
            return True
        if getattr(item, "connection_invalidated", False):  # SQLAlchemy: the connection died under it
            return True
        sqlstate = getattr(item, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES):
            return True
        kind = type(item)
        module = kind.__module__.split(".")[0]
        if module == "sqlalchemy" and kind.__name__ in ("OperationalError", "InterfaceError", "DisconnectionError",
                                                        "TimeoutError"):
            return True
        if module == "sqlite3" and kind.__name__ == "OperationalError":  # locked, unable to open, I/O error
            return True
        if module == "redis" and kind.__name__ in ("ConnectionError", "TimeoutError", "BusyLoadingError"):
            return True
    return False


def error_summary(exc: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, never a SQL statement or its parameters (a SQLAlchemy error is
    summed up by the driver's error it wraps)."""
    target = exc
    if hasattr(exc, "statement") and isinstance(getattr(exc, "orig", None), BaseException):
        target = exc.orig  # type: ignore[attr-defined]
    message = getattr(target, "message", None)
    if not isinstance(message, str):
        message = str(target)
    line = (message.strip().splitlines() or [""])[0].strip()
    text = f"{type(target).__name__}: {line}" if line else type(target).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


class Outage:
    """How a periodic job (an index refresh, a delivery worker, a retry pass) reports rounds that fail.

    While the store or the broker cannot be reached, every round fails the same way: one warning when the
    job starts failing, with the error's one-line summary, a debug line for each further round, and one
    info line when a round succeeds again; no traceback. Any other error is unexpected, a bug to fix:
    it is logged with its traceback, once for as long as it repeats unchanged.

        outage = Outage(log, "help-center refresh")
        try:
            await refresh()
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.succeeded()
    """

    def __init__(self, logger: logging.Logger, job: str,
                 meanwhile: str = "retried every round, one line when it recovers") -> None:
        self.log = logger
        self.job = job
        self.meanwhile = meanwhile  # what happens until it recovers, said in the warning
        self.failed_rounds = 0
        self._since: float | None = None
        self._warned = False
        self._last_unexpected: tuple[type, str] | None = None

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        self.failed_rounds += 1
        if self._since is None:
            self._since = time.monotonic()
        summary = error_summary(exc)
        if unreachable(exc):
            if not self._warned:
                self._warned = True
                self.log.warning("%s failing: %s (%s)", self.job, summary, self.meanwhile)
            else:
                self.log.debug("%s still failing (%d rounds): %s", self.job, self.failed_rounds, summary)
            return
        signature = (type(exc), summary)
        if signature != self._last_unexpected:
            self._last_unexpected = signature
            self.log.error("%s failed: %s", self.job, summary, exc_info=exc)
        else:
            self.log.debug("%s still failing (%d rounds): %s", self.job, self.failed_rounds, summary)

    def succeeded(self) -> None:
        if self._since is None:
            return
        self.log.info("%s recovered after %d failed round(s) in %.1f s", self.job, self.failed_rounds,
                      time.monotonic() - self._since)
        self.failed_rounds = 0
        self._since = None
        self._warned = False
        self._last_unexpected = None


async def every(interval: float, job: Callable[[], Awaitable[object]], outage: Outage) -> None:
    """Run `job` every `interval` seconds for ever (until cancelled), each failed round reported through
    `outage`: a periodic job outlives any one bad round, and an outage is one warning, not one a round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception as exc:  # noqa: BLE001 - the job must outlive a round the store was down
            outage.failed(exc)
        else:
            outage.succeeded()
