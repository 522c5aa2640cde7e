"""Fan-out of committed events between server processes: in-process by default, Redis pub/sub by URL.

The database is the source of truth; the broker only notifies. See docs/broker.md.
"""

from chatsvc.broker.base import Broker, BrokerState, Subscription, SubscriptionState
from chatsvc.broker.errors import BrokerClosed, BrokerError, BrokerGap, BrokerUnavailable, SubscriberOverflow
from chatsvc.broker.factory import create_broker
from chatsvc.broker.memory import MemoryBroker

__all__ = [
    "Broker",
    "BrokerClosed",
    "BrokerError",
    "BrokerGap",
    "BrokerState",
    "BrokerUnavailable",
    "MemoryBroker",
    "RedisBroker",
    "SubscriberOverflow",
    "Subscription",
    "SubscriptionState",
    "create_broker",
]


def __getattr__(name: str) -> object:
    # RedisBroker is imported on first use, so a deployment without Redis never loads redis-py.
    if name == "RedisBroker":
        from chatsvc.broker.redis_pubsub import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
