"""Help-center REST endpoints (/api/v1/articles, /api/v1/suggest) and the public article pages (/help)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from chatsvc.kb_suggest.articles import Article
from chatsvc.kb_suggest.markdown import render_markdown
from chatsvc.kb_suggest.store import StoredArticle
from chatsvc.web.api import ApiError, int_param, json_body, require_agent

EDITORS = ("writer", "lead", "manager", "admin")
_FIELDS = ("id", "title", "body", "tags", "locale", "slug", "status")

_templates = Environment(loader=PackageLoader("chatsvc", "web/templates"), autoescape=select_autoescape(["html"]))


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _out(item: StoredArticle, request: Request) -> dict[str, Any]:
    a = item.article
    return {"id": a.id, "title": a.title, "body": a.body, "body_html": render_markdown(a.body), "tags": a.tags,
            "locale": a.locale, "slug": a.slug, "status": a.status,
            "url": _runtime(request).service.article_url(a.slug), "helpful": item.helpful,
            "unhelpful": item.unhelpful, "version": item.version,
            "created_at": item.created_at.isoformat(), "updated_at": item.updated_at.isoformat()}


def _article(data: dict[str, Any]) -> Article:
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
    try:
        return Article.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_article", str(exc)) from None


async def _get(request: Request, article_id: str) -> StoredArticle:
    item = await _runtime(request).articles.get(article_id)
    if item is None:
        raise ApiError(404, "not_found", f"no article {article_id!r}")
    return item


async def list_articles(request: Request) -> JSONResponse:
    await require_agent(request)
    status = request.query_params.get("status")
    if status not in (None, "draft", "published"):
        raise ApiError(400, "bad_request", "status must be draft or published")
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    store = _runtime(request).articles
    items = await store.list(status=status, limit=limit, offset=offset)
    return JSONResponse({"items": [_out(i, request) for i in items], "total": await store.count(status=status),
                         "limit": limit, "offset": offset})


async def create_article(request: Request) -> JSONResponse:
    await require_agent(request, EDITORS)
    data = await json_body(request)
    data.setdefault("status", "draft")
    if "id" not in data:
        import uuid

        data["id"] = uuid.uuid4().hex[:12]
    article = _article(data)
    runtime = _runtime(request)
    if await runtime.articles.get(article.id) is not None:
        raise ApiError(409, "conflict", f"article {article.id!r} exists; update it with PUT")
    await runtime.articles.save(article, runtime.service.clock())
    return JSONResponse(_out(await _get(request, article.id), request), status_code=201)


async def get_article(request: Request) -> JSONResponse:
    await require_agent(request)
    return JSONResponse(_out(await _get(request, request.path_params["id"]), request))


async def update_article(request: Request) -> JSONResponse:
    await require_agent(request, EDITORS)
    current = await _get(request, request.path_params["id"])
    data = await json_body(request)
    if "id" in data and data["id"] != current.article.id:
        raise ApiError(400, "bad_request", "the id of an article cannot change")
    merged = {**current.article.to_dict(), **data, "id": current.article.id}
    merged.pop("url", None)
    if "title" in data and "slug" not in data:
        merged["slug"] = ""
    runtime = _runtime(request)
    await runtime.articles.save(_article(merged), runtime.service.clock())
    return JSONResponse(_out(await _get(request, current.article.id), request))


async def set_status(request: Request, status: str) -> JSONResponse:
    await require_agent(request, EDITORS)
    runtime = _runtime(request)
    if not await runtime.articles.set_status(request.path_params["id"], status, runtime.service.clock()):
        raise ApiError(404, "not_found", f"no article {request.path_params['id']!r}")
    return JSONResponse(_out(await _get(request, request.path_params["id"]), request))


async def publish(request: Request) -> JSONResponse:
    return await set_status(request, "published")


async def unpublish(request: Request) -> JSONResponse:
    return await set_status(request, "draft")


async def delete_article(request: Request) -> Response:
    await require_agent(request, EDITORS)
    if not await _runtime(request).articles.delete(request.path_params["id"]):
        raise ApiError(404, "not_found", f"no article {request.path_params['id']!r}")
    return Response(status_code=204)


async def suggest(request: Request) -> JSONResponse:
    await require_agent(request)
    question = request.query_params.get("q", "")
    k = int_param(request, "k", 3, 1, 10)
    if not question.strip():
        raise ApiError(400, "empty", "q must not be empty")
    if len(question) > 4000:
        raise ApiError(400, "too_long", "q is limited to 4000 characters")
    runtime = _runtime(request)
    result = await runtime.kb.suggest(question, k)
    return JSONResponse({"question": question, "no_match": bool(result.no_match or not result.matches),
                         "articles": [{"id": m.article_id, "title": m.title, "passage": m.passage,
                                       "url": runtime.service.article_url(m.slug), "score": round(float(m.score), 4)}
                                      for m in result.matches]})


async def help_index(request: Request) -> HTMLResponse:
    items = await _runtime(request).articles.list(status="published", limit=500)
    html = _templates.get_template("help_index.html").render(articles=[i.article for i in items])
    return HTMLResponse(html)


async def help_article(request: Request) -> HTMLResponse:
    item = await _runtime(request).articles.by_slug(request.path_params["slug"])
    if item is None or item.article.status != "published":
        return HTMLResponse(_templates.get_template("help_missing.html").render(), status_code=404)
    html = _templates.get_template("help_article.html").render(
        article=item.article, body_html=render_markdown(item.article.body))
    return HTMLResponse(html)


routes = [
    Route("/api/v1/articles", list_articles, methods=["GET"]),
    Route("/api/v1/articles", create_article, methods=["POST"]),
    Route("/api/v1/articles/{id}", get_article, methods=["GET"]),
    Route("/api/v1/articles/{id}", update_article, methods=["PUT", "PATCH"]),
    Route("/api/v1/articles/{id}", delete_article, methods=["DELETE"]),
    Route("/api/v1/articles/{id}/publish", publish, methods=["POST"]),
    Route("/api/v1/articles/{id}/unpublish", unpublish, methods=["POST"]),
    Route("/api/v1/suggest", suggest, methods=["GET"]),
    Route("/help", help_index, methods=["GET"]),
    Route("/help/{slug}", help_article, methods=["GET"]),
]
