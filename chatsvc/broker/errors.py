"""What the broker raises. Every error is a `BrokerError`, so a caller can catch the family at once."""

from __future__ import annotations


class BrokerError(Exception):
    """Base class of every broker error."""


class BrokerUnavailable(BrokerError):
    """The backend (Redis) cannot be reached now; the same call may succeed once it is back."""


class BrokerClosed(BrokerError):
    """The broker is not connected (never connected, or disconnected), or the subscription has ended."""


class SubscriberOverflow(BrokerError):
    """The subscription's bounded queue was full: messages were dropped; resume from the database."""

    def __init__(self, channel: str, maxsize: int) -> None:
        super().__init__(f"subscription to {channel!r} fell more than {maxsize} messages behind; "
                         "messages were dropped")
        self.channel = channel
        self.maxsize = maxsize


class BrokerGap(BrokerError):
    """The connection to the backend was lost and re-established: messages published meanwhile may be
    missing; resume from the database."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"the broker connection was lost and re-established; messages on {channel!r} "
                         "may be missing")
        self.channel = channel
