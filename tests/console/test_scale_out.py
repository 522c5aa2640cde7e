"""Console sessions with two server processes on PostgreSQL and Redis, as behind a load balancer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatsvc.ws.protocol import CloseCode
from tests.conftest import need
from tests.console.conftest import PASSWORD, _create_agent, login, page_csrf
from tests.support import services
from tests.support.server import FAST_SETTINGS, Client, Server, run_sync


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Server, Server, str]]:
    need(services.postgres_missing())
    need(services.redis_missing())
    url = services.create_postgres_database()
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": url,
           "CHATSVC_REDIS_URL": f"{services.REDIS_URL}?channel_prefix={uuid.uuid4().hex[:10]}"}
    first = Server(env, log_path=tmp_path / "a.log")
    second = Server(env, log_path=tmp_path / "b.log")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # migrating at once is safe (tests/store)
            for started in [pool.submit(server.start, 40) for server in (first, second)]:
                started.result()
        yield first, second, url
    finally:
        first.stop()
        second.stop()
        services.drop_postgres_database(url)


async def test_a_session_from_one_process_works_and_ends_on_the_other(two_processes: tuple[Server, Server, str]) -> None:
    first, second, url = two_processes
    email = f"ann-{uuid.uuid4().hex[:6]}@example.com"
    agent_id, _ = run_sync(lambda: _create_agent(url, "Ann", email, "agent", 5))
    on_first = httpx.Client(base_url=first.http, timeout=20, follow_redirects=False)
    assert (await asyncio.to_thread(login, on_first, email, PASSWORD)).status_code == 303
    cookie = on_first.cookies["chatsvc_session"]
    on_second = httpx.Client(base_url=second.http, timeout=20, follow_redirects=False,
                             cookies={"chatsvc_session": cookie})
    assert (await asyncio.to_thread(on_second.get, "/console/queue")).status_code == 200

    socket = await Client.connect(f"{second.ws}/ws/agent", "server_to_agent", origin=second.http,
                                  additional_headers={"Cookie": f"chatsvc_session={cookie}"})
    await socket.send({"type": "hello"})
    assert (await socket.expect("welcome"))["agent"]["id"] == agent_id

    csrf = page_csrf((await asyncio.to_thread(on_first.get, "/console/password")).text)
    out = await asyncio.to_thread(on_first.post, "/console/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert (await socket.expect("error", timeout=20))["code"] == "unauthorized"
    await asyncio.wait_for(socket.ws.wait_closed(), 20)
    assert socket.ws.close_code == CloseCode.UNAUTHORIZED
    assert (await asyncio.to_thread(on_second.get, "/console/queue")).status_code == 303

    # Guesses spread over both processes count together.
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@example.com"
    for i in range(5):
        client = (on_first, on_second)[i % 2]
        assert (await asyncio.to_thread(login, client, ghost, "a wrong guess")).status_code == 401
    for client in (on_first, on_second):
        assert (await asyncio.to_thread(login, client, ghost, "a wrong guess")).status_code == 429
    on_first.close()
    on_second.close()
