"""What only the Redis broker has to show: several processes, real connection loss, Redis outages."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio

from chatsvc.broker import BrokerGap, BrokerUnavailable, Subscription
from chatsvc.broker.redis_pubsub import RedisBroker

pytestmark = pytest.mark.redis

T = TypeVar("T")
MakeBroker = Callable[..., RedisBroker]
KillConnections = Callable[..., Awaitable[int]]


async def within(awaitable: Awaitable[T]) -> T:
    """Fails a hung test instead of blocking the run; never reached by a passing one."""
    async with asyncio.timeout(3):
        return await awaitable


async def numsub(admin: redis.asyncio.Redis, wire_channel: str) -> int:
    ((_, count),) = await admin.pubsub_numsub(wire_channel)
    return int(count)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_two_processes_deliver_to_each_other(make_redis_broker: MakeBroker, channel: str) -> None:
    first, second = make_redis_broker(), make_redis_broker()
    await first.connect()
    await second.connect()
    async with first.subscribe(channel) as on_first, second.subscribe(channel) as on_second:
        await first.publish(channel, b"from first")
        await second.publish(channel, b"from second")
        for subscription in (on_first, on_second):
            # Each publisher's order holds everywhere; the two publishers' messages may interleave.
            received = {await within(subscription.get()), await within(subscription.get())}
            assert received == {b"from first", b"from second"}


async def test_subscribe_is_confirmed_before_enter_returns(
    make_redis_broker: MakeBroker, channel: str
) -> None:
    listener, publisher = make_redis_broker(), make_redis_broker()
    await listener.connect()
    await publisher.connect()
    for round_ in range(20):
        async with listener.subscribe(f"{channel}:{round_}") as subscription:
            # Published from another connection the moment __aenter__ returns: must not be missed.
            await publisher.publish(f"{channel}:{round_}", b"first")
            assert await within(subscription.get()) == b"first"


async def test_redis_unsubscribes_when_the_last_local_subscriber_leaves(
    make_redis_broker: MakeBroker, redis_admin: redis.asyncio.Redis, channel: str
) -> None:
    broker = make_redis_broker()
    await broker.connect()
    wire = broker.channel_prefix + channel
    assert await numsub(redis_admin, wire) == 0
    async with broker.subscribe(channel):
        async with broker.subscribe(channel):
            assert await numsub(redis_admin, wire) == 1  # one pub/sub connection per process
        assert await numsub(redis_admin, wire) == 1
    assert await numsub(redis_admin, wire) == 0


async def test_channel_prefixes_keep_deployments_apart(
    make_redis_broker: MakeBroker, redis_admin: redis.asyncio.Redis, channel: str, channel_prefix: str
) -> None:
    ours = make_redis_broker(channel_prefix=channel_prefix + "ours:")
    theirs = make_redis_broker(channel_prefix=channel_prefix + "theirs:")
    await ours.connect()
    await theirs.connect()
    async with ours.subscribe(channel) as our_subscription, theirs.subscribe(channel) as their_subscription:
        assert await numsub(redis_admin, channel_prefix + "ours:" + channel) == 1
        await theirs.publish(channel, b"theirs")
        await ours.publish(channel, b"ours")
        assert await within(our_subscription.get()) == b"ours"
        assert await within(their_subscription.get()) == b"theirs"
        assert our_subscription.get_nowait() is None


async def test_connections_carry_the_client_name(
    make_redis_broker: MakeBroker, redis_admin: redis.asyncio.Redis, channel: str
) -> None:
    broker = make_redis_broker()
    await broker.connect()
    async with broker.subscribe(channel):
        await broker.publish(channel, b"x")
        clients = await redis_admin.client_list()
    named = [entry for entry in clients if entry.get("name") == broker.client_name]
    assert len(named) == 2  # the pub/sub connection and the pooled one that published


async def test_a_killed_pubsub_connection_gives_a_gap_then_delivery_resumes(
    make_redis_broker: MakeBroker, kill_connections: KillConnections, channel: str
) -> None:
    broker = make_redis_broker()
    await broker.connect()
    async with broker.subscribe(channel) as subscription, broker.subscribe(channel) as probe:
        await broker.publish(channel, b"before")
        assert await within(probe.get()) == b"before"  # `subscription` holds it, unread

        assert await kill_connections(broker.client_name, pubsub_only=True) == 1

        assert await within(subscription.get()) == b"before"  # what came before the loss comes first
        with pytest.raises(BrokerGap):
            await within(subscription.get())
        with pytest.raises(BrokerGap):
            await within(probe.get())

        # Re-subscribed by itself, and the gap is reported once.
        await broker.publish(channel, b"after")
        assert await within(subscription.get()) == b"after"
        assert await within(probe.get()) == b"after"
        assert subscription.get_nowait() is None
        assert await broker.ping()


async def test_every_connection_killed_publish_and_delivery_recover(
    make_redis_broker: MakeBroker, kill_connections: KillConnections, channel: str
) -> None:
    broker, other_process = make_redis_broker(), make_redis_broker()
    await broker.connect()
    await other_process.connect()
    async with broker.subscribe(channel) as subscription:
        await broker.publish(channel, b"before")
        assert await within(subscription.get()) == b"before"

        assert await kill_connections(broker.client_name) == 2

        with pytest.raises(BrokerGap):
            await within(subscription.get())
        await broker.publish(channel, b"from this process")
        await other_process.publish(channel, b"from another")
        assert await within(subscription.get()) == b"from this process"
        assert await within(subscription.get()) == b"from another"


async def test_a_subscription_that_starts_after_a_loss_gets_no_gap(
    make_redis_broker: MakeBroker, kill_connections: KillConnections, channel: str
) -> None:
    broker = make_redis_broker()
    await broker.connect()
    async with broker.subscribe(channel) as old:
        await broker.publish(channel, b"warm")
        await within(old.get())
        await kill_connections(broker.client_name, pubsub_only=True)
        with pytest.raises(BrokerGap):
            await within(old.get())
        async with broker.subscribe(channel) as new:
            await broker.publish(channel, b"fresh")
            assert await within(new.get()) == b"fresh"
            assert await within(old.get()) == b"fresh"


async def test_a_closed_port_fails_fast(make_redis_broker: MakeBroker, channel: str) -> None:
    broker = make_redis_broker(f"redis://127.0.0.1:{closed_port()}/0", subscribe_timeout=0.2)
    await within(broker.connect())  # does not raise: the reader keeps trying in the background
    assert not await within(broker.ping())
    with pytest.raises(BrokerUnavailable, match="cannot publish"):
        await within(broker.publish(channel, b"nobody"))
    subscription = broker.subscribe(channel)
    with pytest.raises(BrokerUnavailable, match="did not confirm"):
        await within(subscription.__aenter__())
    await broker.disconnect()


async def test_redis_outage_and_return(
    redis_proxy: Any, make_redis_broker: MakeBroker, channel: str
) -> None:
    broker = make_redis_broker(redis_proxy.url, reconnect_backoff=(0.01, 0.1), subscribe_timeout=10.0)
    await broker.connect()
    async with broker.subscribe(channel) as subscription:
        await broker.publish(channel, b"before")
        assert await within(subscription.get()) == b"before"

        await redis_proxy.stop()
        with pytest.raises(BrokerUnavailable):
            await within(broker.publish(channel, b"during"))
        assert not await within(broker.ping())
        # A session that starts meanwhile waits for Redis instead of missing anything.
        late = broker.subscribe(channel)
        late_start = asyncio.create_task(late.__aenter__())
        await asyncio.sleep(0.05)  # let the reader fail a few reconnection attempts
        assert not late_start.done()

        await redis_proxy.start()  # same port: Redis is back

        with pytest.raises(BrokerGap):
            await within(subscription.get())
        assert await within(late_start) is late
        await broker.publish(channel, b"after")  # works again, no restart
        assert await within(subscription.get()) == b"after"
        assert await within(late.get()) == b"after"
        assert await broker.ping()
        await late.__aexit__(None, None, None)


async def test_a_silent_connection_is_detected_by_the_health_check(
    redis_proxy: Any, make_redis_broker: MakeBroker, channel: str
) -> None:
    broker = make_redis_broker(redis_proxy.url, health_check_interval=0.25, reconnect_backoff=(0.01, 0.1))
    other_process = make_redis_broker()
    await broker.connect()
    await other_process.connect()
    async with broker.subscribe(channel) as subscription:
        await other_process.publish(channel, b"before")
        assert await within(subscription.get()) == b"before"

        # Nothing arrives and nothing is closed: only the broker's own PING can tell.
        redis_proxy.swallow_open_connections()

        with pytest.raises(BrokerGap):
            await within(subscription.get())
        await other_process.publish(channel, b"after")
        assert await within(subscription.get()) == b"after"


async def test_many_channels_are_resubscribed_after_a_loss(
    make_redis_broker: MakeBroker, kill_connections: KillConnections, channel: str
) -> None:
    broker = make_redis_broker()
    await broker.connect()
    channels = [f"{channel}:{i}" for i in range(50)]
    subscriptions: list[Subscription] = [broker.subscribe(name) for name in channels]
    for subscription in subscriptions:
        await subscription.__aenter__()
    try:
        await kill_connections(broker.client_name, pubsub_only=True)
        for subscription in subscriptions:
            with pytest.raises(BrokerGap):
                await within(subscription.get())
        for name in channels:
            await broker.publish(name, name.encode())
        for name, subscription in zip(channels, subscriptions, strict=True):
            assert await within(subscription.get()) == name.encode()
    finally:
        for subscription in subscriptions:
            await subscription.__aexit__(None, None, None)
