"""The widget in a real browser: headless Chromium driven by Playwright, against a real server process.

One Chromium and one server (with the demo help center and a few extra sites) serve the whole directory,
so every test is a fresh browser context (fresh storage: a new visitor) on a warm server. The host pages
are served by a small HTTP server of their own at http://localhost:<port>. Embedding the server as
http://127.0.0.1:<port> makes the chat frame a cross-site iframe, as on a customer's site; Playwright's
contexts block third-party storage (like Chrome's Incognito), so the frame keeps its token in a
partitioned cookie. Embedding it as http://localhost:<port> (`Live.same_site`) gives the frame its
localStorage, as for a chat server on a subdomain of the customer's site. Tests that need a server of their own (a restart) start one.

Set CHATSVC_WIDGET_SCREENSHOTS=1 to write the screenshots in docs/screenshots/widget/.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatsvc.server_commands import DEMO_HELPCENTER, import_articles
from chatsvc.settings import Settings
from chatsvc.web.sites import SHIPPED_FILE
from tests.conftest import need

try:  # the test modules take `expect` from here, so they import even without Playwright (and then skip)
    from playwright.async_api import expect
except ImportError:  # pragma: no cover - browser_missing() says so and every test skips
    expect = None
from tests.support.server import FAST_SETTINGS, Client, Server, run_sync, share_the_session_loop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).parents[2] / "docs" / "widget.md"
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots" / "widget"
WRITE_SCREENSHOTS = os.environ.get("CHATSVC_WIDGET_SCREENSHOTS") == "1"

# The shipped demo site, plus sites that exercise the other settings.
EXTRA_SITES = """
[sites.rtl]
title = "الدعم"
color = "#7a2e8c"
position = "left"
launcher_label = "مساعدة"
greeting = "مرحبا! كيف يمكننا مساعدتك؟"
locale = "ar"

[sites.rtl.strings]
input_label = "رسالتك"
talk_to_person = "تحدث إلى شخص"
close = "إغلاق المحادثة"

[sites.strict]
title = "Strict support"
color = "#ffd43b"
launcher_label = "Chat"
require_email = true
csat = true
origins = ["{host_origin}"]
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests share one event loop, so they can share one Chromium."""
    share_the_session_loop(__file__, items)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def close_clients() -> AsyncIterator[None]:
    """The websocket clients a test opened are closed after it, in the loop they were opened in."""
    yield
    await Client.close_all(timeout=1)


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@dataclass
class Live:
    """A running server with agents; `http`/`ws` are its base URLs."""

    server: Server
    database_url: str
    agents: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return self.server.http

    @property
    def ws(self) -> str:
        return self.server.ws

    @property
    def same_site(self) -> str:
        """The server under a name of the host pages' site (localhost): its frame is first-party storage-wise."""
        return f"http://localhost:{self.server.port}"

    def token(self, name: str) -> str:
        return self.agents[name][1]

    def id(self, name: str) -> str:
        return self.agents[name][0]


