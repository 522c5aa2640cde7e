"""The OpenAPI 3.1 document of the REST API under /api/v1, and of the webhooks chatsvc sends.

Written by hand, next to the code it describes, and kept true by tests: every route the app mounts under
/api/v1 is here with its methods and nothing else is, the document is valid OpenAPI, and real responses
validate against the schemas below. Objects are closed (`additionalProperties: false`), so a field added to
a response without being documented fails those tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from chatsvc.gaps.routes import LIST_STATUSES as GAP_LIST_STATUSES
from chatsvc.gaps.routes import ROLES as GAP_ROLES
from chatsvc.kb_suggest.routes import EDITORS
from chatsvc.tickets import webhooks as hooks
from chatsvc.tickets.metrics import GROUPS, PRIORITIES, RATINGS, UNRESOLVED
from chatsvc.tickets.metrics import ROLES as LEADS
from chatsvc.tickets.routes import STAFF

# Bumped, with a line in docs/api.md's changelog, whenever the API changes in a way a client can notice.
API_FEATURE_LEVEL: Final = 1

ROLE_ORDER: Final = ("agent", "writer", "lead", "manager", "admin")
ANY_AGENT: Final = ROLE_ORDER  # any valid token
ADMINS: Final = hooks.ROLES
PUBLIC: Final[tuple[str, ...]] = ()

TICKET_STATUSES: Final = ("new", "open", "in_progress", "pending_customer", "resolved", "closed", "escalated")
TICKET_ACTIONS: Final = ("start", "wait_for_customer", "resolve", "close", "reopen", "de_escalate")
ESCALATION_TYPES: Final = ("technical", "billing", "management", "security")
ESCALATION_LEVELS: Final = ("l1", "l2", "management")
SLA_STATES: Final = ("ok", "approaching", "breached")


# ------------------------------------------------------------------ schema helpers

def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"oneOf": [dict(schema), {"type": "null"}]}
    kind = schema.get("type")
    types = kind if isinstance(kind, list) else [kind]
    return {**schema, "type": [*types, "null"]}


def obj(properties: Mapping[str, Any], *, optional: Iterable[str] = (), description: str | None = None,
        closed: bool = True) -> dict[str, Any]:
    """An object whose properties are all required unless named in `optional`."""
    optional = set(optional)
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties),
                              "required": [k for k in properties if k not in optional]}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def array(items: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": dict(items), **extra}


def enum(values: Sequence[str], description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if description:
        schema["description"] = description
    return schema


STR: Final = {"type": "string"}
INT: Final = {"type": "integer"}
BOOL: Final = {"type": "boolean"}
NUM: Final = {"type": "number"}
TIME: Final = {"type": "string", "format": "date-time"}
# Article timestamps are ISO 8601 but, on SQLite, without their UTC offset.
ARTICLE_TIME: Final = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$",
                       "description": "ISO 8601, in UTC"}
ANY_OBJECT: Final = {"type": "object"}
MINUTES: Final = nullable({"type": "number", "description": "minutes; null when there is nothing to measure"})
PERCENT: Final = nullable({"type": "number", "minimum": 0, "maximum": 100})


# ------------------------------------------------------------------ components

_TICKET_FIELDS: dict[str, Any] = {
    "id": INT,
    "number": {"type": "string", "pattern": "^#[0-9]+$", "description": "the number customers quote: #1042"},
    "subject": STR,
    "status": enum(TICKET_STATUSES),
    "priority": enum(PRIORITIES),
    "category": nullable(STR),
    "triage": nullable({"type": "object", "description": "why this priority and category: rule, model or agent"}),
    "channel": enum(("chat", "form", "agent", "phone", "email", "social")),
    "customer": obj({"name": nullable(STR), "email": nullable(STR), "plan": nullable(STR),
                     "community": nullable(STR)}),
    "conversation_id": nullable({**STR, "description": "the chat it was converted from"}),
    "assignee_id": nullable(STR),
    "escalation_level": enum(ESCALATION_LEVELS),
    "merged_into": nullable({**INT, "description": "the ticket this duplicate was merged into"}),
    "created_at": TIME,
    "updated_at": TIME,
    "first_response_at": nullable(TIME),
    "resolved_at": nullable(TIME),
    "closed_at": nullable(TIME),
}

_SLA_TIMER = obj({"state": enum(SLA_STATES), "due": nullable(TIME), "stopped": BOOL,
                  "paused": {**BOOL, "description": "waiting for the customer: the timer does not run"}})

_ERROR_CODES = {
    "bad_request": "a parameter or field is missing or malformed",
    "bad_json": "the body is not valid JSON",
    "too_large": "the body is over 1 MB",
    "unauthorized": "no bearer token, or an unknown one",
    "forbidden": "the agent's role may not call this",
    "csrf_failed": "a call with the console's session cookie lacks the right X-CSRF-Token header",
    "not_found": "no such resource",
    "empty": "a required text is empty",
    "too_long": "a text is over its limit",
    "invalid": "a field of a ticket or contact form is invalid",
    "invalid_article": "the article is invalid",
    "conflict": "the resource exists already, or changed meanwhile: reload and retry",
    "invalid_action": "an unknown ticket action",
    "invalid_transition": "the action is not allowed in the ticket's status",
    "invalid_escalation": "the escalation is missing a type, reason or note, or cannot go higher",
    "invalid_merge": "the tickets cannot be merged: the same ticket, another customer's, already merged, or closed",
    "no_agent": "auto-assignment found no agent who can take the ticket",
    "invalid_macro": "the macro cannot be rendered for this ticket",
    "invalid_webhook": "the webhook's URL or events are invalid, or there are too many webhooks",
    "rate_limited": "too many requests; wait and retry",
    "unavailable": "the store is unavailable; retry",
    "merged": "the gap was merged into another; act on that one",
    "no_draft": "the gap has no article yet: create it first",
    "busy": "another process is computing the gaps right now; retry in a minute",
}

_DELIVERY = obj({
    "id": INT, "webhook_id": STR, "event": enum(hooks.EVENTS), "status": enum(hooks.DELIVERY_STATUSES),
    "attempts": INT,
    "next_attempt_at": nullable({**TIME, "description": "when the next attempt is due (pending only)"}),
    "last_status_code": nullable(INT),
    "last_error": nullable(STR),
    "errors": array(STR, description="one line per failed attempt, oldest first"),
    "payload": {"type": "object", "description": "the event's `data`, as sent"},
    "created_at": TIME, "delivered_at": nullable(TIME)})

_TIMINGS_ROW = obj({"count": INT, "average_minutes": MINUTES, "median_minutes": MINUTES,
                    "pending": {**INT, "description": "tickets of the cohort not answered (resolved) yet"}})
_SLA_ROW = obj({"met": INT, "breached": INT, "running": INT, "compliance_percent": PERCENT})


def _by_priority(schema: Mapping[str, Any]) -> dict[str, Any]:
    return obj({p: dict(schema) for p in PRIORITIES})


_CSAT = obj({**{r: INT for r in RATINGS}, "total": INT,
             "positive_percent": nullable({"type": "number", "description": "share of good answers"})})

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": obj({"code": enum(tuple(_ERROR_CODES), "machine-readable; see docs/api.md"),
                                "message": STR})}),
    "Author": obj({"id": nullable(STR), "name": nullable(STR)}),
    "Ticket": obj(_TICKET_FIELDS),
    "Sla": obj({"first_response": _SLA_TIMER, "resolution": _SLA_TIMER, "worst": enum(SLA_STATES),
                "next_due": nullable(TIME)}, description="the ticket's two SLA timers, now"),
    "TicketEntry": obj({
        "id": INT, "kind": enum(("message", "reply", "note", "system")),
        "role": enum(("visitor", "agent", "bot", "system")), "author": ref("Author"), "text": nullable(STR),
        "internal": {**BOOL, "description": "internal notes never reach the customer"},
        "data": nullable(ANY_OBJECT), "delivery": nullable(STR), "at": TIME}),
    "TicketListItem": obj({**_TICKET_FIELDS, "sla": ref("Sla")}),
    "TicketDetail": obj({**_TICKET_FIELDS, "sla": ref("Sla"), "entries": array(ref("TicketEntry"))}),
    "TicketCreated": obj({**_TICKET_FIELDS, "entries": array(ref("TicketEntry"))}),
    "TicketList": obj({"items": array(ref("TicketListItem")), "total": INT}),
    "AuditItem": obj({"id": INT, "action": STR, "actor": ref("Author"), "data": nullable(ANY_OBJECT), "at": TIME}),
    "Macro": obj({"id": STR, "name": STR, "body": {**STR, "description": "a sandboxed Jinja2 template"},
                  "builtin": {**BOOL, "description": "shipped with chatsvc; cannot be deleted"}}),
    "Article": obj({
        "id": STR, "title": STR, "body": {**STR, "description": "Markdown"}, "body_html": STR,
        "tags": array(STR), "locale": STR, "slug": STR, "status": enum(("draft", "published")),
        "url": STR, "helpful": INT, "unhelpful": INT, "version": INT, "created_at": ARTICLE_TIME,
        "updated_at": ARTICLE_TIME}),
    "ArticleInput": obj({
        "id": {**STR, "maxLength": 64, "description": "letters, digits and . : @ + ~ - _; generated when missing"},
        "title": {**STR, "maxLength": 300}, "body": STR, "tags": array(STR), "locale": {**STR, "maxLength": 16},
        "slug": {**STR, "maxLength": 200, "description": "derived from the title when empty"},
        "status": enum(("draft", "published"))}, optional=("id", "tags", "locale", "slug", "status")),
    "ArticleList": obj({"items": array(ref("Article")), "total": INT, "limit": INT, "offset": INT}),
    "Suggestions": obj({"question": STR, "no_match": BOOL, "articles": array(obj({
        "id": STR, "title": STR, "passage": STR, "url": STR, "score": NUM}))}),
    "Webhook": obj({"id": STR, "url": {**STR, "format": "uri"}, "events": array(enum(hooks.EVENTS)),
                    "active": BOOL, "created_at": TIME}),
    "WebhookCreated": obj({"id": STR, "url": {**STR, "format": "uri"}, "events": array(enum(hooks.EVENTS)),
                           "active": BOOL, "created_at": TIME,
                           "secret": {**STR, "description": "shown once: store it to verify signatures"}}),
    "WebhookDelivery": _DELIVERY,
    "Metrics": obj({
        "from": TIME, "to": TIME, "group": enum(GROUPS), "tz": STR, "generated_at": TIME,
        "created": obj({"total": INT, "by_channel": {"type": "object", "additionalProperties": INT},
                        "by_priority": _by_priority(INT),
                        "series": array(obj({"start": {"type": "string", "format": "date"}, "count": INT}))}),
        "first_response": obj({"all": _TIMINGS_ROW, "by_priority": _by_priority(_TIMINGS_ROW)}),
        "resolution": obj({"all": _TIMINGS_ROW, "by_priority": _by_priority(_TIMINGS_ROW)}),
        "sla": obj({clock: obj({**_SLA_ROW["properties"], "by_priority": _by_priority(_SLA_ROW)})
                    for clock in ("first_response", "resolution")}),
        "csat": _CSAT,
        "backlog": obj({"total": INT, "unassigned": INT, "breached": INT, "approaching": INT,
                        "by_status": obj({s: INT for s in UNRESOLVED}), "by_priority": _by_priority(INT)}),
        "agents": array(obj({"agent_id": STR, "name": nullable(STR), "assigned": INT, "resolved": INT,
                             "median_first_response_minutes": MINUTES, "csat": _CSAT})),
    }),
}

_GAP_QUESTION = obj({"id": INT, "text": STR, "reason": enum(("no_match", "unhelpful", "ticket")), "locale": STR,
                    "created_at": ARTICLE_TIME, "conversation_id": nullable(STR), "ticket_id": nullable(INT),
                    "matched_article_id": nullable({**STR, "description": "the article that answers it now"})})
_GAP_FIELDS: dict[str, Any] = {
    "id": {**STR, "description": "stable across re-clusterings while the topic is the same"},
    "label": {**STR, "description": "the topic's most distinctive terms"}, "terms": array(STR),
    "status": enum(("open", "covered", "dismissed", "merged")), "merged_into": nullable(STR),
    "volume": {**INT, "description": "distinct people asking (a visitor counts once)"},
    "questions_count": INT, "current": {**INT, "description": "people asking in the last 7 days"},
    "previous": {**INT, "description": "people asking in the 7 days before"}, "trend": NUM,
    "priority_mix": {"type": "object", "additionalProperties": INT, "description": "linked tickets by priority"},
    "impact": {**NUM, "description": "the ranking: people asking x ticket urgency x growth"},
    "action": enum(("write", "update"), "write a new article, or update the nearest one"),
    "nearest_article": nullable(obj({"id": STR, "title": STR, "url": STR, "similarity": nullable(NUM)})),
    "draft_article": nullable(obj({"id": STR, "title": STR, "status": enum(("draft", "published"))})),
    "covered_share": nullable({**NUM, "description": "share of the questions an article answers now"}),
    "coverage_checked_at": nullable(ARTICLE_TIME), "examples": array(_GAP_QUESTION),
    "created_at": ARTICLE_TIME, "updated_at": ARTICLE_TIME}
SCHEMAS["Gap"] = obj(_GAP_FIELDS)
SCHEMAS["GapDetail"] = obj({**_GAP_FIELDS, "questions": array(_GAP_QUESTION), "tickets": array(obj({
    "id": INT, "subject": STR, "status": STR, "priority": STR}))})
SCHEMAS["GapList"] = obj({"items": array(ref("Gap")), "total": INT, "limit": INT, "offset": INT})
SCHEMAS["GapRun"] = obj({"mode": enum(("full", "assign")), "questions": INT, "gaps": INT, "noise": INT,
                         "embedder": STR, "seconds": NUM})

# Webhook payloads: the POSTed envelope, one per event, with that event's `data`.
_EVENT_DATA: dict[str, dict[str, Any]] = {
    hooks.TICKET_CREATED: obj({"ticket": ref("Ticket")}),
    hooks.TICKET_UPDATED: obj({
        "ticket": ref("Ticket"),
        "changes": {"type": "object", "description": "the fields that changed",
                    "additionalProperties": obj({"from": {}, "to": {}})},
        "actor": nullable(ref("Author")),
        "action": {**STR, "description": "the status action, when a status action made the change"}},
        optional=("action",)),
    hooks.SLA_BREACHED: obj({"ticket": ref("Ticket"), "timer": enum(("first_response", "resolution")),
                             "due": nullable(TIME)}),
    hooks.CONVERSATION_TICKETED: obj({"ticket": ref("Ticket"), "conversation_id": STR, "reason": STR}),
}


def event_schema_name(event: str) -> str:
    return "".join(part.capitalize() for part in event.split(".")) + "Event"


for _event, _data in _EVENT_DATA.items():
    SCHEMAS[event_schema_name(_event)] = obj({
        "id": {**INT, "description": "the delivery id, as in X-Chatsvc-Delivery: the same on every retry"},
        "event": {"const": _event}, "occurred_at": TIME, "data": _data})


# ------------------------------------------------------------------ operations

def _error_response(codes: Sequence[str]) -> dict[str, Any]:
    lines = "; ".join(f"`{c}`: {_ERROR_CODES[c]}" for c in codes)
    return {"description": lines, "content": {"application/json": {"schema": ref("Error")}}}


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def query(name: str, schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": dict(schema), "description": description}


def path(name: str, schema: Mapping[str, Any] = STR, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": dict(schema), "description": description}


LIMIT = query("limit", {**INT, "minimum": 1, "maximum": 500, "default": 50}, "page size")
OFFSET = query("offset", {**INT, "minimum": 0, "default": 0}, "items to skip")
TICKET_ID = path("id", INT, "the ticket number, without #")


def operation(operation_id: str, summary: str, *, tag: str, roles: Sequence[str],
              ok: tuple[int, Mapping[str, Any] | None, str], errors: Mapping[int, Sequence[str]] | None = None,
              params: Sequence[Mapping[str, Any]] = (), body: Mapping[str, Any] | None = None,
              description: str = "", extra: Mapping[int, tuple[Mapping[str, Any] | None, str]] | None = None,
              ) -> dict[str, Any]:
    """One operation. Every authenticated one can also answer 401 and 403 (or 401 only for any agent)."""
    roles = sorted(roles, key=ROLE_ORDER.index)
    status, schema, what = ok
    responses: dict[str, Any] = {str(status): _json(schema, what) if schema else {"description": what}}
    for code, (other, text) in (extra or {}).items():
        responses[str(code)] = _json(other, text) if other else {"description": text}
    all_errors: dict[int, list[str]] = {k: list(v) for k, v in (errors or {}).items()}
    if body is not None:
        all_errors.setdefault(400, []).extend(c for c in ("bad_json", "bad_request") if c not in all_errors[400])
        all_errors.setdefault(413, []).append("too_large")
    if roles:
        all_errors.setdefault(401, []).append("unauthorized")
        if set(roles) != set(ANY_AGENT):
            all_errors.setdefault(403, []).append("forbidden")
        if body is not None:  # a change made with the console's session cookie needs its CSRF token
            all_errors.setdefault(403, []).append("csrf_failed")
    for code in sorted(all_errors):
        responses[str(code)] = _error_response(all_errors[code])
    who = "Public: no token needed." if not roles else "Roles: " + ", ".join(roles) + "."
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag],
                          "description": f"{description}\n\n{who}".strip(), "x-roles": list(roles),
                          "responses": responses}
    if params:
        op["parameters"] = [dict(p) for p in params]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(body)}}}
    if not roles:
        op["security"] = []
    return op


def _text_body(limit: int) -> dict[str, Any]:
    return obj({"text": {**STR, "minLength": 1, "maxLength": limit}})


PATHS: dict[str, dict[str, Any]] = {
    # ---- help center
    "/api/v1/articles": {
        "get": operation("listArticles", "List articles", tag="articles", roles=ANY_AGENT,
                         params=[query("status", enum(("draft", "published")), "only this status"), LIMIT, OFFSET],
                         ok=(200, ref("ArticleList"), "a page of articles, newest change first"),
                         errors={400: ["bad_request"]}),
        "post": operation("createArticle", "Create an article (a draft unless status says otherwise)",
                          tag="articles", roles=EDITORS, body=ref("ArticleInput"),
                          ok=(201, ref("Article"), "the article"),
                          errors={409: ["conflict"], 422: ["invalid_article"]}),
    },
    "/api/v1/articles/{id}": {
        "parameters": [path("id", STR, "the article id")],
        "get": operation("getArticle", "Get an article", tag="articles", roles=ANY_AGENT,
                         ok=(200, ref("Article"), "the article"), errors={404: ["not_found"]}),
        "put": operation("replaceArticle", "Update an article", tag="articles", roles=EDITORS,
                         body=obj(SCHEMAS["ArticleInput"]["properties"], optional=SCHEMAS["ArticleInput"]["properties"]),
                         description="Fields not sent keep their values; a new title without a slug makes a new slug.",
                         ok=(200, ref("Article"), "the article"),
                         errors={400: ["bad_request"], 404: ["not_found"], 422: ["invalid_article"]}),
        "patch": operation("updateArticle", "Update some fields of an article (same as PUT)", tag="articles",
                           roles=EDITORS,
                           body=obj(SCHEMAS["ArticleInput"]["properties"], optional=SCHEMAS["ArticleInput"]["properties"]),
                           ok=(200, ref("Article"), "the article"),
                           errors={400: ["bad_request"], 404: ["not_found"], 422: ["invalid_article"]}),
        "delete": operation("deleteArticle", "Delete an article", tag="articles", roles=EDITORS,
                            ok=(204, None, "deleted"), errors={404: ["not_found"]}),
    },
    "/api/v1/articles/{id}/publish": {
        "parameters": [path("id", STR, "the article id")],
        "post": operation("publishArticle", "Publish an article", tag="articles", roles=EDITORS,
                          ok=(200, ref("Article"), "the article, published"), errors={404: ["not_found"]}),
    },
    "/api/v1/articles/{id}/unpublish": {
        "parameters": [path("id", STR, "the article id")],
        "post": operation("unpublishArticle", "Turn an article back into a draft", tag="articles", roles=EDITORS,
                          ok=(200, ref("Article"), "the article, a draft"), errors={404: ["not_found"]}),
    },
    "/api/v1/suggest": {
        "get": operation("suggestArticles", "Articles that may answer a question", tag="articles", roles=ANY_AGENT,
                         params=[{**query("q", {**STR, "maxLength": 4000}, "the question"), "required": True},
                                 query("k", {**INT, "minimum": 1, "maximum": 10, "default": 3}, "how many")],
                         ok=(200, ref("Suggestions"), "the best passages, best first"),
                         errors={400: ["bad_request", "empty", "too_long"]}),
    },
    # ---- article gaps
    "/api/v1/gaps": {
        "get": operation("listGaps", "Article gaps, highest impact first", tag="gaps", roles=GAP_ROLES,
                         params=[query("status", enum(GAP_LIST_STATUSES), "default open"), LIMIT, OFFSET],
                         ok=(200, ref("GapList"), "a page of gaps"), errors={400: ["bad_request"]}),
    },
    "/api/v1/gaps/run": {
        "post": operation("runGaps", "Compute the gaps now", tag="gaps", roles=GAP_ROLES,
                          body=obj({"full": {**BOOL, "description": "re-cluster (default) or only attach new questions"}},
                                   optional=("full",)),
                          description="The body is optional.", ok=(200, ref("GapRun"), "what the run did"),
                          errors={409: ["busy"]}),
    },
    "/api/v1/gaps/{id}": {
        "parameters": [path("id", STR, "the gap id")],
        "get": operation("getGap", "A gap with its questions and linked tickets", tag="gaps", roles=GAP_ROLES,
                         ok=(200, ref("GapDetail"), "the gap"), errors={404: ["not_found"]}),
    },
    "/api/v1/gaps/{id}/dismiss": {
        "parameters": [path("id", STR, "the gap id")],
        "post": operation("dismissGap", "Dismiss a gap (it stays dismissed across re-clusterings)", tag="gaps",
                          roles=GAP_ROLES, ok=(200, ref("GapDetail"), "the gap"),
                          errors={404: ["not_found"], 409: ["merged"]}),
    },
    "/api/v1/gaps/{id}/reopen": {
        "parameters": [path("id", STR, "the gap id")],
        "post": operation("reopenGap", "Reopen a dismissed gap", tag="gaps", roles=GAP_ROLES,
                          ok=(200, ref("GapDetail"), "the gap"), errors={404: ["not_found"], 409: ["merged"]}),
    },
    "/api/v1/gaps/{id}/merge": {
        "parameters": [path("id", STR, "the gap id: this gap is folded into the other")],
        "post": operation("mergeGap", "Merge this gap into another", tag="gaps", roles=GAP_ROLES,
                          body=obj({"into": STR}), ok=(200, ref("GapDetail"), "the gap merged into"),
                          errors={404: ["not_found"], 409: ["merged"]}),
    },
    "/api/v1/gaps/{id}/draft": {
        "parameters": [path("id", STR, "the gap id")],
        "post": operation("draftGapArticle", "Create the gap's draft article", tag="gaps", roles=GAP_ROLES,
                          description="Prefilled with a title, the questions as asked and the agents' replies "
                                      "from linked tickets; creating it again returns the same draft.",
                          ok=(201, ref("GapDetail"), "the gap, with its draft_article"),
                          errors={404: ["not_found"]}),
    },
    "/api/v1/gaps/{id}/coverage": {
        "parameters": [path("id", STR, "the gap id")],
        "post": operation("checkGapCoverage", "Re-match the gap's questions against the help center now",
                          tag="gaps", roles=GAP_ROLES, ok=(200, ref("GapDetail"), "the gap with its covered_share"),
                          errors={404: ["not_found"]}),
    },
    # ---- tickets
    "/api/v1/contact": {
        "post": operation(
            "submitContactForm", "The public contact form: makes a ticket", tag="tickets", roles=PUBLIC,
            body=obj({"email": {**STR, "format": "email", "maxLength": 320}, "message": {**STR, "maxLength": 10000},
                      "name": {**STR, "maxLength": 200}, "subject": {**STR, "maxLength": 300},
                      "plan": {**STR, "maxLength": 64}, "community": {**STR, "maxLength": 200},
                      "website": {**STR, "description": "leave empty: a honeypot for bots"}},
                     optional=("name", "subject", "plan", "community", "website"), closed=False),
            description="Limited per client address: CHATSVC_CONTACT_RATE submissions a minute (5 by default).",
            ok=(201, obj({"status": {"const": "received"}, "ticket": {**STR, "pattern": "^#[0-9]+$"}}),
                "the ticket was created"),
            extra={202: (obj({"status": {"const": "received"}}), "accepted (what bots are told)")},
            errors={422: ["invalid"], 429: ["rate_limited"]}),
    },
    "/api/v1/tickets": {
        "get": operation(
            "listTickets", "List tickets (merged duplicates left out)", tag="tickets", roles=STAFF,
            params=[query("status", STR, "comma-separated statuses, e.g. new,open"),
                    query("priority", STR, "comma-separated priorities, e.g. P1,P2"),
                    query("assignee", STR, "an agent id, or `none` for unassigned"),
                    query("q", {**STR, "maxLength": 200}, "text in the subject, customer name or e-mail"),
                    query("sort", {**enum(("priority", "age", "sla", "updated")), "default": "priority"},
                          "priority (P1 first), age (oldest first), sla (overdue and nearest deadline first), "
                          "updated (latest first)"),
                    LIMIT, OFFSET],
            ok=(200, ref("TicketList"), "a page of tickets with their SLA timers, and the total matching"),
            errors={400: ["bad_request"]}),
        "post": operation(
            "createTicket", "Open a ticket for a customer (phone, e-mail, social)", tag="tickets", roles=STAFF,
            body=obj({"text": {**STR, "maxLength": 20000}, "channel": {**enum(("agent", "phone", "email", "social")),
                                                                       "default": "agent"},
                      "subject": {**STR, "maxLength": 300}, "customer_name": {**STR, "maxLength": 200},
                      "customer_email": {**STR, "format": "email", "maxLength": 320},
                      "plan": {**STR, "maxLength": 64}, "community": {**STR, "maxLength": 200},
                      "priority": enum(PRIORITIES), "category": {**STR, "maxLength": 64}},
                     optional=("channel", "subject", "customer_name", "customer_email", "plan", "community",
                               "priority", "category"), closed=False),
            description="Without a priority or category the triage rules and the classifier choose them.",
            ok=(201, ref("TicketCreated"), "the ticket and its first entry"), errors={422: ["invalid"]}),
    },
    "/api/v1/tickets/{id}": {
        "parameters": [TICKET_ID],
        "get": operation("getTicket", "A ticket, its SLA timers and its whole thread (internal notes included)",
                         tag="tickets", roles=STAFF, ok=(200, ref("TicketDetail"), "the ticket"),
                         errors={404: ["not_found"]}),
        "patch": operation(
            "correctTicket", "Correct a ticket's priority, category or subject", tag="tickets", roles=STAFF,
            body=obj({"priority": enum(PRIORITIES), "category": {**STR, "maxLength": 64},
                      "subject": {**STR, "maxLength": 300}}, optional=("priority", "category", "subject")),
            description="Each change is audited. The final values of resolved tickets are what the classifier "
                        "learns from, so a correction here teaches it. Status, assignee and escalation have "
                        "routes of their own.",
            ok=(200, ref("Ticket"), "the ticket"),
            errors={404: ["not_found"], 422: ["invalid"], 503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/merge": {
        "parameters": [TICKET_ID],
        "post": operation(
            "mergeTicket", "Merge this duplicate into another ticket of the same customer", tag="tickets",
            roles=STAFF, body=obj({"into": {**INT, "description": "the ticket to keep"}}),
            description="The duplicate's thread joins the other ticket's and the duplicate closes, pointing to it.",
            ok=(200, obj({"id": INT, "status": {"const": "closed"}, "merged_into": INT}), "merged"),
            errors={404: ["not_found"], 409: ["invalid_merge", "invalid_transition", "conflict"],
                    503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/replies": {
        "parameters": [TICKET_ID],
        "post": operation("replyToTicket", "Reply to the customer (into the chat, and by e-mail)", tag="tickets",
                          roles=STAFF, body=_text_body(20000), ok=(201, ref("TicketEntry"), "the reply"),
                          errors={400: ["empty", "too_long"], 404: ["not_found"], 503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/notes": {
        "parameters": [TICKET_ID],
        "post": operation("addTicketNote", "Add an internal note (never sent to the customer)", tag="tickets",
                          roles=STAFF, body=_text_body(20000), ok=(201, ref("TicketEntry"), "the note"),
                          errors={400: ["empty", "too_long"], 404: ["not_found"], 503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/audit": {
        "parameters": [TICKET_ID],
        "get": operation("getTicketAudit", "Every action on the ticket, oldest first", tag="tickets", roles=STAFF,
                         ok=(200, obj({"items": array(ref("AuditItem"))}), "the audit trail"),
                         errors={404: ["not_found"]}),
    },
    "/api/v1/tickets/{id}/status": {
        "parameters": [TICKET_ID],
        "post": operation("changeTicketStatus", "Move a ticket through its lifecycle", tag="tickets", roles=STAFF,
                          body=obj({"action": enum(TICKET_ACTIONS)}),
                          ok=(200, obj({"id": INT, "status": enum(TICKET_STATUSES)}), "the new status"),
                          errors={400: ["invalid_action"], 404: ["not_found"],
                                  409: ["invalid_transition", "conflict"], 503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/assign": {
        "parameters": [TICKET_ID],
        "post": operation("assignTicket", "Assign to an agent, or (agent_id null) to the one auto-assignment picks",
                          tag="tickets", roles=STAFF, body=obj({"agent_id": nullable(STR)}),
                          ok=(200, obj({"id": INT, "status": enum(TICKET_STATUSES), "assignee_id": nullable(STR)}),
                              "assigned; a new ticket becomes open"),
                          errors={404: ["not_found"], 409: ["invalid_transition", "conflict", "no_agent"],
                                  503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/escalate": {
        "parameters": [TICKET_ID],
        "post": operation("escalateTicket", "Escalate: Level 1 → Level 2 → Management", tag="tickets", roles=STAFF,
                          body=obj({"type": enum(ESCALATION_TYPES), "reason": STR,
                                    "note": {**STR, "description": "self-contained: what was tried, what is needed"}}),
                          ok=(200, obj({"id": INT, "status": {"const": "escalated"},
                                        "escalation_level": enum(ESCALATION_LEVELS)}), "escalated"),
                          errors={404: ["not_found"], 409: ["invalid_transition", "conflict"],
                                  422: ["invalid_escalation"], 503: ["unavailable"]}),
    },
    "/api/v1/tickets/{id}/macros/{macro}": {
        "parameters": [TICKET_ID, path("macro", STR, "the macro id")],
        "post": operation("renderMacro", "A macro's text filled in for this ticket (nothing is sent)",
                          tag="tickets", roles=STAFF, ok=(200, obj({"macro": STR, "text": STR}), "the text"),
                          errors={404: ["not_found"], 422: ["invalid_macro"]}),
    },
    "/api/v1/tickets-bulk/assign": {
        "post": operation(
            "bulkAssignTickets", "Assign up to 200 tickets at once", tag="tickets", roles=LEADS,
            body=obj({"ticket_ids": array(INT, minItems=1, maxItems=200), "agent_id": nullable(STR)}),
            ok=(200, obj({"results": array(obj({"id": INT, "ok": BOOL, "error": obj({"code": STR, "message": STR})},
                                               optional=("error",)))}), "one result per ticket, in order")),
    },
    "/api/v1/macros": {
        "get": operation("listMacros", "The canned replies: built-in, then custom by name", tag="tickets",
                         roles=STAFF, ok=(200, obj({"items": array(ref("Macro"))}), "the macros")),
        "post": operation(
            "createMacro", "Save a custom macro", tag="tickets", roles=LEADS,
            body=obj({"name": {**STR, "maxLength": 200}, "body": STR,
                      "id": {**STR, "maxLength": 64, "description": "made from the name when missing"}},
                     optional=("id",), closed=False),
            description="The body may use only the documented variables and filters (see docs/tickets-rules.md); "
                        "anything else is refused with the reason.",
            ok=(201, ref("Macro"), "the macro"),
            errors={409: ["conflict"], 422: ["invalid", "invalid_macro"]}),
    },
    "/api/v1/macros/{macro}": {
        "parameters": [path("macro", STR, "the macro id")],
        "delete": operation("deleteMacro", "Delete a custom macro", tag="tickets", roles=LEADS,
                            ok=(204, None, "deleted"), errors={404: ["not_found"]}),
    },
    # ---- webhooks
    "/api/v1/webhooks": {
        "get": operation("listWebhooks", "The registered webhooks (never their secrets)", tag="webhooks",
                         roles=ADMINS, ok=(200, obj({"items": array(ref("Webhook"))}), "the webhooks")),
        "post": operation(
            "createWebhook", "Register a webhook", tag="webhooks", roles=ADMINS,
            body=obj({"url": {**STR, "format": "uri", "maxLength": hooks.MAX_URL_CHARS,
                              "description": "http:// or https://, without credentials"},
                      "events": array(enum(hooks.EVENTS), minItems=1)}),
            description="The response carries the signing secret, the only time it is shown.",
            ok=(201, ref("WebhookCreated"), "the webhook and its secret"), errors={422: ["invalid_webhook"]}),
    },
    "/api/v1/webhooks/{id}": {
        "parameters": [path("id", STR, "the webhook id")],
        "delete": operation("deleteWebhook", "Delete a webhook; its pending deliveries are given up", tag="webhooks",
                            roles=ADMINS, ok=(204, None, "deleted"), errors={404: ["not_found"]}),
    },
    "/api/v1/webhooks/{id}/deliveries": {
        "parameters": [path("id", STR, "the webhook id")],
        "get": operation("listWebhookDeliveries", "The delivery log of a webhook, newest first", tag="webhooks",
                         roles=ADMINS,
                         params=[query("status", enum(hooks.DELIVERY_STATUSES), "only this status"), LIMIT, OFFSET],
                         ok=(200, obj({"items": array(ref("WebhookDelivery")), "total": INT, "limit": INT,
                                       "offset": INT}), "a page of deliveries"),
                         errors={400: ["bad_request"], 404: ["not_found"]}),
    },
    # ---- metrics
    "/api/v1/metrics": {
        "get": operation(
            "getMetrics", "Support metrics for a period", tag="metrics", roles=LEADS,
            params=[query("from", STR, "a date (the start of that day in `tz`) or a date-time; default: 30 days "
                                       "before `to`"),
                    query("to", STR, "a date (included: up to the end of that day in `tz`) or a date-time "
                                     "(excluded); default: now"),
                    query("group", {**enum(GROUPS), "default": "day"}, "bucket size of the created series"),
                    query("tz", {**STR, "default": "UTC"}, "IANA time zone of dates and buckets")],
            description="Created, first-response, resolution, SLA and per-agent figures describe the tickets created "
                        "in [from, to); CSAT the answers given in it; the backlog is the queue now.",
            ok=(200, ref("Metrics"), "the metrics"), errors={400: ["bad_request"]}),
    },
    # ---- this document
    "/api/v1/openapi.json": {
        "get": operation("getOpenApi", "This document", tag="meta", roles=PUBLIC,
                         ok=(200, {"type": "object"}, "the OpenAPI 3.1 document")),
    },
}


def _webhook_operation(event: str) -> dict[str, Any]:
    header = {"required": True, "schema": STR}
    return {"post": {
        "operationId": f"{event.replace('.', '_')}_webhook",
        "summary": f"`{event}`, POSTed to the hook's URL",
        "description": "Answer 2xx within 10 s to acknowledge. Anything else is retried with backoff "
                       f"(about 10 s, 30 s, 2 min, 10 min, 1 h, 3 h, 6 h), {hooks.MAX_ATTEMPTS} attempts in all.",
        "parameters": [
            {"name": hooks.EVENT_HEADER, "in": "header", **header, "description": "the event"},
            {"name": hooks.DELIVERY_HEADER, "in": "header", **header, "description": "the delivery id"},
            {"name": hooks.TIMESTAMP_HEADER, "in": "header", **header, "description": "Unix seconds of this attempt"},
            {"name": hooks.SIGNATURE_HEADER, "in": "header", **header,
             "description": "`sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}` keyed with the hook's secret"},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(event_schema_name(event))}}},
        "responses": {"2XX": {"description": "delivered"}},
        "security": [],
    }}


def build_document() -> dict[str, Any]:
    """A fresh copy of the document."""
    import copy

    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "chatsvc REST API",
            "version": f"1.{API_FEATURE_LEVEL}",
            "description": "Live chat, tickets, help-center articles, webhooks and metrics. See docs/api.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            "x-feature-level": API_FEATURE_LEVEL,
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": "articles", "description": "the help center"},
                 {"name": "gaps", "description": "article gaps: what the help center fails to answer"},
                 {"name": "tickets", "description": "tickets, their thread and lifecycle, macros, the contact form"},
                 {"name": "webhooks", "description": "outgoing event notifications"},
                 {"name": "metrics", "description": "support metrics"},
                 {"name": "meta", "description": "this document"}],
        "security": [{"bearer": []}, {"console_session": []}],
        "paths": PATHS,
        "webhooks": {event: _webhook_operation(event) for event in hooks.EVENTS},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an agent's API token"},
                                "console_session": {"type": "apiKey", "in": "cookie", "name": "chatsvc_session",
                                                    "description": "the console's log-in; changes also need "
                                                                   "the X-CSRF-Token header"}},
        },
    })
