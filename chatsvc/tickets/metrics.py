"""Support metrics for leads and managers: GET /api/v1/metrics.

Most figures describe one cohort, the tickets created in [from, to) (merged duplicates left out):
tickets created per day, week or month; first-response and resolution times by priority; SLA compliance;
per-agent figures by assignee. CSAT counts the answers given in [from, to). The backlog is the queue as
it stands now, whatever the range.

Counts are grouped in SQL; durations, medians, calendar buckets and SLA checks are computed in Python
from the cohort's rows, which keeps one code path for SQLite and PostgreSQL (their date arithmetic
differs) and lets buckets follow any time zone. Times are wall-clock minutes; whether a ticket met its
SLA is decided by the SLA rules themselves (business hours, pauses), as everywhere else.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatsvc.domain import sla
from chatsvc.live.service import as_utc, iso
from chatsvc.store.tables import agents, csat_responses, tickets
from chatsvc.tickets.service import _facts as ticket_facts
from chatsvc.tickets.service import resolved_periods
from chatsvc.web.api import ApiError, require_agent

ROLES: Final = ("lead", "manager", "admin")
GROUPS: Final = ("day", "week", "month")
PRIORITIES: Final = ("P1", "P2", "P3", "P4")
STATUSES: Final = ("new", "open", "in_progress", "pending_customer", "escalated", "resolved", "closed")
UNRESOLVED: Final = ("new", "open", "in_progress", "pending_customer", "escalated")
DONE: Final = ("resolved", "closed")
RATINGS: Final = ("good", "okay", "bad")
AGENT_ROLES: Final = ("agent", "lead")  # who works tickets: listed even with nothing assigned
DEFAULT_RANGE: Final = timedelta(days=30)
MAX_RANGE: Final = timedelta(days=731)


@dataclass(frozen=True)
class Period:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    group: str
    zone: ZoneInfo

    @property
    def tz(self) -> str:
        return self.zone.key


# ------------------------------------------------------------------ parameters


def _instant(raw: str, zone: ZoneInfo, name: str, *, end: bool) -> datetime:
    """A date (the whole day in `zone`: its start for `from`, the next day's start for `to`) or a date-time
    (with an offset, or read in `zone`)."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a date (2026-03-02) or a date-time "
                                           "(2026-03-02T09:00:00Z)") from None
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)


def parse_period(params: Any, now: datetime) -> Period:
    """The period a request asks for; ApiError(400) naming the bad parameter."""
    group = params.get("group", "day")
    if group not in GROUPS:
        raise ApiError(400, "bad_request", "group must be day, week or month")
    tz = params.get("tz", "UTC")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(400, "bad_request", f"unknown time zone {tz!r}; use an IANA name like America/New_York") from None
    end = _instant(params["to"], zone, "to", end=True) if params.get("to") else now.astimezone(UTC)
    start = _instant(params["from"], zone, "from", end=False) if params.get("from") else end - DEFAULT_RANGE
    if start >= end:
        raise ApiError(400, "bad_request", "from must be before to")
    if end - start > MAX_RANGE:
        raise ApiError(400, "bad_request", f"the range is limited to {MAX_RANGE.days} days")
    return Period(start, end, group, zone)


# ------------------------------------------------------------------ small statistics


def bucket_start(instant: datetime, group: str, zone: ZoneInfo) -> date:
    """The first day (in `zone`) of the day, ISO week (Monday) or month holding `instant`."""
    day = instant.astimezone(zone).date()
    if group == "week":
        return day - timedelta(days=day.weekday())
    if group == "month":
        return day.replace(day=1)
    return day


def bucket_starts(period: Period) -> Iterator[date]:
    day = bucket_start(period.start, period.group, period.zone)
    last = bucket_start(period.end - timedelta(microseconds=1), period.group, period.zone)
    while day <= last:
        yield day
        if period.group == "day":
            day += timedelta(days=1)
        elif period.group == "week":
            day += timedelta(days=7)
        else:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((as_utc(end) - as_utc(start)).total_seconds(), 0.0) / 60  # type: ignore[operator]


