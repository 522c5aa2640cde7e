"""Support metrics from hand-built tickets, on SQLite and PostgreSQL: counts per bucket, response and
resolution times by priority, SLA compliance, CSAT, backlog and per-agent figures, each worked out by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import insert

from chatsvc.store.tables import csat_responses, tickets
from chatsvc.tickets import metrics
from chatsvc.web.api import ApiError
from tests.tickets.test_webhooks import Store, api_app, close_store, open_store, token

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday, 8:00 in New York (daylight time since Sunday)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


async def add_ticket(store: Store, created: datetime, priority: str, status: str, *, channel: str = "chat",
                     first_response: timedelta | None = None, resolved: timedelta | None = None,
                     assignee: str | None = None, merged_into: int | None = None) -> int:
    async with store.engine.begin() as conn:
        return int((await conn.execute(insert(tickets).values(
            subject="s", status=status, priority=priority, channel=channel, assignee_id=assignee,
            escalation_level="l1", sla_policy="lotwize", created_at=created, updated_at=created, paused=[],
            merged_into=merged_into,
            first_response_at=created + first_response if first_response is not None else None,
            resolved_at=created + resolved if resolved is not None else None).returning(tickets.c.id))).scalar_one())


async def add_csat(store: Store, ticket_id: int, agent_id: str | None, rating: str, when: datetime) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(insert(csat_responses).values(ticket_id=ticket_id, agent_id=agent_id, rating=rating,
                                                         created_at=when))


@pytest.fixture
async def desk(database_url: str) -> AsyncIterator[tuple[Store, dict[str, str]]]:
    """A week of tickets (2026-03-02 to 03-08) and a few around it, as the module docstring's tables say."""
    store = await open_store(database_url)
    store.clock.now = NOW
    ids = {}
    for name, role in (("Ann", "agent"), ("Bob", "agent"), ("Lee", "lead"), ("Mia", "manager")):
        ids[name], _ = await store.service.create_agent(name, f"{name.lower()}@example.com", role)
    ann, bob, lee = ids["Ann"], ids["Bob"], ids["Lee"]
    m = timedelta(minutes=1)
    # The cohort. P1 runs around the clock: 15 min to answer, 4 h to resolve.
    t1 = await add_ticket(store, at(2, 15), "P1", "resolved", first_response=10 * m, resolved=180 * m, assignee=ann)
    t2 = await add_ticket(store, at(2, 16), "P1", "closed", channel="form", first_response=30 * m,
                          resolved=300 * m, assignee=ann)
    # P2 at 10:00 in New York: answered in 40 business minutes; 24 business hours to resolve ran out on Thursday.
    t3 = await add_ticket(store, at(3, 15), "P2", "open", first_response=40 * m, assignee=bob)
    # P3, never answered (4 business hours ran out that afternoon); 48 h to resolve still running on the 10th.
    await add_ticket(store, at(4, 15), "P3", "new", channel="form")
    # P4 on a Sunday, answered on the Sunday: no business time used.
    t5 = await add_ticket(store, at(8, 10), "P4", "in_progress", channel="phone", first_response=120 * m,
                          assignee=bob)
    await add_ticket(store, at(5, 9), "P2", "closed", channel="form", merged_into=t3)  # a duplicate: left out
    # Outside the week: only in the backlog.
    t7 = await add_ticket(store, at(1, 12), "P2", "escalated", assignee=lee)  # unanswered since Monday: breached
    await add_ticket(store, at(10, 11, 48), "P1", "new")  # 12 of its 15 minutes used: approaching
    await add_csat(store, t1, ann, "good", at(3, 9))
    await add_csat(store, t2, ann, "bad", at(3, 10))
    await add_csat(store, t3, bob, "okay", at(6, 10))
    await add_csat(store, t7, lee, "good", at(8, 23, 59))
    await add_csat(store, t5, bob, "bad", at(9, 0, 1))  # after the range
    try:
        yield store, ids
    finally:
        await close_store(store)


def period(**params: str) -> metrics.Period:
    return metrics.parse_period(params, NOW)


