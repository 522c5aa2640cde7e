"""The SVG charts: the numbers drawn are the numbers given, text is escaped, no script or style."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvc.console import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # well-formed XML, or this raises


def bars(root: ET.Element) -> list[tuple[str, str]]:
    return [(r.get("data-label", ""), r.get("data-value", "")) for r in root.iter(f"{SVG}rect")
            if "bar" in (r.get("class") or "").split()]


def test_a_column_chart_draws_each_value() -> None:
    svg = charts.column_chart("c", "Tickets per day", "desc", ["01 Mar", "02 Mar", "03 Mar"],
                              [charts.Series("Tickets", [3, 0, 7.5])])
    root = parse(svg)
    assert bars(root) == [("01 Mar", "3"), ("02 Mar", "0"), ("03 Mar", "7.5")]
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c-title c-desc"
    assert root.find(f"{SVG}title").text == "Tickets per day"
    heights = {r.get("data-label"): float(r.get("height")) for r in root.iter(f"{SVG}rect") if r.get("data-label")}
    assert heights["02 Mar"] == 0 and heights["03 Mar"] > heights["01 Mar"] > 0
    assert heights["03 Mar"] / heights["01 Mar"] == pytest.approx(2.5)


def test_grouped_series_and_missing_values() -> None:
    svg = charts.column_chart("g", "By priority", "d", ["P1", "P2"],
                              [charts.Series("Median", [30, None], "series-median"),
                               charts.Series("Average", [45, 90], "series-average")], fmt=lambda v: f"{v:.0f} min")
    root = parse(svg)
    assert bars(root) == [("P1, Median", "30"), ("P1, Average", "45"), ("P2, Average", "90")]
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "P2, Median: no data" in titles and "P1, Median: 30 min" in titles
    assert [t.text for t in root.iter(f"{SVG}text") if t.text in ("Median", "Average")] == ["Median", "Average"]


def test_text_is_escaped_and_nothing_runs() -> None:
    evil = '<script>alert(1)</script>" onload="alert(2)'
    svg = str(charts.bar_rows("x\" onclick=\"y", evil, evil, [evil], [charts.Series(evil, [1])]))
    svg += str(charts.column_chart("z", evil, evil, [evil], [charts.Series(evil, [2])]))
    svg += str(charts.stacked_bar("s", evil, evil, [charts.Part(evil, 1, "a")], target_label=evil, target=0.9))
    assert "<script" not in svg and "onload=" not in svg.replace("onload=&#34;", "") and "onclick=\"" not in svg
    assert "style=" not in svg and "<style" not in svg
    for piece in svg.split("</svg>")[:-1]:
        parse(piece + "</svg>")


def test_horizontal_bars_share_one_scale() -> None:
    root = parse(charts.bar_rows("a", "Per agent", "d", ["Ann", "Bob"],
                                 [charts.Series("Assigned", [4, 2]), charts.Series("Resolved", [2, 0])]))
    widths = {r.get("data-label"): float(r.get("width")) for r in root.iter(f"{SVG}rect") if r.get("data-label")}
    assert widths["Ann, Assigned"] == pytest.approx(2 * widths["Bob, Assigned"])
    assert widths["Ann, Resolved"] == pytest.approx(widths["Bob, Assigned"]) and widths["Bob, Resolved"] == 0


def test_stacked_bar_shares_and_empty() -> None:
    root = parse(charts.stacked_bar("s", "CSAT", "d", [charts.Part("Good", 3, "good"), charts.Part("Bad", 1, "bad")],
                                    target=0.9, target_label="target 90 %"))
    widths = {r.get("data-label"): float(r.get("width")) for r in root.iter(f"{SVG}rect")}
    assert widths["Good"] == pytest.approx(3 * widths["Bad"])
    assert any(t.text == "Good: 3 (75 %)" for t in root.iter(f"{SVG}title"))
    empty = parse(charts.stacked_bar("e", "CSAT", "d", [charts.Part("Good", 0, "good")]))
    assert bars(empty) == [("none", "0")]


def test_mismatched_series_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per category"):
        charts.column_chart("m", "t", "d", ["a", "b"], [charts.Series("s", [1])])


@pytest.mark.parametrize(("maximum", "ticks"), [
    (0, [0, 1]), (3, [0, 1, 2, 3]), (7, [0, 2, 4, 6, 8]), (100, [0, 25, 50, 75, 100]), (0.3, [0, 0.1, 0.2, 0.3]),
    (1234, [0, 500, 1000, 1500]),
])
def test_nice_ticks(maximum: float, ticks: list[float]) -> None:
    assert charts.nice_ticks(maximum) == pytest.approx(ticks)


@given(st.floats(min_value=1e-3, max_value=1e9, allow_nan=False))
def test_ticks_cover_the_maximum(maximum: float) -> None:
    ticks = charts.nice_ticks(maximum)
    assert ticks[0] == 0 and ticks[-1] >= maximum * (1 - 1e-9) and 2 <= len(ticks) <= 6
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