def durations(values: Iterable[float]) -> dict[str, Any]:
    values = list(values)
    return {"count": len(values),
            "average_minutes": round(statistics.fmean(values), 1) if values else None,
            "median_minutes": round(statistics.median(values), 1) if values else None}


def percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def csat(counts: Counter[str]) -> dict[str, Any]:
    total = sum(counts[r] for r in RATINGS)
    return {**{r: counts[r] for r in RATINGS}, "total": total, "positive_percent": percent(counts["good"], total)}


# ------------------------------------------------------------------ the figures


def _timings(rows: Sequence[Any], field: str, end_field: str) -> dict[str, Any]:
    by_priority: dict[str, list[float]] = defaultdict(list)
    pending: Counter[str] = Counter()
    for row in rows:
        minutes = _minutes(row.created_at, getattr(row, end_field)) if _has(row, field) else None
        if minutes is None:
            pending[row.priority] += 1
        else:
            by_priority[row.priority].append(minutes)
    every = [m for ms in by_priority.values() for m in ms]
    return {"all": {**durations(every), "pending": sum(pending.values())},
            "by_priority": {p: {**durations(by_priority[p]), "pending": pending[p]} for p in PRIORITIES}}


def _has(row: Any, field: str) -> bool:
    if field == "resolution":
        return row.status in DONE and row.resolved_at is not None
    return row.first_response_at is not None


def _sla_compliance(rows: Sequence[Any], now: datetime,
                    reopened: dict[int, tuple[sla.Interval, ...]]) -> dict[str, Any]:
    """Of the cohort's timers that have an outcome, the share met: a stopped timer that was not breached is
    met, a breached one (stopped late, or still running past its due time) is not; one still running
    within its target has no outcome yet."""
    tally: dict[str, dict[str, Counter[str]]] = {c.value: defaultdict(Counter) for c in sla.Clock}
    for row in rows:
        report = sla.sla_report(now, ticket_facts(row, reopened.get(row.id, ())), sla.policy_named(row.sla_policy))
        for timer in (report.first_response, report.resolution):
            outcome = ("breached" if timer.state is sla.SlaState.BREACHED
                       else "met" if timer.stopped else "running")
            tally[timer.clock.value][row.priority][outcome] += 1

    def summary(counts: Counter[str]) -> dict[str, Any]:
        return {"met": counts["met"], "breached": counts["breached"], "running": counts["running"],
                "compliance_percent": percent(counts["met"], counts["met"] + counts["breached"])}

    out = {}
    for clock, by_priority in tally.items():
        every = sum(by_priority.values(), Counter())
        out[clock] = {**summary(every), "by_priority": {p: summary(by_priority[p]) for p in PRIORITIES}}
    return out