async def test_the_week_in_figures(desk: tuple[Store, dict[str, str]]) -> None:
    store, ids = desk
    got = await metrics.compute_metrics(store.engine, period(**{"from": "2026-03-02", "to": "2026-03-08"}), NOW)
    assert (got["from"], got["to"], got["group"], got["tz"]) == (
        "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z", "day", "UTC")

    assert got["created"] == {
        "total": 5, "by_channel": {"chat": 2, "form": 2, "phone": 1},
        "by_priority": {"P1": 2, "P2": 1, "P3": 1, "P4": 1},
        "series": [{"start": f"2026-03-0{d}", "count": n} for d, n in zip(range(2, 9), (2, 1, 1, 0, 0, 0, 1),
                                                                            strict=True)]}

    def row(count: int, average: float | None, median: float | None, pending: int) -> dict[str, Any]:
        return {"count": count, "average_minutes": average, "median_minutes": median, "pending": pending}

    assert got["first_response"] == {"all": row(4, 50.0, 35.0, 1), "by_priority": {
        "P1": row(2, 20.0, 20.0, 0), "P2": row(1, 40.0, 40.0, 0), "P3": row(0, None, None, 1),
        "P4": row(1, 120.0, 120.0, 0)}}
    assert got["resolution"] == {"all": row(2, 240.0, 240.0, 3), "by_priority": {
        "P1": row(2, 240.0, 240.0, 0), "P2": row(0, None, None, 1), "P3": row(0, None, None, 1),
        "P4": row(0, None, None, 1)}}

    first, resolution = got["sla"]["first_response"], got["sla"]["resolution"]
    assert {k: first[k] for k in ("met", "breached", "running", "compliance_percent")} == {
        "met": 3, "breached": 2, "running": 0, "compliance_percent": 60.0}
    assert first["by_priority"]["P1"] == {"met": 1, "breached": 1, "running": 0, "compliance_percent": 50.0}
    assert first["by_priority"]["P3"] == {"met": 0, "breached": 1, "running": 0, "compliance_percent": 0.0}
    assert {k: resolution[k] for k in ("met", "breached", "running", "compliance_percent")} == {
        "met": 1, "breached": 2, "running": 2, "compliance_percent": 33.3}
    assert resolution["by_priority"]["P4"] == {"met": 0, "breached": 0, "running": 1, "compliance_percent": None}

    assert got["csat"] == {"good": 2, "okay": 1, "bad": 1, "total": 4, "positive_percent": 50.0}
    assert got["backlog"] == {
        "total": 5, "unassigned": 2, "breached": 3, "approaching": 1,
        "by_status": {"new": 2, "open": 1, "in_progress": 1, "pending_customer": 0, "escalated": 1},
        "by_priority": {"P1": 1, "P2": 2, "P3": 1, "P4": 1}}

    def csat(good: int, okay: int, bad: int, positive: float | None) -> dict[str, Any]:
        return {"good": good, "okay": okay, "bad": bad, "total": good + okay + bad, "positive_percent": positive}

    assert got["agents"] == [
        {"agent_id": ids["Ann"], "name": "Ann", "assigned": 2, "resolved": 2, "median_first_response_minutes": 20.0,
         "csat": csat(1, 0, 1, 50.0)},
        {"agent_id": ids["Bob"], "name": "Bob", "assigned": 2, "resolved": 0, "median_first_response_minutes": 80.0,
         "csat": csat(0, 1, 0, 0.0)},
        {"agent_id": ids["Lee"], "name": "Lee", "assigned": 0, "resolved": 0, "median_first_response_minutes": None,
         "csat": csat(1, 0, 0, 100.0)},
    ], "people who work tickets, by name; the manager with none is not listed"


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_weeks_months_and_time_zones(desk: tuple[Store, dict[str, str]]) -> None:
    store, _ = desk
    week = await metrics.compute_metrics(store.engine, period(**{"from": "2026-03-02", "to": "2026-03-08",
                                                                 "group": "week"}), NOW)
    assert week["created"]["series"] == [{"start": "2026-03-02", "count": 5}]
    month = await metrics.compute_metrics(store.engine, period(**{"from": "2026-02-20", "to": "2026-03-10",
                                                                  "group": "month"}), NOW)
    assert month["created"]["series"] == [{"start": "2026-02-01", "count": 0}, {"start": "2026-03-01", "count": 7}]
    # In New York the same dates run from 05:00 UTC on the 2nd to 04:00 UTC on the 9th (daylight time began on
    # the 8th); the ticket of 1 March 12:00 UTC is 07:00 on the 1st there, still before the range.
    ny = await metrics.compute_metrics(store.engine, period(**{"from": "2026-03-02", "to": "2026-03-08",
                                                               "tz": "America/New_York"}), NOW)
    assert (ny["from"], ny["to"]) == ("2026-03-02T05:00:00Z", "2026-03-09T04:00:00Z")  # DST began on the 8th
    assert [b["count"] for b in ny["created"]["series"]] == [2, 1, 1, 0, 0, 0, 1]


