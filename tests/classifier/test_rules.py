"""The manuals' auto-priority rules, as shipped in rules.toml, and the rules-file checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatsvc.classifier.errors import RulesError
from chatsvc.classifier.rules import DEFAULT_RULES_PATH, RuleSet, bump_priority, load_rules


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


def fired(rules: RuleSet, text: str) -> list[str]:
    return [m.rule.name for m in rules.match(text)]


@pytest.mark.parametrize("text", [
    "payment failed",
    "My payment failed this morning!",
    "PAYMENT FAILED",
    "payment faild",
    "paymnet failed",
    "paymnet faild",
    "the payment for March failed",
    "Payment didn't go through",
    "my card was declined when paying dues",
    "I can't pay my dues online",
    "Payment-failed notification on my account",
])
def test_payment_failed_is_p1(rules: RuleSet, text: str) -> None:
    matches = rules.match(text)
    assert [m.rule.name for m in matches] == ["payment_failed"]
    assert matches[0].rule.priority == "P1"


@pytest.mark.parametrize("text", [
    "I can't log in",
    "cant login",
    "can not log in",
    "CAN'T LOG IN",
    "I cannot log-in to the portal",
    "can\u2019t sign in since yesterday",
    "unable to log in",
    "I can't seem to log in",
    "cant loign",
    "I'm locked out of my account",
])
def test_cant_log_in_is_p2(rules: RuleSet, text: str) -> None:
    assert fired(rules, text) == ["cant_log_in"]
    assert rules.match(text)[0].rule.priority == "P2"


@pytest.mark.parametrize("text", ["found a bug in the calendar", "the page is broken", "BROKEN LINK",
                                  "bugs everywhere", "the date picker is buggy", "the form is borken"])
def test_bug_or_broken_is_p2(rules: RuleSet, text: str) -> None:
    assert fired(rules, text) == ["bug_or_broken"]


@pytest.mark.parametrize("text", ["How do I add a resident?", "how do i export the list", "HOW DO I reset it",
                                  "how to post an announcement"])
def test_how_do_i_is_p3(rules: RuleSet, text: str) -> None:
    assert fired(rules, text) == ["how_do_i"]
    assert rules.match(text)[0].rule.priority == "P3"


@pytest.mark.parametrize("text", [
    "it's not broken anymore",
    "It isn't broken, just slow",
    "not a bug, just a question",
    "I don't think it's broken",
    "I can log in now",
    "I can log in now, thanks",
    "my payment didn't fail",
    "the payment has not failed",
    "payment was mailed yesterday",
    "I want login help",
    "how does the debug page work",
    "no bugs so far",
])
def test_negated_or_unrelated_text_fires_nothing(rules: RuleSet, text: str) -> None:
    assert fired(rules, text) == []


def test_negation_stops_at_the_clause(rules: RuleSet) -> None:
    assert fired(rules, "No, it's broken") == ["bug_or_broken"]
    assert fired(rules, "It doesn't load and the page is broken") == ["bug_or_broken"]


def test_phrases_do_not_span_sentences(rules: RuleSet) -> None:
    assert fired(rules, "My payment. Failed attempts to reach you.") == []


def test_several_rules_fire_in_file_order(rules: RuleSet) -> None:
    assert fired(rules, "How do I fix this? payment failed and the page is broken") == [
        "payment_failed", "bug_or_broken", "how_do_i"]


@pytest.mark.parametrize(("plan", "before", "after"), [
    ("pro", "P3", "P2"), ("Pro", "P2", "P1"), ("PMC", "P4", "P3"), (" pmc ", "P3", "P2"),
    ("pro", "P1", "P1"),  # P1 is the ceiling
    ("starter", "P3", "P3"), ("growth", "P2", "P2"), (None, "P3", "P3"),
])
def test_plan_bump(rules: RuleSet, plan: str | None, before: str, after: str) -> None:
    assert rules.bump(before, plan)[0] == after


def test_bump_priority_caps_at_p1() -> None:
    assert bump_priority("P4", 1) == "P3"
    assert bump_priority("P2", 3) == "P1"


def test_shipped_file_has_the_manual_rules(rules: RuleSet) -> None:
    names = {r.name: r for r in rules.rules}
    assert names["payment_failed"].priority == "P1"
    assert names["cant_log_in"].priority == "P2"
    assert names["bug_or_broken"].priority == "P2"
    assert names["how_do_i"].priority == "P3"
    assert rules.bump_plans == {"pro", "pmc"} and rules.bump_levels == 1
    assert (rules.default_priority, rules.default_category) == ("P3", "uncategorised")
    assert rules.source == str(DEFAULT_RULES_PATH)


def test_rules_load_from_another_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[defaults]\npriority = "P4"\n\n[[rules]]\nname = "outage"\npriority = "P1"\n'
                    'phrases = ["everything is down"]\n', encoding="utf-8")
    rules = load_rules(path)
    assert fired(rules, "EVERYTHING is down!!") == ["outage"]
    assert rules.default_priority == "P4"
    assert rules.bump("P3", "pro") == ("P3", None)  # no [plan_bump] table: no bump


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "expected"), [
    ('[[rules]]\nname = "x"\npriority = "P5"\nphrases = ["a b"]\n', "rule 'x' (#1): priority 'P5' is not one of"),
    ('[[rules]]\nname = "x"\nprority = "P1"\nphrases = ["a"]\n', "rule 'x' (#1): unknown key(s) prority"),
    ('[[rules]]\nname = "x"\npriority = "P1"\n', "rule 'x' (#1) phrases: must be a list"),
    ('[[rules]]\nname = "x"\npriority = "P1"\nphrases = []\n', "rule 'x' (#1): phrases must not be empty"),
    ('[[rules]]\nname = "x"\npriority = "P1"\nphrases = ["!!!"]\n', "rule 'x' (#1): phrase '!!!' has no words"),
    ('[[rules]]\nname = "x"\nphrases = ["a"]\n', "rule 'x' (#1): sets neither priority nor category"),
    ('[[rules]]\nname = "Bad Name"\npriority = "P1"\nphrases = ["a"]\n', "rule 'Bad Name' (#1): needs a name"),
    (('[[rules]]\nname = "x"\npriority = "P1"\nphrases = ["a"]\n[[rules]]\nname = "x"\npriority = "P2"\n'
      'phrases = ["b"]\n'), "rule 'x' (#2): a rule with this name already exists"),
    ('[[rules]]\nname = "x"\npriority = "P1"\nmax_gap = 9\nphrases = ["a"]\n', "rule 'x' (#1): max_gap 9"),
    ('categories = ["billing"]\n[[rules]]\nname = "x"\ncategory = "biling"\nphrases = ["a"]\n',
     "rule 'x' (#1): category 'biling' is not in categories"),
    ('[plan_bump]\nplans = "pro"\n', "[plan_bump] plans: must be a list"),
    ('[model]\ncategory_threshold = 1.5\n', "[model] category_threshold: threshold 1.5"),
    ('version = 2\n', "version: rules format 2 is not supported"),
    ('colour = "red"\n', "top level: unknown key(s) colour"),
    ('[rules]\nname = "x"\n', "rules: must be an array of tables"),
    ('[aliases]\n"two words" = ["x"]\n', "[aliases] two words: the canonical form must be a single word"),
])
def test_invalid_rules_name_file_and_rule(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[[rules]]\nname = "x\n')
    with pytest.raises(RulesError, match=f"^{path}: not valid TOML: .*line 2"):
        load_rules(path)


def test_missing_and_non_utf8_rules_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes('# ok\n[defaults]\ncategory = "g\u00e9n\u00e9ral"\n'.encode("latin-1"))
    with pytest.raises(RulesError, match=f"^{path}:3: the rules file is not valid UTF-8"):
        load_rules(path)


def test_huge_text_is_matched_without_trouble(rules: RuleSet) -> None:
    text = "lorem ipsum dolor. " * 50_000 + "payment failed"
    assert fired(rules, text) == ["payment_failed"]