class HostPages:
    """Customers' pages: any HTML at any path of http://localhost:<port>, served from a thread."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                html = pages.get(self.path.split("?")[0])
                body = (html or "not found").encode()
                self.send_response(200 if html is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, html: str) -> str:
        """Serve `html` at a new path; returns its URL."""
        path = f"/page-{uuid.uuid4().hex[:10]}"
        self.pages[path] = html
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def hosts() -> Iterator[HostPages]:
    need(browser_missing())
    pages = HostPages()
    try:
        yield pages
    finally:
        pages.close()


async def prepare_store(database_url: str) -> dict[str, tuple[str, str]]:
    """Load the demo help center and create agents Ann, Bob (agents) and Lee (lead): name -> (id, token)."""
    from chatsvc.broker import create_broker
    from chatsvc.live.service import ChatService
    from chatsvc.store import db

    settings = Settings(database_url=database_url)
    await import_articles(settings, DEMO_HELPCENTER)
    engine = db.create_engine(database_url)
    try:
        service = ChatService(engine, create_broker(None), settings, secret_key="unused")
        return {name: await service.create_agent(name, f"{name.lower()}@example.com", role)
                for name, role in (("Ann", "agent"), ("Bob", "agent"), ("Lee", "lead"))}
    finally:
        await engine.dispose()


def start_server(tmp: Path, host_origin: str, **env: str) -> Live:
    """A server on a fresh SQLite store with the demo help center, the test sites and agents Ann, Bob, Lee."""
    database_url = f"sqlite+aiosqlite:///{tmp / 'chat.db'}"
    sites = tmp / "sites.toml"
    sites.write_text(SHIPPED_FILE.read_text(encoding="utf-8") + EXTRA_SITES.format(host_origin=host_origin),
                     encoding="utf-8")
    agents = run_sync(lambda: prepare_store(database_url))
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_SITES_FILE": str(sites),
                     **env}, log_path=tmp / "server.log")
    server.start()
    return Live(server, database_url, agents)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stage(tmp_path_factory: pytest.TempPathFactory, hosts: HostPages) -> AsyncIterator[tuple[Live, Any]]:
    """Chromium and the shared server, started side by side. The server's agent grace is long: agents keep
    their chats across test_resilience's restart."""
    need(browser_missing())
    from playwright.async_api import async_playwright

    tmp = tmp_path_factory.mktemp("widget")
    server = asyncio.ensure_future(asyncio.to_thread(start_server, tmp, hosts.origin, CHATSVC_AGENT_GRACE="120"))
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            live = await server
            try:
                yield live, chromium
            finally:
                live.server.stop()
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
def live(stage: tuple[Live, Any]) -> Live:
    return stage[0]


@pytest.fixture(scope="session")
def browser(stage: tuple[Live, Any]) -> Any:
    return stage[1]


def host_page(server_http: str, site: str = "default", head: str = "", body: str = "") -> str:
    """A customer's page on another origin with the one-line embed."""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Portal</title>{head}</head><body>"
            f"<h1>Community portal</h1>{body}"
            f'<script src="{server_http}/widget.js" data-site="{site}" async></script></body></html>')


Opener = Callable[..., Awaitable[Any]]


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context(viewport={"width": 1000, "height": 720})
    try:
        yield ctx
    finally:
        await ctx.close()


def queue_stub() -> str:
    """The queue stub exactly as docs/widget.md gives it."""
    found = re.search(r"<!-- queue stub -->\n```html\n(<script>.*?</script>)\n```", DOCS.read_text(encoding="utf-8"),
                      re.S)
    assert found, "docs/widget.md lost its queue stub"
    return found.group(1)


def watch_errors(page: Any) -> list[str]:
    """Script errors in the page or the chat frame; a test asserts this stays empty."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "favicon" not in msg.text
            and "Failed to load resource" not in msg.text else None)
    return errors


async def chat_frame(page: Any, timeout: float = 10.0) -> Any:
    """The chat frame of `page`, once its script has run."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for frame in page.frames:
            if "/widget/frame/" in frame.url:
                try:
                    if await frame.evaluate("document.body.hasAttribute('data-connection') || "
                                            "!!document.querySelector('#log li')"):
                        return frame
                except Exception:  # noqa: BLE001 - the frame is still loading
                    pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the chat frame did not load")
        await asyncio.sleep(0.05)


async def online(frame: Any, timeout: float = 15_000) -> None:
    await frame.wait_for_selector("body[data-connection=online]", timeout=timeout)


async def open_chat(page: Any, label: str = "Help") -> Any:
    await page.get_by_role("button", name=label).click()
    frame = await chat_frame(page)
    await online(frame)
    return frame


async def ask(frame: Any, text: str, label: str = "Your message") -> None:
    box = frame.get_by_label(label)
    await box.fill(text)
    await box.press("Enter")


async def screenshot(page: Any, name: str, **kwargs: Any) -> None:
    """Write docs/screenshots/widget/<name>.png when CHATSVC_WIDGET_SCREENSHOTS=1."""
    if not WRITE_SCREENSHOTS:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **kwargs)
