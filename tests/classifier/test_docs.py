"""docs/classifier.md stays true: the public API it shows exists, the shipped model's figures match its card."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import chatsvc.classifier
from chatsvc.classifier import Classification, Classifier
from chatsvc.classifier.evaluation import CONTRACT_KEYS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "classifier.md").read_text(encoding="utf-8")
CARD = json.loads((ROOT / "models" / "classifier" / "card.json").read_text(encoding="utf-8"))


def test_documented_signatures_exist() -> None:
    assert "Classifier.load(models_dir=None, rules_path=None)" in DOC
    assert list(inspect.signature(Classifier.load).parameters) == ["models_dir", "rules_path"]
    assert list(inspect.signature(Classifier.classify).parameters) == ["self", "text", "plan"]
    assert inspect.iscoroutinefunction(Classifier.aclassify)
    fields = [f.name for f in Classification.__dataclass_fields__.values()]
    assert fields == ["category", "priority", "category_confidence", "priority_confidence",
                      "category_ranking", "priority_ranking", "reason"]
    for name in fields:
        assert f"c.{name}" in DOC or f"{name}" in DOC


def test_documented_exports_exist() -> None:
    for name in chatsvc.classifier.__all__:
        assert f"`{name}`" in DOC or name in ("Classification", "Classifier")
        getattr(chatsvc.classifier, name)


def test_shipped_model_figures_match_the_card() -> None:
    assert f"Shipped model `{CARD['model_id']}`" in DOC
    assert f"{CARD['training_data']['examples']} support" in DOC
    for name in ("category", "priority"):
        head = CARD["heads"][name]
        cv = head["cv"]
        row = (f"| {cv['accuracy']:.3f} | {cv['macro_f1']:.3f} | {cv['majority_accuracy']:.3f} | "
               f"{head['threshold']:.2f} | {head['coverage_at_threshold']:.0%} | {head['accuracy_at_threshold']:.3f} |")
        assert row in DOC, row


def test_eval_contract_keys_are_documented() -> None:
    for key in CONTRACT_KEYS:
        assert f'"{key}"' in DOC
