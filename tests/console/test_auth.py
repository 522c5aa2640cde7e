"""Console log-in against a real server: passwords, the session cookie, CSRF, roles, throttling, log-out."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from contextlib import closing

import httpx
import pytest
import websockets

from chatsvc.ws.protocol import CloseCode
from tests.console.conftest import PASSWORD, Console, Team, login, login_token, page_csrf
from tests.support.server import Client


def fresh(console: Console) -> httpx.Client:
    return httpx.Client(base_url=console.http, timeout=20, follow_redirects=False)


def test_log_in_sets_an_httponly_samesite_session_cookie_and_lands_on_the_roles_page(team: Team) -> None:
    ann = team.add("agent")
    with fresh(team.console) as client:
        response = login(client, ann.email, PASSWORD)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/queue"
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("chatsvc_session="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "samesite"} <= attributes and "samesite=lax" in cookie.lower()
        assert "secure" not in attributes, "plain http on 127.0.0.1: a Secure cookie would never come back"
        page = client.get("/console/password")
        assert page.status_code == 200 and ann.name in page.text
    writer = team.add("writer")
    with fresh(team.console) as client:
        assert login(client, writer.email, PASSWORD).headers["location"] == "/console/gaps"


def test_wrong_password_and_unknown_email_get_the_same_answer(team: Team) -> None:
    ann = team.add("agent")
    with fresh(team.console) as client:
        wrong = login(client, ann.email, "not the password at all")
        unknown = login(client, f"nobody-{uuid.uuid4().hex[:6]}@example.com", "not the password at all")
        assert wrong.status_code == unknown.status_code == 401
        for response in (wrong, unknown):
            assert "The e-mail or password is wrong." in response.text
            assert "chatsvc_session" not in response.headers.get("set-cookie", "")


def test_pages_redirect_to_log_in_and_back(console: Console, team: Team) -> None:
    lee = team.add("lead")
    with fresh(console) as client:
        response = client.get("/console/password?tab=1")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/login?next=/console/password%3Ftab%3D1"
        back = login(client, lee.email, PASSWORD, next_path="/console/password?tab=1")
        assert back.headers["location"] == "/console/password?tab=1"
    with fresh(console) as client:  # no open redirect
        assert login(client, lee.email, PASSWORD, next_path="//evil.example/x").headers["location"] == "/console/queue"


def test_a_role_cannot_open_another_roles_page_or_api_route(team: Team) -> None:
    writer, agent = team.add("writer"), team.add("agent")
    with closing(team.console.login(writer)) as client:
        page = client.get("/console/queue")
        assert page.status_code == 403 and "Not for your role" in page.text
        assert "/console/queue" not in page.text.split("<main")[0], "the nav hides sections the role may not open"
        api = client.get("/api/v1/tickets")
        assert api.status_code == 403 and api.json()["error"]["code"] == "forbidden"
        assert client.get("/console/api/queue").status_code == 403
    with closing(team.console.login(agent)) as client:
        csrf = page_csrf(client.get("/console/queue").text)
        created = client.post("/api/v1/macros", json={"name": "Nope", "body": "Hi"},
                              headers={"X-CSRF-Token": csrf})
        assert created.status_code == 403 and created.json()["error"]["code"] == "forbidden"
        assert client.get("/api/v1/macros").status_code == 200


def test_forms_and_cookie_api_calls_without_the_csrf_token_are_rejected(team: Team) -> None:
    lee = team.add("lead")
    with closing(team.console.login(lee)) as client:
        csrf = page_csrf(client.get("/console/password").text)
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post("/console/logout", data=data)
            assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
            change = client.post("/console/password", data={**data, "current_password": PASSWORD,
                                                             "new_password": "x" * 12, "confirm_password": "x" * 12})
            assert change.status_code == 403
        assert client.get("/console/password").status_code == 200, "the session survived the forged posts"
        body = {"name": f"Thanks {uuid.uuid4().hex[:6]}", "body": "Thanks {{ customer_name }}"}
        assert client.post("/api/v1/macros", json=body).status_code == 403
        assert client.post("/api/v1/macros", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
        assert client.post("/api/v1/macros", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    with fresh(team.console) as client:  # the log-in form has its own token (no log-in CSRF)
        login_token(client)
        forged = client.post("/console/login", data={"email": lee.email, "password": PASSWORD})
        assert forged.status_code == 403


async def agent_socket(console: Console, cookie: str, origin: str | None) -> Client:
    kwargs: dict = {"additional_headers": {"Cookie": f"chatsvc_session={cookie}"}}
    if origin:
        kwargs["origin"] = origin
    ws = await Client.connect(f"{console.ws}/ws/agent", "server_to_agent", **kwargs)
    await ws.send({"type": "hello", "cursors": {}})
    return ws


async def test_logout_ends_the_session_and_its_live_socket(team: Team) -> None:
    ann = team.add("agent")
    client = await asyncio.to_thread(team.console.login, ann)
    cookie = client.cookies["chatsvc_session"]
    ws = await agent_socket(team.console, cookie, team.console.http)
    assert (await ws.expect("welcome"))["agent"]["id"] == ann.id
    csrf = page_csrf((await asyncio.to_thread(client.get, "/console/password")).text)
    out = await asyncio.to_thread(client.post, "/console/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert (await ws.expect("error", timeout=15))["code"] == "unauthorized"
    await asyncio.wait_for(ws.ws.wait_closed(), 15)
    assert ws.ws.close_code == CloseCode.UNAUTHORIZED
    client.close()
    with httpx.Client(base_url=team.console.http, cookies={"chatsvc_session": cookie},
                      follow_redirects=False) as again:
        assert again.get("/console/password").status_code == 303
        assert again.get("/api/v1/macros").status_code == 401


async def test_the_agent_socket_takes_the_cookie_only_from_this_servers_pages(team: Team) -> None:
    ann = team.add("agent")
    with closing(await asyncio.to_thread(team.console.login, ann)) as client:
        cookie = client.cookies["chatsvc_session"]
    ws = await agent_socket(team.console, cookie, team.console.http)
    assert (await ws.recv())["type"] == "welcome"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:  # another site's page
        await agent_socket(team.console, cookie, "https://evil.example")
    assert refused.value.response.status_code == 403
    for origin, value in ((None, cookie), (team.console.http, "forged")):  # not a page of ours; no session
        ws = await agent_socket(team.console, value, origin)
        frame = await ws.recv()
        assert frame["type"] == "error" and frame["code"] == "unauthorized", (origin, value)


def test_password_change_ends_every_other_session(team: Team) -> None:
    ann = team.add("agent")
    laptop, phone = team.console.login(ann), team.console.login(ann)
    csrf = page_csrf(laptop.get("/console/password").text)
    weak = laptop.post("/console/password", data={"csrf_token": csrf, "current_password": PASSWORD,
                                                   "new_password": "short", "confirm_password": "short"})
    assert weak.status_code == 400 and "at least 10" in weak.text
    wrong = laptop.post("/console/password", data={"csrf_token": csrf, "current_password": "nope nope nope",
                                                    "new_password": "a new long secret", "confirm_password": "a new long secret"})
    assert wrong.status_code == 400 and "current password is wrong" in wrong.text
    done = laptop.post("/console/password", data={"csrf_token": csrf, "current_password": PASSWORD,
                                                   "new_password": "a new long secret",
                                                   "confirm_password": "a new long secret"})
    assert done.status_code == 200 and "Your password is changed" in done.text
    assert laptop.get("/console/password").status_code == 200, "the browser that changed it stays logged in"
    assert phone.get("/console/password").status_code == 303, "every other session has ended"
    with fresh(team.console) as client:
        assert login(client, ann.email, PASSWORD).status_code == 401
        assert login(client, ann.email, "a new long secret").status_code == 303
    laptop.close()
    phone.close()


def test_repeated_failures_throttle_the_email_without_telling_whether_it_exists(team: Team) -> None:
    ann = team.add("agent")
    ghost = f"ghost-{uuid.uuid4().hex[:6]}@example.com"
    with fresh(team.console) as client:
        for email in (ann.email, ghost):
            for _ in range(5):
                assert login(client, email, "guess guess guess").status_code == 401
            blocked = login(client, email, PASSWORD)
            assert blocked.status_code == 429 and "Too many failed log-ins" in blocked.text
        other = team.add("agent")
        assert login(client, other.email, PASSWORD).status_code == 303, "other e-mails are not locked out"


def test_cli_sets_passwords(console: Console, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from chatsvc.cli import main

    email = f"cli-{uuid.uuid4().hex[:6]}@example.com"
    monkeypatch.setenv("CHATSVC_DATABASE_URL", console.database_url)
    monkeypatch.setattr("sys.stdin", io.StringIO("first long password\n"))
    assert main(["agent", "add", "--name", "Cli", "--email", email, "--role", "manager", "--password-stdin"]) == 0
    assert "API token (shown once)" in capsys.readouterr().out
    with fresh(console) as client:
        assert login(client, email, "first long password").headers["location"] == "/console/queue"
        assert client.get("/console/password").status_code == 200
        monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
        assert main(["agent", "passwd", "--email", email, "--password-stdin"]) == 2
        monkeypatch.setattr("sys.stdin", io.StringIO("second long password\n"))
        assert main(["agent", "passwd", "--email", email, "--password-stdin"]) == 0
        assert client.get("/console/password").status_code == 303, "passwd ends the agent's log-ins"
        assert login(client, email, "second long password").status_code == 303



def test_admins_add_people_change_roles_and_reset_passwords(team: Team) -> None:
    ada, ann = team.add("admin"), team.add("agent")
    with closing(team.console.login(ann)) as client:
        assert client.get("/console/users").status_code == 403
    email = f"new-{uuid.uuid4().hex[:6]}@example.com"
    with closing(team.console.login(ada)) as admin:
        page = admin.get("/console/users")
        assert page.status_code == 200 and ann.email in page.text and 'href="/console/users"' in page.text
        csrf = page_csrf(page.text)
        assert admin.post("/console/users", data={"name": "New Person", "email": email, "role": "writer",
                                                   "password": "a first password"}).status_code == 403
        added = admin.post("/console/users", data={"csrf_token": csrf, "name": "New Person", "email": email,
                                                    "role": "writer", "password": "a first password"})
        assert added.status_code == 201 and "API token" in added.text
        again = admin.post("/console/users", data={"csrf_token": csrf, "name": "Twin", "email": email.upper(),
                                                    "role": "agent", "password": "a first password"})
        assert again.status_code == 409
        with closing(fresh(team.console)) as newcomer:
            assert login(newcomer, email, "a first password").headers["location"] == "/console/gaps"
            person_id = re.search(r'<tr data-agent="([^"]+)">\s*<td>New Person', added.text).group(1)
            assert admin.post(f"/console/users/{person_id}/role",
                              data={"csrf_token": csrf, "role": "lead"}).status_code == 200
            assert newcomer.get("/console/queue").status_code == 200, "the new role counts at once"
            reset = admin.post(f"/console/users/{person_id}/password",
                               data={"csrf_token": csrf, "password": "a reset password"})
            assert reset.status_code == 200
            assert newcomer.get("/console/queue").status_code == 303, "a reset ends their log-ins"
            assert login(newcomer, email, "a reset password").status_code == 303
