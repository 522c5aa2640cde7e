"""The help-center REST API and public pages against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.poll import poll
from tests.ws.conftest import Deployment

HOSTILE = ("Hello <script>alert(1)</script> <img src=x onerror=alert(2)> "
           "[click](javascript:alert(3)) <a href=\"https://ok.example\">ok</a> <b>unclosed")


@pytest.fixture
def http(live: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.server.http, timeout=10) as client:
        yield client


def auth(live: Deployment, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.token(who)}"}


def test_crud_publish_and_roles(live: Deployment, http: httpx.Client) -> None:
    lead, agent = auth(live, "Lee"), auth(live, "Ann")
    body = {"id": "gate-codes", "title": "Change the gate code", "body": "Go to **Settings → Access**.",
            "tags": ["access"]}
    assert http.post("/api/v1/articles", json=body).status_code == 401
    forbidden = http.post("/api/v1/articles", json=body, headers=agent)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    created = http.post("/api/v1/articles", json=body, headers=lead)
    assert created.status_code == 201
    article = created.json()
    assert article["status"] == "draft" and article["slug"] == "change-the-gate-code"
    assert "<strong>Settings → Access</strong>" in article["body_html"]
    assert http.post("/api/v1/articles", json=body, headers=lead).status_code == 409

    # Agents read; drafts are not public.
    assert http.get("/api/v1/articles/gate-codes", headers=agent).json()["title"] == "Change the gate code"
    assert http.get("/help/change-the-gate-code").status_code == 404
    assert http.post("/api/v1/articles/gate-codes/publish", headers=lead).json()["status"] == "published"
    page = http.get("/help/change-the-gate-code")
    assert page.status_code == 200 and "Change the gate code" in page.text

    updated = http.put("/api/v1/articles/gate-codes", headers=lead, json={"title": "Change or reset the gate code"})
    assert updated.json()["version"] == 3 and updated.json()["slug"] == "change-or-reset-the-gate-code"
    listing = http.get("/api/v1/articles", headers=agent, params={"status": "published"}).json()
    assert [a["id"] for a in listing["items"]] == ["gate-codes"] and listing["total"] == 1
    assert http.post("/api/v1/articles/gate-codes/unpublish", headers=lead).json()["status"] == "draft"
    assert http.delete("/api/v1/articles/gate-codes", headers=agent).status_code == 403
    assert http.delete("/api/v1/articles/gate-codes", headers=lead).status_code == 204
    assert http.get("/api/v1/articles/gate-codes", headers=agent).status_code == 404


def test_bad_requests_get_clear_codes(live: Deployment, http: httpx.Client) -> None:
    lead = auth(live, "Lee")
    cases = [
        (http.post("/api/v1/articles", content=b"{nope", headers=lead), 400, "bad_json"),
        (http.post("/api/v1/articles", json=[1], headers=lead), 400, "bad_request"),
        (http.post("/api/v1/articles", json={"title": "x", "body": "y", "color": "red"}, headers=lead), 400,
         "bad_request"),
        (http.post("/api/v1/articles", json={"id": "a", "title": " ", "body": "y"}, headers=lead), 422,
         "invalid_article"),
        (http.post("/api/v1/articles", json={"id": "a", "title": "t", "body": "b", "status": "live"}, headers=lead),
         422, "invalid_article"),
        (http.put("/api/v1/articles/missing", json={"title": "x"}, headers=lead), 404, "not_found"),
        (http.post("/api/v1/articles/missing/publish", headers=lead), 404, "not_found"),
        (http.get("/api/v1/articles", params={"limit": "lots"}, headers=lead), 400, "bad_request"),
        (http.get("/api/v1/suggest", params={"q": "  "}, headers=lead), 400, "empty"),
        (http.post("/api/v1/articles", content=b"x" * 1_100_000, headers={**lead, "content-type": "application/json"}),
         413, "too_large"),
        (http.get("/api/v1/articles", headers={"Authorization": "Bearer nope"}), 401, "unauthorized"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code


def test_hostile_html_is_never_served_unsanitised(live: Deployment, http: httpx.Client) -> None:
    lead = auth(live, "Lee")
    created = http.post("/api/v1/articles", headers=lead, json={
        "id": "hostile", "title": "<script>alert('t')</script> Title", "body": HOSTILE, "status": "published"})
    html = created.json()["body_html"]
    for bad in ("<script", "onerror", 'href="javascript:'):
        assert bad not in html.lower()  # "javascript:" may remain as inert text, never as a link
    assert 'rel="noopener noreferrer"' in html
    page = http.get(f"/help/{created.json()['slug']}").text
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "onerror" not in page and 'href="javascript:' not in page
    index = http.get("/help").text
    assert "<script>alert" not in index


def test_suggest_endpoint(live: Deployment, http: httpx.Client) -> None:
    lead = auth(live, "Lee")
    http.post("/api/v1/articles", headers=lead, json={
        "id": "pool", "title": "Book the pool", "body": "Open Amenities, pick the pool and a time slot.",
        "status": "published"})
    found = poll(lambda: http.get("/api/v1/suggest", headers=lead, params={"q": "how do I book the pool?"}).json(),
                 lambda found: bool(found["articles"]))
    assert found["articles"][0]["id"] == "pool"
    assert found["articles"][0]["url"].endswith("/help/book-the-pool")
