"""The writers' article-gap pages under /console/gaps: the ranked list, a gap, and its article.

Plain forms, no script: every action is a POST with the session's CSRF token that redirects back
(post/redirect/get), so a reload never repeats it. Dismiss, Merge, Create article, then Save and Publish
in the article editor; publishing re-matches the gap's questions at once and the gap page shows the
share that now matches.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from chatsvc.console.auth import check_csrf, render, require_page, section_roles
from chatsvc.gaps.routes import LIST_STATUSES, gap_service
from chatsvc.gaps.service import COVERED_SHARE, GapError
from chatsvc.web.api import ApiError

TABS = (("open", "Open"), ("covered", "Covered"), ("dismissed", "Dismissed"), ("merged", "Merged"))
PAGE_SIZE = 50
DONE = {
    "dismissed": "Gap dismissed. It stays out of the list, even after the next re-clustering.",
    "reopened": "Gap reopened.",
    "merged": "Gaps merged: the questions of both are in this gap now.",
    "saved": "Draft saved.",
    "published": "Article published; the gap's questions were matched again.",
    "run": "Gaps recomputed.",
}


def _roles() -> frozenset[str]:
    return section_roles("gaps")


def _back(path: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={quote(done)}", status_code=303)


async def gap_list(request: Request) -> Response:
    await require_page(request, _roles())
    status = request.query_params.get("status", "open")
    if status not in LIST_STATUSES:
        status = "open"
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    items, total = await gap_service(request).list(status=status, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render(request, "console/gaps.html", {
        "items": items, "total": total, "status": status, "tabs": TABS, "page": page, "page_size": PAGE_SIZE,
        "done": DONE.get(request.query_params.get("done", "")), "rank_from": (page - 1) * PAGE_SIZE + 1,
        "covered_share": COVERED_SHARE})


async def _gap_or_missing(request: Request, gap_id: str) -> dict[str, Any] | Response:
    try:
        return await gap_service(request).get(gap_id)
    except GapError:
        return render(request, "console/gaps_missing.html", {"gap_id": gap_id}, status=404)


async def gap_detail(request: Request) -> Response:
    await require_page(request, _roles())
    gap = await _gap_or_missing(request, request.path_params["id"])
    if isinstance(gap, Response):
        return gap
    others, _ = await gap_service(request).list(status="open", limit=200, offset=0)
    return render(request, "console/gaps_detail.html", {
        "gap": gap, "others": [o for o in others if o["id"] != gap["id"]],
        "done": DONE.get(request.query_params.get("done", "")), "error": request.query_params.get("error"),
        "covered_share": COVERED_SHARE})


async def gap_action(request: Request) -> Response:
    """POST /console/gaps/{id}/{action}: dismiss, reopen, merge, draft, publish, coverage."""
    agent = await require_page(request, _roles())
    form = await request.form()
    await check_csrf(request, form)
    gap_id, action = request.path_params["id"], request.path_params["action"]
    service = gap_service(request)
    path = f"/console/gaps/{quote(gap_id)}"
    try:
        if action == "dismiss":
            await service.set_status(gap_id, "dismissed", agent.name)
            return _back(path, "dismissed")
        if action == "reopen":
            await service.set_status(gap_id, "open", agent.name)
            return _back(path, "reopened")
        if action == "merge":
            other = str(form.get("other", "")).strip()
            if not other:
                return RedirectResponse(f"{path}?error={quote('Choose the gap to merge with.')}", status_code=303)
            # The gap opened absorbs the other one: the writer stays on the page they were reading.
            await service.merge(other, gap_id, agent.name)
            return _back(path, "merged")
        if action == "draft":
            await service.draft(gap_id, agent.name)
            return RedirectResponse(f"{path}/article", status_code=303)
        if action == "coverage":
            await service.check_coverage(gap_id)
            return RedirectResponse(path, status_code=303)
    except GapError as exc:
        return RedirectResponse(f"{path}?error={quote(exc.message)}", status_code=303)
    raise ApiError(404, "not_found", f"no action {action!r}")


async def gap_article(request: Request) -> Response:
    """The draft written for a gap: edit its title and body, save, publish."""
    await require_page(request, _roles())
    gap_id = request.path_params["id"]
    gap = await _gap_or_missing(request, gap_id)
    if isinstance(gap, Response):
        return gap
    service = gap_service(request)
    if gap["draft_article"] is None:
        return RedirectResponse(f"/console/gaps/{quote(gap_id)}", status_code=303)
    stored = await service.kb.store.get(gap["draft_article"]["id"])
    if stored is None:
        return render(request, "console/gaps_missing.html", {"gap_id": gap_id}, status=404)
    error = None
    if request.method == "POST":
        form = await request.form()
        await check_csrf(request, form)
        title = str(form.get("title", "")).strip()
        body = str(form.get("body", "")).replace("\r\n", "\n")
        from chatsvc.kb_suggest.articles import Article

        try:
            article = Article(id=stored.article.id, title=title, body=body, tags=stored.article.tags,
                              locale=stored.article.locale, slug="", status=stored.article.status)
        except ValueError as exc:
            error = str(exc)
        else:
            await service.kb.store.save(article, service.clock())
            if form.get("intent") == "publish":
                await service.publish_draft(gap_id)
                return _back(f"/console/gaps/{quote(gap_id)}", "published")
            return _back(f"/console/gaps/{quote(gap_id)}/article", "saved")
        stored_title, stored_body = title, body
    else:
        stored_title, stored_body = stored.article.title, stored.article.body
    return render(request, "console/gaps_article.html", {
        "gap": gap, "article": stored.article, "title": stored_title, "body": stored_body, "error": error,
        "done": DONE.get(request.query_params.get("done", ""))}, status=400 if error else 200)


async def run_now(request: Request) -> Response:
    await require_page(request, _roles())
    form = await request.form()
    await check_csrf(request, form)
    await gap_service(request).run(full=True, wait=True)
    return _back("/console/gaps", "run")


routes: list[BaseRoute] = [
    Route("/console/gaps", gap_list, methods=["GET"]),
    Route("/console/gaps/run", run_now, methods=["POST"]),
    Route("/console/gaps/{id}", gap_detail, methods=["GET"]),
    Route("/console/gaps/{id}/article", gap_article, methods=["GET", "POST"]),
    Route("/console/gaps/{id}/{action}", gap_action, methods=["POST"]),
]
