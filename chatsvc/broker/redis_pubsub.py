"""The Redis broker: pub/sub between server processes.

Each process keeps a pool for PUBLISH and one dedicated pub/sub connection, read by a single task that
fans every message out to the local subscriptions of its channel. A channel is SUBSCRIBEd when its first
local subscriber arrives and UNSUBSCRIBEd when its last one leaves.

Redis pub/sub forgets whatever is published while a subscriber is disconnected, so a lost pub/sub
connection is never hidden: the reader reconnects with capped, jittered exponential backoff, subscribes
again to every channel that still has local subscribers, and, once Redis has confirmed a channel, puts
a `BrokerGap` into the stream of each of its subscriptions that were live before the loss. The
consumer then re-reads from the database, which is the source of truth.

Replies on the pub/sub connection come back in the order the commands were sent, so the SUBSCRIBE
confirmations are matched to their channels through a first-in, first-out list per channel name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import deque
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from chatsvc.broker.base import Broker, BrokerState, Subscription, message_bytes
from chatsvc.broker.errors import BrokerClosed, BrokerUnavailable

log = logging.getLogger("chatsvc.broker")

T = TypeVar("T")

SCHEMES: Final = ("redis", "rediss", "unix")
DEFAULT_CLIENT_NAME: Final = "chatsvc-broker"
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
DEFAULT_COMMAND_TIMEOUT: Final = 2.0
DEFAULT_SUBSCRIBE_TIMEOUT: Final = 3.0
DEFAULT_HEALTH_CHECK_INTERVAL: Final = 10.0
DEFAULT_RECONNECT_BACKOFF: Final = (0.1, 2.0)

# Only read by chatsvc, never handed to the Redis client.
CHANNEL_PREFIX_PARAMETER: Final = "channel_prefix"


class _Channel:
    """One channel with local subscribers, as seen on the current pub/sub connection."""

    __slots__ = ("confirmed", "lost", "members", "name", "waiting", "wire")

    def __init__(self, wire: bytes, name: str) -> None:
        self.wire = wire
        self.name = name
        self.members: set[Subscription] = set()
        # Members still inside __aenter__, released when Redis confirms the SUBSCRIBE.
        self.waiting: dict[Subscription, asyncio.Future[None]] = {}
        self.confirmed = False  # SUBSCRIBE confirmed on the current connection
        self.lost = False  # had live members when a connection dropped; they are owed a BrokerGap


class _Link:
    """One pub/sub connection and the replies still expected on it."""

    __slots__ = ("connection", "ping_outstanding", "subscribe_replies", "unsubscribe_replies")

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.subscribe_replies: dict[bytes, deque[_Channel]] = {}
        self.unsubscribe_replies: dict[bytes, deque[asyncio.Future[None]]] = {}
        self.ping_outstanding = False


class RedisBroker(Broker):
    """Redis pub/sub behind the `Broker` interface.

    `url` is a redis-py URL (`redis://`, `rediss://`, `unix://`), plus the optional query parameter
    `channel_prefix`. Keyword arguments take precedence over the URL's own query parameters
    (`client_name`, `socket_connect_timeout`, `socket_timeout`, `health_check_interval`).
    """

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str | None = None,
        client_name: str | None = None,
        connect_timeout: float | None = None,
        command_timeout: float | None = None,
        subscribe_timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,
        health_check_interval: float | None = None,
        reconnect_backoff: tuple[float, float] = DEFAULT_RECONNECT_BACKOFF,
    ) -> None:
        super().__init__()
        scheme = urlsplit(url).scheme
        if scheme not in SCHEMES:
            raise ValueError(f"RedisBroker needs a redis://, rediss:// or unix:// URL, got scheme {scheme!r}")
        redis_url, url_prefix = _split_channel_prefix(url)
        options: dict[str, Any] = dict(parse_url(redis_url))

        if client_name is not None:
            options["client_name"] = client_name
        options.setdefault("client_name", DEFAULT_CLIENT_NAME)
        if connect_timeout is not None:
            options["socket_connect_timeout"] = connect_timeout
        options.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        if command_timeout is not None:
            options["socket_timeout"] = command_timeout
        options.setdefault("socket_timeout", DEFAULT_COMMAND_TIMEOUT)
        # RESP2 unless the URL asks otherwise: understood by every Redis and by every redis-py >= 5.
        options.setdefault("protocol", 2)
        options["decode_responses"] = False  # messages are opaque bytes

        base, cap = reconnect_backoff
        if not 0 < base <= cap:
            raise ValueError(
                f"reconnect_backoff must be (base, cap) with 0 < base <= cap, got {reconnect_backoff}"
            )
        if health_check_interval is None:
            from_url = options.get("health_check_interval")
            health_check_interval = float(from_url or DEFAULT_HEALTH_CHECK_INTERVAL)

        self._scheme = scheme
        self._options = options
        self._channel_prefix = url_prefix if channel_prefix is None else channel_prefix
        self._connect_timeout = float(options["socket_connect_timeout"])
        self._command_timeout = float(options["socket_timeout"])
        self._subscribe_timeout = subscribe_timeout
        self._health_check_interval = health_check_interval
        self._backoff_base = base
        self._backoff_cap = cap
        self._display_name = _display_name(scheme, options)

        self._pool: ConnectionPool | None = None
        self._client: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._link: _Link | None = None
        self._channels: dict[bytes, _Channel] = {}
        self._write_lock = asyncio.Lock()

        try:  # a misspelt URL option fails here, not at the first publish
            self._new_link_connection()
        except TypeError as exc:
            raise ValueError(f"unsupported option in the broker URL: {exc}") from None

    # ------------------------------------------------------------------ the interface

    @property
    def url_scheme(self) -> str:
        return self._scheme

    @property
    def name(self) -> str:
        return self._display_name

    @property
    def channel_prefix(self) -> str:
        return self._channel_prefix

    @property
    def client_name(self) -> str:
        return str(self._options["client_name"])

    async def connect(self) -> None:
        """Start the pub/sub reader and wait for its first connection attempt.

        Does not fail when Redis is down: the reader keeps trying in the background, `ping()` is False,
        `publish` raises `BrokerUnavailable` and subscribing waits up to `subscribe_timeout`.
        """
        if self._state is BrokerState.CONNECTED:
            return
        self._pool = ConnectionPool(**self._options, retry=Retry(NoBackoff(), 0))
        self._client = Redis(connection_pool=self._pool)
        self._channels = {}
        self._write_lock = asyncio.Lock()  # a fresh one: a broker may be connected again in another loop
        self._state = BrokerState.CONNECTED
        self._first_attempt = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_forever(), name=f"chatsvc-broker-reader {self.name}")
        await asyncio.wait({self._first_attempt, self._reader}, return_when=asyncio.FIRST_COMPLETED)

    async def disconnect(self) -> None:
        if self._state is not BrokerState.CONNECTED:
            return
        self._state = BrokerState.CLOSED
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader})  # its cleanup closes the pub/sub connection
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            for ready in channel.waiting.values():
                if not ready.done():
                    ready.set_exception(BrokerClosed(f"the broker {self.name} disconnected"))
            for subscription in channel.members:
                subscription._close()
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.disconnect()

    async def publish(self, channel: str, message: bytes) -> None:
        self._require_connected(f"publish to {channel!r}")
        assert self._client is not None
        data = message_bytes(message)
        try:
            async with asyncio.timeout(self._connect_timeout + 2 * self._command_timeout):
                await self._client.publish(self._wire(channel), data)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"cannot publish to {channel!r}: Redis at {self.name} is unavailable "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    async def ping(self) -> bool:
        if self._state is not BrokerState.CONNECTED or self._link is None or self._client is None:
            return False
        try:
            async with asyncio.timeout(self._connect_timeout + 2 * self._command_timeout):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    # ------------------------------------------------------------------ subscriptions

    async def _attach(self, subscription: Subscription) -> None:
        self._require_connected(f"subscribe to {subscription.channel!r}")
        wire = self._wire(subscription.channel)
        channel = self._channels.get(wire)
        created = channel is None
        if channel is None:
            channel = self._channels[wire] = _Channel(wire, subscription.channel)
        channel.members.add(subscription)
        if channel.confirmed:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel.waiting[subscription] = ready
        # With no connection now, the reader subscribes every waiting channel when it reconnects.
        link = self._link
        try:
            if created and link is not None:
                await asyncio.shield(self._send_subscribe(link, channel))
            async with asyncio.timeout(self._subscribe_timeout):
                await ready
        except TimeoutError:
            await self._detach(subscription, wait_for_reply=False)
            raise BrokerUnavailable(
                f"Redis at {self.name} did not confirm the subscription to {subscription.channel!r} "
                f"within {self._subscribe_timeout:g} s"
            ) from None
        except BaseException:
            await self._detach(subscription, wait_for_reply=False)
            raise

    async def _detach(self, subscription: Subscription, *, wait_for_reply: bool = True) -> None:
        wire = self._wire(subscription.channel)
        channel = self._channels.get(wire)
        if channel is None or subscription not in channel.members:
            return
        channel.members.discard(subscription)
        ready = channel.waiting.pop(subscription, None)
        if ready is not None and not ready.done():
            ready.cancel()
        if channel.members:
            return
        del self._channels[wire]
        link = self._link
        if link is None:
            return  # the server forgot the subscription with the connection
        reply: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._send_unsubscribe(link, wire, reply))
        if wait_for_reply:
            # So that once __aexit__ returns, Redis no longer counts this process as a subscriber.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._command_timeout):
                    await reply

    def _wire(self, channel: str) -> bytes:
        return (self._channel_prefix + channel).encode()

    # ------------------------------------------------------------------ the pub/sub connection

    def _new_link_connection(self) -> AbstractConnection:
        options = dict(self._options)
        options.pop("max_connections", None)  # a pool option
        connection_class = options.pop("connection_class", Connection)
        # This connection is never retried nor reconnected behind our back: the reader does that, so
        # that it knows when messages may have been missed.
        options.update(protocol=2, health_check_interval=0, retry=Retry(NoBackoff(), 0))
        connection: AbstractConnection = connection_class(**options)
        return connection

    def _usable(self, link: _Link) -> bool:
        # A disconnected redis-py connection reconnects silently when written to; never let it.
        return link is self._link and link.connection.is_connected

    async def _send(self, link: _Link, *args: str | bytes) -> None:
        """Write one command on the pub/sub connection; the caller holds the write lock."""
        try:
            await link.connection.send_command(*args, check_health=False)
        except (RedisError, OSError) as exc:
            log.debug("writing %s to Redis at %s failed: %s", args[0], self.name, exc)
            # The reader's pending read then fails, and it reconnects.
            with contextlib.suppress(RedisError, OSError):
                await link.connection.disconnect(nowait=True)

    async def _send_subscribe(self, link: _Link, channel: _Channel) -> None:
        async with self._write_lock:
            if not self._usable(link) or self._channels.get(channel.wire) is not channel:
                return
            link.subscribe_replies.setdefault(channel.wire, deque()).append(channel)
            await self._send(link, "SUBSCRIBE", channel.wire)

    async def _send_unsubscribe(self, link: _Link, wire: bytes, reply: asyncio.Future[None]) -> None:
        async with self._write_lock:
            if not self._usable(link):
                reply.set_result(None)
                return
            link.unsubscribe_replies.setdefault(wire, deque()).append(reply)
            await self._send(link, "UNSUBSCRIBE", wire)

    async def _resubscribe_all(self, link: _Link) -> None:
        async with self._write_lock:
            # Read the table under the lock, so a channel whose last subscriber left meanwhile is not
            # subscribed again. A channel subscribed twice is harmless: Redis keeps a set.
            channels = list(self._channels.values())
            if not channels or not self._usable(link):
                return
            for channel in channels:
                link.subscribe_replies.setdefault(channel.wire, deque()).append(channel)
            await self._send(link, "SUBSCRIBE", *(channel.wire for channel in channels))

    async def _send_ping(self, link: _Link) -> None:
        async with self._write_lock:
            if self._usable(link):
                await self._send(link, "PING")

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        had_link = False
        while True:
            link: _Link | None = None
            linked_at = loop.time()
            try:
                connection = self._new_link_connection()
                try:
                    await connection.connect()  # type: ignore[no-untyped-call]
                except BaseException:
                    await _close_quietly(connection)
                    raise
                link = _Link(connection)
                linked_at = loop.time()
                self._link = link
                await self._resubscribe_all(link)
                if had_link:
                    log.info("reconnected to Redis at %s; re-subscribed %d channel(s), their subscribers "
                             "are told to resync", self.name, len(self._channels))
                had_link = True
                self._settle_first_attempt()
                await self._serve(link)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._settle_first_attempt()
                if link is not None:
                    log.warning("lost the pub/sub connection to Redis at %s (%s); reconnecting",
                                self.name, exc)
                elif attempt == 0:
                    log.warning("cannot reach Redis at %s (%s); retrying", self.name, exc)
                else:
                    log.debug("still cannot reach Redis at %s (%s)", self.name, exc)
            except Exception:
                self._settle_first_attempt()
                log.exception("the broker's pub/sub reader failed; reconnecting to Redis at %s", self.name)
            finally:
                if link is not None:
                    self._drop_link(link)
                    await _close_quietly(link.connection)
            if link is not None and loop.time() - linked_at >= self._backoff_cap:
                attempt = 0  # it was a healthy connection, not one that drops as soon as it opens
            await asyncio.sleep(self._backoff_delay(attempt))
            attempt += 1

    async def _serve(self, link: _Link) -> None:
        """Read the pub/sub connection until it fails. An idle connection is pinged, and one that does
        not answer within another interval counts as lost."""
        interval = self._health_check_interval
        timeout = interval if interval > 0 else math.inf
        while True:
            response = await link.connection.read_response(timeout=timeout)
            if response is None:  # no traffic for a whole interval
                if link.ping_outstanding:
                    raise RedisConnectionError(f"no answer to PING within {interval:g} s")
                link.ping_outstanding = True
                await self._send_ping(link)
                continue
            link.ping_outstanding = False
            self._dispatch(link, response)

    def _dispatch(self, link: _Link, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return  # PONG outside subscribed mode
        kind = response[0]
        if kind == b"message" and len(response) == 3:
            channel = self._channels.get(response[1])
            if channel is not None:
                for subscription in channel.members:
                    subscription._deliver(response[2])
        elif kind == b"subscribe":
            self._confirm(link, response[1])
        elif kind == b"unsubscribe":
            reply = _pop_reply(link.unsubscribe_replies, response[1])
            if reply is not None and not reply.done():
                reply.set_result(None)

    def _confirm(self, link: _Link, wire: bytes) -> None:
        channel = _pop_reply(link.subscribe_replies, wire)
        if channel is None or self._channels.get(wire) is not channel:
            return  # confirms a channel whose subscribers have all left since
        channel.confirmed = True
        if channel.lost:
            channel.lost = False
            for subscription in channel.members:
                if subscription not in channel.waiting:
                    subscription._signal_gap()
        for ready in channel.waiting.values():
            if not ready.done():
                ready.set_result(None)
        channel.waiting.clear()

    def _drop_link(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
        for channel in self._channels.values():
            if channel.confirmed:
                channel.confirmed = False
                if len(channel.members) > len(channel.waiting):
                    channel.lost = True
        for replies in link.unsubscribe_replies.values():
            for reply in replies:
                if not reply.done():
                    reply.set_result(None)  # the subscription went with the connection
        link.unsubscribe_replies.clear()
        link.subscribe_replies.clear()

    def _settle_first_attempt(self) -> None:
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(None)

    def _backoff_delay(self, attempt: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * 2.0 ** min(attempt, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _pop_reply(expected: dict[bytes, deque[T]], wire: bytes) -> T | None:
    """The oldest waiter for a reply on `wire`; the table keeps no empty entries, as channels come and go."""
    waiters = expected.get(wire)
    if not waiters:
        return None
    waiter = waiters.popleft()
    if not waiters:
        del expected[wire]
    return waiter


async def _close_quietly(connection: AbstractConnection) -> None:
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        await connection.disconnect(nowait=True)


def _split_channel_prefix(url: str) -> tuple[str, str]:
    """The URL without `channel_prefix`, and the prefix ('' if absent)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = ""
    kept = []
    for key, value in query:
        if key == CHANNEL_PREFIX_PARAMETER:
            prefix = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


def _display_name(scheme: str, options: dict[str, Any]) -> str:
    if scheme == "unix":
        return f"unix://{options.get('path', '')}?db={options.get('db', 0)}"
    host = options.get("host", "localhost")
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{options.get('port', 6379)}/{options.get('db', 0)}"
