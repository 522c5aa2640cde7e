"""The embeddable widget: loader, chat frame, per-site settings and the demo page.

    GET /widget.js                  the loader a site embeds (short cache, ETag)
    GET /widget/settings/{site}     the site's settings as JSON (CORS open: nothing in it is secret)
    GET /widget/frame/{site}        the chat frame's page, with a strict Content-Security-Policy
    GET /widget/frame.<hash>.js     the frame's script and style, named by content: cached for a year
    GET /demo                       a sample community portal with the widget on it

The files come from chatsvc/web/static/widget/, built from widget/ by `python widget/build.py`. Every
response is sent gzipped to clients that accept it, from bytes compressed once.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chatsvc.settings import Settings
from chatsvc.web.sites import Site, SiteError, registry

STATIC = Path(__file__).with_name("static") / "widget"
LOADER_CACHE = "public, max-age=300, stale-while-revalidate=86400"
SETTINGS_CACHE = "public, max-age=60, stale-while-revalidate=600"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_templates = Environment(loader=PackageLoader("chatsvc", "web/templates"), autoescape=select_autoescape(["html"]))


@dataclass(frozen=True)
class Body:
    """One response body, with its ETag and a gzipped copy made once."""

    data: bytes
    media_type: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:20] + '"'

    @property
    def gzipped(self) -> bytes:
        return _gzip(self.data)


@lru_cache(maxsize=256)
def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def send(request: Request, body: Body, cache: str, headers: dict[str, str] | None = None) -> Response:
    """The body, or 304 when the client has this version; gzipped when the client accepts it."""
    common = {"Cache-Control": cache, "Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff",
              **(headers or {})}
    zipped = "gzip" in request.headers.get("accept-encoding", "").lower() and len(body.data) > 256
    etag = body.etag[:-1] + ('-gz"' if zipped else '"')
    if etag in {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers={**common, "ETag": etag})
    if zipped:
        return Response(body.gzipped, media_type=body.media_type,
                        headers={**common, "ETag": etag, "Content-Encoding": "gzip"})
    return Response(body.data, media_type=body.media_type, headers={**common, "ETag": etag})


@dataclass(frozen=True)
class Assets:
    loader: Body
    js: Body
    css: Body
    js_name: str
    css_name: str


def _read_assets() -> Assets:
    def named(path: Path, media: str) -> tuple[Body, str]:
        body = Body(path.read_bytes(), media)
        digest = hashlib.sha256(body.data).hexdigest()[:12]
        return body, f"{path.stem}.{digest}{path.suffix}"

    js, js_name = named(STATIC / "frame.js", "text/javascript; charset=utf-8")
    css, css_name = named(STATIC / "frame.css", "text/css; charset=utf-8")
    loader = Body((STATIC / "loader.js").read_bytes(), "text/javascript; charset=utf-8")
    return Assets(loader, js, css, js_name, css_name)


_assets: tuple[tuple[int, ...], Assets] | None = None


def assets() -> Assets:
    """The served files, read again when they change on disk (after `python widget/build.py`)."""
    global _assets
    stamp = tuple(p.stat().st_mtime_ns for p in (STATIC / "loader.js", STATIC / "frame.js", STATIC / "frame.css"))
    if _assets is None or _assets[0] != stamp:
        _assets = (stamp, _read_assets())
    return _assets[1]


def _settings(request: Request) -> Settings:
    return request.app.state.runtime.settings  # type: ignore[no-any-return]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"})


def find_site(request: Request, key: str) -> Site | JSONResponse:
    """The site named `key`, or the JSON error to answer with."""
    try:
        site = registry(_settings(request).sites_file).get(key)
    except SiteError as exc:
        return _error(500, "sites_file_invalid", str(exc))
    if site is None:
        return _error(404, "not_found", f"no site {key[:64]!r}; sites are defined in CHATSVC_SITES_FILE")
    return site


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script type="application/json"> element: no `<`, `>` or `&`."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def frame_csp(site: Site, theme_css: str, request: Request) -> str:
    """Scripts and styles only from this origin (plus the one hashed theme rule); no HTML string sinks
    (Trusted Types); sockets only to this host; embedding only by the site's own origins."""
    host = request.headers.get("host", "")
    sockets = f" ws://{host} wss://{host}" if re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", host) else ""
    return ("default-src 'none'; script-src 'self'; "
            f"style-src 'self' {_sha256(theme_css)}; img-src 'self' data:; connect-src 'self'{sockets}; "
            "base-uri 'none'; form-action 'none'; require-trusted-types-for 'script'; trusted-types 'none'; "
            f"frame-ancestors {site.frame_ancestors()}")


async def loader(request: Request) -> Response:
    return send(request, assets().loader, LOADER_CACHE, {"Access-Control-Allow-Origin": "*"})


async def asset(request: Request) -> Response:
    found = assets()
    name = request.path_params["name"]
    body = {found.js_name: found.js, found.css_name: found.css}.get(name)
    if body is None:
        return _error(404, "not_found", f"no widget file {name[:80]!r}")
    return send(request, body, IMMUTABLE)


async def site_settings(request: Request) -> Response:
    site = find_site(request, request.path_params["site"])
    if isinstance(site, Response):
        return site
    data = json.dumps(site.as_json(), ensure_ascii=False, separators=(",", ":")).encode()
    return send(request, Body(data, "application/json"), SETTINGS_CACHE, {"Access-Control-Allow-Origin": "*"})


async def frame(request: Request) -> Response:
    site = find_site(request, request.path_params["site"])
    if isinstance(site, Response):
        return site
    found = assets()
    theme_css = f":root{{--brand:{site.color};--on-brand:{site.on_color}}}"
    html = _templates.get_template("widget_frame.html").render(
        site=site, theme_css=Markup(theme_css), settings_json=Markup(script_json(site.as_json())),
        assets={"js": found.js_name, "css": found.css_name})
    return send(request, Body(html.encode(), "text/html; charset=utf-8"), REVALIDATE, {
        "Content-Security-Policy": frame_csp(site, theme_css, request),
        "Referrer-Policy": "no-referrer",
    })


DEMO_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.S)


async def demo(request: Request) -> Response:
    site = find_site(request, request.query_params.get("site", "default"))
    if isinstance(site, Response):
        return site
    base = _settings(request).base_url
    html = _templates.get_template("demo.html").render(site=site, base_url=base)
    styles = " ".join(_sha256(block) for block in DEMO_STYLE_BLOCK.findall(html))
    # The demo is a host page with a strict policy of its own: what a site must allow for the widget.
    csp = ("default-src 'self'; script-src 'self'; " f"style-src 'self' {styles}; img-src 'self' data:; "
           "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'")
    return send(request, Body(html.encode(), "text/html; charset=utf-8"), REVALIDATE,
                {"Content-Security-Policy": csp, "Referrer-Policy": "strict-origin-when-cross-origin"})


routes: list[BaseRoute] = [
    Route("/widget.js", loader, methods=["GET"]),
    Route("/widget/settings/{site}", site_settings, methods=["GET"]),
    Route("/widget/frame/{site}", frame, methods=["GET"]),
    Route("/widget/{name}", asset, methods=["GET"]),
    Route("/demo", demo, methods=["GET"]),
]
