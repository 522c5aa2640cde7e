"""The size budget: what a visitor downloads, gzipped, as the widget's routes serve it.

- the loader (the only file every page view of the host site downloads): at most 3 KB;
- everything before the first message (loader, site settings, frame page, frame script and style): 20 KB.
"""

from __future__ import annotations

import gzip
import re

import httpx

LOADER_BUDGET = 3 * 1024
FIRST_MESSAGE_BUDGET = 20 * 1024


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


async def first_message_downloads(client: httpx.AsyncClient) -> dict[str, bytes]:
    """Every file a visitor downloads before sending a first message, by path."""
    paths = ["/widget.js", "/widget/settings/default", "/widget/frame/default"]
    bodies = {path: (await client.get(path)).content for path in paths}
    frame = bodies["/widget/frame/default"].decode()
    assets = re.findall(r'(?:src|href)="(/widget/frame\.[0-9a-f]{12}\.(?:js|css))"', frame)
    assert len(assets) == 2, "the frame page names one script and one stylesheet"
    bodies.update({path: (await client.get(path)).content for path in assets})
    return bodies


async def test_loader_budget(client: httpx.AsyncClient) -> None:
    loader = (await client.get("/widget.js")).content
    size = gzipped(loader)
    print(f"loader: {len(loader)} bytes, {size} gzipped (budget {LOADER_BUDGET})")
    assert size <= LOADER_BUDGET


async def test_first_message_budget(client: httpx.AsyncClient) -> None:
    sizes = {path: gzipped(body) for path, body in (await first_message_downloads(client)).items()}
    total = sum(sizes.values())
    print("before the first message:", ", ".join(f"{p} {n}" for p, n in sizes.items()), f"= {total} gzipped")
    assert total <= FIRST_MESSAGE_BUDGET


async def test_what_is_served_gzipped_is_what_was_measured(client: httpx.AsyncClient) -> None:
    for path, body in (await first_message_downloads(client)).items():
        raw = await client.get(path, headers={"Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip", path
        assert raw.content == body  # httpx decompressed it: the same bytes
        assert int(raw.headers["content-length"]) <= gzipped(body) + 64, path
