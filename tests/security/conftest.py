"""One real server for the security tests (started once for the package), with an agent of every role, and
helpers to call it as each of them: bearer tokens for the REST API and console sessions."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import FAST_SETTINGS, Server, run_sync

ROLES = ("agent", "lead", "manager", "writer", "admin")


@dataclass
class Member:
    role: str
    id: str
    name: str
    email: str
    token: str
    session: tuple[str, str]  # console session cookie, its CSRF token


@dataclass
class Site:
    server: Server
    database_url: str
    members: dict[str, Member]  # by role, plus "agent2": a second agent

    @property
    def http(self) -> str:
        return self.server.http

    @property
    def ws(self) -> str:
        return self.server.ws

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.members[role].token}"}

    def session(self, role: str) -> tuple[dict[str, str], str]:
        """(a Cookie header, CSRF token) of a console session of `role`."""
        cookie, csrf = self.members[role].session
        return {"Cookie": f"chatsvc_session={cookie}"}, csrf


def create_members(database_url: str) -> dict[str, Member]:
    """Agents of every role, each with an API token and a live console session, straight in the store (as
    a log-in makes them: the store keeps the SHA-256 of the cookie token)."""
    from datetime import UTC, datetime, timedelta

    from chatsvc.broker import create_broker
    from chatsvc.live.service import ChatService
    from chatsvc.settings import Settings
    from chatsvc.store import db
    from chatsvc.store.tables import console_sessions

    async def run() -> dict[str, Member]:
        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)
            service = ChatService(engine, create_broker(None), Settings(database_url=database_url),
                                  secret_key="unused")
            members = {}
            now = datetime.now(UTC)
            for key, role in [(r, r) for r in ROLES] + [("agent2", "agent")]:
                name = f"{key.title()} {uuid.uuid4().hex[:4]}"
                email = f"{key}-{uuid.uuid4().hex[:8]}@example.com"
                agent_id, token = await service.create_agent(name, email, role)
                cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
                async with engine.begin() as conn:
                    await conn.execute(console_sessions.insert().values(
                        id=hashlib.sha256(cookie.encode()).hexdigest(), agent_id=agent_id, csrf_token=csrf,
                        created_at=now, last_seen_at=now, expires_at=now + timedelta(hours=2)))
                members[key] = Member(role, agent_id, name, email, token, (cookie, csrf))
            return members
        finally:
            await engine.dispose()

    return run_sync(run)  # type: ignore[no-any-return]


def start_site(tmp: Path, **env: str) -> Site:
    database_url = f"sqlite+aiosqlite:///{tmp / 'site.db'}"
    members = create_members(database_url)
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, **env}, log_path=tmp / "server.log")
    server.start(timeout=40)
    return Site(server, database_url, members)


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The shared server: default limits (loopback is exempt from the per-address ones)."""
    running = start_site(tmp_path_factory.mktemp("site"))
    try:
        yield running
    finally:
        running.server.stop()


SHOP_ORIGINS = ("https://shop.example.com", "https://www.shop.example.com")
SITES = f"""
[sites.default]
title = "Support"

[sites.shop]
title = "Shop support"
origins = {list(SHOP_ORIGINS)!r}
""".replace("'", '"')
STRICT_LIMITS = {"CHATSVC_CONNECT_RATE": "4", "CHATSVC_VISITOR_MESSAGE_RATE": "5", "CHATSVC_IP_MESSAGE_RATE": "8",
                 "CHATSVC_CONTACT_RATE": "3", "CHATSVC_HSTS_MAX_AGE": "31536000"}


@pytest.fixture(scope="package")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server with small limits (for addresses other than 127.0.0.1), HSTS on and a site that only two
    shop origins may embed."""
    tmp = tmp_path_factory.mktemp("strict")
    (tmp / "sites.toml").write_text(SITES)
    running = start_site(tmp, CHATSVC_SITES_FILE=str(tmp / "sites.toml"), **STRICT_LIMITS)
    try:
        yield running
    finally:
        running.server.stop()
