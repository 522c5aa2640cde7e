"""The OpenAPI document is the REST API's contract: valid OpenAPI 3.1, listing exactly the routes the app
mounts under /api/v1 with their methods, true to what a real server answers, and matched by docs/api.md."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import BaseRoute, Mount, Route

from chatsvc.app import create_app
from chatsvc.settings import Settings
from chatsvc.web.openapi_spec import API_FEATURE_LEVEL, build_document
from tests.support.server import make_agent
from tests.ws.conftest import Deployment

DOC = build_document()
BASE = "urn:chatsvc:openapi"
REGISTRY = Registry().with_resource(BASE, Resource.from_contents(DOC, DRAFT202012))
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
API_MD = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
ROOT = Path(__file__).parents[2] / "chatsvc"


def operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOC["paths"].items() for method in item if method in METHODS}


def mounted(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from mounted(list(route.routes), prefix + route.path)
        elif isinstance(route, Route) and (prefix + route.path).startswith("/api/v1"):
            for method in route.methods or ():
                if method != "HEAD":  # Starlette adds HEAD to every GET
                    yield method, prefix + route.path


# ------------------------------------------------------------------ the document itself


def test_the_document_is_valid_openapi_3_1() -> None:
    validate_openapi(DOC)
    assert DOC["openapi"].startswith("3.1")
    for schema in DOC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_api_route_is_documented_with_its_methods_and_nothing_else() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///./never-opened.db"))
    routes = set(mounted(app.routes))
    assert routes, "the app mounts routes under /api/v1"
    undocumented = sorted(routes - operations())
    stale = sorted(operations() - routes)
    assert not undocumented, f"mounted but not in the OpenAPI document: {undocumented}"
    assert not stale, f"documented but not mounted: {stale}"


def test_operations_are_complete() -> None:
    ids = []
    for method, path in operations():
        op = DOC["paths"][path][method.lower()]
        ids.append(op["operationId"])
        assert op["summary"] and op["responses"], (method, path)
        assert any(code.startswith("2") for code in op["responses"]), f"{method} {path} has no success response"
        assert set(re.findall(r"\{(\w+)\}", path)) == {
            p["name"] for p in [*DOC["paths"][path].get("parameters", []), *op.get("parameters", [])]
            if p["in"] == "path"}, f"{method} {path}: path parameters"
        if op["x-roles"]:
            assert "401" in op["responses"], f"{method} {path} needs a token, so it can answer 401"
        else:
            assert op["security"] == [], f"{method} {path} is public"
    assert len(ids) == len(set(ids)), "operation ids are unique"


def test_every_error_code_the_code_raises_is_documented() -> None:
    documented = set(DOC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    raised = set()
    for path in ROOT.rglob("*.py"):
        raised |= set(re.findall(r"ApiError\(\s*\d{3},\s*\"([a-z_]+)\"", path.read_text()))
    for path in (ROOT / "tickets").glob("*.py"):  # the ticket service's errors reach the API as they are
        raised |= set(re.findall(r"ServiceError\(\s*\"([a-z_]+)\"", path.read_text()))
    assert raised and raised <= documented, f"raised but not documented: {sorted(raised - documented)}"


# ------------------------------------------------------------------ docs/api.md


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", API_MD, re.DOTALL | re.MULTILINE)
    assert match, f"docs/api.md has no section {title!r}"
    return match.group(1)


def test_docs_list_every_operation_with_its_roles() -> None:
    rows = re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| ([^|]+) \|", section("Endpoints"), re.MULTILINE)
    table = {(method, path): roles.strip() for method, path, roles in rows}
    assert set(table) == operations()
    for (method, path), roles in table.items():
        documented = DOC["paths"][path][method.lower()]["x-roles"]
        assert roles == (", ".join(documented) if documented else "public"), f"{method} {path}"


def test_docs_list_every_error_code() -> None:
    codes = set(DOC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert set(re.findall(r"^\| `([a-z_]+)` \|", section("Errors"), re.MULTILINE)) == codes


def test_docs_state_the_feature_level_and_every_webhook_event() -> None:
    assert f"API feature level: **{API_FEATURE_LEVEL}**" in API_MD
    assert f"- Level {API_FEATURE_LEVEL}:" in section("Changelog")
    events = set(re.findall(r"^### `([a-z]+\.[a-z]+)`", section("Webhooks"), re.MULTILINE))
    assert events == set(DOC["webhooks"])


# ------------------------------------------------------------------ against a real server


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


TEMPLATES = sorted(DOC["paths"], key=lambda p: ("{" in p, p))  # literal paths win over templated ones


class Contract:
    """Checks each response against the schema documented for its operation and status code."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, int]] = set()

    def check(self, response: httpx.Response) -> Any:
        method, path = response.request.method, response.request.url.path
        template = next((t for t in TEMPLATES if method.lower() in DOC["paths"][t]
                         and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", t), path)), None)
        assert template, f"{method} {path} is not in the document"
        status = str(response.status_code)
        responses = DOC["paths"][template][method.lower()]["responses"]
        assert status in responses, f"{method} {path} answered {status}, not documented: {response.text[:300]}"
        self.seen.add((method, template, response.status_code))
        content = responses[status].get("content")
        if content is None:
            assert response.content == b""
            return None
        body = response.json()
        where = _pointer("", "paths", template, method.lower(), "responses", status, "content", "application/json",
                         "schema")
        validator = jsonschema.Draft202012Validator({"$ref": f"{BASE}#{where}"}, registry=REGISTRY,
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
        return body


@pytest.fixture
def http(live: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.server.http, timeout=10) as client:
        yield client


def test_real_responses_match_the_document(live: Deployment, http: httpx.Client) -> None:
    contract = Contract()
    check = contract.check
    ann = {"Authorization": f"Bearer {live.token('Ann')}"}
    lee = {"Authorization": f"Bearer {live.token('Lee')}"}
    _, manager_token = make_agent(live.database_url, "Mia", role="manager")
    mia = {"Authorization": f"Bearer {manager_token}"}

    served = check(http.get("/api/v1/openapi.json"))
    assert served == json.loads(json.dumps(DOC))

    # Tickets.
    check(http.post("/api/v1/contact", json={"name": "Kim", "email": "kim@example.com", "subject": "Refund",
                                             "message": "payment failed twice"}))
    check(http.post("/api/v1/contact", json={"email": "bot@example.com", "message": "hi", "website": "x"}))
    check(http.post("/api/v1/contact", json={"email": "not-an-address", "message": "hi"}))
    ticket = check(http.post("/api/v1/tickets", headers=ann, json={
        "channel": "phone", "subject": "Gate code", "text": "The gate code does not work", "customer_name": "Pat",
        "customer_email": "pat@example.com", "priority": "P3"}))
    number = ticket["id"]
    check(http.post("/api/v1/tickets", headers=ann, json={"text": "x", "priority": "P9"}))
    check(http.get("/api/v1/tickets", headers=ann, params={"sort": "sla", "status": "new,open"}))
    check(http.get("/api/v1/tickets", headers=ann, params={"sort": "random"}))
    check(http.get("/api/v1/tickets"))
    check(http.get("/api/v1/tickets/99999", headers=ann))
    check(http.post(f"/api/v1/tickets/{number}/notes", headers=ann, json={"text": "checked the gate log"}))
    check(http.post(f"/api/v1/tickets/{number}/notes", headers=ann, content=b"{"))
    check(http.post(f"/api/v1/tickets/{number}/assign", headers=ann, json={"agent_id": live.id("Ann")}))
    check(http.post(f"/api/v1/tickets/{number}/status", headers=ann, json={"action": "start"}))
    check(http.post(f"/api/v1/tickets/{number}/status", headers=ann, json={"action": "reopen"}))
    check(http.post(f"/api/v1/tickets/{number}/replies", headers=ann, json={"text": "Try 4711 until Friday."}))
    check(http.post(f"/api/v1/tickets/{number}/replies", headers=ann, json={"text": " "}))
    check(http.post(f"/api/v1/tickets/{number}/escalate", headers=ann, json={
        "type": "technical", "reason": "Gate controller offline", "note": "Reset tried; needs an on-site visit."}))
    check(http.post(f"/api/v1/tickets/{number}/escalate", headers=ann, json={"type": "technical"}))
    check(http.get(f"/api/v1/tickets/{number}", headers=ann))
    check(http.patch(f"/api/v1/tickets/{number}", headers=ann, json={"priority": "P2", "category": "access"}))
    check(http.patch(f"/api/v1/tickets/{number}", headers=ann, json={"status": "closed"}))
    duplicate = check(http.post("/api/v1/tickets", headers=ann, json={
        "text": "The gate code still does not work", "customer_email": "pat@example.com"}))["id"]
    check(http.post(f"/api/v1/tickets/{duplicate}/merge", headers=ann, json={"into": duplicate}))
    check(http.post(f"/api/v1/tickets/{duplicate}/merge", headers=ann, json={"into": number}))
    check(http.get(f"/api/v1/tickets/{number}/audit", headers=ann))
    custom = check(http.post("/api/v1/macros", headers=lee, json={
        "name": "Gate code", "body": "Hi {{ customer_name }}, the gate code is on its way."}))
    check(http.post("/api/v1/macros", headers=lee, json={"name": "Sneaky", "body": "{{ config }}"}))
    check(http.post("/api/v1/macros", headers=ann, json={"name": "Mine", "body": "Hi"}))
    macros = check(http.get("/api/v1/macros", headers=ann))["items"]
    assert [m["builtin"] for m in macros[-1:]] == [False]
    check(http.post(f"/api/v1/tickets/{number}/macros/{custom['id']}", headers=ann))
    check(http.delete(f"/api/v1/macros/{custom['id']}", headers=lee))
    check(http.delete(f"/api/v1/macros/{custom['id']}", headers=lee))
    check(http.post(f"/api/v1/tickets/{number}/macros/no-such-macro", headers=ann))
    check(http.post("/api/v1/tickets-bulk/assign", headers=ann, json={"ticket_ids": [number], "agent_id": None}))
    check(http.post("/api/v1/tickets-bulk/assign", headers=lee, json={"ticket_ids": [number, 4242],
                                                                     "agent_id": live.id("Bob")}))

    # The help center.
    article = check(http.post("/api/v1/articles", headers=lee, json={
        "id": "gate-codes", "title": "Change the gate code", "body": "Go to **Settings → Access**.",
        "tags": ["access"]}))
    check(http.post("/api/v1/articles", headers=ann, json={"title": "t", "body": "b"}))
    check(http.post("/api/v1/articles", headers=lee, json={"title": " ", "body": "b"}))
    check(http.get(f"/api/v1/articles/{article['id']}", headers=ann))
    check(http.put(f"/api/v1/articles/{article['id']}", headers=lee, json={"tags": ["access", "gate"]}))
    check(http.patch(f"/api/v1/articles/{article['id']}", headers=lee, json={"title": "Change a gate code"}))
    check(http.post(f"/api/v1/articles/{article['id']}/publish", headers=lee))
    check(http.get("/api/v1/articles", headers=ann, params={"status": "published"}))
    check(http.get("/api/v1/suggest", headers=ann, params={"q": "how do I change the gate code"}))
    check(http.get("/api/v1/suggest", headers=ann, params={"q": " "}))
    check(http.post(f"/api/v1/articles/{article['id']}/unpublish", headers=lee))
    check(http.delete(f"/api/v1/articles/{article['id']}", headers=lee))
    check(http.get(f"/api/v1/articles/{article['id']}", headers=ann))

    # Webhooks: a receiver nobody runs, so deliveries stay pending or fail; their shape is what is checked.
    hook = check(http.post("/api/v1/webhooks", headers=mia, json={
        "url": "http://127.0.0.1:9/hooks", "events": ["ticket.created", "ticket.updated"]}))
    check(http.post("/api/v1/webhooks", headers=mia, json={"url": "file:///etc/passwd", "events": ["ticket.created"]}))
    check(http.post("/api/v1/webhooks", headers=ann, json={"url": "http://127.0.0.1:9/", "events": ["sla.breached"]}))
    check(http.post("/api/v1/tickets", headers=ann, json={"text": "Second gate broken", "customer_name": "Pat"}))
    check(http.get("/api/v1/webhooks", headers=mia))
    log = check(http.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=mia))
    assert [d["event"] for d in log["items"]] == ["ticket.created"], "the new ticket queued its event"
    check(http.delete(f"/api/v1/webhooks/{hook['id']}", headers=mia))
    check(http.delete(f"/api/v1/webhooks/{hook['id']}", headers=mia))

    # Article gaps: unanswered questions, clustered on demand.
    from tests.gaps.support import seed_store

    seed_store(live.database_url)
    check(http.post("/api/v1/gaps/run", headers=lee, json={"full": True}, timeout=180))  # loads the embedder
    gaps = check(http.get("/api/v1/gaps", headers=lee))["items"]
    check(http.get("/api/v1/gaps", headers=ann))
    check(http.get("/api/v1/gaps", headers=lee, params={"status": "nope"}))
    first, second = gaps[0]["id"], gaps[1]["id"]
    check(http.get(f"/api/v1/gaps/{first}", headers=lee))
    check(http.get("/api/v1/gaps/nope", headers=lee))
    check(http.post(f"/api/v1/gaps/{first}/draft", headers=lee))
    check(http.post(f"/api/v1/gaps/{first}/coverage", headers=lee))
    check(http.post(f"/api/v1/gaps/{second}/dismiss", headers=lee))
    check(http.post(f"/api/v1/gaps/{second}/reopen", headers=lee))
    check(http.post(f"/api/v1/gaps/{second}/merge", headers=lee, json={"into": first}))
    check(http.post(f"/api/v1/gaps/{second}/dismiss", headers=lee))

    # Metrics.
    check(http.get("/api/v1/metrics", headers=lee, params={"group": "week", "tz": "America/New_York"}))
    check(http.get("/api/v1/metrics", headers=mia, params={"from": "2026-01-01", "to": "2025-01-01"}))
    check(http.get("/api/v1/metrics", headers=ann))

    succeeded = {(method, path) for method, path, status in contract.seen if status < 300}
    assert succeeded == operations(), f"operations not exercised: {sorted(operations() - succeeded)}"
