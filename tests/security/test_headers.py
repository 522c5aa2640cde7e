"""Security headers on real responses (docs/security.md, "Headers")."""

from __future__ import annotations

import httpx

from tests.security.conftest import SHOP_ORIGINS, Site


def directives(policy: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: (d.strip().split(" ", 1) + [""])[1] for d in policy.split(";") if d.strip()}


def test_console_pages_get_the_strict_policy(site: Site) -> None:
    host = site.http.removeprefix("http://")
    with httpx.Client(base_url=site.http, timeout=30) as client:
        for path in ("/console/login", "/console/queue", "/static/console/no-such-file.css"):
            got = client.get(path, follow_redirects=False)
            csp = directives(got.headers["content-security-policy"])
            assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'", path
            assert csp["style-src"] == "'self'" and csp["img-src"] == "'self' data:"
            assert csp["connect-src"] == f"'self' ws://{host} wss://{host}"
            assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
            assert csp["form-action"] == "'self'"
            assert got.headers["x-frame-options"] == "DENY"
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["referrer-policy"] in ("strict-origin-when-cross-origin", "same-origin", "no-referrer")
        # A Host that is not a plain host name never reaches the policy.
        odd = client.get("/console/login", headers={"Host": "evil.example'; script-src *"})
        assert "script-src *" not in odd.headers.get("content-security-policy", "")


def test_every_response_gets_the_basic_headers_and_no_hsts_by_default(site: Site) -> None:
    with httpx.Client(base_url=site.http, timeout=30) as client:
        for path in ("/", "/healthz", "/api/v1/openapi.json", "/api/v1/tickets", "/help", "/widget.js",
                     "/no-such-page"):
            got = client.get(path)
            assert got.headers["x-content-type-options"] == "nosniff", path
            assert "referrer-policy" in got.headers, path
            assert "strict-transport-security" not in got.headers, path
            assert got.headers["x-request-id"], path
        for path in ("/", "/help"):  # other HTML pages: never framed
            assert directives(client.get(path).headers["content-security-policy"])["frame-ancestors"] == "'none'"


def test_hsts_when_turned_on(strict: Site) -> None:
    with httpx.Client(base_url=strict.http, timeout=30) as client:
        for path in ("/", "/api/v1/openapi.json", "/console/login"):
            assert client.get(path).headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_the_chat_frame_keeps_its_policy_and_only_its_sites_may_frame_it(strict: Site) -> None:
    with httpx.Client(base_url=strict.http, timeout=30) as client:
        shop = client.get("/widget/frame/shop")
        csp = directives(shop.headers["content-security-policy"])
        assert csp["frame-ancestors"] == " ".join(("'self'", *SHOP_ORIGINS))
        assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'"
        assert "x-frame-options" not in shop.headers  # it is meant to be framed, by those origins
        assert shop.headers["referrer-policy"] == "no-referrer"
        assert directives(client.get("/widget/frame/default").headers["content-security-policy"])[
            "frame-ancestors"] == "*"  # the shipped demo site: any page
