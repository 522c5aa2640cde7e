"""Choose the broker from the URL scheme, and nothing else."""

from __future__ import annotations

from urllib.parse import urlsplit

from chatsvc.broker.base import Broker
from chatsvc.broker.memory import MemoryBroker

MEMORY_SCHEME = "memory"
REDIS_SCHEMES = ("redis", "rediss", "unix")


def create_broker(url: str | None) -> Broker:
    """None, "" or "memory://" -> MemoryBroker; "redis://...", "rediss://..." or "unix://..." -> RedisBroker.

    Opens nothing: call `connect()` (or use `async with`). Any other scheme is a ValueError naming it.
    """
    if url is None or not url.strip():
        return MemoryBroker()
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme == MEMORY_SCHEME:
        return MemoryBroker()
    if scheme in REDIS_SCHEMES:
        from chatsvc.broker.redis_pubsub import RedisBroker  # only deployments that use Redis import it

        return RedisBroker(url.strip())
    shown = f"{scheme}://" if scheme else "none"
    raise ValueError(
        f"unsupported broker URL scheme {shown!r} in {_without_credentials(url)!r}: "
        "use memory://, redis://, rediss:// or unix://"
    )


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()
