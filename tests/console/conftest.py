"""The console against a real server: one server process (SQLite, demo help center) for the directory.

Each test makes its own agents (`team`), with passwords, and marks them offline afterwards, so offers of
one test never go to another test's agents. Browser tests share one Chromium and one event loop.

Set CHATSVC_CONSOLE_SCREENSHOTS=1 to write the screenshots in docs/screenshots/console/.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chatsvc.server_commands import DEMO_HELPCENTER, import_articles
from chatsvc.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, browser_missing
from tests.conftest import need
from tests.support.server import FAST_SETTINGS, Client, Server, run_sync, share_the_session_loop

PASSWORD = "correct horse battery staple"
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots" / "console"
WRITE_SCREENSHOTS = os.environ.get("CHATSVC_CONSOLE_SCREENSHOTS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test here runs in the session's loop: they share one server and one Chromium."""
    share_the_session_loop(__file__, items)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def close_clients() -> AsyncIterator[None]:
    yield
    await Client.close_all(timeout=1)


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    email: str
    role: str
    token: str


@dataclass
class Console:
    server: Server
    database_url: str

    @property
    def http(self) -> str:
        return self.server.http

    @property
    def ws(self) -> str:
        return self.server.ws

    def add_agent(self, role: str = "agent", name: str | None = None, *, capacity: int = 5) -> Account:
        name = name or f"{role.title()} {uuid.uuid4().hex[:4]}"
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        agent_id, token = run_sync(lambda: _create_agent(self.database_url, name, email, role, capacity))
        return Account(agent_id, name, email, role, token)

    def set_offline(self, accounts: list[Account]) -> None:
        run_sync(lambda: _set_offline(self.database_url, [a.id for a in accounts]))

    def login(self, account: Account, password: str = PASSWORD) -> httpx.Client:
        """An HTTP client logged in as `account` (session cookie set)."""
        client = httpx.Client(base_url=self.http, timeout=20, follow_redirects=False)
        response = login(client, account.email, password)
        assert response.status_code == 303, response.text
        return client


def login_token(client: httpx.Client) -> str:
    page = client.get("/console/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def login(client: httpx.Client, email: str, password: str, next_path: str = "") -> httpx.Response:
    token = login_token(client)
    return client.post("/console/login", data={"csrf_token": token, "email": email, "password": password,
                                               "next": next_path})


def page_csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once (argon2 is slow on purpose); the server still verifies every log-in."""
    from chatsvc.console.auth import hash_password

    return hash_password(PASSWORD)


async def _create_agent(database_url: str, name: str, email: str, role: str, capacity: int) -> tuple[str, str]:
    from sqlalchemy import update

    from chatsvc.broker import create_broker
    from chatsvc.live.service import ChatService
    from chatsvc.store import db
    from chatsvc.store.tables import agents

    engine = db.create_engine(database_url)
    try:
        service = ChatService(engine, create_broker(None), Settings(database_url=database_url), secret_key="unused")
        agent_id, token = await service.create_agent(name, email, role, capacity=capacity)
        async with engine.begin() as conn:
            await conn.execute(update(agents).where(agents.c.id == agent_id).values(password_hash=password_hash()))
        return agent_id, token
    finally:
        await engine.dispose()


async def _set_offline(database_url: str, ids: list[str]) -> None:
    from sqlalchemy import update

    from chatsvc.store import db
    from chatsvc.store.tables import agents

    engine = db.create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(agents).where(agents.c.id.in_(ids)).values(presence="offline"))
    finally:
        await engine.dispose()


def start_console(tmp: Path) -> Console:
    database_url = f"sqlite+aiosqlite:///{tmp / 'console.db'}"
    run_sync(lambda: import_articles(Settings(database_url=database_url), DEMO_HELPCENTER))
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_OFFER_TIMEOUT": "60",
           "CHATSVC_WAIT_TIMEOUT": "120", "CHATSVC_AGENT_GRACE": "60", "CHATSVC_LOGIN_ATTEMPTS": "5"}
    server = Server(env, log_path=tmp / "server.log")
    server.start(timeout=40)
    return Console(server, database_url)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    running = await asyncio.to_thread(start_console, tmp)
    try:
        yield running
    finally:
        running.server.stop()


@dataclass
class Team:
    console: Console
    members: list[Account] = field(default_factory=list)

    def add(self, role: str = "agent", name: str | None = None, *, capacity: int = 5) -> Account:
        account = self.console.add_agent(role, name, capacity=capacity)
        self.members.append(account)
        return account


@pytest.fixture
def team(console: Console) -> Iterator[Team]:
    """Agents made for one test; offline afterwards, so later tests' offers never go to them."""
    made = Team(console)
    yield made
    if made.members:
        console.set_offline(made.members)


# ---------------------------------------------------------------- the browser

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Any]:
    need(browser_missing())
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def console_page(chromium: Any, console: Console, account: Account, path: str = "/console/queue",
                       viewport: dict[str, int] | None = None) -> Any:
    """A fresh browser context logged in as `account` (through the log-in form's POST), opened at `path`."""
    client = await asyncio.to_thread(console.login, account)
    cookie = client.cookies.get("chatsvc_session")
    client.close()
    context = await chromium.new_context(viewport=viewport or {"width": 1280, "height": 800},
                                         base_url=console.http)
    await context.add_cookies([{"name": "chatsvc_session", "value": cookie, "url": console.http,
                                "httpOnly": True, "sameSite": "Lax"}])
    page = await context.new_page()
    page.errors = watch_errors(page)
    await page.goto(path)
    return page


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "favicon" not in msg.text
            and "Failed to load resource" not in msg.text and "WebSocket" not in msg.text else None)
    return errors


async def screenshot(page: Any, name: str) -> None:
    """Write docs/screenshots/console/<name>.png when CHATSVC_CONSOLE_SCREENSHOTS=1."""
    if not WRITE_SCREENSHOTS:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
