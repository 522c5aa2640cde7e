"""The subscription's queue: where a gap sits in the stream, and how overflow and gaps combine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatsvc.broker import BrokerGap, MemoryBroker, SubscriberOverflow


@pytest.fixture
async def memory_broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker()
    await broker.connect()
    yield broker
    await broker.disconnect()


async def test_a_gap_comes_after_what_was_received_before_it(
    memory_broker: MemoryBroker, channel: str
) -> None:
    async with memory_broker.subscribe(channel) as subscription:
        await memory_broker.publish(channel, b"before")
        subscription._signal_gap()  # what a backend does once it is connected again
        subscription._signal_gap()  # one incident is reported once
        await memory_broker.publish(channel, b"after")
        assert await subscription.get() == b"before"
        with pytest.raises(BrokerGap) as raised:
            await subscription.get()
        assert raised.value.channel == channel
        assert await subscription.get() == b"after"
        assert subscription.get_nowait() is None


async def test_an_overflow_supersedes_a_pending_gap(memory_broker: MemoryBroker, channel: str) -> None:
    async with memory_broker.subscribe(channel, maxsize=2) as subscription:
        await memory_broker.publish(channel, b"1")
        subscription._signal_gap()
        for message in (b"2", b"3", b"4"):
            await memory_broker.publish(channel, message)
        with pytest.raises(SubscriberOverflow) as raised:
            subscription.get_nowait()
        assert (raised.value.channel, raised.value.maxsize) == (channel, 2)
        assert subscription.get_nowait() == b"4"  # the rest was dropped, the gap with it
        assert subscription.get_nowait() is None
        subscription._signal_gap()
        with pytest.raises(BrokerGap):
            subscription.get_nowait()


async def test_no_gap_is_added_while_an_overflow_is_unreported(
    memory_broker: MemoryBroker, channel: str
) -> None:
    async with memory_broker.subscribe(channel, maxsize=1) as subscription:
        await memory_broker.publish(channel, b"1")
        await memory_broker.publish(channel, b"2")  # overflow: the consumer will resync anyway
        subscription._signal_gap()
        with pytest.raises(SubscriberOverflow):
            subscription.get_nowait()
        assert subscription.get_nowait() is None


async def test_overflow_is_reported_before_queued_messages(memory_broker: MemoryBroker, channel: str) -> None:
    async with memory_broker.subscribe(channel, maxsize=3) as subscription:
        for i in range(5):
            await memory_broker.publish(channel, b"%d" % i)
        assert subscription.overflowed
        with pytest.raises(SubscriberOverflow):
            await subscription.get()
        assert await subscription.get() == b"4"


async def test_the_queue_bound_counts_messages(memory_broker: MemoryBroker, channel: str) -> None:
    async with memory_broker.subscribe(channel, maxsize=3) as subscription:
        for i in range(3):
            await memory_broker.publish(channel, b"%d" % i)
        assert not subscription.overflowed
        assert [subscription.get_nowait() for _ in range(3)] == [b"0", b"1", b"2"]
        assert "queued=0/3" in repr(subscription)
