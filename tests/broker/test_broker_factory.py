"""create_broker picks the backend from the URL scheme and opens nothing."""

from __future__ import annotations

import re

import pytest

from chatsvc.broker import BrokerState, MemoryBroker, create_broker
from chatsvc.broker.redis_pubsub import DEFAULT_CLIENT_NAME, RedisBroker


@pytest.mark.parametrize("url", [None, "", "   ", "memory://", "memory:", "MEMORY://"])
def test_no_url_or_memory_gives_the_in_process_broker(url: str | None) -> None:
    broker = create_broker(url)
    assert isinstance(broker, MemoryBroker)
    assert broker.url_scheme == "memory"
    assert broker.state is BrokerState.NEW


@pytest.mark.parametrize(
    ("url", "scheme", "name"),
    [
        ("redis://localhost:6379/0", "redis", "redis://localhost:6379/0"),
        ("redis://redis.internal", "redis", "redis://redis.internal:6379/0"),
        ("rediss://cache.example.com:6380/2", "rediss", "rediss://cache.example.com:6380/2"),
        ("unix:///run/redis/redis.sock?db=3", "unix", "unix:///run/redis/redis.sock?db=3"),
        ("redis://[::1]:6379/1", "redis", "redis://[::1]:6379/1"),
    ],
)
def test_redis_urls_give_the_redis_broker(url: str, scheme: str, name: str) -> None:
    broker = create_broker(url)  # nothing listens at most of these: construction does no I/O
    assert isinstance(broker, RedisBroker)
    assert broker.url_scheme == scheme
    assert broker.name == name
    assert broker.state is BrokerState.NEW
    assert broker.channel_prefix == ""
    assert broker.client_name == DEFAULT_CLIENT_NAME


def test_credentials_never_appear_in_the_name() -> None:
    broker = create_broker("redis://chat:s3cret@redis.internal:6379/0")
    assert "s3cret" not in broker.name
    assert "s3cret" not in repr(broker)


def test_the_channel_prefix_and_client_name_come_from_the_url() -> None:
    broker = create_broker("redis://localhost/0?channel_prefix=tenant-a:&client_name=chat-eu-1")
    assert isinstance(broker, RedisBroker)
    assert broker.channel_prefix == "tenant-a:"
    assert broker.client_name == "chat-eu-1"


@pytest.mark.parametrize("url", ["kafka://broker:9092", "http://localhost:6379", "localhost:6379",
                                 "redis+sentinel://host/0"])
def test_any_other_scheme_is_refused_by_name(url: str) -> None:
    scheme = url.split(":", 1)[0]
    with pytest.raises(ValueError, match=re.escape(f"unsupported broker URL scheme {scheme + '://'!r}")):
        create_broker(url)


def test_the_refusal_does_not_repeat_credentials() -> None:
    with pytest.raises(ValueError) as raised:
        create_broker("amqp://user:s3cret@host/")
    assert "s3cret" not in str(raised.value)


def test_an_unknown_url_option_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="unsupported option"):
        create_broker("redis://localhost/0?chanel_prefix=typo")
