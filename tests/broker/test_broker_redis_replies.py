"""The Redis broker against a scripted server, where the test decides when each reply arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from chatsvc.broker.redis_pubsub import RedisBroker

T = TypeVar("T")


async def within(awaitable: Awaitable[T]) -> T:
    """Fails a hung test instead of blocking the run; never reached by a passing one."""
    async with asyncio.timeout(15):
        return await awaitable


async def test_a_stale_subscribe_confirmation_does_not_release_a_newer_subscriber(
    fake_redis: Any, channel: str
) -> None:
    broker = RedisBroker(fake_redis.url, subscribe_timeout=30.0)
    await broker.connect()
    try:
        link = await within(fake_redis.accepted())
        wire = channel.encode()

        abandoned = asyncio.create_task(broker.subscribe(channel).__aenter__())
        assert await within(link.next_command()) == [b"SUBSCRIBE", wire]
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        assert await within(link.next_command()) == [b"UNSUBSCRIBE", wire]

        subscription = broker.subscribe(channel)
        starting = asyncio.create_task(subscription.__aenter__())
        assert await within(link.next_command()) == [b"SUBSCRIBE", wire]

        # This confirms the abandoned SUBSCRIBE, which Redis is about to undo: the newcomer must wait
        # for the confirmation of its own, or it could miss what is published in between.
        link.send(b"subscribe", wire, 1)
        await asyncio.sleep(0.05)
        assert not starting.done()

        link.send(b"unsubscribe", wire, 0)
        link.send(b"subscribe", wire, 1)
        assert await within(starting) is subscription
        link.send(b"message", wire, b"hello")
        assert await within(subscription.get()) == b"hello"

        leaving = asyncio.create_task(subscription.__aexit__(None, None, None))
        assert await within(link.next_command()) == [b"UNSUBSCRIBE", wire]
        await asyncio.sleep(0.05)
        assert not leaving.done()  # __aexit__ returns once Redis has confirmed
        link.send(b"unsubscribe", wire, 0)
        await within(leaving)
    finally:
        await broker.disconnect()


async def test_messages_for_channels_without_local_subscribers_are_ignored(
    fake_redis: Any, channel: str
) -> None:
    broker = RedisBroker(fake_redis.url)
    await broker.connect()
    try:
        link = await within(fake_redis.accepted())
        subscription = broker.subscribe(channel)
        starting = asyncio.create_task(subscription.__aenter__())
        assert await within(link.next_command()) == [b"SUBSCRIBE", channel.encode()]
        link.send(b"subscribe", channel.encode(), 1)
        await within(starting)
        link.send(b"message", b"some other channel", b"not ours")
        link.send(b"pong", b"")
        link.send(b"message", channel.encode(), b"ours")
        assert await within(subscription.get()) == b"ours"
        assert subscription.get_nowait() is None
    finally:
        await broker.disconnect()