def test_buckets_follow_the_time_zone_and_the_calendar() -> None:
    ny = ZoneInfo("America/New_York")
    late = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)  # 22:00 on the 2nd in New York
    assert metrics.bucket_start(late, "day", ny).isoformat() == "2026-03-02"
    assert metrics.bucket_start(late, "day", ZoneInfo("UTC")).isoformat() == "2026-03-03"
    assert metrics.bucket_start(datetime(2026, 3, 8, 23, tzinfo=UTC), "week", ZoneInfo("UTC")).isoformat() == \
        "2026-03-02"
    starts = [d.isoformat() for d in metrics.bucket_starts(metrics.parse_period(
        {"from": "2025-11-15", "to": "2026-02-03", "group": "month"}, NOW))]
    assert starts == ["2025-11-01", "2025-12-01", "2026-01-01", "2026-02-01"]


def test_period_parameters() -> None:
    default = period()
    assert (default.end, default.end - default.start, default.group) == (NOW, timedelta(days=30), "day")
    exact = period(**{"from": "2026-03-02T09:30:00-05:00", "to": "2026-03-02T18:00:00Z"})
    assert (exact.start, exact.end) == (at(2, 14, 30), at(2, 18))
    local = period(**{"from": "2026-03-02T09:00:00", "to": "2026-03-03", "tz": "America/New_York"})
    assert (local.start, local.end) == (at(2, 14), at(4, 5))
    for bad, message in (({"group": "year"}, "group"), ({"tz": "Mars/Olympus"}, "time zone"),
                         ({"from": "yesterday"}, "from must be"), ({"to": "2026-13-01"}, "to must be"),
                         ({"from": "2026-03-05", "to": "2026-03-01"}, "before"),
                         ({"from": "2020-01-01", "to": "2026-01-01"}, "limited")):
        with pytest.raises(ApiError) as refused:
            period(**bad)
        assert refused.value.status == 400 and message in refused.value.message


async def test_an_empty_store_has_empty_figures(database_url: str) -> None:
    store = await open_store(database_url)
    try:
        got = await metrics.compute_metrics(store.engine, period(**{"from": "2026-03-02", "to": "2026-03-03"}), NOW)
    finally:
        await close_store(store)
    assert got["created"]["total"] == 0 and [b["count"] for b in got["created"]["series"]] == [0, 0]
    assert got["first_response"]["all"] == {"count": 0, "average_minutes": None, "median_minutes": None,
                                            "pending": 0}
    assert got["sla"]["resolution"]["compliance_percent"] is None
    assert got["csat"]["positive_percent"] is None and got["backlog"]["total"] == 0 and got["agents"] == []


@SQLITE_ONLY
async def test_the_metrics_api_is_for_leads_managers_and_admins(desk: tuple[Store, dict[str, str]]) -> None:
    store, _ = desk
    app = api_app(store.service, metrics.routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chatsvc") as http:
        assert (await http.get("/api/v1/metrics")).status_code == 401
        for role in ("agent", "writer"):
            refused = await http.get("/api/v1/metrics", headers=await token(store.service, f"X{role}", role))
            assert refused.status_code == 403
        for role in ("lead", "manager", "admin"):
            ok = await http.get("/api/v1/metrics", headers=await token(store.service, f"Y{role}", role),
                                params={"from": "2026-03-02", "to": "2026-03-08", "group": "week"})
            assert ok.status_code == 200 and ok.json()["created"]["total"] == 5
        bad = await http.get("/api/v1/metrics", headers=await token(store.service, "Zed", "admin"),
                             params={"group": "hour"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
