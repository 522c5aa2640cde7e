"""Category and priority of a message: the trained model when it is confident, else the rules.

For each field (category, priority) the decision is, in order:
  1. a fired rule with `override = true` that sets the field;
  2. the model, when its calibrated confidence reaches the field's threshold;
  3. the fired rules (most urgent priority wins, ties to the earlier rule; the first fired rule
     that sets a category gives the category);
  4. the rules file's defaults (P3, "uncategorised").
Then the plan bump raises the priority (Pro or PMC: one level; P1 is the ceiling).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chatsvc.classifier.errors import ModelError
from chatsvc.classifier.model import MAX_CHARS, LinearTextModel, Scored
from chatsvc.classifier.rules import PRIORITIES, RuleMatch, RuleSet, load_rules

Source = Literal["rule", "model", "default"]

# Messages up to this many characters are classified inline on the event loop: a chat message
# takes a fraction of a millisecond, about what a round trip to a worker thread costs, and cost
# grows with length (docs/benchmarks/classifier.md). Longer texts go to a worker thread.
INLINE_MAX_CHARS = 1_000


@dataclass(frozen=True, slots=True)
class Classification:
    """The outcome for one message. Rankings hold the model's calibrated probabilities, best first.

    `*_confidence` is the model's probability for the label it returns (before the plan bump);
    it is 0.0 when the label is one the model does not know (e.g. the default category) or when
    there is no model for that field.
    """

    category: str
    priority: str
    category_confidence: float
    priority_confidence: float
    category_ranking: list[dict[str, Any]]
    priority_ranking: list[dict[str, Any]]
    reason: dict[str, Any]


class Classifier:
    """Rules plus (optionally) a trained model. Build with `Classifier.load`; safe to share."""

    def __init__(self, model: LinearTextModel | None, rules: RuleSet) -> None:
        self.model = model
        self.rules = rules
        self.thresholds: dict[str, float] = {}
        if model is not None:
            for name, head in model.heads.items():
                configured = rules.thresholds.get(name)
                self.thresholds[name] = head.threshold if configured is None else configured

    @classmethod
    def load(cls, models_dir: str | Path | None = None, rules_path: str | Path | None = None) -> Classifier:
        """Load the model in `models_dir` (None: the shipped `models/`) and a rules file (None: the
        shipped `rules.toml`). Raises ModelError or RulesError naming the file and the fix."""
        rules = load_rules(rules_path)
        model = LinearTextModel.load(models_dir)
        if rules.categories is not None and "category" in model.heads:
            unknown = sorted(set(model.heads["category"].classes) - set(rules.categories))
            if unknown:
                raise ModelError(
                    f"the model in {models_dir or 'models/'} predicts categories {', '.join(unknown)} that "
                    f"{rules.source} does not list; add them to `categories` there or retrain the model "
                    f"with `chatsvc train --data LABELS.csv --rules {rules.source}`")
        return cls(model, rules)

    def classify(self, text: str, plan: str | None = None) -> Classification:
        """Classify one message. Empty text gets the defaults; long text is read up to MAX_CHARS."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if plan is not None and not isinstance(plan, str):
            raise TypeError(f"plan must be str or None, not {type(plan).__name__}")
        text = text[:MAX_CHARS]
        rules = self.rules
        fired = rules.match(text) if text else []
        scored: Scored | None = None
        model = self.model
        if model is not None and text.strip():
            scored = model.score(text)

        category, category_source, category_rule, category_conf, category_ranking, category_terms = \
            self._decide("category", scored, fired)
        priority, priority_source, priority_rule, priority_conf, priority_ranking, priority_terms = \
            self._decide("priority", scored, fired)
        priority, modifier = rules.bump(priority, plan)

        sources = (category_source, priority_source)
        source: Source = "rule" if "rule" in sources else "model" if "model" in sources else "default"
        reason = {
            "source": source,
            "rule": priority_rule or category_rule,
            "terms": priority_terms + [t for t in category_terms if t not in priority_terms],
            "model": model.model_id if "model" in sources and model is not None else None,
            "decided_by": {"category": category_source, "priority": priority_source},
            "rules_fired": [m.rule.name for m in fired],
            "modifiers": [modifier] if modifier else [],
        }
        return Classification(
            category=category, priority=priority, category_confidence=category_conf,
            priority_confidence=priority_conf, category_ranking=category_ranking,
            priority_ranking=priority_ranking, reason=reason,
        )

    async def aclassify(self, text: str, plan: str | None = None) -> Classification:
        """`classify` for the event loop: inline for ordinary messages, in a thread for long ones."""
        if isinstance(text, str) and len(text) > INLINE_MAX_CHARS:
            return await asyncio.to_thread(self.classify, text, plan)
        return self.classify(text, plan)

    def _decide(self, field: str, scored: Scored | None, fired: list[RuleMatch]
                ) -> tuple[str, Source, str | None, float, list[dict[str, Any]], list[str]]:
        """(label, source, rule name, confidence, ranking, terms) for one field."""
        rules = self.rules
        model = self.model
        ranking: list[dict[str, Any]] = []
        confidence: dict[str, float] = {}
        if scored is not None and model is not None and field in model.heads:
            classes = model.heads[field].classes
            values = model.probabilities(scored, field)
            order = sorted(range(len(values)), key=values.__getitem__, reverse=True)  # stable on ties
            ranking = [{"label": classes[i], "confidence": values[i]} for i in order]
            confidence = dict(zip(classes, values, strict=True))

        overriding = [m for m in fired if m.rule.override and _sets(m, field)]
        if overriding:
            match = _pick(overriding, field)
            label = _value(match, field)
            return label, "rule", match.rule.name, confidence.get(label, 0.0), ranking, []
        if ranking and ranking[0]["confidence"] >= self.thresholds[field]:
            label = ranking[0]["label"]
            assert scored is not None and model is not None
            terms = model.explain(scored, field, label)
            return label, "model", None, ranking[0]["confidence"], ranking, terms
        candidates = [m for m in fired if _sets(m, field)]
        if candidates:
            match = _pick(candidates, field)
            label = _value(match, field)
            return label, "rule", match.rule.name, confidence.get(label, 0.0), ranking, []
        label = rules.default_category if field == "category" else rules.default_priority
        return label, "default", None, confidence.get(label, 0.0), ranking, []


def _sets(match: RuleMatch, field: str) -> bool:
    return (match.rule.category if field == "category" else match.rule.priority) is not None


def _value(match: RuleMatch, field: str) -> str:
    value = match.rule.category if field == "category" else match.rule.priority
    assert value is not None
    return value


def _pick(matches: list[RuleMatch], field: str) -> RuleMatch:
    """Most urgent priority (ties: earlier rule); for the category, the earliest rule."""
    if field == "priority":
        return min(matches, key=lambda m: PRIORITIES.index(_value(m, field)))
    return matches[0]
