"""The console's metrics page: the figures of GET /api/v1/metrics (chatsvc.tickets.metrics) as charts
drawn on the server in SVG: tickets created per day (week, month), first response and resolution time
by priority, SLA compliance by priority, CSAT, and per agent; plus the backlog as it stands.

The same roles as the API may open it (leads, managers, admins). The period defaults to the last 30
days in the support team's time zone (the SLA business hours' zone), where the API defaults to UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from chatsvc.console import charts
from chatsvc.console.auth import render, require_page, section_roles
from chatsvc.console.ticket_views import minutes_words
from chatsvc.domain import sla
from chatsvc.tickets.metrics import PRIORITIES, compute_metrics, parse_period
from chatsvc.web.api import ApiError

CSAT_TARGET: Final = 0.9  # the LotWize manual: "more than 90% positive ratings"
WIDE: Final = 1100  # the charts that span the page
GROUP_TITLES: Final = {"day": "Tickets created per day", "week": "Tickets created per week",
                       "month": "Tickets created per month"}


def _bucket_label(start: str, group: str) -> str:
    day = date.fromisoformat(start)
    if group == "month":
        return day.strftime("%b %Y")
    return day.strftime("%d %b")


def metric_charts(m: Mapping[str, Any]) -> dict[str, Markup]:
    """The page's charts from the figures compute_metrics returns."""
    group = m["group"]
    series = m["created"]["series"]
    created = charts.column_chart(
        "chart-created", GROUP_TITLES[group],
        f"{m['created']['total']} tickets created from {m['from'][:10]} to {m['to'][:10]} ({m['tz']}).",
        [_bucket_label(s["start"], group) for s in series],
        [charts.Series("Tickets", [float(s["count"]) for s in series], "series-created")], width=WIDE)

    def by_priority(key: str, title: str) -> Markup:
        figures = m[key]["by_priority"]
        return charts.column_chart(
            f"chart-{key.replace('_', '-')}", title,
            f"Median and average {title.lower()} of the tickets created in the period, by priority; "
            f"{m[key]['all']['pending']} still waiting.",
            [f"{p} (n={figures[p]['count']})" for p in PRIORITIES],
            [charts.Series("Median", [figures[p]["median_minutes"] for p in PRIORITIES], "series-median"),
             charts.Series("Average", [figures[p]["average_minutes"] for p in PRIORITIES], "series-average")],
            fmt=minutes_words)

    compliance = m["sla"]
    sla_chart = charts.column_chart(
        "chart-sla", "SLA compliance by priority",
        "Share of the timers with an outcome that met their target, first response and resolution.",
        list(PRIORITIES),
        [charts.Series("First response", [compliance["first_response"]["by_priority"][p]["compliance_percent"]
                                          for p in PRIORITIES], "series-first"),
         charts.Series("Resolution", [compliance["resolution"]["by_priority"][p]["compliance_percent"]
                                      for p in PRIORITIES], "series-resolution")],
        fmt=charts.percent, maximum=100)

    c = m["csat"]
    positive = c["positive_percent"]
    csat_chart = charts.stacked_bar(
        "chart-csat", "Customer satisfaction (CSAT)",
        f"{c['total']} answers: {c['good']} good, {c['okay']} okay, {c['bad']} bad"
        + (f"; {positive:.0f} % positive against a target of more than 90 %." if positive is not None else "."),
        [charts.Part("Good", float(c["good"]), "csat-good"), charts.Part("Okay", float(c["okay"]), "csat-okay"),
         charts.Part("Bad", float(c["bad"]), "csat-bad")],
        target=CSAT_TARGET, target_label="target 90 %")

    people = m["agents"]
    agent_chart = charts.bar_rows(
        "chart-agents", "Tickets per agent",
        "Tickets created in the period, by assignee: assigned and resolved.",
        [a["name"] or a["agent_id"] for a in people],
        [charts.Series("Assigned", [float(a["assigned"]) for a in people], "series-assigned"),
         charts.Series("Resolved", [float(a["resolved"]) for a in people], "series-resolved")], width=WIDE)
    return {"created": created,
            "first_response": by_priority("first_response", "First response time"),
            "resolution": by_priority("resolution", "Resolution time"),
            "sla": sla_chart, "csat": csat_chart, "agents": agent_chart}


def _form_values(params: Mapping[str, str], zone: str) -> dict[str, str]:
    return {"from": params.get("from", ""), "to": params.get("to", ""), "group": params.get("group", "day"),
            "tz": params.get("tz", zone)}


async def metrics_page(request: Request) -> Response:
    await require_page(request, section_roles("metrics"))
    runtime = request.app.state.runtime
    service = runtime.service
    now: datetime = service.clock()
    zone = sla.policy_named(runtime.settings.sla_policy).calendar.timezone
    values = _form_values(request.query_params, zone)
    try:
        period = parse_period({k: v for k, v in values.items() if v}, now)
    except ApiError as exc:
        return render(request, "console/metrics.html", {"values": values, "error": exc.message, "m": None},
                      status=400)
    figures = await compute_metrics(service.engine, period, now)
    return render(request, "console/metrics.html", {
        "values": values, "error": None, "m": figures, "charts": metric_charts(figures),
        "minutes": minutes_words, "priorities": PRIORITIES,
    })


routes: list[BaseRoute] = [Route("/console/metrics", metrics_page, methods=["GET"])]
