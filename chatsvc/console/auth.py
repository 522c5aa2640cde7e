"""Console log-in: passwords, server-side sessions in a cookie, CSRF, roles, and page rendering.

The cookie carries a random token; the store keeps only its SHA-256 (`console_sessions.id`), so logging
out or changing the password ends a session in every server process at once. Every form carries the
session's CSRF token; REST calls made with the cookie carry it in `X-CSRF-Token`.

Pages use this interface:

    agent = await require_page(request, roles=("lead", "admin"))   # 303 to log in, or a 403 page
    await check_csrf(request, await request.form())                # on every POST
    return render(request, "console/x.html", {...})
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from chatsvc.live.service import AgentRef, as_utc
from chatsvc.store.tables import agents, console_login_failures, console_sessions
from chatsvc.web.api import ApiError

SESSION_COOKIE = "chatsvc_session"
LOGIN_CSRF_COOKIE = "chatsvc_login_csrf"
CSRF_HEADER = "x-csrf-token"
ROLES = ("agent", "lead", "manager", "writer", "admin")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session
THROTTLE_WINDOW = timedelta(minutes=15)
IP_FAILURE_FACTOR = 4  # one address may fail this many times more than one e-mail (a shared office)
LOGIN_FAILED = "The e-mail or password is wrong."
LOGIN_THROTTLED = "Too many failed log-ins. Wait a few minutes, then try again."

STATIC = Path(__file__).parents[1] / "web" / "static" / "console"

log = logging.getLogger("chatsvc.console")


@dataclass(frozen=True)
class Section:
    """A part of the console in the navigation, and the roles that may open it."""

    key: str
    label: str
    path: str
    roles: frozenset[str]


SECTIONS: tuple[Section, ...] = (
    Section("queue", "Live chat", "/console/queue", frozenset({"agent", "lead", "manager", "admin"})),
    Section("tickets", "Tickets", "/console/tickets", frozenset({"agent", "lead", "manager", "admin"})),
    Section("metrics", "Metrics", "/console/metrics", frozenset({"lead", "manager", "admin"})),
    Section("gaps", "Article gaps", "/console/gaps", frozenset({"writer", "lead", "manager", "admin"})),
    Section("users", "Team", "/console/users", frozenset({"admin"})),
)


def section_roles(key: str) -> frozenset[str]:
    """The roles that may open a section: pages pass this to require_page so the nav and the check agree."""
    for section in SECTIONS:
        if section.key == key:
            return section.roles
    raise KeyError(key)


def home_path(role: str) -> str:
    """Where a role lands after logging in: the first section it may open."""
    for section in SECTIONS:
        if role in section.roles:
            return section.path
    return "/console/password"


class LoginRequired(Exception):
    """Raised by require_page without a valid session; the app answers 303 to the log-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Raised by require_page for a role that may not open the page; the app answers with a 403 page."""

    def __init__(self, agent: AgentRef) -> None:
        super().__init__(agent.role)
        self.agent = agent


@dataclass(frozen=True)
class ConsoleSession:
    id: str  # sha256 hex of the cookie token
    csrf_token: str
    agent: AgentRef


# ---------------------------------------------------------------- passwords

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when there is no stored hash, so a missing account costs the same time."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    """Constant work whether or not the agent exists or has a password: no user enumeration by timing."""
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why a new password is refused, or None. Length matters more than character classes (NIST 800-63B)."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Use at least {MIN_PASSWORD_CHARS} characters."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Use at most {MAX_PASSWORD_CHARS} characters."
    if password.strip().lower() == email.strip().lower():
        return "The password must not be your e-mail address."
    return None


async def set_password(engine: AsyncEngine, agent_id: str, password: str, *, end_sessions: bool = True) -> None:
    """Store a new password hash and (by default) end every console session of the agent."""
    hashed = await asyncio.to_thread(hash_password, password)
    async with engine.begin() as conn:
        await conn.execute(update(agents).where(agents.c.id == agent_id).values(password_hash=hashed))
        if end_sessions:
            await conn.execute(delete(console_sessions).where(console_sessions.c.agent_id == agent_id))


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def email_key(email: str) -> str:
    return _sha256(email.strip().lower())


# ---------------------------------------------------------------- sessions

def _runtime(conn: HTTPConnection) -> Any:
    return conn.app.state.runtime


def session_lifetime(conn: HTTPConnection) -> timedelta:
    return timedelta(hours=_runtime(conn).settings.console_session_hours)


async def lookup_session(conn: HTTPConnection, token: str | None) -> ConsoleSession | None:
    """The live session behind a cookie token, touching last_seen_at at most once a minute."""
    if not token or len(token) > 200:
        return None
    runtime = _runtime(conn)
    now: datetime = runtime.service.clock()
    session_id = _sha256(token)
    async with runtime.service.engine.connect() as db:
        row = (await db.execute(
            select(console_sessions.c.csrf_token, console_sessions.c.expires_at, console_sessions.c.last_seen_at,
                   agents.c.id, agents.c.name, agents.c.role, agents.c.presence)
            .join(agents, agents.c.id == console_sessions.c.agent_id)
            .where(console_sessions.c.id == session_id))).first()
    if row is None or (as_utc(row.expires_at) or now) <= now or row.role not in ROLES:
        return None
    if now - (as_utc(row.last_seen_at) or now) >= TOUCH_EVERY:
        async with runtime.service.engine.begin() as db:
            await db.execute(update(console_sessions).where(console_sessions.c.id == session_id)
                             .values(last_seen_at=now))
    return ConsoleSession(session_id, row.csrf_token, AgentRef(row.id, row.name, row.role, row.presence))


async def current_session(conn: HTTPConnection) -> ConsoleSession | None:
    """The request's session, looked up once per request."""
    cached = conn.scope.get("chatsvc.console_session", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    found = await lookup_session(conn, conn.cookies.get(SESSION_COOKIE))
    conn.scope["chatsvc.console_session"] = found
    return found


async def session_agent(request: HTTPConnection) -> AgentRef | None:
    """The logged-in agent from the session cookie, or None."""
    found = await current_session(request)
    return None if found is None else found.agent


async def require_page(request: Request, roles: Iterable[str] | None = None) -> AgentRef:
    """For HTML pages: the logged-in agent; LoginRequired (→ 303 to log in) or PageForbidden (→ 403 page)."""
    agent = await session_agent(request)
    if agent is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    if roles is not None and agent.role not in set(roles):
        raise PageForbidden(agent)
    return agent


async def start_session(request: Request, agent_id: str) -> tuple[str, ConsoleSession]:
    """A new session row; returns the cookie token (shown to the browser only) and the session."""
    runtime = _runtime(request)
    now = runtime.service.clock()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session_id = _sha256(token)
    async with runtime.service.engine.begin() as db:
        await db.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
        await db.execute(insert(console_sessions).values(
            id=session_id, agent_id=agent_id, csrf_token=csrf, created_at=now, last_seen_at=now,
            expires_at=now + session_lifetime(request),
            user_agent=request.headers.get("user-agent", "")[:300] or None,
            ip=client_ip(request)))
        row = (await db.execute(select(agents).where(agents.c.id == agent_id))).one()
    return token, ConsoleSession(session_id, csrf, AgentRef(row.id, row.name, row.role, row.presence))


async def end_sessions(conn: HTTPConnection, agent_id: str, *, only: str | None = None,
                       keep: str | None = None) -> list[str]:
    """Delete console sessions (one, or all of an agent's but `keep`) and close their live sockets."""
    runtime = _runtime(conn)
    query = delete(console_sessions).where(console_sessions.c.agent_id == agent_id)
    if only is not None:
        query = query.where(console_sessions.c.id == only)
    if keep is not None:
        query = query.where(console_sessions.c.id != keep)
    async with runtime.service.engine.begin() as db:
        ended = list((await db.execute(query.returning(console_sessions.c.id))).scalars().all())
    from chatsvc.broker import BrokerUnavailable
    from chatsvc.live import wire

    for session_id in ended:
        try:
            await runtime.service.broker.publish(wire.agent_channel(agent_id), wire.session_end_payload(session_id))
        except BrokerUnavailable:  # the sockets notice by themselves within SESSION_CHECK_INTERVAL
            log.warning("broker unavailable; the sockets of an ended console session close on their next check")
    return ended


def same_origin(conn: HTTPConnection) -> bool:
    """The request comes from a page of this server (the Origin's host is the Host): cookies may be trusted."""
    origin = conn.headers.get("origin")
    host = conn.headers.get("host", "").lower()
    if not origin or not host:
        return False
    return urlsplit(origin.lower()).netloc == host


async def websocket_session(websocket: HTTPConnection) -> ConsoleSession | None:
    """The console session of an agent websocket, only when its handshake came from this server's pages:
    another site's page cannot ride the cookie (cross-site websocket hijacking)."""
    if not same_origin(websocket):
        return None
    return await lookup_session(websocket, websocket.cookies.get(SESSION_COOKIE))


async def session_alive(conn: HTTPConnection, session_id: str) -> bool:
    runtime = _runtime(conn)
    async with runtime.service.engine.connect() as db:
        expires = (await db.execute(select(console_sessions.c.expires_at)
                                    .where(console_sessions.c.id == session_id))).scalar_one_or_none()
    return expires is not None and (as_utc(expires) or runtime.service.clock()) > runtime.service.clock()


def client_ip(conn: HTTPConnection) -> str | None:
    return conn.client.host[:64] if conn.client else None


def cookie_secure(conn: HTTPConnection) -> bool:
    return conn.url.scheme in ("https", "wss") or _runtime(conn).settings.public_url.startswith("https:")


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(session_lifetime(request).total_seconds()),
                        path="/", httponly=True, samesite="lax", secure=cookie_secure(request))


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))


