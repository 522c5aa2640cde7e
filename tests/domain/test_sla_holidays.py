"""The shipped holidays against the dates the US Office of Personnel Management publishes."""

from __future__ import annotations

from datetime import date

from chatsvc.domain.holidays import US_FEDERAL_HOLIDAYS_2025_2028, us_federal_holidays

# Observed dates as the OPM federal-holidays pages list them, written out by hand (not computed).
OPM: dict[int, list[date]] = {
    2025: [date(2025, 1, 1), date(2025, 1, 20), date(2025, 2, 17), date(2025, 5, 26), date(2025, 6, 19),
           date(2025, 7, 4), date(2025, 9, 1), date(2025, 10, 13), date(2025, 11, 11), date(2025, 11, 27),
           date(2025, 12, 25)],
    2026: [date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 5, 25), date(2026, 6, 19),
           date(2026, 7, 3), date(2026, 9, 7), date(2026, 10, 12), date(2026, 11, 11), date(2026, 11, 26),
           date(2026, 12, 25)],
    2027: [date(2027, 1, 1), date(2027, 1, 18), date(2027, 2, 15), date(2027, 5, 31), date(2027, 6, 18),
           date(2027, 7, 5), date(2027, 9, 6), date(2027, 10, 11), date(2027, 11, 11), date(2027, 11, 25),
           date(2027, 12, 24), date(2027, 12, 31)],
    2028: [date(2028, 1, 17), date(2028, 2, 21), date(2028, 5, 29), date(2028, 6, 19), date(2028, 7, 4),
           date(2028, 9, 4), date(2028, 10, 9), date(2028, 11, 10), date(2028, 11, 23), date(2028, 12, 25)],
}


def test_each_year_matches_opm() -> None:
    for year, days in OPM.items():
        assert list(us_federal_holidays(year)) == days, year


def test_the_shipped_set_is_2025_to_2028() -> None:
    assert {d for days in OPM.values() for d in days} == US_FEDERAL_HOLIDAYS_2025_2028


def test_weekend_holidays_move_to_the_nearest_weekday() -> None:
    names = us_federal_holidays(2027)
    assert names[date(2027, 12, 31)] == "New Year's Day"  # 1 January 2028 is a Saturday
    assert names[date(2027, 7, 5)] == "Independence Day"  # 4 July 2027 is a Sunday
    assert all(d.weekday() < 5 for year in range(2020, 2040) for d in us_federal_holidays(year))
