"""The authorisation matrix: every HTTP route the app mounts × every role, an anonymous caller and the
holder of another ticket's link, against a real server. docs/security.md's table is the expectation, and
a route it does not list fails the test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from chatsvc.app import create_app
from chatsvc.settings import Settings
from chatsvc.web.openapi_spec import build_document
from tests.security.conftest import ROLES, Site

DOC = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
AUTHS = {"token", "session", "link", "public", "metrics"}


def matrix() -> dict[tuple[str, str], tuple[str, str]]:
    """(method, path) -> (auth, allowed) from the table under "### Routes"."""
    section = re.search(r"^### Routes\n(.*?)(?=^#)", DOC, re.S | re.M)
    assert section, "docs/security.md has no Routes table"
    rows = re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| (\w+) \| ([^|]+) \|$", section.group(1),
                      re.M)
    table = {(m, p): (auth, allowed.strip()) for m, p, auth, allowed in rows}
    assert len(table) == len(rows), "a route is listed twice"
    for (method, path), (auth, allowed) in table.items():
        assert auth in AUTHS, f"{method} {path}: unknown auth {auth!r}"
        if auth in ("token", "session"):
            assert set(roles(allowed)) <= set(ROLES) and roles(allowed), f"{method} {path}: {allowed!r}"
    return table


def roles(allowed: str) -> list[str]:
    return [r.strip() for r in allowed.split(",") if r.strip()]


def mounted(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            if route.routes:
                yield from mounted(list(route.routes), prefix + route.path)
            else:  # an ASGI app (static files): everything under it, read-only
                yield "GET", prefix + route.path + "/{path}"
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    yield method, prefix + route.path
        elif isinstance(route, WebSocketRoute):
            continue  # the websocket matrix: test_ws_matrix.py
        else:
            raise AssertionError(f"a route of a kind the matrix does not know: {route!r}")


TABLE = matrix()


def test_every_mounted_route_is_in_the_matrix_and_nothing_else() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///./never-opened.db"))
    routes = set(mounted(app.routes))
    unknown = sorted(routes - set(TABLE))
    stale = sorted(set(TABLE) - routes)
    assert not unknown, f"routes the authorisation matrix (docs/security.md) does not list: {unknown}"
    assert not stale, f"listed in docs/security.md but not mounted: {stale}"


def test_api_rows_agree_with_the_openapi_document() -> None:
    doc = build_document()
    for (method, path), (auth, allowed) in TABLE.items():
        if not path.startswith("/api/v1"):
            continue
        documented = doc["paths"][path][method.lower()]["x-roles"]
        if documented:
            assert auth == "token" and set(roles(allowed)) == set(documented), f"{method} {path}"
        else:
            assert auth == "public", f"{method} {path}"


def concrete(path: str) -> str:
    """A path with its parameters filled by values that name nothing: no cell can change real data."""
    return re.sub(r"\{(\w+)(:int)?\}", lambda m: "999999" if m.group(2) or (m.group(1) == "id" and "tickets" in path)
                  else f"no-such-{m.group(1)}", path)


def call(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    if method in ("POST", "PUT", "PATCH"):
        kwargs.setdefault("json", {})
    return client.request(method, path, **kwargs)  # type: ignore[arg-type]


TOKEN_ROWS = sorted(k for k, v in TABLE.items() if v[0] == "token")
SESSION_ROWS = sorted(k for k, v in TABLE.items() if v[0] == "session")
PUBLIC_ROWS = sorted(k for k, v in TABLE.items() if v[0] == "public")


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.http, timeout=30) as c:
        yield c


def test_token_routes(site: Site, client: httpx.Client) -> None:
    """Anonymous: 401. A role not allowed: 403. An allowed role: past the gate (whatever the handler says
    about the made-up ids and empty bodies), never a server error. An API token opens no console page."""
    wrong = []
    for method, path in TOKEN_ROWS:
        allowed = set(roles(TABLE[method, path][1]))
        url = concrete(path)
        got = call(client, method, url).status_code
        if got != 401:
            wrong.append((method, path, "anonymous", got))
        got = call(client, method, url, headers={"Authorization": "Bearer not-a-token"}).status_code
        if got != 401:
            wrong.append((method, path, "unknown token", got))
        for role in ROLES:
            got = call(client, method, url, headers=site.bearer(role)).status_code
            ok = got not in (401, 403) and got < 500 if role in allowed else got == 403
            if not ok:
                wrong.append((method, path, role, got))
    assert not wrong, f"cells that did not answer as docs/security.md says: {wrong}"


def test_token_routes_with_a_console_session(site: Site, client: httpx.Client) -> None:
    """The console calls the same routes with its session cookie: the same roles pass, and unsafe methods
    need the session's CSRF token besides."""
    wrong = []
    for method, path in TOKEN_ROWS:
        allowed = set(roles(TABLE[method, path][1]))
        url = concrete(path)
        inside = next(r for r in ROLES if r in allowed)
        outside = next((r for r in ROLES if r not in allowed), None)
        cookie, csrf = site.session(inside)
        if method == "GET":
            got = call(client, method, url, headers=cookie).status_code
            if got in (401, 403) or got >= 500:
                wrong.append((method, path, inside, got))
        else:
            got = call(client, method, url, headers=cookie).status_code
            if got != 403:
                wrong.append((method, path, inside, "no CSRF token", got))
            got = call(client, method, url, headers={**cookie, "X-CSRF-Token": csrf}).status_code
            if got in (401, 403) or got >= 500:
                wrong.append((method, path, inside, "with CSRF token", got))
        if outside is not None:
            cookie, csrf = site.session(outside)
            got = call(client, method, url, headers={**cookie, "X-CSRF-Token": csrf}).status_code
            if got != 403:
                wrong.append((method, path, outside, got))
    assert not wrong, f"cells that did not answer as docs/security.md says: {wrong}"


