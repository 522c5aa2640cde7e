"""Contrast: the chat's text colours on the backgrounds they are used on reach WCAG AA (4.5:1), and so does
the text picked for any brand colour."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from chatsvc.web.sites import Site, contrast

CSS = (Path(__file__).parents[2] / "widget" / "frame.css").read_text(encoding="utf-8")
PALETTE = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6});", CSS))

# (text, background) pairs as frame.css uses them.
PAIRS = [("fg", "bg"), ("fg", "surface"), ("muted", "bg"), ("muted", "surface"), ("link", "bg"),
         ("link", "surface"), ("danger", "bg"), ("warn-fg", "warn-bg")]


def test_palette_pairs_reach_aa() -> None:
    assert set(PALETTE) >= {name for pair in PAIRS for name in pair}
    for text, background in PAIRS:
        ratio = contrast(PALETTE[text], PALETTE[background])
        assert ratio >= 4.5, f"--{text} on --{background}: {ratio:.2f}"


def test_the_loader_badge_reaches_aa() -> None:
    assert contrast("#ffffff", "#b42318") >= 4.5


@given(st.from_regex(r"#[0-9a-f]{6}", fullmatch=True))
def test_text_on_any_brand_colour_reaches_aa(colour: str) -> None:
    site = Site(key="s", title="t", color=colour)
    assert contrast(site.color, site.on_color) >= 4.5


def test_the_demo_brand() -> None:
    site = Site(key="default", title="t", color="#1f6f5c")
    assert site.on_color == "#ffffff" and contrast(site.color, site.on_color) >= 5.5
