"""SLA policies, deadlines and timer states, checked by hand against the manuals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from chatsvc.domain.sla import (
    ALWAYS_OPEN,
    KAMFLO,
    LOTWIZE,
    NEW_YORK_BUSINESS_HOURS,
    POLICIES,
    BusinessCalendar,
    Clock,
    SlaPolicy,
    SlaState,
    Targets,
    TicketFacts,
    add_business_time,
    business_elapsed,
    deadlines,
    policy_named,
    sla_report,
    sla_state,
    timer_state,
)
from chatsvc.domain.tickets import Priority, Status

NY = ZoneInfo("America/New_York")
H, M = timedelta(hours=1), timedelta(minutes=1)


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NY)


def same(a: datetime | None, b: datetime) -> bool:
    return a is not None and a == b and a.tzinfo is UTC


# --- Business-time arithmetic, by hand ---------------------------------------------------------------

def test_friday_half_past_five_plus_one_hour_is_monday_half_past_nine() -> None:
    due = add_business_time(ny(2026, 1, 9, 17, 30), H, NEW_YORK_BUSINESS_HOURS)
    assert due == ny(2026, 1, 12, 9, 30)
    assert business_elapsed(ny(2026, 1, 9, 17, 30), due, NEW_YORK_BUSINESS_HOURS) == H


def test_a_target_used_up_at_closing_time_is_due_at_closing_time() -> None:
    assert add_business_time(ny(2026, 1, 9, 17), H, NEW_YORK_BUSINESS_HOURS) == ny(2026, 1, 9, 18)


def test_a_holiday_monday_is_skipped() -> None:
    # Monday 19 January 2026 is Martin Luther King Day.
    assert add_business_time(ny(2026, 1, 16, 17, 30), H, NEW_YORK_BUSINESS_HOURS) == ny(2026, 1, 20, 9, 30)
    assert business_elapsed(ny(2026, 1, 16, 9), ny(2026, 1, 20, 18), NEW_YORK_BUSINESS_HOURS) == 18 * H


def test_weekend_and_night_instants_start_counting_at_the_next_opening() -> None:
    assert add_business_time(ny(2026, 1, 10, 3), H, NEW_YORK_BUSINESS_HOURS) == ny(2026, 1, 12, 10)
    assert add_business_time(ny(2026, 1, 12, 7), H, NEW_YORK_BUSINESS_HOURS) == ny(2026, 1, 12, 10)
    weekend = business_elapsed(ny(2026, 1, 10, 0), ny(2026, 1, 11, 23, 59), NEW_YORK_BUSINESS_HOURS)
    assert weekend == timedelta(0)


def test_business_hours_across_the_march_change() -> None:
    # Friday 17:00 EST + 2 h = Monday 10:00 EDT: 65 wall-clock hours, 64 real ones (the weekend lost an hour).
    start = ny(2026, 3, 6, 17)
    due = add_business_time(start, 2 * H, NEW_YORK_BUSINESS_HOURS)
    assert due == ny(2026, 3, 9, 10) and due.astimezone(NY).utcoffset() == timedelta(hours=-4)
    assert due - start == 64 * H


def test_business_hours_across_the_november_change() -> None:
    start = ny(2026, 10, 30, 17)
    due = add_business_time(start, 2 * H, NEW_YORK_BUSINESS_HOURS)
    assert due == ny(2026, 11, 2, 10)
    assert due - start == 66 * H  # and 65 wall-clock hours


def test_around_the_clock_counts_real_hours_through_the_march_change() -> None:
    start = ny(2026, 3, 8, 1, 30)  # EST; at 2:00 the clocks jump to 3:00 EDT
    due = add_business_time(start, 4 * H, ALWAYS_OPEN)
    assert due == ny(2026, 3, 8, 6, 30)
    assert business_elapsed(ny(2026, 3, 8, 0), ny(2026, 3, 9, 0), ALWAYS_OPEN) == 23 * H
    assert business_elapsed(ny(2026, 11, 1, 0), ny(2026, 11, 2, 0), ALWAYS_OPEN) == 25 * H


def test_pauses_stop_the_clock() -> None:
    start = ny(2026, 1, 12, 9)
    pause = (ny(2026, 1, 12, 10), ny(2026, 1, 13, 12))
    assert add_business_time(start, 2 * H, NEW_YORK_BUSINESS_HOURS, [pause]) == ny(2026, 1, 13, 13)
    assert business_elapsed(start, ny(2026, 1, 13, 13), NEW_YORK_BUSINESS_HOURS, [pause]) == 2 * H
    with pytest.raises(ValueError, match="cannot end"):
        business_elapsed(start, ny(2026, 1, 14), NEW_YORK_BUSINESS_HOURS, [(pause[1], pause[0])])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_business_time(datetime(2026, 1, 12, 9), H, NEW_YORK_BUSINESS_HOURS)
    with pytest.raises(ValueError, match="negative"):
        add_business_time(ny(2026, 1, 12, 9), -H, NEW_YORK_BUSINESS_HOURS)
    with pytest.raises(ValueError, match="time zone"):
        BusinessCalendar(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="open before it closes"):
        BusinessCalendar(opens=time(18), closes=time(9))
    with pytest.raises(ValueError, match="workday"):
        BusinessCalendar(workdays=frozenset())


def test_a_calendar_is_configurable() -> None:
    paris = BusinessCalendar("Europe/Paris", time(8, 30), time(17), frozenset(range(5)),
                             frozenset({date(2026, 5, 1)}))
    # Thursday 30 April 16:30 + 1 h: 30 min on Thursday, Friday 1 May is a holiday, Monday 8:30 + 30 min.
    start = datetime(2026, 4, 30, 16, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert add_business_time(start, H, paris) == datetime(2026, 5, 4, 9, tzinfo=ZoneInfo("Europe/Paris"))
    assert paris.is_open(datetime(2026, 5, 4, 7, tzinfo=UTC))
    assert not paris.is_open(datetime(2026, 5, 1, 9, tzinfo=UTC))


# --- Policies ----------------------------------------------------------------------------------------

def test_presets_are_loadable_by_name() -> None:
    assert set(POLICIES) == {"lotwize", "kamflo"}
    assert policy_named("LotWize") is LOTWIZE and policy_named("kamflo") is KAMFLO
    with pytest.raises(ValueError, match="unknown SLA policy 'zendesk'; known policies: lotwize, kamflo"):
        policy_named("zendesk")


@pytest.mark.parametrize(("priority", "first", "resolution"), [
    ("P1", 15 * M, 4 * H), ("P2", H, 24 * H), ("P3", 4 * H, 48 * H), ("P4", 24 * H, 7 * 24 * H)])
def test_lotwize_targets_by_priority(priority: str, first: timedelta, resolution: timedelta) -> None:
    assert LOTWIZE.targets(priority) == Targets(first, resolution)


@pytest.mark.parametrize(("priority", "plan", "first", "resolution"), [
    ("P3", "starter", 4 * H, 48 * H),    # priority is stricter on both
    ("P4", "Starter", 24 * H, 72 * H),   # the plan's 72 h beats P4's 7 days
    ("P4", "growth", 8 * H, 48 * H),
    ("P3", "pro", 2 * H, 24 * H),
    ("P3", "PMC", 2 * H, 24 * H),        # PMCs are Pro customers
    ("P2", "pro", H, 24 * H),
    ("P1", "pro", 15 * M, 4 * H),
    ("P3", "enterprise", 4 * H, 48 * H),  # an unknown plan adds nothing
    ("P3", None, 4 * H, 48 * H),
])
def test_the_stricter_of_priority_and_plan_applies(priority: str, plan: str | None, first: timedelta,
                                                   resolution: timedelta) -> None:
    assert LOTWIZE.targets(priority, plan) == Targets(first, resolution)


def test_kamflo_targets() -> None:
    assert [KAMFLO.targets(p) for p in Priority] == [
        Targets(H, 4 * H), Targets(4 * H, 24 * H), Targets(24 * H, 72 * H), Targets(72 * H, 168 * H)]
    assert KAMFLO.targets("P3", "pro") == Targets(24 * H, 72 * H)  # Kamflo has no plan table
    assert not KAMFLO.pending_pauses and LOTWIZE.pending_pauses


def test_p1_runs_around_the_clock_and_the_rest_on_business_hours() -> None:
    for policy in POLICIES.values():
        assert policy.calendar_for("P1") is ALWAYS_OPEN
        assert all(policy.calendar_for(p) is NEW_YORK_BUSINESS_HOURS for p in ("P2", "P3", "P4"))


def test_policies_refuse_incomplete_tables() -> None:
    with pytest.raises(ValueError, match="no targets for P4"):
        SlaPolicy("partial", {p: Targets(H, H) for p in (Priority.P1, Priority.P2, Priority.P3)})
    with pytest.raises(ValueError, match="approaching_share"):
        SlaPolicy("bad", {p: Targets(H, H) for p in Priority}, approaching_share=0)
    with pytest.raises(ValueError, match="positive"):
        SlaPolicy("bad", {p: Targets(H, timedelta(0)) for p in Priority})


# --- Deadlines and states of tickets -----------------------------------------------------------------

def test_p1_at_three_on_sunday_morning() -> None:
    facts = TicketFacts(created_at=ny(2026, 6, 14, 3), priority=Priority.P1, plan="starter")
    first, resolution = deadlines(facts, LOTWIZE)
    assert same(first, ny(2026, 6, 14, 3, 15)) and same(resolution, ny(2026, 6, 14, 7))


def test_timers_start_at_creation_even_out_of_hours() -> None:
    facts = TicketFacts(created_at=ny(2026, 6, 13, 22), priority="P3", plan="pro")  # Saturday night
    assert deadlines(facts, LOTWIZE) == (ny(2026, 6, 15, 11), ny(2026, 6, 17, 15))
    # Kamflo: 24 and 72 business hours; Friday 19 June (Juneteenth) is a holiday.
    assert deadlines(facts, KAMFLO) == (ny(2026, 6, 17, 15), ny(2026, 6, 25, 18))


def test_states_go_ok_approaching_breached() -> None:
    facts = TicketFacts(created_at=ny(2026, 6, 15, 9), priority="P3")  # first response 4 h, resolution 48 h
    assert sla_state(ny(2026, 6, 15, 11, 59), facts, LOTWIZE, Clock.FIRST_RESPONSE) is SlaState.OK
    assert sla_state(ny(2026, 6, 15, 12), facts, LOTWIZE, "first_response") is SlaState.APPROACHING
    assert sla_state(ny(2026, 6, 15, 13), facts, LOTWIZE, "first_response") is SlaState.APPROACHING
    assert sla_state(ny(2026, 6, 15, 13, 0, 1), facts, LOTWIZE, "first_response") is SlaState.BREACHED
    assert sla_state(ny(2026, 6, 15, 13, 0, 1), facts, LOTWIZE, "resolution") is SlaState.OK


def test_a_target_reached_at_closing_time_is_breached_overnight() -> None:
    facts = TicketFacts(created_at=ny(2026, 6, 15, 14), priority="P3")  # first response due 18:00
    assert sla_state(ny(2026, 6, 15, 18), facts, LOTWIZE, "first_response") is SlaState.APPROACHING
    assert sla_state(ny(2026, 6, 15, 23), facts, LOTWIZE, "first_response") is SlaState.BREACHED


def test_a_stopped_timer_keeps_its_verdict() -> None:
    created = ny(2026, 6, 15, 9)
    on_time = TicketFacts(created_at=created, priority="P3", first_response_at=ny(2026, 6, 15, 12, 30))
    late = TicketFacts(created_at=created, priority="P3", first_response_at=ny(2026, 6, 15, 14))
    later = ny(2026, 7, 1)
    assert sla_state(later, on_time, LOTWIZE, "first_response") is SlaState.OK
    assert sla_state(later, late, LOTWIZE, "first_response") is SlaState.BREACHED
    report = sla_report(later, on_time, LOTWIZE).first_response
    assert report.stopped and report.elapsed == 3.5 * H and report.due == ny(2026, 6, 15, 13)
    # Only the resolution timer still runs: it is the next deadline.
    assert sla_report(later, on_time, LOTWIZE).next_due == ny(2026, 6, 23, 12)
    assert sla_report(created, on_time, LOTWIZE).next_due == ny(2026, 6, 15, 13)  # the reply is still ahead
    assert sla_report(created, TicketFacts(created_at=created, priority="P3"), LOTWIZE).next_due == (
        ny(2026, 6, 15, 13))


def test_the_approaching_share_is_configurable() -> None:
    start = ny(2026, 6, 15, 9)
    cal = NEW_YORK_BUSINESS_HOURS
    assert timer_state(ny(2026, 6, 15, 11), start, 4 * H, cal) is SlaState.OK
    assert timer_state(ny(2026, 6, 15, 11), start, 4 * H, cal, approaching_share=0.5) is SlaState.APPROACHING


def test_pending_customer_pauses_lotwize_but_not_kamflo() -> None:
    created = ny(2026, 6, 15, 9)  # Monday; P3 resolution 48 business hours (LotWize), 72 (Kamflo)
    waiting = ny(2026, 6, 15, 10)
    facts = TicketFacts(created_at=created, priority="P3", first_response_at=waiting, pending_since=waiting)
    first, resolution = deadlines(facts, LOTWIZE)
    assert first == ny(2026, 6, 15, 13)
    assert resolution is None  # no due date while the timer is stopped with time left
    assert deadlines(facts, KAMFLO).resolution == ny(2026, 6, 25, 18)
    later = ny(2026, 7, 15)
    report = sla_report(later, facts, LOTWIZE).resolution
    assert report.paused and report.state is SlaState.OK and report.elapsed == H and report.due is None
    assert sla_report(later, facts, LOTWIZE).next_due is None
    assert sla_state(later, facts, KAMFLO, "resolution") is SlaState.BREACHED

    # The customer answered on Wednesday at 10:00: the 47 hours left count from there (skipping Juneteenth).
    answered = ny(2026, 6, 17, 10)
    resumed = TicketFacts(created_at=created, priority="P3", first_response_at=waiting,
                          paused=[(waiting, answered)])
    assert deadlines(resumed, LOTWIZE).resolution == ny(2026, 6, 25, 12)


def test_a_pause_after_the_breach_does_not_hide_it() -> None:
    created = ny(2026, 6, 15, 9)
    facts = TicketFacts(created_at=created, priority="P2", plan="starter", first_response_at=created,
                        pending_since=ny(2026, 6, 22, 9))  # P2: 24 business hours, used up on the 17th
    assert deadlines(facts, LOTWIZE).resolution == ny(2026, 6, 17, 15)
    assert sla_state(ny(2026, 6, 23), facts, LOTWIZE, "resolution") is SlaState.BREACHED


def test_time_spent_resolved_before_a_reopen_is_not_counted() -> None:
    created = ny(2026, 6, 15, 9)
    history = [(ny(2026, 6, 15, 9, 5), Status.OPEN), (ny(2026, 6, 15, 10), Status.RESOLVED),
               (ny(2026, 6, 22, 10), Status.OPEN)]
    facts = TicketFacts.from_history(created, "P2", history, first_response_at=ny(2026, 6, 15, 9, 30))
    assert facts.resolved_periods == ((ny(2026, 6, 15, 10), ny(2026, 6, 22, 10)),)
    assert facts.resolved_at is None
    # One business hour before the resolution, 23 after the reopen: Wednesday 24 June, 15:00.
    assert deadlines(facts, LOTWIZE).resolution == ny(2026, 6, 24, 15)


def test_facts_from_history() -> None:
    created = ny(2026, 6, 15, 9)
    history = [
        (created, Status.NEW),
        (ny(2026, 6, 15, 9, 10), Status.OPEN),
        (ny(2026, 6, 15, 10), Status.PENDING_CUSTOMER),
        (ny(2026, 6, 16, 10), "open"),
        (ny(2026, 6, 16, 11), Status.IN_PROGRESS),
        (ny(2026, 6, 16, 12), Status.PENDING_CUSTOMER),
        (ny(2026, 6, 16, 13), Status.RESOLVED),
        (ny(2026, 6, 19, 13), Status.CLOSED),
    ]
    facts = TicketFacts.from_history(created, "P3", history, plan="growth")
    assert facts.paused == ((ny(2026, 6, 15, 10), ny(2026, 6, 16, 10)),
                            (ny(2026, 6, 16, 12), ny(2026, 6, 16, 13)))
    assert facts.pending_since is None and facts.resolved_periods == ()
    assert facts.resolved_at == ny(2026, 6, 16, 13)  # closing does not move the stop
    # Resolved in time: Monday 9:00 -> Tuesday 13:00 is 13 business hours, of which 10 were paused.
    report = sla_report(ny(2026, 7, 1), facts, LOTWIZE)
    assert report.resolution.state is SlaState.OK and report.resolution.elapsed == 3 * H
    # No reply was ever recorded: the first-response timer stopped at the resolution, late.
    assert report.first_response.state is SlaState.BREACHED and report.worst is SlaState.BREACHED

    waiting = TicketFacts.from_history(created, "P3", history[:3])
    assert waiting.pending_since == ny(2026, 6, 15, 10) and waiting.paused == ()

    merged = TicketFacts.from_history(created, "P3", [(ny(2026, 6, 15, 9, 1), Status.CLOSED)])
    assert merged.resolved_at == ny(2026, 6, 15, 9, 1)
    assert sla_report(ny(2026, 7, 1), merged, LOTWIZE).worst is SlaState.OK
