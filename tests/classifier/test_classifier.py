"""Classifier: rules + model decisions, abstaining, reasons, plan bump, bad input, the async wrapper."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from chatsvc.classifier import Classification, Classifier, ModelError
from chatsvc.classifier.classifier import INLINE_MAX_CHARS
from chatsvc.classifier.rules import DEFAULT_RULES_PATH, load_rules
from tests.classifier.helpers import trained

REASON_KEYS = {"source", "rule", "terms", "model", "decided_by", "rules_fired", "modifiers"}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    trained().model.save(path)
    return path


def rules_file(tmp_path: Path, extra: str) -> Path:
    """The shipped rules file with extra settings spliced into its [model] table."""
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    text = text.replace('category_threshold = "auto"\npriority_threshold = "auto"\n', extra)
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_defaults_gives_the_shipped_model_and_rules() -> None:
    clf = Classifier.load()
    c = clf.classify("My payment failed and late fees start tomorrow")
    assert isinstance(c, Classification)
    assert c.priority == "P1" and c.category == "billing"
    assert dataclasses.is_dataclass(c)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.priority = "P4"  # type: ignore[misc]


def test_result_shape(models_dir: Path) -> None:
    c = Classifier.load(models_dir).classify("How do I export the resident list to Excel?")
    assert c.priority in {"P1", "P2", "P3", "P4"}
    assert set(c.reason) == REASON_KEYS
    assert c.reason["source"] in {"rule", "model", "default"}
    for ranking, size in ((c.category_ranking, 8), (c.priority_ranking, 4)):
        assert len(ranking) == size
        assert all(set(entry) == {"label", "confidence"} for entry in ranking)
        confidences = [entry["confidence"] for entry in ranking]
        assert confidences == sorted(confidences, reverse=True)
        assert sum(confidences) == pytest.approx(1.0)
    assert 0.0 <= c.category_confidence <= 1.0 and 0.0 <= c.priority_confidence <= 1.0
    json.dumps(dataclasses.asdict(c))  # the result serialises as it is


def test_confident_model_decides_and_explains(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    c = clf.classify("Feature request: please add dark mode to the resident app")
    assert (c.category, c.priority) == ("feature_request", "P4")
    assert c.reason["source"] in {"model", "rule"}
    assert c.reason["decided_by"]["category"] == "model"
    assert c.reason["model"] == clf.model.model_id  # type: ignore[union-attr]
    assert c.reason["terms"] and all(isinstance(t, str) for t in c.reason["terms"])
    assert any("dark" in t or "feature" in t or "mode" in t for t in c.reason["terms"])
    assert c.category_confidence == c.category_ranking[0]["confidence"] >= clf.thresholds["category"]


def test_below_threshold_the_rules_decide(tmp_path: Path, models_dir: Path) -> None:
    # Thresholds of 1.0: the model always abstains, so the manual's rules (or the defaults) decide.
    clf = Classifier.load(models_dir, rules_file(tmp_path, "category_threshold = 1.0\npriority_threshold = 1.0\n"))
    c = clf.classify("paymnet faild again")
    assert (c.priority, c.category) == ("P1", "billing")
    assert c.reason["source"] == "rule" and c.reason["rule"] == "payment_failed"
    assert c.reason["decided_by"] == {"category": "rule", "priority": "rule"}
    assert c.reason["model"] is None and c.reason["terms"] == []
    assert c.category_ranking  # the model's ranking is still reported


def test_below_threshold_without_a_rule_the_defaults_decide(tmp_path: Path, models_dir: Path) -> None:
    clf = Classifier.load(models_dir, rules_file(tmp_path, "category_threshold = 1.0\npriority_threshold = 1.0\n"))
    c = clf.classify("hello there")
    assert (c.category, c.priority) == ("uncategorised", "P3")
    assert c.reason["source"] == "default" and c.reason["rule"] is None
    assert c.category_confidence == 0.0  # the model has no "uncategorised" class


def test_threshold_zero_always_trusts_the_model(tmp_path: Path, models_dir: Path) -> None:
    clf = Classifier.load(models_dir, rules_file(tmp_path, "category_threshold = 0.0\npriority_threshold = 0.0\n"))
    c = clf.classify("hello there")
    assert c.reason["decided_by"] == {"category": "model", "priority": "model"}
    assert c.category == c.category_ranking[0]["label"]


def test_auto_thresholds_come_from_the_model_card(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    assert clf.model is not None
    for head in ("category", "priority"):
        assert clf.thresholds[head] == clf.model.card["heads"][head]["threshold"]


def test_override_rule_beats_a_confident_model(tmp_path: Path, models_dir: Path) -> None:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8").replace(
        'name = "how_do_i"\n', 'name = "how_do_i"\noverride = true\n')
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    c = Classifier.load(models_dir, path).classify("How do I upgrade to the Pro plan?")
    assert c.priority == "P3" and c.reason["decided_by"]["priority"] == "rule" and c.reason["rule"] == "how_do_i"


@pytest.mark.parametrize(("plan", "expected"), [(None, "P2"), ("pro", "P1"), ("PMC", "P1"), ("growth", "P2")])
def test_plan_bump_applies_to_rule_decisions(tmp_path: Path, models_dir: Path, plan: str | None,
                                             expected: str) -> None:
    clf = Classifier.load(models_dir, rules_file(tmp_path, "category_threshold = 1.0\npriority_threshold = 1.0\n"))
    c = clf.classify("I can't log in", plan=plan)
    assert c.priority == expected
    assert bool(c.reason["modifiers"]) == (plan is not None and plan.lower() in {"pro", "pmc"})


def test_plan_bump_applies_to_model_decisions_and_caps_at_p1(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    plain = clf.classify("Feature request: please add dark mode to the resident app")
    bumped = clf.classify("Feature request: please add dark mode to the resident app", plan="pro")
    assert (plain.priority, bumped.priority) == ("P4", "P3")
    assert bumped.reason["modifiers"] == ["plan pro: P4 -> P3"]
    assert clf.classify("payment failed for every resident", plan="pmc").priority == "P1"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_gets_the_defaults(models_dir: Path, text: str) -> None:
    c = Classifier.load(models_dir).classify(text)
    assert (c.category, c.priority, c.reason["source"]) == ("uncategorised", "P3", "default")
    assert c.category_ranking == [] and c.priority_ranking == []


def test_huge_text_is_classified(models_dir: Path) -> None:
    text = "payment failed. " + "The portal keeps showing the same page over and over. " * 20_000
    assert len(text) > 1_000_000
    c = Classifier.load(models_dir).classify(text)
    assert c.priority == "P1"


def test_odd_characters_do_not_break_anything(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    for text in ["\x00\x01", "\ud83d\ude00 payment failed \U0001f4b3", "\u202eevil", "ÇAN'T LÖG ÏN", "\ufeff"]:
        assert clf.classify(text).priority in {"P1", "P2", "P3", "P4"}


def test_wrong_argument_types_are_type_errors(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    with pytest.raises(TypeError, match="text must be str"):
        clf.classify(b"payment failed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="plan must be str"):
        clf.classify("x", plan=3)  # type: ignore[arg-type]


def test_model_categories_must_be_known_to_the_rules(tmp_path: Path, models_dir: Path) -> None:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8").replace('  "security",\n', "")
    text = text.replace('category = "security"\n', "")
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError, match="predicts categories security that .* does not list"):
        Classifier.load(models_dir, path)


def test_missing_model_is_a_model_error_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="chatsvc train"):
        Classifier.load(tmp_path)


def test_rules_only_classifier_works_without_a_model() -> None:
    clf = Classifier(None, load_rules())
    c = clf.classify("the page is broken", plan="pro")
    assert (c.category, c.priority, c.reason["rule"]) == ("technical", "P1", "bug_or_broken")
    assert c.category_ranking == [] and c.reason["model"] is None


async def test_aclassify_short_text_runs_inline(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    seen: list[str] = []
    original = clf.classify

    def spy(text: str, plan: str | None = None) -> Classification:
        seen.append(threading.current_thread().name)
        return original(text, plan)

    clf.classify = spy  # type: ignore[method-assign]
    c = await clf.aclassify("payment failed", "pro")
    assert c == original("payment failed", "pro")
    assert seen == [threading.main_thread().name]


async def test_aclassify_long_text_runs_in_a_thread(models_dir: Path) -> None:
    clf = Classifier.load(models_dir)
    seen: list[str] = []
    original = clf.classify

    def spy(text: str, plan: str | None = None) -> Classification:
        seen.append(threading.current_thread().name)
        return original(text, plan)

    clf.classify = spy  # type: ignore[method-assign]
    text = "payment failed " * (INLINE_MAX_CHARS // 10)
    c = await clf.aclassify(text)
    assert c.priority == "P1"
    assert seen and seen[0] != threading.main_thread().name


def test_package_import_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, chatsvc.classifier, chatsvc.classifier.commands; "
            "print('numpy' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
