"""The in-process broker: the default when no Redis URL is set, for a single server process."""

from __future__ import annotations

from chatsvc.broker.base import Broker, BrokerState, Subscription, message_bytes


class MemoryBroker(Broker):
    """Delivers within this process only, synchronously into each subscriber's bounded queue."""

    def __init__(self) -> None:
        super().__init__()
        self._channels: dict[str, set[Subscription]] = {}

    @property
    def url_scheme(self) -> str:
        return "memory"

    @property
    def name(self) -> str:
        return "memory://"

    async def connect(self) -> None:
        self._state = BrokerState.CONNECTED

    async def disconnect(self) -> None:
        if self._state is not BrokerState.CONNECTED:
            return
        self._state = BrokerState.CLOSED
        channels, self._channels = self._channels, {}
        for subscriptions in channels.values():
            for subscription in subscriptions:
                subscription._close()

    async def publish(self, channel: str, message: bytes) -> None:
        self.publish_now(channel, message)

    def publish_now(self, channel: str, message: bytes) -> bool:
        self._require_connected(f"publish to {channel!r}")
        data = message_bytes(message)
        for subscription in self._channels.get(channel, ()):
            subscription._deliver(data)
        return True

    async def ping(self) -> bool:
        return self._state is BrokerState.CONNECTED

    async def _attach(self, subscription: Subscription) -> None:
        self._require_connected(f"subscribe to {subscription.channel!r}")
        self._channels.setdefault(subscription.channel, set()).add(subscription)

    async def _detach(self, subscription: Subscription) -> None:
        subscriptions = self._channels.get(subscription.channel)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self._channels[subscription.channel]

