"""`chatsvc serve` with a clock the tests move: the same application, whose services read the time as
the real time plus an offset the test writes to a file (CHATSVC_TEST_CLOCK_FILE, JSON
`{"offset_seconds": n}`). Everything else (store, broker, pages, sweeps) is the real server's.

    CHATSVC_TEST_CLOCK_FILE=/tmp/clock.json python -m tests.console_tickets.clocked_server
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import uvicorn
from starlette.applications import Starlette

from chatsvc.app import create_app
from chatsvc.live.service import utcnow
from chatsvc.settings import Settings


class FileClock:
    """Real time plus the offset in `path`, read on every call (the file is tiny; a test moves the clock
    by replacing it atomically)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def offset(self) -> timedelta:
        try:
            with open(self.path, encoding="utf-8") as f:
                return timedelta(seconds=float(json.load(f)["offset_seconds"]))
        except FileNotFoundError:
            return timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset()


def clocked_app(settings: Settings, clock: FileClock) -> Starlette:
    app = create_app(settings)
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with started(app):
            app.state.runtime.service.clock = clock
            yield

    app.router.lifespan_context = lifespan
    return app


def main() -> None:
    settings = Settings.from_env()
    clock = FileClock(os.environ["CHATSVC_TEST_CLOCK_FILE"])
    uvicorn.run(clocked_app(settings, clock), host=settings.host, port=settings.port, log_level=settings.log_level,
                ws_per_message_deflate=False, lifespan="on", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
