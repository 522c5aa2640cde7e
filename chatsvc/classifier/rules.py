"""The manuals' auto-priority rules, read from an operator-editable TOML file.

A rule fires when one of its phrases occurs in the message. Matching works on normalised word
tokens, so case, apostrophes and hyphens do not matter ("CAN'T LOG-IN" == "cant login"); the
file's `[aliases]` fold spellings of the same idea into one token ("can not", "unable to" ->
"cant"; "sign in", "log-in" -> "login"); each phrase word longer than four letters tolerates one
typo (two from nine letters on: "paymnet faild"); a plural "s" is accepted; and up to `max_gap`
other words may sit between phrase words ("payment for March failed"). A match is ignored when a
negation word stands in the gap or shortly before it in the same clause ("it's not broken
anymore"). Only the standard library and rapidfuzz are used: rules run on every message.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rapidfuzz.distance import OSA

from chatsvc.classifier.errors import RulesError
from chatsvc.classifier.text import clauses, normalize, words

PRIORITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4")
DEFAULT_RULES_PATH = Path(__file__).with_name("rules.toml")
RULES_FORMAT_VERSION = 1

# Sentence punctuation and line breaks end a clause: phrases never span them and negation
# never reaches across them.
_TOKEN_CACHE_SIZE = 65_536

_TOP_KEYS = {"version", "categories", "defaults", "aliases", "negation", "plan_bump", "model", "rules"}
_RULE_KEYS = {"name", "phrases", "priority", "category", "override", "max_gap", "description"}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of the file. `phrases` are alias-folded token sequences, `texts` as written."""

    name: str
    phrases: tuple[tuple[str, ...], ...]
    texts: tuple[str, ...]
    priority: str | None
    category: str | None
    override: bool
    max_gap: int
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that fired, and the phrase (as written in the file) that made it fire."""

    rule: Rule
    phrase: str


def bump_priority(priority: str, levels: int) -> str:
    """Raise a priority by `levels` (P3 + 1 -> P2); P1 is the ceiling."""
    return PRIORITIES[max(0, PRIORITIES.index(priority) - levels)]


class RuleSet:
    """Parsed rules file. Build with `load_rules` (or `RuleSet.from_mapping` for tests)."""

    def __init__(
        self,
        *,
        source: str,
        rules: tuple[Rule, ...],
        aliases: dict[tuple[str, ...], str],
        negators: frozenset[str],
        negation_window: int,
        clause_breakers: frozenset[str],
        default_priority: str,
        default_category: str,
        categories: tuple[str, ...] | None,
        bump_plans: frozenset[str],
        bump_levels: int,
        thresholds: dict[str, float | None],
    ) -> None:
        self.source = source
        self.rules = rules
        self.aliases = aliases
        self.negators = negators
        self.negation_window = negation_window
        self.clause_breakers = clause_breakers
        self.default_priority = default_priority
        self.default_category = default_category
        self.categories = categories
        self.bump_plans = bump_plans
        self.bump_levels = bump_levels
        # None means "use the threshold tuned at training time (the model card's)".
        self.thresholds = thresholds
        self._alias_max = max((len(k) for k in aliases), default=0)
        self._alias_heads = frozenset(k[0] for k in aliases)
        self._order = {rule.name: n for n, rule in enumerate(rules)}
        by_head: dict[str, list[tuple[Rule, int]]] = {}
        for rule in rules:
            for i, phrase in enumerate(rule.phrases):
                by_head.setdefault(phrase[0], []).append((rule, i))
        self._by_head = by_head
        self._phrase_words = frozenset(w for rule in rules for p in rule.phrases for w in p)
        # Per distinct token, computed once: the phrase words it spells, and the phrases it can start.
        self._hits = lru_cache(maxsize=_TOKEN_CACHE_SIZE)(self._compute_hits)
        self._starts = lru_cache(maxsize=_TOKEN_CACHE_SIZE)(self._compute_starts)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<rules>") -> RuleSet:
        """Validate a parsed TOML document; every error names `source` and the rule."""
        return _parse(data, source)

    # -- matching --------------------------------------------------------------------------

    def clauses(self, text: str) -> list[list[str]]:
        """Normalised words per clause, with aliases folded ("can not log in" -> ["cant", "login"])."""
        parts = clauses(normalize(text))
        if self._alias_max:
            parts = [self._fold(words) for words in parts]
        return parts

    def match(self, text: str) -> list[RuleMatch]:
        """Rules that fire on `text` (negated matches dropped), in file order, each once."""
        fired: dict[str, RuleMatch] = {}
        starts = self._starts
        for tokens in self.clauses(text):
            for i, token in enumerate(tokens):
                candidates = starts(token)
                if not candidates:
                    continue
                for rule, k in candidates:
                    if rule.name not in fired and self._match_at(tokens, i, rule.phrases[k], rule.max_gap):
                        fired[rule.name] = RuleMatch(rule, rule.texts[k])
        if len(fired) < 2:
            return list(fired.values())
        order = self._order
        return sorted(fired.values(), key=lambda m: order[m.rule.name])

    def _fold(self, words: list[str]) -> list[str]:
        heads = self._alias_heads
        if heads.isdisjoint(words):
            return words
        aliases, longest = self.aliases, self._alias_max
        out: list[str] = []
        i, n = 0, len(words)
        while i < n:
            if words[i] in heads:
                for size in range(min(longest, n - i), 0, -1):
                    canonical = aliases.get(tuple(words[i:i + size]))
                    if canonical is not None:
                        out.append(canonical)
                        i += size
                        break
                else:
                    out.append(words[i])
                    i += 1
            else:
                out.append(words[i])
                i += 1
        return out

    def bump(self, priority: str, plan: str | None) -> tuple[str, str | None]:
        """Apply the plan bump; returns the new priority and a note for the reason (or None)."""
        if plan is None or self.bump_levels == 0:
            return priority, None
        key = plan.strip().lower()
        if key not in self.bump_plans:
            return priority, None
        raised = bump_priority(priority, self.bump_levels)
        return raised, f"plan {key}: {priority} -> {raised}"

    def _match_at(self, tokens: list[str], start: int, phrase: tuple[str, ...], max_gap: int) -> bool:
        negators = self.negators
        position = start
        gaps: list[str] = []
        for word in phrase[1:]:
            for step in range(1, max_gap + 2):
                j = position + step
                if j >= len(tokens):
                    return False
                if word in self._hits(tokens[j]):
                    gaps.extend(tokens[position + 1:j])
                    position = j
                    break
            else:
                return False
        if any(g in negators for g in gaps):
            return False
        return not self._negated_before(tokens, start)

    def _negated_before(self, tokens: list[str], start: int) -> bool:
        for j in range(start - 1, max(-1, start - 1 - self.negation_window), -1):
            token = tokens[j]
            if token in self.clause_breakers:
                return False
            if token in self.negators:
                return True
        return False

    def _compute_starts(self, token: str) -> tuple[tuple[Rule, int], ...]:
        return tuple(start for word in self._compute_hits(token) for start in self._by_head.get(word, ()))

    def _compute_hits(self, token: str) -> frozenset[str]:
        """Phrase words that `token` spells, exactly, as a plural, or with a small typo."""
        return frozenset(w for w in self._phrase_words if _spells(token, w))


def _spells(token: str, word: str) -> bool:
    if token == word or token == word + "s" or token == word + "es":
        return True
    # Short words must match exactly ("cant" is not "want"), and typos are only accepted after
    # a correct first letter ("faild" is "failed", "mailed" is not).
    if len(word) <= 4 or token[0] != word[0]:
        return False
    allowed = 1 if len(word) <= 8 else 2
    if abs(len(token) - len(word)) > allowed:
        return False
    return OSA.distance(token, word, score_cutoff=allowed) <= allowed


# -- parsing -------------------------------------------------------------------------------


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate a rules file (None: the shipped default `rules.toml`)."""
    file = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RulesError(f"{file}: cannot read the rules file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise RulesError(f"{file}:{line}: the rules file is not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{file}: not valid TOML: {exc}") from None
    return _parse(data, str(file))


def _fail(source: str, where: str, message: str) -> RulesError:
    return RulesError(f"{source}: {where}: {message}")


def _phrase_tokens(text: str, aliases: dict[tuple[str, ...], str], alias_max: int) -> tuple[str, ...]:
    raw = words(normalize(text))
    out: list[str] = []
    i = 0
    while i < len(raw):
        for size in range(min(alias_max, len(raw) - i), 0, -1):
            canonical = aliases.get(tuple(raw[i:i + size]))
            if canonical is not None:
                out.append(canonical)
                i += size
                break
        else:
            out.append(raw[i])
            i += 1
    return tuple(out)


def _string_list(value: Any, source: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(source, where, "must be a list of non-empty strings")
    return [v.strip() for v in value]


def _priority(value: Any, source: str, where: str) -> str:
    if not isinstance(value, str) or value.strip().upper() not in PRIORITIES:
        raise _fail(source, where, f"priority {value!r} is not one of {', '.join(PRIORITIES)}")
    return value.strip().upper()


def _table(data: Mapping[str, Any], key: str, allowed: set[str], source: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(source, f"[{key}]", "must be a table")
    unknown = set(value) - allowed
    if unknown:
        raise _fail(source, f"[{key}]", f"unknown key(s) {', '.join(sorted(unknown))}; "
                                        f"allowed: {', '.join(sorted(allowed))}")
    return value


def _threshold(value: Any, source: str, where: str) -> float | None:
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise _fail(source, where, f"threshold {value!r} must be \"auto\" or a number from 0 to 1")
    return float(value)


def _parse(data: Mapping[str, Any], source: str) -> RuleSet:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(source, "top level", f"unknown key(s) {', '.join(sorted(unknown))}; "
                                         f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    version = data.get("version", RULES_FORMAT_VERSION)
    if version != RULES_FORMAT_VERSION:
        raise _fail(source, "version", f"rules format {version!r} is not supported "
                                       f"(this version of chatsvc reads version {RULES_FORMAT_VERSION})")

    categories: tuple[str, ...] | None = None
    if "categories" in data:
        categories = tuple(_string_list(data["categories"], source, "categories"))
        if not categories:
            raise _fail(source, "categories", "must list at least one category (or be left out)")

    defaults = _table(data, "defaults", {"priority", "category"}, source)
    default_priority = _priority(defaults.get("priority", "P3"), source, "[defaults] priority")
    default_category = defaults.get("category", "uncategorised")
    if not isinstance(default_category, str) or not default_category.strip():
        raise _fail(source, "[defaults] category", "must be a non-empty string")

    aliases: dict[tuple[str, ...], str] = {}
    alias_table = data.get("aliases", {})
    if not isinstance(alias_table, Mapping):
        raise _fail(source, "[aliases]", "must be a table of canonical word = [variants]")
    for canonical, variants in alias_table.items():
        where = f"[aliases] {canonical}"
        folded = words(normalize(canonical))
        if len(folded) != 1:
            raise _fail(source, where, "the canonical form must be a single word")
        for variant in _string_list(variants, source, where):
            key = tuple(words(normalize(variant)))
            if not key:
                raise _fail(source, where, f"variant {variant!r} has no words")
            if key in aliases and aliases[key] != folded[0]:
                raise _fail(source, where, f"variant {variant!r} is already an alias of {aliases[key]!r}")
            if key != (folded[0],):
                aliases[key] = folded[0]
    alias_max = max((len(k) for k in aliases), default=0)

    negation = _table(data, "negation", {"words", "window", "clause_breakers"}, source)
    negators = frozenset(normalize(w) for w in _string_list(
        negation.get("words", ["not", "no", "never", "dont", "doesnt", "didnt", "isnt", "wasnt"]),
        source, "[negation] words"))
    window = negation.get("window", 3)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 10:
        raise _fail(source, "[negation] window", f"{window!r} must be a whole number from 0 to 10")
    breakers = frozenset(normalize(w) for w in _string_list(
        negation.get("clause_breakers", ["but", "and", "because", "though"]),
        source, "[negation] clause_breakers"))

    bump = _table(data, "plan_bump", {"plans", "levels"}, source)
    bump_plans = frozenset(p.lower() for p in _string_list(bump.get("plans", []), source, "[plan_bump] plans"))
    levels = bump.get("levels", 1)
    if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= 3:
        raise _fail(source, "[plan_bump] levels", f"{levels!r} must be a whole number from 0 to 3")

    model = _table(data, "model", {"category_threshold", "priority_threshold"}, source)
    thresholds = {
        "category": _threshold(model.get("category_threshold", "auto"), source, "[model] category_threshold"),
        "priority": _threshold(model.get("priority_threshold", "auto"), source, "[model] priority_threshold"),
    }

    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise _fail(source, "rules", "must be an array of tables ([[rules]])")
    rules: list[Rule] = []
    seen: set[str] = set()
    for number, entry in enumerate(raw_rules, start=1):
        rules.append(_parse_rule(entry, number, source, aliases, alias_max, categories, seen))
    return RuleSet(
        source=source, rules=tuple(rules), aliases=aliases, negators=negators, negation_window=window,
        clause_breakers=breakers, default_priority=default_priority, default_category=default_category.strip(),
        categories=categories, bump_plans=bump_plans, bump_levels=levels, thresholds=thresholds,
    )


def _parse_rule(entry: Any, number: int, source: str, aliases: dict[tuple[str, ...], str], alias_max: int,
                categories: tuple[str, ...] | None, seen: set[str]) -> Rule:
    if not isinstance(entry, Mapping):
        raise _fail(source, f"rule #{number}", "must be a table")
    name = entry.get("name")
    where = f"rule #{number}" if not isinstance(name, str) else f"rule {name!r} (#{number})"
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_.-]+", name):
        raise _fail(source, where, "needs a name of lower-case letters, digits, '_', '-' or '.'")
    if name in seen:
        raise _fail(source, where, "a rule with this name already exists")
    seen.add(name)
    unknown = set(entry) - _RULE_KEYS
    if unknown:
        raise _fail(source, where, f"unknown key(s) {', '.join(sorted(unknown))}; "
                                   f"allowed: {', '.join(sorted(_RULE_KEYS))}")
    texts = _string_list(entry.get("phrases"), source, f"{where} phrases")
    if not texts:
        raise _fail(source, where, "phrases must not be empty")
    phrases = []
    for text in texts:
        tokens = _phrase_tokens(text, aliases, alias_max)
        if not tokens:
            raise _fail(source, where, f"phrase {text!r} has no words")
        phrases.append(tokens)
    priority = entry.get("priority")
    if priority is not None:
        priority = _priority(priority, source, where)
    category = entry.get("category")
    if category is not None:
        if not isinstance(category, str) or not category.strip():
            raise _fail(source, where, "category must be a non-empty string")
        category = category.strip()
        if categories is not None and category not in categories:
            raise _fail(source, where, f"category {category!r} is not in categories "
                                       f"({', '.join(categories)})")
    if priority is None and category is None:
        raise _fail(source, where, "sets neither priority nor category")
    override = entry.get("override", False)
    if not isinstance(override, bool):
        raise _fail(source, where, "override must be true or false")
    max_gap = entry.get("max_gap", 2)
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or not 0 <= max_gap <= 5:
        raise _fail(source, where, f"max_gap {max_gap!r} must be a whole number from 0 to 5")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, where, "description must be a string")
    return Rule(name=name, phrases=tuple(phrases), texts=tuple(texts), priority=priority, category=category,
                override=override, max_gap=max_gap, description=description)
