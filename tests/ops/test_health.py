"""/healthz (the process is up) and /readyz (the database and the broker answer), from a real server whose
Redis and PostgreSQL really go away."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.support import services
from tests.support.server import FAST_SETTINGS, Server, free_port


class PrivateRedis:
    """A redis-server of this test's own, so that stopping it disturbs nobody else."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while services._port_missing(self.url, 6379, "Redis") and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        need("redis-server is not installed")
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        yield private
    finally:
        private.stop()


def ready(base: str) -> tuple[int, dict]:
    got = httpx.get(f"{base}/readyz", timeout=30)
    return got.status_code, got.json()


def wait_for(base: str, status: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = ready(base)
        if code == status or time.monotonic() > deadline:
            assert code == status, body
            return body
        time.sleep(0.2)


def test_readyz_follows_the_broker_and_the_database(redis: PrivateRedis, tmp_path: Path) -> None:
    need(services.postgres_missing())
    database_url = services.create_postgres_database()
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_REDIS_URL": redis.url},
                    log_path=tmp_path / "server.log")
    try:
        server.start(timeout=40)
        base = server.http
        assert wait_for(base, 200)["checks"] == {"database": True, "broker": True}

        redis.stop()  # the broker goes away: not ready, but alive
        assert wait_for(base, 503)["checks"] == {"database": True, "broker": False}
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        redis.start()  # and comes back: ready again by itself
        assert wait_for(base, 200)["checks"] == {"database": True, "broker": True}

        services.drop_postgres_database(database_url)  # the database goes away (its connections with it)
        assert wait_for(base, 503)["checks"] == {"database": False, "broker": True}
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
    finally:
        server.stop()
        services.drop_postgres_database(database_url)
