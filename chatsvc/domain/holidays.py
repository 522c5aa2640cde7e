"""US federal holidays, computed by the rules of 5 U.S.C. 6103, on the days they are observed.

A holiday on a Saturday is observed the Friday before, one on a Sunday the Monday after (so New Year's
Day 2028, a Saturday, is observed on Friday 31 December 2027 and belongs to 2027). Inauguration Day is
left out: it is a holiday only for federal staff around Washington, DC.
"""

from __future__ import annotations

from datetime import date, timedelta

MONDAY, THURSDAY = 0, 3


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def _holidays_of(year: int) -> dict[date, str]:
    """The holidays that commemorate something in `year`, on their observed dates (maybe in year - 1)."""
    fixed = {
        date(year, 1, 1): "New Year's Day",
        date(year, 7, 4): "Independence Day",
        date(year, 11, 11): "Veterans Day",
        date(year, 12, 25): "Christmas Day",
    }
    if year >= 2021:
        fixed[date(year, 6, 19)] = "Juneteenth National Independence Day"
    days = {_observed(day): name for day, name in fixed.items()}
    days[_nth_weekday(year, 1, MONDAY, 3)] = "Birthday of Martin Luther King, Jr."
    days[_nth_weekday(year, 2, MONDAY, 3)] = "Washington's Birthday"
    days[_last_weekday(year, 5, MONDAY)] = "Memorial Day"
    days[_nth_weekday(year, 9, MONDAY, 1)] = "Labor Day"
    days[_nth_weekday(year, 10, MONDAY, 2)] = "Columbus Day"
    days[_nth_weekday(year, 11, THURSDAY, 4)] = "Thanksgiving Day"
    return days


def us_federal_holidays(year: int) -> dict[date, str]:
    """Observed US federal holidays falling in calendar year `year`, date -> name, in date order."""
    days = {d: n for y in (year, year + 1) for d, n in _holidays_of(y).items() if d.year == year}
    return dict(sorted(days.items()))


def us_federal_holidays_between(first_year: int, last_year: int) -> frozenset[date]:
    return frozenset(d for year in range(first_year, last_year + 1) for d in us_federal_holidays(year))


US_FEDERAL_HOLIDAYS_2025_2028 = us_federal_holidays_between(2025, 2028)