def test_session_routes(site: Site, client: httpx.Client) -> None:
    wrong = []
    for method, path in SESSION_ROWS:
        allowed = set(roles(TABLE[method, path][1]))
        url = concrete(path)
        anonymous = call(client, method, url, data={}, follow_redirects=False) if method == "POST" else \
            client.get(url, follow_redirects=False)
        to_login = anonymous.status_code == 303 and anonymous.headers["location"].startswith("/console/login")
        if not (to_login or anonymous.status_code in (401, 403)):
            wrong.append((method, path, "anonymous", anonymous.status_code))
        bearer = client.request(method, url, headers=site.bearer("admin"), follow_redirects=False)
        if bearer.status_code < 300 or (bearer.status_code == 303 and
                                        not bearer.headers["location"].startswith("/console/login")):
            wrong.append((method, path, "API token instead of a session", bearer.status_code))
        for role in ROLES:
            cookies, csrf = site.session(role)
            if method == "GET":
                got = client.get(url, headers=cookies, follow_redirects=False)
            else:
                if path == "/console/logout":
                    continue  # would end the session the other cells use: checked last, below
                got = client.request(method, url, data={"csrf_token": csrf}, follow_redirects=False,
                                     headers={**cookies, "X-CSRF-Token": csrf, "Origin": site.http})
            refused = got.status_code in (401, 403) or (
                got.status_code == 303 and got.headers["location"].startswith("/console/login"))
            if (role in allowed) == refused or got.status_code >= 500:
                wrong.append((method, path, role, got.status_code))
    assert not wrong, f"cells that did not answer as docs/security.md says: {wrong}"


def test_public_routes_answer_anyone(site: Site, client: httpx.Client) -> None:
    wrong = []
    for method, path in PUBLIC_ROWS:
        url = {"/widget/settings/{site}": "/widget/settings/default", "/widget/frame/{site}": "/widget/frame/default",
               }.get(path, concrete(path))
        got = call(client, method, url, follow_redirects=False)
        csrf = got.status_code == 403 and "csrf_failed" in got.text  # a form without its token: not a role check
        if (got.status_code in (401, 403) and not csrf) or got.status_code >= 500:
            wrong.append((method, path, got.status_code))
    assert not wrong, wrong


def test_metrics_follow_their_own_rule(site: Site, client: httpx.Client) -> None:
    assert client.get("/metrics").status_code == 200  # from this machine, the default
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403
    assert client.get("/metrics", headers=site.bearer("admin") | {"X-Forwarded-For": "203.0.113.7"}).status_code == 403


def test_csat_links_open_only_their_own_ticket(site: Site, client: httpx.Client) -> None:
    """The link is the credential: another ticket's holder, a forged or tampered token, or an agent's API
    token opens nothing; a link made for another purpose (a visitor token) is refused too."""
    from chatsvc.live.identity import TokenSigner
    from tests.support.server import run_sync

    tickets = []
    for i in range(2):
        made = client.post("/api/v1/tickets", headers=site.bearer("agent"), json={
            "text": f"gate code {i}", "customer_email": f"c{i}@example.com", "subject": f"Gate {i}"})
        assert made.status_code == 201
        tickets.append(made.json()["id"])
    secret = run_sync(lambda: _secret(site.database_url))
    signer = TokenSigner(secret)
    mine, theirs = (signer.sign_purpose("csat", str(t)) for t in tickets)
    assert client.get(f"/csat/{mine}").status_code == 200
    assert f"#{tickets[0]}" in client.get(f"/csat/{mine}").text
    assert client.post(f"/csat/{theirs}", data={"rating": "good"}).status_code == 200  # its holder rates it
    for token in (mine[:-2] + ("AA" if not mine.endswith("AA") else "BB"),
                  TokenSigner("another-key").sign_purpose("csat", str(tickets[0])),
                  signer.issue("visitor-1", "default"), signer.sign_purpose("other", str(tickets[0])),
                  site.members["admin"].token):
        for method in ("GET", "POST"):
            got = client.request(method, f"/csat/{token}", data={"rating": "bad"},
                                 headers=site.bearer("admin"))
            assert got.status_code == 404, (method, token, got.status_code)
    ratings = run_sync(lambda: _ratings(site.database_url))
    assert ratings == {tickets[1]: "good"}, "only the holder of a ticket's own link rated it"


async def _secret(database_url: str) -> str:
    from chatsvc.store import db

    engine = db.create_engine(database_url)
    try:
        async with engine.begin() as conn:
            return await db.secret_key(conn)
    finally:
        await engine.dispose()


async def _ratings(database_url: str) -> dict[int, str]:
    from sqlalchemy import select

    from chatsvc.store import db
    from chatsvc.store.tables import csat_responses

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(csat_responses.c.ticket_id, csat_responses.c.rating))).all()
        return {r.ticket_id: r.rating for r in rows if r.ticket_id is not None}
    finally:
        await engine.dispose()


def test_logout_ends_the_session(site: Site, client: httpx.Client) -> None:
    cookies, csrf = site.session("writer")
    done = client.post("/console/logout", data={"csrf_token": csrf}, headers={**cookies, "Origin": site.http},
                       follow_redirects=False)
    assert done.status_code in (200, 303), done.status_code
    after = client.get("/console/password", headers=cookies, follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/console/login")
