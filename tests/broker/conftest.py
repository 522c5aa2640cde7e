"""Fixtures for the broker tests: one suite runs against every backend through the `broker` fixture.

Redis tests need a server at $CHATSVC_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). Without one
they are skipped, unless CHATSVC_REQUIRE_SERVICES=1, where a missing Redis fails the run. Every test
uses its own channel prefix and client name, so parallel runs and other users of the server are never
touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatsvc.broker import Broker, MemoryBroker
from chatsvc.broker.redis_pubsub import RedisBroker

REDIS_URL = os.environ.get("CHATSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0,
                                  retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis not reachable at URL: {REDIS_URL} ({exc})"
        if os.environ.get("CHATSVC_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
async def redis_admin(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A separate client, as an operator's redis-cli would be."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def channel_prefix() -> str:
    return unique("chatsvc-test:") + ":"


@pytest.fixture
async def make_redis_broker(redis_url: str, channel_prefix: str) -> AsyncIterator[Callable[..., RedisBroker]]:
    """Makes connected-later RedisBrokers that share this test's channel prefix, as the processes of
    one deployment do; each gets its own client name so the test can find its connections."""
    brokers: list[RedisBroker] = []

    def make(url: str | None = None, **options: Any) -> RedisBroker:
        options.setdefault("channel_prefix", channel_prefix)
        options.setdefault("client_name", unique("chatsvc-broker-test-"))
        broker = RedisBroker(url or redis_url, **options)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.disconnect()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_broker(request: pytest.FixtureRequest, channel_prefix: str) -> Callable[[], Broker]:
    """Makes unconnected brokers of one backend; every test that uses it runs once per backend."""
    if request.param == "memory":
        return MemoryBroker
    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisBroker(url, channel_prefix=channel_prefix, client_name=unique("chatsvc-broker-test-"))


@pytest.fixture
async def broker(make_broker: Callable[[], Broker]) -> AsyncIterator[Broker]:
    instance = make_broker()
    await instance.connect()
    yield instance
    await instance.disconnect()


@pytest.fixture
def channel() -> str:
    return unique("conv:")


KillConnections = Callable[..., Awaitable[int]]


@pytest.fixture
def kill_connections(redis_admin: redis.asyncio.Redis) -> KillConnections:
    """CLIENT KILL every connection with a client name (only the pub/sub one if `pubsub_only`), from a
    separate client, as an operator or a failing network would."""

    async def kill(client_name: str, *, pubsub_only: bool = False) -> int:
        listing = redis_admin.client_list(_type="pubsub") if pubsub_only else redis_admin.client_list()
        clients = await listing
        ids = [entry["id"] for entry in clients if entry.get("name") == client_name]
        for client_id in ids:
            await redis_admin.client_kill_filter(_id=client_id)
        return len(ids)

    return kill


class TcpProxy:
    """A TCP forwarder to Redis that can be taken down and brought back on the same port, or made to
    swallow its open connections silently, to play outages without touching the shared server."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target_url = target_url
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 6379
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: list[_ProxiedConnection] = []

    @property
    def url(self) -> str:
        """The Redis URL, pointed at the proxy."""
        parts = urlsplit(self.target_url)
        credentials = parts.netloc.rpartition("@")[0]
        address = f"127.0.0.1:{self.port}"
        return parts._replace(netloc=f"{credentials}@{address}" if credentials else address).geturl()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a Redis that went away."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        connections, self._connections = self._connections, []
        for connection in connections:
            await connection.cut()

    def swallow_open_connections(self) -> None:
        """From now on the open connections carry nothing, and nothing closes them: a silent network
        failure. New connections work normally."""
        for connection in self._connections:
            connection.swallowing = True

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = upstream
        connection = _ProxiedConnection(client_writer, upstream_writer)
        connection.pipe(client_reader, upstream_writer)
        connection.pipe(upstream_reader, client_writer)
        self._connections.append(connection)


class _ProxiedConnection:
    def __init__(self, *writers: asyncio.StreamWriter) -> None:
        self.writers = writers
        self.swallowing = False
        self.pipes: list[asyncio.Task[None]] = []

    def pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        self.pipes.append(asyncio.create_task(self._forward(source, sink)))

    async def _forward(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if not self.swallowing:
                    sink.write(data)
                    await sink.drain()
        sink.transport.abort()

    async def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        for pipe in self.pipes:
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis":
        pytest.skip(f"the outage test forwards TCP; {parts.scheme}:// is not forwarded")
    proxy = TcpProxy(redis_url)
    await proxy.start()
    yield proxy
    await proxy.stop()


class FakeRedis:
    """Speaks just enough RESP2 to stand in for Redis where a test must choose when each reply arrives.
    Handshake commands are answered by themselves; the rest wait in each connection's `commands`."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._accepted: asyncio.Queue[FakeRedisConnection] = asyncio.Queue()
        self._connections: list[FakeRedisConnection] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for connection in self._connections:
            await connection.close()

    async def accepted(self) -> FakeRedisConnection:
        return await self._accepted.get()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = FakeRedisConnection(reader, writer)
        self._connections.append(connection)
        self._accepted.put_nowait(connection)
        await connection.serve()


class FakeRedisConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.commands: asyncio.Queue[list[bytes]] = asyncio.Queue()

    async def serve(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
            while True:
                command = await self._read_command()
                name = command[0].upper()
                if name in (b"CLIENT", b"SELECT"):
                    self.writer.write(b"+OK\r\n")
                elif name == b"PING":
                    self.writer.write(b"+PONG\r\n")
                else:
                    self.commands.put_nowait(command)

    async def next_command(self) -> list[bytes]:
        return await self.commands.get()

    def send(self, *items: bytes | int) -> None:
        """Push one RESP2 array, such as a subscribe confirmation or a message."""
        parts = [b"*%d\r\n" % len(items)]
        for item in items:
            if isinstance(item, int):
                parts.append(b":%d\r\n" % item)
            else:
                parts.append(b"$%d\r\n%s\r\n" % (len(item), item))
        self.writer.write(b"".join(parts))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def _read_command(self) -> list[bytes]:
        header = await self.reader.readuntil(b"\r\n")
        if not header.startswith(b"*"):
            raise ValueError(f"not a RESP array: {header!r}")
        command = []
        for _ in range(int(header[1:-2])):
            length = await self.reader.readuntil(b"\r\n")
            command.append((await self.reader.readexactly(int(length[1:-2]) + 2))[:-2])
        return command


@pytest.fixture
async def fake_redis() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    await server.start()
    yield server
    await server.stop()
