"""The widget's server side without a database: its routes in a tiny app of their own, called in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette

from chatsvc.settings import Settings
from chatsvc.web.widget import routes

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def widget_client(**settings: object) -> httpx.AsyncClient:
    app = Starlette(routes=routes)
    app.state.runtime = SimpleNamespace(settings=Settings(**settings))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chat.test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with widget_client() as http:
        yield http


@pytest.fixture
def client_for() -> ClientFactory:
    """`async with client_for(sites_file=...) as http:` a client for the widget routes with these settings."""
    return widget_client
