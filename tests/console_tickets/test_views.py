"""What the ticket pages show, as pure functions: SLA timer colours under an injected `now`, the queue's
counts, the filters of a dashboard URL, the audit trail in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.console import ticket_views as views
from chatsvc.domain import sla

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)  # a business day, 15:00 UTC
LOTWIZE = sla.POLICIES["lotwize"]


def facts(**changes: object) -> sla.TicketFacts:
    base: dict[str, object] = {"created_at": MONDAY_10, "priority": "P2"}
    return sla.TicketFacts(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(("minutes", "colour", "label"), [
    (0, "normal", "due in 1 h"),
    (44, "normal", "due in 16 min"),
    (45, "yellow", "due in 15 min"),  # 75 % of P2's one-hour first response
    (60, "yellow", "due in 0 s"),
    (61, "red", "overdue by 1 min"),
    (60 * 5, "red", "overdue by 4 h"),
])
def test_the_first_response_timer_turns_yellow_then_red(minutes: int, colour: str, label: str) -> None:
    now = MONDAY_10 + timedelta(minutes=minutes)
    timers = views.ticket_timers(now, facts(), LOTWIZE)
    assert (timers.first_response.colour, timers.first_response.label) == (colour, label)
    assert timers.shown is timers.first_response
    assert timers.first_response.css == f"sla sla-{colour}"
    assert timers.colour == colour
    assert timers.first_response.due == MONDAY_10 + timedelta(hours=1)
    assert timers.first_response.approaching_at == MONDAY_10 + timedelta(minutes=45)


def test_business_hours_move_the_yellow_and_red_instants() -> None:
    # P3 (4 business hours) created Friday 17:00 New York: one hour counts on Friday, three on Monday.
    friday_5pm = datetime(2026, 3, 6, 17, 0, tzinfo=NY)
    timers = views.ticket_timers(friday_5pm + timedelta(hours=1), facts(created_at=friday_5pm, priority="P3"), LOTWIZE)
    first = timers.first_response
    assert first.colour == "normal"
    assert first.approaching_at == datetime(2026, 3, 9, 11, 0, tzinfo=NY)  # 3 h of 4 used: Monday 11:00
    assert first.due == datetime(2026, 3, 9, 12, 0, tzinfo=NY)
    sunday = views.ticket_timers(datetime(2026, 3, 8, 20, 0, tzinfo=NY), facts(created_at=friday_5pm, priority="P3"),
                                 LOTWIZE)
    assert sunday.first_response.colour == "normal"  # the weekend does not count


def test_a_met_timer_is_done_and_the_ticket_shows_the_next_one() -> None:
    replied = facts(first_response_at=MONDAY_10 + timedelta(minutes=20))
    timers = views.ticket_timers(MONDAY_10 + timedelta(hours=2), replied, LOTWIZE)
    assert (timers.first_response.colour, timers.first_response.label) == ("done", "met")
    assert timers.shown is timers.resolution and timers.resolution.running
    assert timers.colour == "normal"


def test_a_late_reply_keeps_the_ticket_red() -> None:
    late = facts(first_response_at=MONDAY_10 + timedelta(hours=2))
    timers = views.ticket_timers(MONDAY_10 + timedelta(hours=3), late, LOTWIZE)
    assert timers.first_response.label == "missed" and timers.worst == "breached"
    assert timers.colour == "red"


def test_waiting_for_the_customer_pauses_the_resolution_timer() -> None:
    pending = facts(first_response_at=MONDAY_10 + timedelta(minutes=5), pending_since=MONDAY_10 + timedelta(minutes=10))
    timers = views.ticket_timers(MONDAY_10 + timedelta(days=3), pending, LOTWIZE)
    assert timers.resolution.colour == "paused" and not timers.resolution.running
    assert timers.resolution.approaching_at is None
    assert timers.colour == "paused"


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=60 * 24 * 10))
def test_the_colour_is_the_sla_state(minutes: int) -> None:
    now = MONDAY_10 + timedelta(minutes=minutes)
    for priority in ("P1", "P2", "P3", "P4"):
        t = views.ticket_timers(now, facts(priority=priority), LOTWIZE).first_response
        state = sla.sla_state(now, facts(priority=priority), LOTWIZE, "first_response")
        assert {"ok": "normal", "approaching": "yellow", "breached": "red"}[state.value] == t.colour
        # The instants the page's script uses agree with the rules.
        assert t.approaching_at is not None and t.due is not None
        assert (now >= t.approaching_at) == (state is not sla.SlaState.OK)
        assert (now > t.due) == (state is sla.SlaState.BREACHED)


def test_queue_counts() -> None:
    today = views.start_of_day(MONDAY_10, NY)
    assert today == datetime(2026, 3, 2, 0, 0, tzinfo=NY)
    rows = [("new", "ok", None), ("new", "breached", None), ("open", "ok", None), ("in_progress", "approaching", None),
            ("pending_customer", "breached", None), ("escalated", "ok", None),
            ("resolved", "ok", today + timedelta(hours=9)), ("closed", "ok", today + timedelta(hours=1)),
            ("resolved", "breached", today - timedelta(minutes=1))]
    assert views.queue_counts(rows, today) == views.QueueCounts(new=2, open=3, overdue=2, escalated=1,
                                                                resolved_today=2)


def test_filters_fall_back_to_defaults() -> None:
    assert views.parse_filters({}) == views.QueueFilters()
    odd = views.parse_filters({"status": "bogus", "priority": "P9", "sla": "x", "sort": "name", "page": "-3",
                               "q": "  #12  "})
    assert odd == views.QueueFilters(q="#12")
    f = views.parse_filters({"status": "escalated", "sort": "sla", "page": "2"})
    assert f.query() == {"status": "escalated", "sort": "sla", "page": "2"}
    assert f.query(page=1) == {"status": "escalated", "sort": "sla"}


@pytest.mark.parametrize(("wanted", "worst", "status", "shown"), [
    ("", "ok", "closed", True), ("overdue", "breached", "open", True), ("overdue", "approaching", "open", False),
    ("approaching", "approaching", "new", True), ("at_risk", "breached", "escalated", True),
    ("at_risk", "ok", "open", False), ("overdue", "breached", "resolved", False),
])
def test_sla_filter(wanted: str, worst: str, status: str, shown: bool) -> None:
    assert views.sla_matches(wanted, worst, status) is shown


def test_buttons_follow_the_transition_table() -> None:
    assert [a for a, _ in views.status_buttons("new")] == []
    assert [a for a, _ in views.status_buttons("open")] == ["start", "wait_for_customer", "resolve"]
    assert [a for a, _ in views.status_buttons("escalated")] == ["resolve", "de_escalate"]
    assert [a for a, _ in views.status_buttons("resolved")] == ["close", "reopen"]
    assert views.can_escalate("in_progress", "l1") and views.can_escalate("escalated", "l2")
    assert not views.can_escalate("escalated", "management") and not views.can_escalate("new", "l1")


def test_the_checklist_names_what_is_missing() -> None:
    keys = [k for k, _ in views.ESCALATION_CHECKLIST]
    assert views.missing_checklist(keys) == []
    assert views.missing_checklist(keys[1:]) == [views.ESCALATION_CHECKLIST[0][1]]
    assert len(views.missing_checklist(["bogus"])) == 5


def test_audit_in_words() -> None:
    names = {"a1": "Ann"}
    assert views.audit_summary("assigned", {"from": None, "to": "a1"}, names) == ("Assigned", "nobody → Ann")
    assert views.audit_summary("status", {"action": "resolve", "from": "open", "to": "resolved"}, names) == (
        "Status", "Resolve: Open → Resolved")
    assert views.audit_summary("status", {"action": "auto_close", "from": "resolved", "to": "closed"}, names)[1] == (
        "Closed automatically: Resolved → Closed")
    assert views.audit_summary("escalated", {"level": "l2", "type": "technical", "reason": "500s"}, names) == (
        "Escalated", "to Level 2 (specialist team), technical: 500s")
    assert views.audit_summary("priority_changed", {"from": "P3", "to": "P1"}, names) == ("Priority changed", "P3 → P1")
    assert views.audit_summary("sla_breached", {"timer": "first_response"}, names) == (
        "SLA breached", "first response target missed")
    assert views.audit_summary("something_new", {"b": 2, "a": 1}, names) == ("Something new", "a: 1, b: 2")


@pytest.mark.parametrize(("seconds", "words"), [
    (5, "5 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"), (3660, "1 h 1 min"), (86400, "1 d"),
    (90000, "1 d 1 h"), (-120, "2 min"),
])
def test_duration_words(seconds: int, words: str) -> None:
    assert views.duration_words(timedelta(seconds=seconds)) == words


def test_minutes_words() -> None:
    assert [views.minutes_words(m) for m in (None, 42, 90, 60 * 50)] == ["—", "42 min", "1.5 h", "2.1 d"]


def test_chat_events_read_as_words() -> None:
    assert views.entry_text("Hello", None) == "Hello"
    assert views.entry_text(None, {"event": "state", "from": "waiting", "to": "ticketed", "reason": "nobody_online"}) \
        == "Chat: waiting for an agent → a ticket (nobody online)"
    assert views.entry_text("These may help", {"event": "suggestions", "articles": [{"title": "Pay dues"}]}) == (
        "These may help\nPay dues")
    assert views.entry_text(None, {"event": "feedback", "helpful": False}).endswith("unhelpful.")
    assert views.entry_kind("note", "agent", True) == ("entry-note", "Internal note")
    assert views.entry_kind("reply", "agent", False) == ("entry-reply", "Reply to customer")
    assert views.entry_kind("message", "visitor", False) == ("entry-customer", "Customer")


MINUTE = timedelta(minutes=1)
instants = st.integers(min_value=0, max_value=60 * 24 * 14).map(lambda m: MONDAY_10 + m * MINUTE)


@st.composite
def ticket_facts(draw: st.DrawFn) -> sla.TicketFacts:
    created = draw(instants)
    later = st.integers(min_value=0, max_value=60 * 24 * 7).map(lambda m: created + m * MINUTE)
    first = draw(st.none() | later)
    resolved = draw(st.none() | later)
    paused = []
    if draw(st.booleans()):
        a = draw(later)
        paused.append((a, a + draw(st.integers(min_value=1, max_value=60 * 30)) * MINUTE))
    return sla.TicketFacts(created_at=created, priority=draw(st.sampled_from(["P1", "P2", "P3", "P4"])),
                           plan=draw(st.sampled_from([None, "starter", "growth", "pro", "pmc"])),
                           first_response_at=first, resolved_at=resolved, paused=tuple(paused),
                           pending_since=draw(st.none() | later) if resolved is None else None)


def latest(facts: sla.TicketFacts) -> datetime:
    moments = [facts.created_at, facts.first_response_at, facts.resolved_at, facts.pending_since,
               *(b for _, b in facts.paused)]
    return max(m for m in moments if m is not None)


@settings(max_examples=60)
@given(ticket_facts(), st.integers(min_value=0, max_value=60 * 24 * 10), st.sampled_from(["lotwize", "kamflo"]))
def test_the_cached_timers_say_what_the_rules_say(facts: sla.TicketFacts, minutes_after: int, policy_name: str) -> None:
    """At any moment after what the store recorded (a page never sees the future)."""
    now = latest(facts) + minutes_after * MINUTE
    policy = sla.POLICIES[policy_name]
    fast = views.ticket_timers(now, facts, policy)
    slow = views.timers_from_report(now, facts, policy)
    assert fast.worst == slow.worst
    for a, b in ((fast.first_response, slow.first_response), (fast.resolution, slow.resolution)):
        assert (a.state, a.colour, a.label, a.running) == (b.state, b.colour, b.label, b.running)
        if a.running:
            assert (a.due, a.approaching_at) == (b.due, b.approaching_at)
