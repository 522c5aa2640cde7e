"""The broker interface and the subscription every backend hands out.

A `Subscription` owns one bounded queue. Backends push into it without ever waiting (`_deliver`), so a
slow consumer cannot hold up the publisher or the other subscribers of the channel: when its queue is
full the queued messages are discarded, the subscription is marked `overflowed`, and its next `get()`
raises `SubscriberOverflow`. A backend that lost its connection marks the point in the stream with
`_signal_gap()`, and `get()` raises `BrokerGap` when the consumer reaches it.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final

from chatsvc.broker.errors import BrokerClosed, BrokerGap, SubscriberOverflow

log = logging.getLogger("chatsvc.broker")

DEFAULT_MAXSIZE: Final = 256


class BrokerState(enum.Enum):
    NEW = "new"
    CONNECTED = "connected"
    CLOSED = "closed"


class SubscriptionState(enum.Enum):
    NEW = "new"  # made by Broker.subscribe(), not entered yet
    STARTING = "starting"  # inside __aenter__: receiving, waiting for the backend to confirm
    ACTIVE = "active"
    CLOSED = "closed"  # left, or the broker disconnected


class _Gap:
    """Stands in the queue where the connection was lost."""

    __slots__ = ()


_GAP: Final = _Gap()


def message_bytes(message: bytes) -> bytes:
    """`message` as immutable bytes; anything that is not binary is a caller's mistake."""
    if isinstance(message, bytes):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"a broker message must be bytes, got {type(message).__name__}")


