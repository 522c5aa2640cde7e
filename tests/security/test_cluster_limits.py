"""With Redis the rate limits are cluster-wide: two real server processes on one PostgreSQL database and a
Redis of the test's own share what each admitted, so a client spread over both gets the limit once, not
twice. With Redis gone each process counts for itself again (one warning), and shares again when it is back.
Clients come from their own loopback addresses (127.0.0.1 is exempt from the per-address limits)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import need
from tests.ops.private_redis import PrivateRedis
from tests.ops.test_metrics_and_health import scrape, value
from tests.support import services
from tests.support.poll import poll
from tests.support.server import FAST_SETTINGS, Server

CONTACT = 6  # submissions per address and minute, for the whole cluster
SHARED = "chatsvc_rate_limit_shared_total"


@dataclass
class Cluster:
    one: Server
    two: Server
    redis: PrivateRedis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need(services.postgres_missing())
    if shutil.which("redis-server") is None:
        need("redis-server is not installed")
    tmp_path = tmp_path_factory.mktemp("cluster")
    redis = PrivateRedis(tmp_path)
    redis.start()
    database_url = services.create_postgres_database()
    env = {**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_REDIS_URL": redis.url,
           "CHATSVC_CONTACT_RATE": str(CONTACT), "CHATSVC_RATE_LIMIT_SYNC": "0.2", "CHATSVC_LOG_LEVEL": "debug",
           "CHATSVC_LOG_FORMAT": "json"}
    one = Server(env, log_path=tmp_path / "one.log")
    two = Server(env, log_path=tmp_path / "two.log")
    try:
        with ThreadPoolExecutor(2) as pool:  # both migrate the new database: one waits for the other
            list(pool.map(lambda server: server.start(timeout=40), (one, two)))
        yield Cluster(one, two, redis)
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Server.stop, (one, two)))
        redis.stop()
        services.drop_postgres_database(database_url)


def contact(server: Server, address: str) -> int:
    with httpx.Client(base_url=server.http, timeout=30,
                      transport=httpx.HTTPTransport(local_address=address)) as client:
        return client.post("/api/v1/contact", json={"email": "kim@example.com", "message": "my card was charged "
                                                     "twice", "name": "Kim"}).status_code


def shared(server: Server) -> float:
    return value(scrape(server.http), SHARED, limit="contact")


def exchange_log(server: Server) -> list[dict]:
    assert server.log_path is not None
    return [r for r in (json.loads(line) for line in server.log_path.read_text(errors="replace").splitlines()
                        if line.startswith("{") and line.endswith("}"))
            if r["logger"] == "chatsvc.security" and r["message"].startswith("rate-limit exchange ")]


def test_the_contact_form_limit_holds_across_processes(cluster: Cluster) -> None:
    one, two = cluster.one, cluster.two
    assert [contact(one, "127.0.0.5") for _ in range(4)] == [201] * 4
    # Once process two has heard of those four, only two more are left, wherever they are sent.
    assert poll(lambda: shared(two), lambda n: n >= 4) == 4
    assert [contact(two, "127.0.0.5") for _ in range(3)] == [201, 201, 429]
    assert poll(lambda: shared(one), lambda n: n >= 2) == 2
    assert contact(one, "127.0.0.5") == 429
    # Another address has a budget of its own.
    assert contact(two, "127.0.0.6") == 201


def test_without_redis_each_process_counts_for_itself_until_it_is_back(cluster: Cluster) -> None:
    one, two = cluster.one, cluster.two
    cluster.redis.stop()

    def quiet_rounds(log: list[dict]) -> bool:
        return sum(r["message"].startswith("rate-limit exchange still failing") for r in log) >= 3

    down = poll(lambda: exchange_log(one), quiet_rounds)
    assert quiet_rounds(down), down
    assert [r["level"] for r in down if r["level"] != "debug"] == ["warning"]
    assert "each process counts for itself" in down[0]["message"] and not any("exception" in r for r in down)
    # The limits still hold, per process: each admits the whole budget.
    assert [contact(one, "127.0.0.7") for _ in range(CONTACT + 1)] == [201] * CONTACT + [429]
    assert [contact(two, "127.0.0.7") for _ in range(CONTACT + 1)] == [201] * CONTACT + [429]

    cluster.redis.start()
    up = poll(lambda: exchange_log(one), lambda log: any(r["message"].startswith("rate-limit exchange recovered")
                                                         for r in log))
    assert [r["level"] for r in up if r["level"] != "debug"] == ["warning", "info"]
    poll(lambda: exchange_log(two), lambda log: any(r["level"] == "info" for r in log))
    # Shared again: what process one admits now counts on process two.
    before = shared(two)
    assert [contact(one, "127.0.0.8") for _ in range(CONTACT - 1)] == [201] * (CONTACT - 1)
    assert poll(lambda: shared(two), lambda n: n >= before + CONTACT - 1) == before + CONTACT - 1
    assert [contact(two, "127.0.0.8") for _ in range(2)] == [201, 429]
