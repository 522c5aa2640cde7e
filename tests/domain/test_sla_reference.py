"""Business-time arithmetic against a slow reference that walks the clock one minute at a time.

The reference knows nothing of windows or UTC tricks: for each minute it asks "is the wall clock in New
York (or wherever) inside opening hours on a working day that is not a holiday, and is the timer not
paused?". Instants are drawn near the awkward places: weekends, holidays, and the March and November
daylight-saving changes in New York.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.domain.sla import ALWAYS_OPEN, BusinessCalendar, Interval, add_business_time, business_elapsed

MINUTE = timedelta(minutes=1)
NY = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class Spec:
    """The reference's own statement of a calendar."""

    zone: str
    opens: time
    closes: time
    workdays: frozenset[int]
    holidays: frozenset[date]
    always: bool = False

    def open_at(self, instant: datetime) -> bool:
        if self.always:
            return True
        local = instant.astimezone(ZoneInfo(self.zone))
        return (local.weekday() in self.workdays and local.date() not in self.holidays
                and self.opens <= local.time() < self.closes)

    def calendar(self) -> BusinessCalendar:
        if self.always:
            return ALWAYS_OPEN
        return BusinessCalendar(self.zone, self.opens, self.closes, self.workdays, self.holidays)


HOLIDAYS = frozenset({date(2026, 1, 19), date(2026, 5, 25), date(2026, 7, 3), date(2026, 11, 26),
                      date(2026, 11, 27),
                      date(2026, 12, 25), date(2027, 12, 31)})
SPECS = [
    Spec("America/New_York", time(9), time(18), frozenset(range(5)), HOLIDAYS),
    # Open every day through the 2 am changes, so that a 23- and a 25-hour day are counted.
    Spec("America/New_York", time(0, 30), time(23, 30), frozenset(range(7)), frozenset({date(2026, 3, 9)})),
    Spec("Europe/London", time(8), time(17, 30), frozenset({0, 1, 2, 3, 5}), frozenset()),
    Spec("UTC", time(0), time(0, 1), frozenset(range(7)), frozenset(), always=True),
]

# Places where mistakes happen, as New York wall-clock times.
ANCHORS = [datetime(*fields, tzinfo=NY).astimezone(UTC) for fields in [
    (2026, 3, 6, 17, 30),   # Friday before the March change
    (2026, 3, 8, 1, 0),     # the night of the March change (2:00 -> 3:00)
    (2026, 10, 30, 16, 0),  # Friday before the November change
    (2026, 11, 1, 1, 15),   # inside the repeated hour (1:00-2:00 twice)
    (2026, 1, 16, 17, 0),   # Friday before Martin Luther King Day
    (2026, 11, 25, 12, 0),  # before Thanksgiving and the Friday after
    (2026, 12, 24, 17, 45),
    (2027, 12, 30, 10, 0),  # into a New Year's Day observed on a Friday
    (2026, 6, 13, 3, 0),    # an ordinary Saturday night
    (2025, 3, 9, 1, 59),
    (2028, 11, 5, 0, 30),
]]


def reference_open(spec: Spec, instant: datetime, pauses: list[Interval]) -> bool:
    return spec.open_at(instant) and not any(a <= instant < b for a, b in pauses)


def reference_elapsed(spec: Spec, start: datetime, end: datetime, pauses: list[Interval]) -> timedelta:
    minutes, t = 0, start
    while t < end:
        minutes += reference_open(spec, t, pauses)
        t += MINUTE
    return minutes * MINUTE


def reference_add(spec: Spec, start: datetime, minutes: int, pauses: list[Interval]) -> datetime:
    t = start
    while minutes:
        if reference_open(spec, t, pauses):
            minutes -= 1
        t += MINUTE
    return t


def instants() -> st.SearchStrategy[datetime]:
    return st.builds(lambda anchor, minutes: anchor + minutes * MINUTE,
                     st.sampled_from(ANCHORS), st.integers(-2 * 24 * 60, 2 * 24 * 60))


def pause_lists(start: datetime) -> st.SearchStrategy[list[Interval]]:
    pause = st.tuples(st.integers(-600, 3 * 24 * 60), st.integers(0, 20 * 60)).map(
        lambda p: (start + p[0] * MINUTE, start + (p[0] + p[1]) * MINUTE))
    return st.lists(pause, max_size=3)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Spec, datetime, list[Interval]]:
    start = draw(instants())
    return draw(st.sampled_from(SPECS)), start, draw(pause_lists(start))


@settings(max_examples=60, deadline=None)
@given(cases(), st.integers(0, 4 * 24 * 60))
def test_elapsed_matches_the_minute_walk(case: tuple[Spec, datetime, list[Interval]], span: int) -> None:
    spec, start, pauses = case
    end = start + span * MINUTE
    expected = reference_elapsed(spec, start, end, pauses)
    assert business_elapsed(start, end, spec.calendar(), pauses) == expected


@settings(max_examples=60, deadline=None)
@given(cases(), st.integers(0, 24 * 60))
def test_due_matches_the_minute_walk(case: tuple[Spec, datetime, list[Interval]], minutes: int) -> None:
    spec, start, pauses = case
    expected = reference_add(spec, start, minutes, pauses)
    assert add_business_time(start, minutes * MINUTE, spec.calendar(), pauses) == expected


@settings(max_examples=100, deadline=None)
@given(cases(), st.integers(0, 200 * 60), st.integers(0, 7 * 24 * 60))
def test_elapsed_and_due_agree_at_any_scale(case: tuple[Spec, datetime, list[Interval]], minutes: int,
                                            split: int) -> None:
    """Cheaper properties over long targets (up to 200 business hours), where walking would be slow."""
    spec, start, pauses = case
    calendar = spec.calendar()
    duration = minutes * MINUTE
    due = add_business_time(start, duration, calendar, pauses)
    assert business_elapsed(start, due, calendar, pauses) == duration
    if minutes:  # the earliest such instant: a moment before, the target was not reached yet
        assert business_elapsed(start, due - timedelta(seconds=1), calendar, pauses) < duration
    middle = start + split * MINUTE
    end = due + split * MINUTE
    first = business_elapsed(start, middle, calendar, pauses)
    second = business_elapsed(middle, end, calendar, pauses)
    assert first + second == business_elapsed(start, end, calendar, pauses)


@settings(max_examples=40, deadline=None)
@given(instants(), st.integers(0, 6 * 60))
def test_input_time_zone_does_not_matter(start: datetime, minutes: int) -> None:
    calendar = SPECS[0].calendar()
    local = start.astimezone(NY)
    tokyo = start.astimezone(ZoneInfo("Asia/Tokyo"))
    due = add_business_time(start, minutes * MINUTE, calendar)
    assert add_business_time(local, minutes * MINUTE, calendar) == due
    assert add_business_time(tokyo, minutes * MINUTE, calendar) == due
    assert due.tzinfo is UTC
    assert business_elapsed(local, due.astimezone(NY), calendar) == minutes * MINUTE
