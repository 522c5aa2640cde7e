"""The ticket pages against a real server under an injected clock, in Debian's Chromium.

One server process (SQLite) serves the directory: `python -m tests.console_tickets.clocked_server`, the
real application whose clock is the real time plus an offset this suite writes to a file. A test moves
the clock forward only (`Desk.new_day()` to 10:00 New York time on the next business day, then
`Desk.advance(...)`), so the SLA timers, "resolved today" and the metrics' days are its own and exact
although the store and the team (`team`: agents Ann and Bob, lead Lee, writer Wes, with passwords) are
shared. Each test logs in through the log-in page in a browser context of its own.

Set CHATSVC_CONSOLE_SCREENSHOTS=1 to write screenshots in docs/screenshots/console/ (tickets-*, metrics-*).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio

from chatsvc.domain.sla import NEW_YORK_BUSINESS_HOURS
from chatsvc.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, browser_missing
from tests.conftest import need
from tests.support.server import FAST_SETTINGS, Client, Server, run_sync, share_the_session_loop

ROOT = Path(__file__).parents[2]
PASSWORD = "a long enough test password"
SCREENSHOTS = ROOT / "docs" / "screenshots" / "console"
WRITE_SCREENSHOTS = os.environ.get("CHATSVC_CONSOLE_SCREENSHOTS") == "1"
NEW_YORK = ZoneInfo("America/New_York")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test here runs in the session's loop: they share one server and one Chromium."""
    share_the_session_loop(__file__, items)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def close_clients() -> AsyncIterator[None]:
    yield
    await Client.close_all(timeout=1)


class ClockedServer(Server):
    """tests.support.server.Server, running the clocked entry point instead of `chatsvc serve`."""

    def __init__(self, env: dict[str, str], **kwargs: Any) -> None:
        super().__init__(env, module="tests.console_tickets.clocked_server", args=(), cwd=ROOT,
                         **kwargs)


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    email: str
    role: str
    token: str


@dataclass
class Desk:
    server: ClockedServer
    database_url: str
    clock_file: Path
    offset: timedelta = timedelta(0)

    @property
    def http(self) -> str:
        return self.server.http

    @property
    def ws(self) -> str:
        return self.server.ws

    # -------------------------------------------------------------- the clock

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def _set_offset(self, offset: timedelta) -> None:
        assert offset >= self.offset, "the clock only moves forward"
        self.offset = offset
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"offset_seconds": offset.total_seconds()}), encoding="utf-8")
        os.replace(temporary, self.clock_file)

    def advance(self, **delta: float) -> datetime:
        self._set_offset(self.offset + timedelta(**delta))
        return self.now()

    def new_day(self) -> datetime:
        """10:00 in New York on the next business day (weekends and holidays skipped): a day of the test's own."""
        day = self.now().astimezone(NEW_YORK).date() + timedelta(days=1)
        while not NEW_YORK_BUSINESS_HOURS.is_business_day(day):
            day += timedelta(days=1)
        target = datetime(day.year, day.month, day.day, 10, 0, tzinfo=NEW_YORK)
        self._set_offset(target - datetime.now(UTC))
        return target

    # -------------------------------------------------------------- people and tickets

    def add_agent(self, role: str = "agent", name: str | None = None) -> Account:
        name = name or f"{role.title()} {uuid.uuid4().hex[:4]}"
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        agent_id, token = run_sync(lambda: _create_agent(self.database_url, name, email, role))
        return Account(agent_id, name, email, role, token)

    def api(self, account: Account) -> httpx.Client:
        return httpx.Client(base_url=self.http, timeout=20,
                            headers={"Authorization": f"Bearer {account.token}"})

    def create_ticket(self, account: Account, **fields: Any) -> int:
        body = {"channel": "phone", "text": "The community page does not load", **fields}
        with self.api(account) as api:
            response = api.post("/api/v1/tickets", json=body)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def ticket(self, account: Account, ticket_id: int) -> dict[str, Any]:
        with self.api(account) as api:
            response = api.get(f"/api/v1/tickets/{ticket_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


async def _create_agent(database_url: str, name: str, email: str, role: str) -> tuple[str, str]:
    from chatsvc.broker import create_broker
    from chatsvc.console.auth import set_password
    from chatsvc.live.service import ChatService
    from chatsvc.store import db

    engine = db.create_engine(database_url)
    try:
        service = ChatService(engine, create_broker(None), Settings(database_url=database_url), secret_key="unused")
        agent_id, token = await service.create_agent(name, email, role)
        await set_password(engine, agent_id, PASSWORD)
        return agent_id, token
    finally:
        await engine.dispose()


def start_desk(tmp: Path) -> Desk:
    database_url = f"sqlite+aiosqlite:///{tmp / 'tickets.db'}"
    clock_file = tmp / "clock.json"
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_TEST_CLOCK_FILE": str(clock_file),
           "CHATSVC_WAIT_TIMEOUT": "120", "CHATSVC_AGENT_GRACE": "60"}
    desk = Desk(ClockedServer(env, log_path=tmp / "server.log"), database_url, clock_file)
    desk._set_offset(timedelta(0))
    desk.server.start()
    return desk


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Desk, Any]]:
    need(browser_missing())
    from playwright.async_api import async_playwright

    tmp = tmp_path_factory.mktemp("console-tickets")
    server = asyncio.ensure_future(asyncio.to_thread(start_desk, tmp))
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desk = await server
            try:
                yield desk, chromium
            finally:
                desk.server.stop()
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
def desk(stage: tuple[Desk, Any]) -> Desk:
    return stage[0]


@dataclass(frozen=True)
class Team:
    ann: Account  # agent
    bob: Account  # agent
    lee: Account  # lead
    wes: Account  # writer


@pytest.fixture(scope="session")
def team(desk: Desk) -> Team:
    """The people of every test (a password hash each costs real CPU). Tests stay apart by the day they
    work on (`Desk.new_day`), so one agent's figures on the metrics page are that test's alone."""
    return Team(desk.add_agent("agent", "Ann Archer"), desk.add_agent("agent", "Bob Builder"),
                desk.add_agent("lead", "Lee Lead"), desk.add_agent("writer", "Wes Writer"))


@pytest_asyncio.fixture(loop_scope="session")
async def browser_context(stage: tuple[Desk, Any]) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) that fails the test on any script error or Content-Security-Policy
    violation (the server's policy allows no inline script or style)."""
    ctx = await stage[1].new_context(viewport={"width": 1280, "height": 860})
    ctx.errors = []

    def watch(page: Any) -> None:
        page.on("pageerror", lambda exc: ctx.errors.append(str(exc)))
        # A 4xx page (a refused form, a forbidden page) logs "Failed to load resource": that one is expected.
        page.on("console", lambda msg: ctx.errors.append(msg.text) if msg.type == "error"
                and "Failed to load resource" not in msg.text else None)

    ctx.on("page", watch)
    try:
        yield ctx
        assert ctx.errors == [], ctx.errors
    finally:
        await ctx.close()


async def log_in(context: Any, desk: Desk, account: Account, path: str = "/console/tickets") -> Any:
    """A page of `context`, logged in as `account` through the log-in form, at `path`."""
    page = await context.new_page()
    await page.goto(f"{desk.http}{path}")
    await page.get_by_label("E-mail").fill(account.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{desk.http}{path}*")
    return page


async def screenshot(page: Any, name: str, **kwargs: Any) -> None:
    """docs/screenshots/console/<name>.png when CHATSVC_CONSOLE_SCREENSHOTS=1."""
    if not WRITE_SCREENSHOTS:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **kwargs)
