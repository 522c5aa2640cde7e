"""SLA targets, business hours and SLA timers, as pure functions of instants passed in.

A timer starts when the ticket is created and counts only the time its calendar is open: 9:00-18:00
America/New_York, Monday to Friday, outside holidays, for most tickets; around the clock for the
priorities a policy names (P1). Targets are durations of that counted time, taken literally: "24 h" of
business time is 24 counted hours, about 2.7 working days. The first-response timer stops at the first
reply to the customer; the resolution timer stops when the ticket is resolved, and (if the policy says
so) does not count the time spent waiting for the customer, nor, always, the time a ticket spent
resolved before the customer reopened it.

All arithmetic is done in UTC, so a daylight-saving change never adds or loses an hour; results are
UTC datetimes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chatsvc.domain.holidays import US_FEDERAL_HOLIDAYS_2025_2028
from chatsvc.domain.tickets import Priority, Status, parse_priority

Interval = tuple[datetime, datetime]

# Far enough to stand for "never", near enough that adding a few weeks cannot overflow.
_END_OF_TIME = datetime(9000, 1, 1, tzinfo=UTC)
_ZERO = timedelta(0)


def _utc(value: datetime, name: str) -> datetime:
    # Aware datetimes that share a tzinfo subtract by wall clock, ignoring DST; UTC never lies.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class BusinessCalendar:
    """When SLA time is counted. Opening and closing are wall-clock times in `timezone`."""

    timezone: str = "America/New_York"
    opens: time = time(9, 0)
    closes: time = time(18, 0)
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday is 0
    holidays: frozenset[date] = US_FEDERAL_HOLIDAYS_2025_2028
    around_the_clock: bool = False  # every instant counts: no hours, weekends or holidays

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opening and closing times are wall-clock times without a time zone")
        if not self.opens < self.closes:
            raise ValueError(f"the calendar must open before it closes ({self.opens} >= {self.closes})")
        object.__setattr__(self, "workdays", frozenset(self.workdays))
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        if not self.workdays <= set(range(7)):
            raise ValueError(f"workdays are 0 (Monday) to 6 (Sunday), got {sorted(self.workdays)}")
        if not self.workdays and not self.around_the_clock:
            raise ValueError("a business calendar needs at least one workday")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_business_day(self, day: date) -> bool:
        return self.around_the_clock or (day.weekday() in self.workdays and day not in self.holidays)

    def is_open(self, instant: datetime) -> bool:
        if self.around_the_clock:
            return True
        local = _utc(instant, "instant").astimezone(self.zone)
        return self.is_business_day(local.date()) and self.opens <= local.time() < self.closes

    def windows(self, since: datetime) -> Iterator[Interval]:
        """The open intervals (UTC) from `since` on, in order, the first one clipped to start at `since`."""
        since = _utc(since, "since")
        if self.around_the_clock:
            yield since, _END_OF_TIME
            return
        zone = self.zone
        day = since.astimezone(zone).date()
        while True:
            if self.is_business_day(day):
                start = datetime.combine(day, self.opens, tzinfo=zone).astimezone(UTC)
                end = datetime.combine(day, self.closes, tzinfo=zone).astimezone(UTC)
                if end > since:
                    yield max(start, since), end
            day += timedelta(days=1)


ALWAYS_OPEN = BusinessCalendar(around_the_clock=True)
NEW_YORK_BUSINESS_HOURS = BusinessCalendar()


def _merged(pauses: Iterable[Interval]) -> list[Interval]:
    spans = []
    for start, end in pauses:
        start, end = _utc(start, "pause start"), _utc(end, "pause end")
        if end < start:
            raise ValueError(f"a pause cannot end ({end.isoformat()}) before it starts ({start.isoformat()})")
        if end > start:
            spans.append((start, end))
    spans.sort()
    merged: list[Interval] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def counted_intervals(start: datetime, calendar: BusinessCalendar,
                      pauses: Iterable[Interval] = ()) -> Iterator[Interval]:
    """The intervals from `start` on during which the clock runs: open hours minus the pauses."""
    paused = _merged(pauses)
    i = 0
    for a, b in calendar.windows(start):
        while i < len(paused) and paused[i][1] <= a:
            i += 1
        j = i
        while a < b and j < len(paused) and paused[j][0] < b:
            p_start, p_end = paused[j]
            if p_start > a:
                yield a, p_start
            a = max(a, p_end)
            j += 1
        if a < b:
            yield a, b


def business_elapsed(start: datetime, end: datetime, calendar: BusinessCalendar,
                     pauses: Iterable[Interval] = ()) -> timedelta:
    """Counted time between two instants (zero when `end` is not after `start`)."""
    start, end = _utc(start, "start"), _utc(end, "end")
    total = _ZERO
    if end <= start:
        return total
    for a, b in counted_intervals(start, calendar, pauses):
        if a >= end:
            break
        total += min(b, end) - a
    return total


def add_business_time(start: datetime, duration: timedelta, calendar: BusinessCalendar,
                      pauses: Iterable[Interval] = ()) -> datetime:
    """The earliest instant by which `duration` of counted time has passed since `start` (UTC).

    So Friday 17:30 + 1 h is Monday 9:30, and Friday 17:00 + 1 h is Friday 18:00, not Monday 9:00.
    """
    start = _utc(start, "start")
    if duration < _ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    if duration == _ZERO:
        return start
    remaining = duration
    for a, b in counted_intervals(start, calendar, pauses):
        if b - a >= remaining:
            return a + remaining
        remaining -= b - a
    raise AssertionError("unreachable: a calendar with a workday is open again eventually")


# --- Policies --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Targets:
    first_response: timedelta
    resolution: timedelta

    def stricter(self, other: Targets) -> Targets:
        return Targets(min(self.first_response, other.first_response), min(self.resolution, other.resolution))


@dataclass(frozen=True, eq=False)
class SlaPolicy:
    """Targets by priority and (optionally) by plan, the stricter of the two applying to each timer."""

    name: str
    by_priority: Mapping[Priority, Targets]
    by_plan: Mapping[str, Targets] = field(default_factory=dict)
    calendar: BusinessCalendar = NEW_YORK_BUSINESS_HOURS
    around_the_clock: frozenset[Priority] = frozenset({Priority.P1})
    pending_pauses: bool = True  # does time in pending_customer stop the resolution timer?
    approaching_share: float = 0.75  # "approaching" from this share of the target on

    def __post_init__(self) -> None:
        by_priority = {parse_priority(p): t for p, t in self.by_priority.items()}
        missing = [p.value for p in Priority if p not in by_priority]
        if missing:
            raise ValueError(f"policy {self.name!r} has no targets for {', '.join(missing)}")
        object.__setattr__(self, "by_priority", MappingProxyType(by_priority))
        by_plan = {plan.strip().lower(): t for plan, t in self.by_plan.items()}
        object.__setattr__(self, "by_plan", MappingProxyType(by_plan))
        object.__setattr__(self, "around_the_clock", frozenset(map(parse_priority, self.around_the_clock)))
        for where, targets in [*by_priority.items(), *self.by_plan.items()]:
            if targets.first_response <= _ZERO or targets.resolution <= _ZERO:
                raise ValueError(f"policy {self.name!r}: targets for {where} must be positive")
        if not 0 < self.approaching_share <= 1:
            raise ValueError(f"approaching_share must be in (0, 1], got {self.approaching_share}")

    def targets(self, priority: Priority | str, plan: str | None = None) -> Targets:
        targets = self.by_priority[parse_priority(priority)]
        plan_targets = self.by_plan.get(plan.strip().lower()) if plan else None
        return targets.stricter(plan_targets) if plan_targets else targets

    def calendar_for(self, priority: Priority | str) -> BusinessCalendar:
        return ALWAYS_OPEN if parse_priority(priority) in self.around_the_clock else self.calendar


def _hours(first_response: float, resolution: float) -> Targets:
    return Targets(timedelta(hours=first_response), timedelta(hours=resolution))


P = Priority
_PRO = _hours(2, 24)
LOTWIZE = SlaPolicy(
    name="lotwize",
    by_priority={P.P1: _hours(0.25, 4), P.P2: _hours(1, 24), P.P3: _hours(4, 48), P.P4: _hours(24, 7 * 24)},
    # PMCs (property management companies) are the Pro plan's customers: same targets.
    by_plan={"starter": _hours(24, 72), "growth": _hours(8, 48), "pro": _PRO, "pmc": _PRO},
    pending_pauses=True,
)
KAMFLO = SlaPolicy(
    name="kamflo",
    # First response from the Kamflo table; resolution chosen so that each leaves room for the two
    # first-response cycles after which Kamflo escalates an unresolved ticket.
    by_priority={P.P1: _hours(1, 4), P.P2: _hours(4, 24), P.P3: _hours(24, 72), P.P4: _hours(72, 7 * 24)},
    # Kamflo has no pending-customer status: its timers run from creation to resolution.
    pending_pauses=False,
)
POLICIES: Mapping[str, SlaPolicy] = MappingProxyType({LOTWIZE.name: LOTWIZE, KAMFLO.name: KAMFLO})
DEFAULT_POLICY = LOTWIZE.name


def policy_named(name: str) -> SlaPolicy:
    try:
        return POLICIES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown SLA policy {name!r}; known policies: {', '.join(POLICIES)}") from None


# --- Timers of a ticket ----------------------------------------------------------------------------

class SlaState(enum.StrEnum):
    OK = "ok"
    APPROACHING = "approaching"
    BREACHED = "breached"


class Clock(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


@dataclass(frozen=True)
class TicketFacts:
    """What the timers of one ticket depend on, as the store records it."""

    created_at: datetime
    priority: Priority | str
    plan: str | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None  # set while the ticket is resolved or closed
    paused: Sequence[Interval] = ()  # finished stretches in pending_customer
    pending_since: datetime | None = None  # the stretch in pending_customer going on now
    resolved_periods: Sequence[Interval] = ()  # stretches spent resolved before a reopen

    @classmethod
    def from_history(cls, created_at: datetime, priority: Priority | str,
                     history: Sequence[tuple[datetime, Status | str]], plan: str | None = None,
                     first_response_at: datetime | None = None) -> TicketFacts:
        """Facts from the status changes `(at, new status)` in time order (the first may be `new`)."""
        paused: list[Interval] = []
        resolved_periods: list[Interval] = []
        status, since = Status.NEW, created_at
        for at, value in history:
            new_status = Status(value)
            if status is Status.PENDING_CUSTOMER and new_status is not status:
                paused.append((since, at))
            if status is Status.RESOLVED and new_status not in (Status.RESOLVED, Status.CLOSED):
                resolved_periods.append((since, at))
            if new_status is not status and not (status is Status.RESOLVED and new_status is Status.CLOSED):
                since = at
            status = new_status
        return cls(
            created_at=created_at, priority=priority, plan=plan, first_response_at=first_response_at,
            resolved_at=since if status in (Status.RESOLVED, Status.CLOSED) else None,
            paused=tuple(paused), pending_since=since if status is Status.PENDING_CUSTOMER else None,
            resolved_periods=tuple(resolved_periods),
        )


class Deadlines(NamedTuple):
    first_response: datetime
    resolution: datetime | None  # None while the resolution timer is paused (waiting for the customer)


@dataclass(frozen=True)
class TimerReport:
    clock: Clock
    state: SlaState
    due: datetime | None
    target: timedelta
    elapsed: timedelta  # counted time so far (up to the stop, if stopped)
    stopped: bool  # the reply was sent, or the ticket resolved
    paused: bool


@dataclass(frozen=True)
class SlaReport:
    first_response: TimerReport
    resolution: TimerReport

    @property
    def worst(self) -> SlaState:
        order = list(SlaState)
        return max(self.first_response.state, self.resolution.state, key=order.index)

    @property
    def next_due(self) -> datetime | None:
        """The earliest due instant of a timer still running (for "overdue first" sorting), or None."""
        running = [t.due for t in (self.first_response, self.resolution) if not t.stopped and t.due]
        return min(running, default=None)


_TimerInputs = tuple[datetime, timedelta, BusinessCalendar, list[Interval], datetime | None, datetime | None]


def _timer_inputs(facts: TicketFacts, policy: SlaPolicy, clock: Clock) -> _TimerInputs:
    """(start, target, calendar, finished pauses, open pause start, stop) of one timer."""
    start = _utc(facts.created_at, "created_at")
    targets = policy.targets(facts.priority, facts.plan)
    calendar = policy.calendar_for(facts.priority)
    if clock is Clock.FIRST_RESPONSE:
        # Never paused: a ticket waits for its customer only after someone has answered them. A ticket
        # resolved (or merged) without a reply stops this timer too: there is nothing left to answer.
        stop = facts.first_response_at or facts.resolved_at
        return start, targets.first_response, calendar, [], None, stop and _utc(stop, "first_response_at")
    pauses = list(facts.resolved_periods)
    open_pause = None
    if policy.pending_pauses:
        pauses += facts.paused
        open_pause = facts.pending_since and _utc(facts.pending_since, "pending_since")
    stop = facts.resolved_at and _utc(facts.resolved_at, "resolved_at")
    return start, targets.resolution, calendar, pauses, open_pause, stop


def _due(start: datetime, target: timedelta, calendar: BusinessCalendar, pauses: list[Interval],
         open_pause: datetime | None) -> datetime | None:
    due = add_business_time(start, target, calendar, pauses)
    if open_pause is not None and due > open_pause:
        return None  # the timer is stopped with time left: no due date until the customer answers
    return due


def deadlines(facts: TicketFacts, policy: SlaPolicy) -> Deadlines:
    """When the first response and the resolution are due (UTC)."""
    start, target, calendar, _, _, _ = _timer_inputs(facts, policy, Clock.FIRST_RESPONSE)
    first = add_business_time(start, target, calendar)
    start, target, calendar, pauses, open_pause, _ = _timer_inputs(facts, policy, Clock.RESOLUTION)
    return Deadlines(first, _due(start, target, calendar, pauses, open_pause))


def timer_state(now: datetime, start: datetime, target: timedelta, calendar: BusinessCalendar, *,
                pauses: Iterable[Interval] = (), open_pause: datetime | None = None,
                stopped_at: datetime | None = None, approaching_share: float = 0.75) -> SlaState:
    """The state of one timer at `now`: breached once the due instant passed before it stopped,
    approaching once `approaching_share` of the target is used, ok otherwise (and ok when met)."""
    return _timer(now, Clock.FIRST_RESPONSE, start, target, calendar, list(pauses), open_pause, stopped_at,
                  approaching_share).state


def _timer(now: datetime, clock: Clock, start: datetime, target: timedelta, calendar: BusinessCalendar,
           pauses: list[Interval], open_pause: datetime | None, stopped_at: datetime | None,
           share: float) -> TimerReport:
    now = _utc(now, "now")
    stopped = stopped_at is not None and _utc(stopped_at, "stopped_at") <= now
    stop = _utc(stopped_at, "stopped_at") if stopped and stopped_at else now
    paused_now = not stopped and open_pause is not None and _utc(open_pause, "open_pause") <= now
    if open_pause is not None and _utc(open_pause, "open_pause") < stop:
        pauses = [*pauses, (open_pause, stop)]
    # Pauses after the stop have not happened as far as this timer knows.
    pauses = [(a, min(b, stop)) for a, b in pauses if a < stop]
    due = add_business_time(start, target, calendar, pauses)
    elapsed = business_elapsed(start, stop, calendar, pauses)
    if stop > due:
        state = SlaState.BREACHED
    elif stopped or elapsed < target * share:
        state = SlaState.OK
    else:
        state = SlaState.APPROACHING
    shown_due = None if paused_now and due > stop else due
    return TimerReport(clock, state, shown_due, target, elapsed, stopped, paused_now)


def _report(now: datetime, facts: TicketFacts, policy: SlaPolicy, clock: Clock) -> TimerReport:
    start, target, calendar, pauses, open_pause, stop = _timer_inputs(facts, policy, clock)
    return _timer(now, clock, start, target, calendar, pauses, open_pause, stop, policy.approaching_share)


def sla_report(now: datetime, facts: TicketFacts, policy: SlaPolicy) -> SlaReport:
    """Both timers of a ticket at `now`."""
    return SlaReport(*(_report(now, facts, policy, clock) for clock in Clock))


def sla_state(now: datetime, facts: TicketFacts, policy: SlaPolicy, clock: Clock | str) -> SlaState:
    """The state of one timer of a ticket at `now`: ok, approaching or breached."""
    return _report(now, facts, policy, Clock(clock)).state
