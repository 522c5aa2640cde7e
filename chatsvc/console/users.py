"""The team page (admins): who has an account, with which role; add people, change roles, reset passwords.

    GET  /console/users                       the team, and a form to add someone
    POST /console/users                       add someone (name, e-mail, role, first password)
    POST /console/users/{id}/role             change a role
    POST /console/users/{id}/password         set a new password (ends that person's log-ins)
    POST /console/users/{id}/logout           end every log-in of that person
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from chatsvc.console.auth import (
    MAX_PASSWORD_CHARS,
    ROLES,
    check_csrf,
    end_sessions,
    password_problem,
    render,
    require_page,
    section_roles,
    set_password,
)
from chatsvc.live.service import iso
from chatsvc.store.tables import agents, console_sessions

TEAM_ROLES = section_roles("users")


async def _team(request: Request) -> list[dict[str, Any]]:
    service = request.app.state.runtime.service
    now = service.clock()
    async with service.engine.connect() as conn:
        sessions = dict((await conn.execute(
            select(console_sessions.c.agent_id, func.count()).where(console_sessions.c.expires_at > now)
            .group_by(console_sessions.c.agent_id))).all())
        rows = (await conn.execute(select(agents).order_by(agents.c.name))).all()
    return [{"id": r.id, "name": r.name, "email": r.email, "role": r.role, "presence": r.presence,
             "capacity": r.capacity, "last_seen": iso(r.last_seen_at), "has_password": bool(r.password_hash),
             "sessions": int(sessions.get(r.id, 0))} for r in rows]


async def _page(request: Request, *, status: int = 200, error: str | None = None, done: str | None = None,
                token: str | None = None, form: dict[str, str] | None = None) -> Response:
    return render(request, "console/users.html", {
        "team": await _team(request), "roles": ROLES, "error": error, "done": done, "token": token,
        "form": form or {}}, status=status)


async def users_page(request: Request) -> Response:
    await require_page(request, TEAM_ROLES)
    if request.method == "GET":
        return await _page(request)
    form = await request.form()
    await check_csrf(request, form)
    name = str(form.get("name", "")).strip()[:200]
    email = str(form.get("email", "")).strip()[:320]
    role = str(form.get("role", ""))
    password = str(form.get("password", ""))[:MAX_PASSWORD_CHARS + 1]
    kept = {"name": name, "email": email, "role": role}
    if not name or "@" not in email:
        return await _page(request, status=400, error="Give a name and an e-mail address.", form=kept)
    if role not in ROLES:
        return await _page(request, status=400, error="Choose a role.", form=kept)
    problem = password_problem(password, email=email)
    if problem:
        return await _page(request, status=400, error=problem, form=kept)
    service = request.app.state.runtime.service
    async with service.engine.connect() as conn:
        taken = (await conn.execute(select(agents.c.id).where(func.lower(agents.c.email) == email.lower()))).first()
    if taken is not None:
        return await _page(request, status=409, error="Someone on the team already has that e-mail.", form=kept)
    try:
        agent_id, token = await service.create_agent(name, email, role)
    except IntegrityError:
        return await _page(request, status=409, error="Someone on the team already has that e-mail.", form=kept)
    await set_password(service.engine, agent_id, password)
    return await _page(request, status=201, done=f"{name} can now log in as {email}.", token=token)


async def _target(request: Request) -> Any:
    service = request.app.state.runtime.service
    async with service.engine.connect() as conn:
        return (await conn.execute(select(agents).where(agents.c.id == request.path_params["id"]))).first()


async def change_role(request: Request) -> Response:
    admin = await require_page(request, TEAM_ROLES)
    form = await request.form()
    await check_csrf(request, form)
    target = await _target(request)
    role = str(form.get("role", ""))
    if target is None:
        return await _page(request, status=404, error="No such person.")
    if role not in ROLES:
        return await _page(request, status=400, error="Choose a role.")
    service = request.app.state.runtime.service
    async with service.engine.begin() as conn:
        if target.role == "admin" and role != "admin":
            admins = (await conn.execute(select(func.count()).select_from(agents)
                                         .where(agents.c.role == "admin"))).scalar_one()
            if admins <= 1:
                return await _page(request, status=409, error="The team needs at least one admin.")
        await conn.execute(update(agents).where(agents.c.id == target.id).values(role=role))
    if target.id == admin.id and role not in TEAM_ROLES:
        return RedirectResponse("/console/", status_code=303)
    return await _page(request, done=f"{target.name} is now {role}.")


async def reset_password(request: Request) -> Response:
    await require_page(request, TEAM_ROLES)
    form = await request.form()
    await check_csrf(request, form)
    target = await _target(request)
    if target is None:
        return await _page(request, status=404, error="No such person.")
    password = str(form.get("password", ""))[:MAX_PASSWORD_CHARS + 1]
    problem = password_problem(password, email=target.email)
    if problem:
        return await _page(request, status=400, error=problem)
    service = request.app.state.runtime.service
    await set_password(service.engine, target.id, password, end_sessions=False)
    await end_sessions(request, target.id)
    return await _page(request, done=f"{target.name} has a new password; their log-ins have been ended.")


async def log_out_everywhere(request: Request) -> Response:
    await require_page(request, TEAM_ROLES)
    form = await request.form()
    await check_csrf(request, form)
    target = await _target(request)
    if target is None:
        return await _page(request, status=404, error="No such person.")
    ended = await end_sessions(request, target.id)
    return await _page(request, done=f"Ended {len(ended)} log-in(s) of {target.name}.")


routes: list[BaseRoute] = [
    Route("/console/users", users_page, methods=["GET", "POST"]),
    Route("/console/users/{id}/role", change_role, methods=["POST"]),
    Route("/console/users/{id}/password", reset_password, methods=["POST"]),
    Route("/console/users/{id}/logout", log_out_everywhere, methods=["POST"]),
]
