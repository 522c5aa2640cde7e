"""Waiting for a condition that becomes true in the background (an index refresh, a delivery).

Deadline-based, never a count of tries: on a loaded machine a hundred quick tries can all come too early.
No assertion is made on how long it takes; the deadline only keeps a broken build from hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 60.0


def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, deadline: float = DEADLINE,
         interval: float = 0.05) -> T:
    """Call `fetch` until `done(result)` or the deadline; returns the last result either way."""
    end = time.monotonic() + deadline
    while True:
        result = fetch()
        if done(result) or time.monotonic() >= end:
            return result
        time.sleep(interval)


async def apoll(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, deadline: float = DEADLINE,
                interval: float = 0.05) -> T:
    """The asyncio form of `poll`."""
    end = time.monotonic() + deadline
    while True:
        result = await fetch()
        if done(result) or time.monotonic() >= end:
            return result
        await asyncio.sleep(interval)
