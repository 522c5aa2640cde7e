from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support import services
from tests.support.server import FAST_SETTINGS, Server, make_agent


@dataclass
class Deployment:
    server: Server
    database_url: str
    agents: dict[str, tuple[str, str]]  # name -> (id, token)

    @property
    def ws(self) -> str:
        return self.server.ws

    def token(self, name: str) -> str:
        return self.agents[name][1]

    def id(self, name: str) -> str:
        return self.agents[name][0]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"


DeployFactory = Callable[..., Deployment]


@pytest.fixture
def backend() -> str:
    """Which store and broker the deployment uses; modules parametrise it to run against both."""
    return "sqlite"


@pytest.fixture
def stores(request: pytest.FixtureRequest, backend: str, sqlite_url: str) -> Iterator[dict[str, str]]:
    """CHATSVC_DATABASE_URL and CHATSVC_REDIS_URL for the backend: SQLite + in-process, or a fresh
    PostgreSQL database + Redis with a channel prefix of its own."""
    if backend == "sqlite":
        yield {"CHATSVC_DATABASE_URL": sqlite_url}
        return
    need(services.postgres_missing())
    need(services.redis_missing())
    url = services.create_postgres_database()
    prefix = uuid.uuid4().hex[:10]
    try:
        yield {"CHATSVC_DATABASE_URL": url, "CHATSVC_REDIS_URL": f"{services.REDIS_URL}?channel_prefix={prefix}"}
    finally:
        services.drop_postgres_database(url)


@pytest.fixture
def deploy(tmp_path: Path, stores: dict[str, str], request: pytest.FixtureRequest) -> Iterator[DeployFactory]:
    """Start a server with agents Ann, Bob (agents) and Lee (lead); keyword arguments are extra
    CHATSVC_* settings. Calling it again starts another process on the same store and broker."""
    servers: list[Server] = []
    agents: dict[str, tuple[str, str]] = {}
    database_url = stores["CHATSVC_DATABASE_URL"]

    def start(**env: str) -> Deployment:
        if not agents:
            agents.update({name: make_agent(database_url, name, role=role)
                           for name, role in (("Ann", "agent"), ("Bob", "agent"), ("Lee", "lead"))})
        server = Server({**FAST_SETTINGS, **stores, **env}, log_path=tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        server.start()
        return Deployment(server, database_url, agents)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            for i, server in enumerate(servers):  # shown under "Captured stdout teardown"
                print(f"--- server {i} log (tail) ---\n{server.read_log()}")


@pytest.fixture
def live(deploy: DeployFactory) -> Deployment:
    return deploy()
