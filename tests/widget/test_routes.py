"""The widget's HTTP side: caching, per-site settings, the frame page's security headers, the demo page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import httpx

from chatsvc.web.widget import script_json
from tests.widget.conftest import ClientFactory

RTL_SITE = """
[sites.shop]
title = "Shop help"
color = "#0b57d0"
locale = "he"
origins = ["https://shop.example", "https://www.shop.example:8443"]
greeting = "</script><script>alert(1)</script>"
"""


def settings_json(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="chatsvc-settings">(.*?)</script>', page, re.S)
    assert found
    return json.loads(found.group(1))  # type: ignore[no-any-return]


async def test_loader_is_cached_briefly_and_revalidated(client: httpx.AsyncClient) -> None:
    first = await client.get("/widget.js")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["cache-control"].startswith("public, max-age=300")
    assert first.headers["vary"] == "Accept-Encoding"
    again = await client.get("/widget.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    plain = await client.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != first.headers["etag"]
    assert plain.content == first.content


async def test_frame_assets_are_versioned_and_immutable(client: httpx.AsyncClient) -> None:
    page = (await client.get("/widget/frame/default")).text
    for path in re.findall(r'(?:src|href)="(/widget/frame\.[0-9a-f]{12}\.(?:js|css))"', page):
        served = await client.get(path)
        assert served.status_code == 200
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert hashlib.sha256(served.content).hexdigest()[:12] in path
    stale = await client.get("/widget/frame.000000000000.js")
    assert stale.status_code == 404 and stale.json()["error"]["code"] == "not_found"


async def test_site_settings(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget/settings/default")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cache-control"].startswith("public, max-age=60")
    site = response.json()
    assert site["title"] == "LotWize support" and site["color"] == "#1f6f5c" and site["on_color"] == "#ffffff"
    assert site["dir"] == "ltr" and site["position"] == "right" and site["launcher_label"] == "Help"
    assert site["hours"] == {"timezone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"],
                             "open": "09:00", "close": "18:00"}
    assert site["require_email"] is False and site["csat"] is True
    assert "dues" in site["greeting"] and site["strings"]["talk_to_person"] == "Talk to a person"


async def test_unknown_site_is_a_json_404(client: httpx.AsyncClient) -> None:
    for path in ("/widget/settings/nope", "/widget/frame/nope", "/demo?site=nope"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_a_broken_sites_file_is_a_json_500_naming_the_problem(client_for: ClientFactory,
                                                                   tmp_path: Path) -> None:
    broken = tmp_path / "sites.toml"
    broken.write_text('[sites.default]\ncolour = "#123456"\n')
    async with client_for(sites_file=str(broken)) as http:
        response = await http.get("/widget/settings/default")
    assert response.status_code == 500
    assert response.json()["error"] == {"code": "sites_file_invalid",
                                        "message": "sites.default: unknown key(s) colour"}


async def test_frame_page_policy(client_for: ClientFactory, tmp_path: Path) -> None:
    sites = tmp_path / "sites.toml"
    sites.write_text(RTL_SITE)
    async with client_for(sites_file=str(sites)) as http:
        response = await http.get("/widget/frame/shop")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["frame-ancestors"] == "'self' https://shop.example https://www.shop.example:8443"
    assert csp["require-trusted-types-for"] == "'script'" and csp["trusted-types"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert csp["connect-src"] == "'self' ws://chat.test wss://chat.test"
    # The one inline style (the site's colours) is allowed by its hash, and nothing else is inline.
    page = response.text
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert csp["style-src"] == f"'self' 'sha256-{digest}'"
    assert style == ":root{--brand:#0b57d0;--on-brand:#ffffff}"
    assert re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page) == []
    # Right to left, and the site's text cannot close the settings block.
    assert '<html lang="he" dir="rtl">' in page
    assert "</script><script>alert" not in page
    assert settings_json(page)["greeting"] == "</script><script>alert(1)</script>"


async def test_the_demo_site_may_be_embedded_anywhere(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget/frame/default")
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    assert settings_json(response.text)["site"] == "default"


async def test_demo_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/demo")
    assert response.status_code == 200
    page = response.text
    assert '<script src="/widget.js" data-site="default" async></script>' in page
    assert "Maple Grove Commons" in page
    assert '&lt;script src="http://127.0.0.1:8000/widget.js" data-site="default" async&gt;' in page
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-src 'self'" in csp and "unsafe" not in csp


def test_script_json_cannot_end_its_script_element() -> None:
    text = script_json({"a": "</script><!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & -->"}
