"""What every broker promises, run against each backend (in-process and Redis) by the `broker` fixture."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from chatsvc.broker import (
    Broker,
    BrokerClosed,
    BrokerState,
    SubscriberOverflow,
    Subscription,
    SubscriptionState,
)

T = TypeVar("T")


async def within(awaitable: Awaitable[T]) -> T:
    """Fails a hung test instead of blocking the run; never reached by a passing one."""
    async with asyncio.timeout(15):
        return await awaitable


async def test_round_trip(broker: Broker, channel: str) -> None:
    async with broker.subscribe(channel) as subscription:
        await broker.publish(channel, b"hello")
        assert await within(subscription.get()) == b"hello"


async def test_only_subscribers_of_the_channel_receive(broker: Broker, channel: str) -> None:
    other = channel + ":other"
    async with broker.subscribe(channel) as mine, broker.subscribe(other) as theirs:
        await broker.publish(channel, b"for mine")
        await broker.publish(other, b"for theirs")
        # Both come from one publisher, in order: had "for mine" reached `theirs`, it would come first.
        assert await within(theirs.get()) == b"for theirs"
        assert await within(mine.get()) == b"for mine"
        assert theirs.get_nowait() is None
        assert mine.get_nowait() is None


async def test_every_subscriber_of_a_channel_receives(broker: Broker, channel: str) -> None:
    async with broker.subscribe(channel) as tab1, broker.subscribe(channel) as tab2, \
            broker.subscribe(channel) as tab3:
        await broker.publish(channel, b"to all")
        for subscription in (tab1, tab2, tab3):
            assert await within(subscription.get()) == b"to all"


async def test_order_is_preserved(broker: Broker, channel: str) -> None:
    sent = [f"event {i}".encode() for i in range(200)]
    async with broker.subscribe(channel, maxsize=len(sent)) as subscription:
        for message in sent:
            await broker.publish(channel, message)
        received = [await within(subscription.get()) for _ in sent]
    assert received == sent


async def test_messages_are_opaque_bytes(broker: Broker, channel: str) -> None:
    binary = bytes(range(256)) + b"\r\n\x00" + "é".encode()
    async with broker.subscribe(channel) as subscription:
        await broker.publish(channel, binary)
        assert await within(subscription.get()) == binary


async def test_leaving_stops_delivery_to_that_subscriber_only(broker: Broker, channel: str) -> None:
    async with broker.subscribe(channel) as staying:
        async with broker.subscribe(channel) as leaving:
            await broker.publish(channel, b"one")
            assert await within(leaving.get()) == b"one"
        assert leaving.state is SubscriptionState.CLOSED
        await broker.publish(channel, b"two")
        assert await within(staying.get()) == b"one"
        assert await within(staying.get()) == b"two"
        with pytest.raises(BrokerClosed):
            leaving.get_nowait()
        with pytest.raises(BrokerClosed):
            await leaving.get()


async def test_publishing_to_a_channel_nobody_hears_is_fine(broker: Broker, channel: str) -> None:
    await broker.publish(channel, b"into the void")


async def test_a_channel_can_be_subscribed_again_after_its_last_subscriber_left(
    broker: Broker, channel: str
) -> None:
    for round_ in range(5):
        async with broker.subscribe(channel) as subscription:
            await broker.publish(channel, b"round %d" % round_)
            assert await within(subscription.get()) == b"round %d" % round_


async def test_leaving_and_joining_at_once_loses_nothing_for_the_newcomer(
    broker: Broker, channel: str
) -> None:
    # The last subscriber's unsubscribe and the next one's subscribe cross each other.
    for round_ in range(10):
        leaving = broker.subscribe(channel)
        await leaving.__aenter__()
        exit_leaving = asyncio.create_task(leaving.__aexit__(None, None, None))
        await asyncio.sleep(0)
        async with broker.subscribe(channel) as joining:
            await within(exit_leaving)
            await broker.publish(channel, b"round %d" % round_)
            assert await within(joining.get()) == b"round %d" % round_


async def test_a_subscriber_given_up_while_starting_leaves_no_trace(broker: Broker, channel: str) -> None:
    for _ in range(5):
        abandoned = asyncio.create_task(broker.subscribe(channel).__aenter__())
        await asyncio.sleep(0)
        abandoned.cancel()
        (outcome,) = await asyncio.gather(abandoned, return_exceptions=True)
        if isinstance(outcome, Subscription):  # it had started before the cancel came
            await outcome.__aexit__(None, None, None)
        async with broker.subscribe(channel) as subscription:
            await broker.publish(channel, b"still delivered")
            assert await within(subscription.get()) == b"still delivered"


async def test_overflow_is_raised_once_and_blocks_nobody(broker: Broker, channel: str) -> None:
    sent = [f"event {i}".encode() for i in range(10)]
    async with broker.subscribe(channel, maxsize=3) as slow, broker.subscribe(channel, maxsize=100) as fast:
        for message in sent:  # every publish returns although `slow` reads nothing
            await broker.publish(channel, message)
        assert [await within(fast.get()) for _ in sent] == sent  # and `fast` is untouched

        assert slow.overflowed
        with pytest.raises(SubscriberOverflow):
            await within(slow.get())

        # Delivery goes on: what arrives now comes through without further errors.
        await broker.publish(channel, b"after")
        assert await within(fast.get()) == b"after"
        rest = []
        while (message := await within(slow.get())) != b"after":
            rest.append(message)
        assert len(rest) <= slow.maxsize
        assert set(rest) <= set(sent)
        assert slow.overflowed  # stays marked, for the session that decides to close
        assert not fast.overflowed


async def test_get_nowait(broker: Broker, channel: str) -> None:
    async with broker.subscribe(channel) as subscription, broker.subscribe(channel) as probe:
        assert subscription.get_nowait() is None
        await broker.publish(channel, b"one")
        await within(probe.get())  # `subscription` has it too by now
        assert subscription.get_nowait() == b"one"
        assert subscription.get_nowait() is None


async def test_async_iteration_ends_when_the_broker_disconnects(broker: Broker, channel: str) -> None:
    received: list[bytes] = []
    ready = asyncio.Event()

    async def consume(subscription: Subscription) -> None:
        async for message in subscription:
            received.append(message)
            ready.set()

    async with broker.subscribe(channel) as subscription:
        consumer = asyncio.create_task(consume(subscription))
        await broker.publish(channel, b"one")
        await within(ready.wait())
        await broker.disconnect()
        await within(consumer)  # iteration ended by itself
        assert received == [b"one"]
        assert subscription.state is SubscriptionState.CLOSED
        with pytest.raises(BrokerClosed):
            await subscription.get()


async def test_disconnect_wakes_a_waiting_get(broker: Broker, channel: str) -> None:
    async with broker.subscribe(channel) as subscription:
        waiting = asyncio.create_task(subscription.get())
        await asyncio.sleep(0)
        await broker.disconnect()
        with pytest.raises(BrokerClosed):
            await within(waiting)


async def test_a_disconnected_broker_refuses_work(broker: Broker, channel: str) -> None:
    await broker.disconnect()
    await broker.disconnect()  # idempotent
    assert broker.state is BrokerState.CLOSED
    assert not await broker.ping()
    with pytest.raises(BrokerClosed):
        await broker.publish(channel, b"late")
    subscription = broker.subscribe(channel)
    with pytest.raises(BrokerClosed):
        async with subscription:
            pass
    assert subscription.state is SubscriptionState.CLOSED


async def test_connect_is_idempotent_and_a_broker_can_reconnect(broker: Broker, channel: str) -> None:
    await broker.connect()
    assert await broker.ping()
    await broker.disconnect()
    await broker.connect()
    assert await broker.ping()
    async with broker.subscribe(channel) as subscription:
        await broker.publish(channel, b"again")
        assert await within(subscription.get()) == b"again"


async def test_a_subscription_is_used_inside_async_with_only(broker: Broker, channel: str) -> None:
    subscription = broker.subscribe(channel)
    assert subscription.state is SubscriptionState.NEW
    with pytest.raises(RuntimeError, match=r"is new; use `async with"):
        subscription.get_nowait()
    async with subscription:
        assert subscription.state in (SubscriptionState.ACTIVE,)
        with pytest.raises(RuntimeError, match="entered only once"):
            await subscription.__aenter__()
    await subscription.__aexit__(None, None, None)  # leaving twice is harmless


@pytest.mark.parametrize("maxsize", [0, -1, True, 2.5])
def test_maxsize_must_be_a_positive_integer(broker: Broker, channel: str, maxsize: object) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        broker.subscribe(channel, maxsize=maxsize)  # type: ignore[arg-type]


def test_channel_must_be_a_non_empty_string(broker: Broker) -> None:
    with pytest.raises(ValueError, match="channel"):
        broker.subscribe("")


async def test_messages_must_be_bytes(broker: Broker, channel: str) -> None:
    with pytest.raises(TypeError, match="bytes"):
        await broker.publish(channel, "text")  # type: ignore[arg-type]


async def test_ping_and_names(broker: Broker) -> None:
    assert await broker.ping()
    assert broker.url_scheme in ("memory", "redis", "rediss", "unix")
    assert broker.name.startswith(broker.url_scheme + "://")
    assert broker.name in repr(broker)


async def test_a_listener_gets_every_message_in_order_without_a_queue(broker: Broker, channel: str) -> None:
    heard: list[bytes | None] = []
    done = asyncio.Event()

    def listener(message: bytes | None) -> None:
        heard.append(message)
        if message == b"last":
            done.set()
        if message == b"boom":
            raise RuntimeError("a buggy listener")  # logged; delivery goes on

    async with broker.subscribe(channel, maxsize=2) as subscription:
        await broker.publish(channel, b"queued before listening")
        if broker.url_scheme != "memory":  # the Redis reader hands it over a moment later
            await within(_until(lambda: subscription._queued_messages == 1))
        subscription.listen(listener)
        sent = [f"event {i}".encode() for i in range(50)]  # far beyond maxsize: no overflow with a listener
        for message in [*sent, b"boom", b"last"]:
            await broker.publish(channel, message)
        await within(done.wait())
        assert heard == [b"queued before listening", *sent, b"boom", b"last"]
        assert not subscription.overflowed and subscription.get_nowait() is None
    await broker.publish(channel, b"after leaving")
    await asyncio.sleep(0.05)
    assert heard[-1] == b"last"


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.01)