# ---------------------------------------------------------------- CSRF

def csrf_token(request: HTTPConnection) -> str:
    """The session's CSRF token for forms (valid after require_page); on the log-in page, the pre-session one."""
    found = request.scope.get("chatsvc.console_session")
    if found:
        return str(found.csrf_token)
    token = request.scope.get("chatsvc.login_csrf") or request.cookies.get(LOGIN_CSRF_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
    request.scope["chatsvc.login_csrf"] = token
    return str(token)


def _same(expected: str | None, given: object) -> bool:
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


async def check_csrf(request: Request, form: Any) -> None:
    """Raise ApiError(403, "csrf_failed") unless the form carries this session's CSRF token."""
    found = await current_session(request)
    expected = found.csrf_token if found is not None else None
    if not _same(expected, form.get("csrf_token") if form is not None else None):
        raise ApiError(403, "csrf_failed", "the form's CSRF token is missing or wrong; reload the page")


async def check_csrf_header(request: Request) -> None:
    """For REST calls made with the session cookie: unsafe methods carry X-CSRF-Token."""
    if request.method not in UNSAFE_METHODS:
        return
    found = await current_session(request)
    if found is None or not _same(found.csrf_token, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf_failed", "send the console's CSRF token in the X-CSRF-Token header")


# ---------------------------------------------------------------- throttling

async def throttled(request: Request, email: str) -> bool:
    """Too many recent failures for this e-mail (existing or not) or from this address."""
    runtime = _runtime(request)
    now = runtime.service.clock()
    limit = runtime.settings.login_attempts
    since = now - THROTTLE_WINDOW
    async with runtime.service.engine.connect() as db:
        by_email = (await db.execute(select(func.count()).select_from(console_login_failures).where(
            console_login_failures.c.email_key == email_key(email), console_login_failures.c.at > since))).scalar_one()
        ip = client_ip(request)
        by_ip = 0
        if ip is not None:
            by_ip = (await db.execute(select(func.count()).select_from(console_login_failures).where(
                console_login_failures.c.ip == ip, console_login_failures.c.at > since))).scalar_one()
    return int(by_email) >= limit or int(by_ip) >= limit * IP_FAILURE_FACTOR


async def record_failure(request: Request, email: str) -> None:
    runtime = _runtime(request)
    now = runtime.service.clock()
    async with runtime.service.engine.begin() as db:
        await db.execute(delete(console_login_failures).where(console_login_failures.c.at <= now - THROTTLE_WINDOW))
        await db.execute(insert(console_login_failures).values(email_key=email_key(email), ip=client_ip(request),
                                                               at=now))


async def forget_failures(request: Request, email: str) -> None:
    runtime = _runtime(request)
    async with runtime.service.engine.begin() as db:
        await db.execute(delete(console_login_failures).where(console_login_failures.c.email_key == email_key(email)))


# ---------------------------------------------------------------- rendering

_templates = Environment(loader=PackageLoader("chatsvc", "web/templates"), autoescape=select_autoescape(["html"]))


@lru_cache(maxsize=64)
def _asset_version(name: str, mtime: float) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """/static/console/<name>?v=<content hash>: cached long, refreshed when the file changes."""
    path = STATIC / name
    version = _asset_version(name, path.stat().st_mtime) if path.exists() else "0"
    return f"/static/console/{name}?v={version}"


_templates.globals["static_url"] = static_url


def navigation(agent: AgentRef | None, current_path: str) -> list[dict[str, Any]]:
    if agent is None:
        return []
    return [{"key": s.key, "label": s.label, "path": s.path, "active": current_path.startswith(s.path)}
            for s in SECTIONS if agent.role in s.roles]


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """A console template with `agent`, `csrf_token` and `nav` added; no caching of pages with tokens."""
    found = request.scope.get("chatsvc.console_session")
    agent = found.agent if found else None
    token = csrf_token(request)
    body = _templates.get_template(template).render(
        {"request": request, "agent": agent, "csrf_token": token, "nav": navigation(agent, request.url.path),
         **context})
    response = HTMLResponse(body, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff"})
    if found is None and request.cookies.get(LOGIN_CSRF_COOKIE) != token:
        response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/console", httponly=True, samesite="strict",
                            secure=cookie_secure(request))
    return response


# ---------------------------------------------------------------- exception handlers

def safe_next(value: str | None) -> str | None:
    """Only a path on this server under /console (no open redirect)."""
    if not value or not value.startswith("/console") or value.startswith("//") or "\\" in value:
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


async def login_required_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/console/login?next={quote(exc.next_path, safe='/')}", status_code=303)


async def page_forbidden_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    return render(request, "console/forbidden.html", {"home": home_path(exc.agent.role)}, status=403)


exception_handlers = {LoginRequired: login_required_handler, PageForbidden: page_forbidden_handler}


# ---------------------------------------------------------------- pages

async def login_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if await session_agent(request) is not None:
            agent = await session_agent(request)
            assert agent is not None
            return RedirectResponse(next_path or home_path(agent.role), status_code=303)
        return render(request, "console/login.html", {"next": next_path or "", "error": None, "email": ""})
    form = await request.form()
    email = str(form.get("email", "")).strip()[:320]
    password = str(form.get("password", ""))[:MAX_PASSWORD_CHARS]
    next_path = safe_next(str(form.get("next", ""))) or next_path
    if not _same(request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf_token")):
        raise ApiError(403, "csrf_failed", "the form's CSRF token is missing or wrong; reload the page")

    def again(message: str, status: int) -> Response:
        return render(request, "console/login.html", {"next": next_path or "", "error": message, "email": email},
                      status=status)

    if await throttled(request, email):
        return again(LOGIN_THROTTLED, 429)
    runtime = _runtime(request)
    async with runtime.service.engine.connect() as db:
        row = (await db.execute(select(agents.c.id, agents.c.role, agents.c.password_hash)
                                .where(func.lower(agents.c.email) == email.lower()))).first()
    ok = await asyncio.to_thread(password_matches, row.password_hash if row else None, password)
    if not ok or row is None or row.role not in ROLES:
        await record_failure(request, email)
        return again(LOGIN_FAILED, 401)
    await forget_failures(request, email)
    if _hasher.check_needs_rehash(row.password_hash):  # stored with older argon2 parameters: upgrade it
        await set_password(runtime.service.engine, row.id, password, end_sessions=False)
    token, session = await start_session(request, row.id)
    response = RedirectResponse(next_path or home_path(session.agent.role), status_code=303)
    set_session_cookie(request, response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    found = await current_session(request)
    if found is not None:
        await check_csrf(request, form)
        await end_sessions(request, found.agent.id, only=found.id)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(request, response)
    return response


async def password_page(request: Request) -> Response:
    agent = await require_page(request)
    if request.method == "GET":
        return render(request, "console/password.html", {"error": None, "done": False})
    form = await request.form()
    await check_csrf(request, form)
    current = str(form.get("current_password", ""))[:MAX_PASSWORD_CHARS]
    new = str(form.get("new_password", ""))
    confirm = str(form.get("confirm_password", ""))
    runtime = _runtime(request)
    async with runtime.service.engine.connect() as db:
        row = (await db.execute(select(agents.c.email, agents.c.password_hash)
                                .where(agents.c.id == agent.id))).one()

    def again(message: str) -> Response:
        return render(request, "console/password.html", {"error": message, "done": False}, status=400)

    if await throttled(request, row.email):
        return render(request, "console/password.html", {"error": LOGIN_THROTTLED, "done": False}, status=429)
    if not await asyncio.to_thread(password_matches, row.password_hash, current):
        await record_failure(request, row.email)
        return again("The current password is wrong.")
    problem = password_problem(new, email=row.email)
    if problem:
        return again(problem)
    if new != confirm:
        return again("The two new passwords differ.")
    await set_password(runtime.service.engine, agent.id, new, end_sessions=False)
    await end_sessions(request, agent.id)  # every session, this one too, and their live sockets
    token, session = await start_session(request, agent.id)
    request.scope["chatsvc.console_session"] = session
    response = render(request, "console/password.html", {"error": None, "done": True})
    set_session_cookie(request, response, token)
    return response


async def console_home(request: Request) -> Response:
    agent = await require_page(request)
    return RedirectResponse(home_path(agent.role), status_code=303)


routes: list[BaseRoute] = [
    Mount("/static/console", StaticFiles(directory=STATIC), name="console_static"),
    Route("/console", console_home),
    Route("/console/", console_home),
    Route("/console/login", login_page, methods=["GET", "POST"]),
    Route("/console/logout", logout, methods=["POST"]),
    Route("/console/password", password_page, methods=["GET", "POST"]),
]
