"""Charts as SVG, rendered on the server: column charts (one or more series per category), horizontal
bar charts and a stacked bar.

Pure functions from numbers to markup. Every piece of text is escaped; the SVG carries no script, no
`style` attribute and no inline event handler (the console's Content-Security-Policy allows styles only
from its stylesheet): colours come from CSS classes (`series-0`, `series-1`, ... or the caller's own) that
console/tickets.css defines. Each mark has a `<title>` (the browser's tooltip, read by screen readers) and
`data-label`/`data-value` attributes, and the chart as a whole is an image labelled by its title and
description.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

Format = Callable[[float], str]
MAX_BAR = 48.0  # a lone bar stays a bar, not a wall


def plain(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}"


def percent(value: float) -> str:
    return f"{value:.0f} %"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per category; None: no data (no mark, "no data" in its title)
    css: str = ""  # a class for the marks; series-<index> by default


@dataclass(frozen=True)
class Part:
    label: str
    value: float
    css: str


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Axis ticks from 0 to a round top at or above `maximum`: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not math.isfinite(maximum) or maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if power >= 1 and step != int(step):  # 2.5 only for fractions; whole numbers step by whole numbers
        step = 5 * power
    top = step * math.ceil(maximum / step - 1e-9)
    ticks = [round(step * i, 10) for i in range(int(round(top / step)) + 1)]
    return ticks


def _id(raw: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    return cleaned or "chart"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _open(chart_id: str, title: str, description: str, width: int, height: int, css: str) -> list[str]:
    cid = _id(chart_id)
    return [
        f'<svg class="chart {escape(css)}" id="{cid}" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-labelledby="{cid}-title {cid}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(description)}</desc>',
    ]


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = ['<g class="legend">']
    for index, s in enumerate(series):
        css = s.css or f"series-{index}"
        out.append(f'<rect class="swatch {escape(css)}" x="{_num(x)}" y="{_num(y - 9)}" width="10" height="10"/>')
        out.append(f'<text x="{_num(x + 14)}" y="{_num(y)}">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    out.append("</g>")
    return out


def column_chart(chart_id: str, title: str, description: str, categories: Sequence[str],
                 series: Sequence[Series], *, fmt: Format = plain, maximum: float | None = None,
                 width: int = 640, height: int = 260, label_every: int | None = None) -> Markup:
    """Vertical bars: one group per category, one bar per series in each group, a value axis from 0."""
    if any(len(s.values) != len(categories) for s in series):
        raise ValueError("every series needs one value per category")
    left, right, top, bottom = 56, 12, 28 if len(series) > 1 else 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(maximum if maximum is not None else max(values, default=0))
    scale_top = ticks[-1]
    out = _open(chart_id, title, description, width, height, "column-chart")
    if len(series) > 1:
        out += _legend(series, left, 16)
    out.append('<g class="axis">')
    for tick in ticks:
        y = top + plot_h - plot_h * tick / scale_top
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_num(y)}" y2="{_num(y)}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{_num(y + 4)}" text-anchor="end">{escape(fmt(tick))}</text>')
    out.append("</g>")
    n = max(len(categories), 1)
    group_w = plot_w / n
    bar_w = min(max(group_w * 0.8 / max(len(series), 1), 1.0), MAX_BAR)
    every = label_every or max(1, math.ceil(n / 12))
    show_values = bar_w >= 16
    for i, category in enumerate(categories):
        gx = left + group_w * (i + 0.5) - bar_w * len(series) / 2  # the group centred on its category
        for j, s in enumerate(series):
            value = s.values[i]
            css = s.css or f"series-{j}"
            x = gx + bar_w * j
            name = f"{category}, {s.name}" if len(series) > 1 else category
            if value is None:
                out.append(f'<g class="no-data" data-label="{escape(name)}"><title>{escape(name)}: no data</title></g>')
                continue
            h = plot_h * min(value, scale_top) / scale_top
            y = top + plot_h - h
            out.append(
                f'<rect class="bar {escape(css)}" x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}" '
                f'height="{_num(h)}" data-label="{escape(name)}" data-value="{escape(_num(value))}">'
                f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>")
            if show_values:
                out.append(f'<text class="value" x="{_num(x + bar_w / 2)}" y="{_num(y - 3)}" '
                           f'text-anchor="middle">{escape(fmt(value))}</text>')
        if i % every == 0:
            cx = left + group_w * (i + 0.5)
            out.append(f'<text class="category" x="{_num(cx)}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{escape(category)}</text>')
    out.append(f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_rows(chart_id: str, title: str, description: str, rows: Sequence[str], series: Sequence[Series], *,
             fmt: Format = plain, maximum: float | None = None, width: int = 640) -> Markup:
    """Horizontal bars: one row per label (agents, say), one bar per series in each row."""
    if any(len(s.values) != len(rows) for s in series):
        raise ValueError("every series needs one value per row")
    left, right, top = 150, 48, 28 if len(series) > 1 else 8
    bar_h, gap = 14, 10
    row_h = bar_h * len(series) + gap
    height = top + row_h * max(len(rows), 1) + 8
    plot_w = width - left - right
    values = [v for s in series for v in s.values if v is not None]
    scale_top = maximum if maximum is not None else nice_ticks(max(values, default=0))[-1]
    scale_top = scale_top or 1
    out = _open(chart_id, title, description, width, height, "bar-chart")
    if len(series) > 1:
        out += _legend(series, left, 16)
    for i, label in enumerate(rows):
        y0 = top + row_h * i
        short = label if len(label) <= 22 else label[:21] + "…"
        out.append(f'<text class="category" x="{left - 8}" y="{_num(y0 + row_h / 2 + 1)}" '
                   f'text-anchor="end">{escape(short)}</text>')
        for j, s in enumerate(series):
            value = s.values[i]
            css = s.css or f"series-{j}"
            y = y0 + bar_h * j
            name = f"{label}, {s.name}" if len(series) > 1 else label
            if value is None:
                out.append(f'<text class="value none" x="{left + 4}" y="{y + bar_h - 3}">no data</text>')
                continue
            w = plot_w * min(value, scale_top) / scale_top
            out.append(
                f'<rect class="bar {escape(css)}" x="{left}" y="{y}" width="{_num(w)}" height="{bar_h - 2}" '
                f'data-label="{escape(name)}" data-value="{escape(_num(value))}">'
                f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>")
            out.append(f'<text class="value" x="{_num(left + w + 4)}" y="{y + bar_h - 4}">{escape(fmt(value))}</text>')
    out.append(f'<line class="baseline" x1="{left}" x2="{left}" y1="{top - 4}" y2="{height - 4}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def stacked_bar(chart_id: str, title: str, description: str, parts: Sequence[Part], *,
                target: float | None = None, target_label: str = "", width: int = 640) -> Markup:
    """One bar split into parts by share (CSAT's good / okay / bad), with an optional target mark (a share
    from 0 to 1 of the bar)."""
    left, right, height = 8, 8, 92
    plot_w = width - left - right
    total = sum(p.value for p in parts)
    out = _open(chart_id, title, description, width, height, "stacked-chart")
    x = float(left)
    if total <= 0:
        out.append(f'<rect class="bar empty" x="{left}" y="24" width="{plot_w}" height="28" data-label="none" '
                   f'data-value="0"><title>No answers yet</title></rect>')
        out.append(f'<text class="value" x="{left + plot_w / 2}" y="43" text-anchor="middle">No answers yet</text>')
    for part in parts if total > 0 else ():
        w = plot_w * part.value / total
        share = 100 * part.value / total
        out.append(
            f'<rect class="bar {escape(part.css)}" x="{_num(x)}" y="24" width="{_num(w)}" height="28" '
            f'data-label="{escape(part.label)}" data-value="{escape(_num(part.value))}">'
            f"<title>{escape(part.label)}: {escape(plain(part.value))} ({share:.0f} %)</title></rect>")
        if w >= 40:
            out.append(f'<text class="value inside" x="{_num(x + w / 2)}" y="43" text-anchor="middle">'
                       f"{escape(part.label)} {escape(plain(part.value))}</text>")
        x += w
    if target is not None:
        tx = left + plot_w * max(0.0, min(target, 1.0))
        out.append(f'<line class="target" x1="{_num(tx)}" x2="{_num(tx)}" y1="16" y2="60"/>')
        out.append(f'<text class="target-label" x="{_num(tx)}" y="76" text-anchor="middle">'
                   f"{escape(target_label)}</text>")
    out.append("</svg>")
    return Markup("".join(out))
