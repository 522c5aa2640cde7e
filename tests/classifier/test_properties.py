"""Properties over arbitrary input: nothing crashes, case and apostrophes never matter to the rules."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.classifier import Classifier
from chatsvc.classifier.rules import PRIORITIES, load_rules
from tests.classifier.helpers import trained

ASCII_WORDS = st.lists(st.sampled_from(
    ["payment", "failed", "can't", "log", "in", "not", "broken", "how", "do", "i", "bug", "the", "pro", "no",
     "anymore", "declined", "card", ",", ".", "locked", "out", "paymnet", "faild"]), max_size=12).map(" ".join)


@functools.cache
def classifier() -> Classifier:
    return Classifier(trained().model, load_rules())


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300), plan=st.none() | st.text(max_size=8))
def test_classify_accepts_any_text(text: str, plan: str | None) -> None:
    c = classifier().classify(text, plan)
    assert c.priority in PRIORITIES
    assert c.category
    assert c.reason["source"] in ("rule", "model", "default")
    if c.category_ranking:
        assert abs(sum(r["confidence"] for r in c.category_ranking) - 1.0) < 1e-6


@settings(max_examples=80, deadline=None)
@given(text=ASCII_WORDS)
def test_rules_ignore_case_and_apostrophes(text: str) -> None:
    rules = load_rules()
    names = [m.rule.name for m in rules.match(text)]
    assert [m.rule.name for m in rules.match(text.upper())] == names
    assert [m.rule.name for m in rules.match(text.replace("'", "\u2019"))] == names


@settings(max_examples=40, deadline=None)
@given(text=ASCII_WORDS)
def test_negating_the_start_of_a_clause_never_adds_a_rule(text: str) -> None:
    rules = load_rules()
    plain = {m.rule.name for m in rules.match(text)}
    assert {m.rule.name for m in rules.match("not " + text)} <= plain