class Broker(abc.ABC):
    """Fan-out of notifications between server processes. See docs/broker.md.

    `connect()` before use and `disconnect()` at shutdown, or use the broker as an async context manager.
    """

    def __init__(self) -> None:
        self._state = BrokerState.NEW

    @property
    def state(self) -> BrokerState:
        return self._state

    @property
    @abc.abstractmethod
    def url_scheme(self) -> str:
        """`memory`, `redis`, `rediss` or `unix`."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Where the broker points, for logs; never contains credentials."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Make the broker usable. Idempotent."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close every open subscription and release the backend. Idempotent."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` to every current subscriber of `channel`, in every process.

        Never waits for subscribers. Raises `BrokerClosed` if the broker is not connected and
        `BrokerUnavailable` if the backend cannot be reached.
        """

    def publish_now(self, channel: str, message: bytes) -> bool:
        """Deliver `message` at once, without awaiting, where the backend can (the in-process broker does):
        True if it was delivered. Other backends return False; use `publish`. Raises like `publish`."""
        return False

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True if the broker is connected and its backend answers (for readiness checks)."""

    def subscribe(self, channel: str, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """A subscription to `channel`, started by `async with`. Nothing is received before that."""
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"channel must be a non-empty string, got {channel!r}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive integer, got {maxsize!r}")
        return Subscription(self, channel, maxsize)

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self._state.value}>"

    # Called by Subscription; each backend keeps its own table of channels.

    @abc.abstractmethod
    async def _attach(self, subscription: Subscription) -> None:
        """Start delivering `subscription.channel` to `subscription`; return once that is guaranteed."""

    @abc.abstractmethod
    async def _detach(self, subscription: Subscription) -> None:
        """Stop delivering to `subscription`. Never raises for a backend that is down or closed."""

    def _require_connected(self, action: str) -> None:
        if self._state is not BrokerState.CONNECTED:
            raise BrokerClosed(f"cannot {action}: the broker {self.name} is {self._state.value}, "
                               "not connected")


class Subscription:
    """One consumer of one channel, with its own bounded queue.

    ```
    async with broker.subscribe("conv:42") as subscription:
        async for message in subscription:  # ends when the broker disconnects
            ...
    ```
    `get()` raises `SubscriberOverflow` once after messages were dropped and `BrokerGap` once after the
    backend connection was lost and restored; both mean "re-read from the database", and delivery goes
    on afterwards.
    """

    def __init__(self, broker: Broker, channel: str, maxsize: int) -> None:
        self.channel = channel
        self.maxsize = maxsize
        self.overflowed = False
        self._broker = broker
        self._state = SubscriptionState.NEW
        self._queue: deque[bytes | _Gap] = deque()
        self._queued_messages = 0
        self._overflow_pending = False
        self._wakeup = asyncio.Event()
        self._listener: Callable[[bytes | None], None] | None = None

    @property
    def state(self) -> SubscriptionState:
        return self._state

    def __repr__(self) -> str:
        return (f"<Subscription {self.channel!r} {self._state.value} "
                f"queued={self._queued_messages}/{self.maxsize}{' overflowed' if self.overflowed else ''}>")

    async def __aenter__(self) -> Subscription:
        if self._state is not SubscriptionState.NEW:
            raise RuntimeError(f"subscription to {self.channel!r} is {self._state.value}; "
                               "a subscription can be entered only once")
        self._state = SubscriptionState.STARTING
        try:
            await self._broker._attach(self)
        except BaseException:
            self._close()
            raise
        if self._state is SubscriptionState.STARTING:  # the broker may have closed meanwhile
            self._state = SubscriptionState.ACTIVE
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state is SubscriptionState.NEW:
            return
        self._close()
        await self._broker._detach(self)

    async def get(self) -> bytes:
        """The next message. Raises `SubscriberOverflow` or `BrokerGap` once per incident (then goes on),
        and `BrokerClosed` once the subscription or the broker is closed."""
        while True:
            message = self.get_nowait()
            if message is not None:
                return message
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> bytes | None:
        """The next message if one is queued, else None; raises like `get()`."""
        if self._state is SubscriptionState.CLOSED:
            raise BrokerClosed(f"subscription to {self.channel!r} is closed")
        if self._state is not SubscriptionState.ACTIVE:
            raise RuntimeError(f"subscription to {self.channel!r} is {self._state.value}; "
                               "use `async with broker.subscribe(...)` before reading")
        if self._overflow_pending:
            self._overflow_pending = False
            raise SubscriberOverflow(self.channel, self.maxsize)
        if not self._queue:
            return None
        item = self._queue.popleft()
        if isinstance(item, _Gap):
            raise BrokerGap(self.channel)
        self._queued_messages -= 1
        return item

    def listen(self, listener: Callable[[bytes | None], None]) -> None:
        """Hand every message to `listener` as it arrives instead of queuing it: no queue, no task to wake.
        `listener(None)` means messages may have been missed (as `BrokerGap`). Messages queued so far are
        handed over first, in order. The listener runs in the broker's context: it must not block or await,
        and what it raises is logged, not propagated. There is no overflow: the listener bounds its own
        buffering."""
        self._listener = listener
        queued, self._queue = self._queue, deque()
        self._queued_messages = 0
        for item in queued:
            self._hand(None if isinstance(item, _Gap) else item)

    def _hand(self, message: bytes | None) -> None:
        try:
            self._listener(message)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - one consumer's bug must not stop the broker's delivery
            log.exception("a listener of %r failed", self.channel)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.get()
        except BrokerClosed:
            raise StopAsyncIteration from None

    # For backends.

    @property
    def _receiving(self) -> bool:
        return self._state is SubscriptionState.STARTING or self._state is SubscriptionState.ACTIVE

    def _deliver(self, message: bytes) -> None:
        """Queue `message` without waiting; on a full queue drop everything queued and flag overflow."""
        if not self._receiving:
            return
        if self._listener is not None:
            self._hand(message)
            return
        if self._queued_messages >= self.maxsize:
            if not self._overflow_pending:
                log.warning("subscription to %r overflowed its queue of %d: messages dropped",
                            self.channel, self.maxsize)
            # What is queued is stale to a consumer that must resync anyway; free it now.
            self._queue.clear()
            self._queued_messages = 0
            self.overflowed = True
            self._overflow_pending = True
        else:
            self._queue.append(message)
            self._queued_messages += 1
        self._wakeup.set()

    def _signal_gap(self) -> None:
        """Mark the current end of the stream: messages after it may have been missed."""
        if not self._receiving or (self._queue and self._queue[-1] is _GAP):
            return
        if self._listener is not None:
            self._hand(None)
            return
        if self._overflow_pending:  # the consumer resyncs when it sees the overflow, which comes first
            return
        self._queue.append(_GAP)
        self._wakeup.set()

    def _close(self) -> None:
        if self._state is SubscriptionState.CLOSED:
            return
        self._state = SubscriptionState.CLOSED
        self._queue.clear()
        self._queued_messages = 0
        self._wakeup.set()
