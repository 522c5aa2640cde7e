"""Shared test fixtures: real servers on free ports, real websocket clients, real databases.

Tests that need PostgreSQL, Redis or Chromium skip with a reason when those are missing; with
CHATSVC_REQUIRE_SERVICES=1 (set by .ci/run) a missing service is a failure, and so is any skip at all.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import services

REQUIRE_SERVICES = os.environ.get("CHATSVC_REQUIRE_SERVICES") == "1"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not REQUIRE_SERVICES:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"CHATSVC_REQUIRE_SERVICES=1: {skipped} skipped test(s) count as failures",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def need(reason: str | None) -> None:
    """Skip (or, under CHATSVC_REQUIRE_SERVICES=1, fail) when a service is missing."""
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Every websocket client a test opened is closed after it, whatever the test did."""
    yield
    from tests.support.server import Client

    await Client.close_all()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    need(services.postgres_missing())
    return services.POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    need(services.redis_missing())
    return services.REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store on each backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    need(services.postgres_missing())
    url = services.create_postgres_database()
    try:
        yield url
    finally:
        services.drop_postgres_database(url)
