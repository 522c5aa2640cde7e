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
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chatsvc.classifier.errors import ClassifierError, ModelError
from chatsvc.classifier.model import (
    DEFAULT_MODELS_DIR,
    MAX_CHARS,
    LinearTextModel,
    Scored,
    artifact_fingerprint,
)
from chatsvc.classifier.rules import PRIORITIES, RuleMatch, RuleSet, load_rules

log = logging.getLogger("chatsvc.classifier")

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


@dataclass(frozen=True, slots=True)
class _Active:
    """The model in use and its thresholds, swapped as one object when a retrained model is loaded."""

    model: LinearTextModel | None
    thresholds: dict[str, float]


class Classifier:
    """Rules plus (optionally) a trained model. Build with `Classifier.load`; safe to share."""

    def __init__(self, model: LinearTextModel | None, rules: RuleSet) -> None:
        self.rules = rules
        self._active = _Active(model, _thresholds(model, rules))
        self.models_dir: Path | None = None  # set by `load`: where `reload_if_changed` looks
        self._fingerprint: tuple[int, ...] | None = None

    @property
    def model(self) -> LinearTextModel | None:
        return self._active.model

    @property
    def thresholds(self) -> dict[str, float]:
        return self._active.thresholds

    @classmethod
    def load(cls, models_dir: str | Path | None = None, rules_path: str | Path | None = None) -> Classifier:
        """Load the model in `models_dir` (None: the shipped `models/`) and a rules file (None: the
        shipped `rules.toml`). Raises ModelError or RulesError naming the file and the fix."""
        rules = load_rules(rules_path)
        base = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
        fingerprint = artifact_fingerprint(base)  # taken first: a model written meanwhile is seen next time
        classifier = cls(_load_model(base, rules), rules)
        classifier.models_dir = base
        classifier._fingerprint = fingerprint
        return classifier

    def reload_if_changed(self) -> bool:
        """Load the model again when `chatsvc train` has written a new one since; True if it did.

        Blocks for as long as `load` takes (tens of milliseconds): call it from a worker thread, as
        `watch` does. Messages classified meanwhile use the previous model, and each message sees
        one model from start to end. A model that cannot be loaded raises ModelError and leaves the
        current one in place; the next call tries again.
        """
        if self.models_dir is None:
            return False
        fingerprint = artifact_fingerprint(self.models_dir)
        if fingerprint is None or fingerprint == self._fingerprint:
            return False
        model = _load_model(self.models_dir, self.rules)
        self._active = _Active(model, _thresholds(model, self.rules))
        self._fingerprint = fingerprint
        return True

    async def watch(self, interval: float) -> None:
        """Check for a retrained model every `interval` seconds until cancelled (the server runs this)."""
        failed = ""
        while True:
            await asyncio.sleep(interval)
            try:
                if await asyncio.to_thread(self.reload_if_changed):
                    log.info("classifier model %s loaded from %s", self.model.model_id if self.model else None,
                             self.models_dir)
                failed = ""
            except ClassifierError as exc:
                if str(exc) != failed:  # once per distinct problem, not at every check
                    log.warning("retrained classifier not loaded, keeping the current one: %s", exc)
                failed = str(exc)

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
        active = self._active  # read once: a reload meanwhile does not mix two models in one answer
        model = active.model
        if model is not None and text.strip():
            scored = model.score(text)

        category, category_source, category_rule, category_conf, category_ranking, category_terms = \
            self._decide(active, "category", scored, fired)
        priority, priority_source, priority_rule, priority_conf, priority_ranking, priority_terms = \
            self._decide(active, "priority", scored, fired)
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

    def _decide(self, active: _Active, field: str, scored: Scored | None, fired: list[RuleMatch]
                ) -> tuple[str, Source, str | None, float, list[dict[str, Any]], list[str]]:
        """(label, source, rule name, confidence, ranking, terms) for one field."""
        rules = self.rules
        model = active.model
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
        if ranking and ranking[0]["confidence"] >= active.thresholds[field]:
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


def _thresholds(model: LinearTextModel | None, rules: RuleSet) -> dict[str, float]:
    if model is None:
        return {}
    thresholds = {}
    for name, head in model.heads.items():
        configured = rules.thresholds.get(name)
        thresholds[name] = head.threshold if configured is None else configured
    return thresholds


def _load_model(base: Path, rules: RuleSet) -> LinearTextModel:
    model = LinearTextModel.load(base)
    if rules.categories is not None and "category" in model.heads:
        unknown = sorted(set(model.heads["category"].classes) - set(rules.categories))
        if unknown:
            raise ModelError(
                f"the model in {base} predicts categories {', '.join(unknown)} that "
                f"{rules.source} does not list; add them to `categories` there or retrain the model "
                f"with `chatsvc train --data LABELS.csv --rules {rules.source}`")
    return model


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