async def compute_metrics(engine: AsyncEngine, period: Period, now: datetime) -> dict[str, Any]:
    t, c = tickets, csat_responses
    in_period = (t.c.created_at >= period.start, t.c.created_at < period.end, t.c.merged_into.is_(None))
    async with engine.connect() as conn:
        cohort = (await conn.execute(select(
            t.c.id, t.c.status, t.c.priority, t.c.channel, t.c.plan, t.c.assignee_id, t.c.sla_policy,
            t.c.created_at, t.c.first_response_at, t.c.resolved_at, t.c.paused, t.c.pending_since)
            .where(*in_period))).all()
        ratings = (await conn.execute(select(c.c.agent_id, c.c.rating, func.count()).where(
            c.c.created_at >= period.start, c.c.created_at < period.end).group_by(c.c.agent_id, c.c.rating))).all()
        queue = (await conn.execute(select(t.c.status, t.c.priority, t.c.assignee_id.is_(None), func.count()).where(
            t.c.status.in_(UNRESOLVED), t.c.merged_into.is_(None))
            .group_by(t.c.status, t.c.priority, t.c.assignee_id.is_(None)))).all()
        open_rows = (await conn.execute(select(
            t.c.id, t.c.status, t.c.priority, t.c.plan, t.c.sla_policy, t.c.created_at, t.c.first_response_at,
            t.c.resolved_at, t.c.paused, t.c.pending_since)
            .where(t.c.status.in_(UNRESOLVED), t.c.merged_into.is_(None)))).all()
        staff = (await conn.execute(select(agents.c.id, agents.c.name, agents.c.role))).all()
        reopened = await resolved_periods(conn, [*cohort, *open_rows])

    # Created, by bucket.
    per_bucket = Counter(bucket_start(as_utc(r.created_at), period.group, period.zone)  # type: ignore[arg-type]
                         for r in cohort)
    created = {"total": len(cohort),
               "by_channel": dict(sorted(Counter(r.channel for r in cohort).items())),
               "by_priority": {p: sum(1 for r in cohort if r.priority == p) for p in PRIORITIES},
               "series": [{"start": day.isoformat(), "count": per_bucket[day]} for day in bucket_starts(period)]}

    # CSAT, overall and per agent.
    overall: Counter[str] = Counter()
    by_agent_rating: dict[str | None, Counter[str]] = defaultdict(Counter)
    for agent_id, rating, count in ratings:
        overall[rating] += count
        by_agent_rating[agent_id][rating] += count

    # Backlog now.
    by_status: Counter[str] = Counter()
    by_priority: Counter[str] = Counter()
    unassigned = 0
    for status, priority, is_unassigned, count in queue:
        by_status[status] += count
        by_priority[priority] += count
        unassigned += count if is_unassigned else 0
    sla_states = Counter(sla.sla_report(now, ticket_facts(r, reopened.get(r.id, ())),
                                        sla.policy_named(r.sla_policy)).worst.value
                         for r in open_rows)
    backlog = {"total": sum(by_status.values()), "unassigned": unassigned,
               "breached": sla_states["breached"], "approaching": sla_states["approaching"],
               "by_status": {s: by_status[s] for s in UNRESOLVED},
               "by_priority": {p: by_priority[p] for p in PRIORITIES}}

    # Per agent (by assignee).
    names = {a.id: a.name for a in staff}
    mine: dict[str, list[Any]] = defaultdict(list)
    for row in cohort:
        if row.assignee_id:
            mine[row.assignee_id].append(row)
    listed = {a.id for a in staff if a.role in AGENT_ROLES} | set(mine) | {a for a in by_agent_rating if a}
    per_agent = []
    for agent_id in sorted(listed, key=lambda a: ((names.get(a) or "").lower(), a)):
        rows = mine.get(agent_id, [])
        first = [m for r in rows if (m := _minutes(r.created_at, r.first_response_at)) is not None]
        per_agent.append({
            "agent_id": agent_id, "name": names.get(agent_id), "assigned": len(rows),
            "resolved": sum(1 for r in rows if r.status in DONE),
            "median_first_response_minutes": round(statistics.median(first), 1) if first else None,
            "csat": csat(by_agent_rating.get(agent_id, Counter())),
        })

    return {
        "from": iso(period.start), "to": iso(period.end), "group": period.group, "tz": period.tz,
        "generated_at": iso(now),
        "created": created,
        "first_response": _timings(cohort, "first_response", "first_response_at"),
        "resolution": _timings(cohort, "resolution", "resolved_at"),
        "sla": _sla_compliance(cohort, now, reopened),
        "csat": csat(overall),
        "backlog": backlog,
        "agents": per_agent,
    }


async def metrics_route(request: Request) -> JSONResponse:
    await require_agent(request, ROLES)
    service = request.app.state.runtime.service
    now = service.clock()
    period = parse_period(request.query_params, now)
    return JSONResponse(await compute_metrics(service.engine, period, now))


routes = [Route("/api/v1/metrics", metrics_route, methods=["GET"])]
