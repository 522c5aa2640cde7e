"""`chatsvc eval suggest`: ranking quality of the engine beside two baselines, on labelled questions.

Figures (the names are a contract, see docs/suggestions.md):
- hit_at_1, hit_at_5, mrr: over the questions some article answers; a question whose article is not
  ranked at all counts as a miss (reciprocal rank 0).
- no_match_precision, no_match_recall: of the "no match" flag against the questions labelled null;
  None when there is no such question.
- n_queries: every question evaluated, null ones included.

The engine's fusion weights and no-match threshold are fitted by k-fold cross-validation over the
questions: each fold is scored by parameters fitted on the other folds only. Folds are grouped by the
answering article (every paraphrase of one article falls in the same fold; each null question is a
group of its own), so the weights are never fitted on a paraphrase of a question they are scored on.
The baselines have no weights, but their no-match threshold is cross-validated the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chatsvc.kb_suggest.fit import Labelled, collect, fit_params, fit_threshold
from chatsvc.kb_suggest.params import SuggestParams

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from chatsvc.kb_suggest.articles import Article

METRIC_KEYS = ("hit_at_1", "hit_at_5", "mrr", "no_match_precision", "no_match_recall", "n_queries")
BASELINES = ("tfidf_title", "fuzz_title")


class QueryFileError(ValueError):
    """A queries file that cannot be used; the message names the file and line."""


def load_queries(path: str | Path) -> list[tuple[str, str | None]]:
    """Read `{"text", "article_id"}` lines; `article_id` null means no article answers the question."""
    file = Path(path)
    if not file.is_file():
        raise QueryFileError(f"no such file: {file}")
    out: list[tuple[str, str | None]] = []
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QueryFileError(f"{file}:{number}: not valid JSON: {exc.msg}") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise QueryFileError(f"{file}:{number}: expected an object with a string 'text'")
            if "article_id" not in record:
                raise QueryFileError(f"{file}:{number}: missing 'article_id' (use null for no answer)")
            gold = record["article_id"]
            if gold is not None and not isinstance(gold, str):
                raise QueryFileError(f"{file}:{number}: 'article_id' must be a string or null")
            if not record["text"].strip():
                raise QueryFileError(f"{file}:{number}: empty question")
            out.append((record["text"], gold))
    if not out:
        raise QueryFileError(f"{file}: no questions")
    return out


@dataclass(frozen=True, slots=True)
class Ranked:
    """One system's answer to one question: ranked article ids and its best score."""

    ranking: list[str]
    best: float


def metrics(ranked: Sequence[Ranked], golds: Sequence[str | None], flagged: Sequence[bool]) -> dict[str, Any]:
    answerable = [(r, g) for r, g in zip(ranked, golds) if g is not None]
    ranks = []
    for result, gold in answerable:
        ranks.append(result.ranking.index(gold) + 1 if gold in result.ranking else None)
    n = len(answerable)

    def share(condition: Callable[[int | None], bool]) -> float | None:
        return round(sum(1 for r in ranks if condition(r)) / n, 4) if n else None

    out: dict[str, Any] = {
        "hit_at_1": share(lambda r: r == 1),
        "hit_at_5": share(lambda r: r is not None and r <= 5),
        "mrr": round(sum(1.0 / r for r in ranks if r is not None) / n, 4) if n else None,
        "no_match_precision": None,
        "no_match_recall": None,
        "n_queries": len(golds),
    }
    nulls = [g is None for g in golds]
    if any(nulls):
        tp = sum(1 for f, t in zip(flagged, nulls) if f and t)
        n_flagged = sum(1 for f in flagged if f)
        out["no_match_precision"] = round(tp / n_flagged, 4) if n_flagged else 0.0
        out["no_match_recall"] = round(tp / sum(nulls), 4)
    return out


def fold_ids(golds: Sequence[str | None], folds: int) -> NDArray[np.int64]:
    """Fold number of each question, grouped by answering article (null questions: one group each)."""
    from sklearn.model_selection import GroupKFold

    groups = [g if g is not None else f"\x00null-{i}" for i, g in enumerate(golds)]
    n_groups = len(set(groups))
    if folds < 2 or n_groups < folds:
        raise ValueError(f"cross-validation needs at least {max(folds, 2)} distinct answers; have {n_groups}")
    assignment = np.zeros(len(golds), dtype=np.int64)
    for fold, (_, test) in enumerate(GroupKFold(n_splits=folds).split(np.zeros(len(golds)), groups=groups)):
        assignment[test] = fold
    return assignment


def _rank_labelled(item: Labelled, params: SuggestParams) -> Ranked:
    if not item.candidates:
        return Ranked([], 0.0)
    logits = item.features @ np.asarray(params.weights) + params.intercept
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
    order = np.argsort(-scores, kind="stable")
    return Ranked([item.candidates[i] for i in order], float(scores[order[0]]))


def cross_validated(items: Sequence[Labelled], base: SuggestParams, folds: int) -> dict[str, Any]:
    """The engine's metrics when each fold is scored with weights and threshold fitted on the others."""
    golds = [item.gold for item in items]
    assignment = fold_ids(golds, folds)
    ranked: list[Ranked] = [Ranked([], 0.0)] * len(items)
    flagged = [False] * len(items)
    for fold in range(folds):
        train = [item for item, f in zip(items, assignment) if f != fold]
        params = fit_params(train, base)
        for i in np.flatnonzero(assignment == fold):
            ranked[i] = _rank_labelled(items[i], params)
            flagged[i] = not ranked[i].ranking or ranked[i].best < params.no_match_threshold
    return metrics(ranked, golds, flagged)


def with_params(items: Sequence[Labelled], params: SuggestParams) -> dict[str, Any]:
    ranked = [_rank_labelled(item, params) for item in items]
    flagged = [not r.ranking or r.best < params.no_match_threshold for r in ranked]
    return metrics(ranked, [item.gold for item in items], flagged)


def _baseline_rankings(scores: NDArray[np.float64], ids: Sequence[str]) -> list[Ranked]:
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        out.append(Ranked([ids[i] for i in order], float(row[order[0]]) if len(order) else 0.0))
    return out


def tfidf_title_scores(titles: Sequence[str], questions: Sequence[str]) -> NDArray[np.float64]:
    """Baseline: scikit-learn TF-IDF of character 2-5-grams within words (`char_wb`) over titles, cosine
    with each question. Of the plain TF-IDF variants it is the strongest on titles (word unigrams score
    lower on StackFAQ), so it is the one we compare against."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5))
    title_matrix = vectorizer.fit_transform(titles)
    return np.asarray((vectorizer.transform(questions) @ title_matrix.T).toarray(), dtype=np.float64)


def fuzz_title_scores(titles: Sequence[str], questions: Sequence[str]) -> NDArray[np.float64]:
    """Baseline: rapidfuzz token_set_ratio / 100 between each question and each title (lower-cased)."""
    from rapidfuzz import fuzz, process, utils

    return process.cdist(questions, titles, scorer=fuzz.token_set_ratio, processor=utils.default_process,
                         dtype=np.float64, workers=1) / 100.0


def _baseline_metrics(
    ranked: Sequence[Ranked], golds: Sequence[str | None], assignment: NDArray[np.int64] | None, folds: int,
) -> dict[str, Any]:
    flagged = [False] * len(ranked)
    if any(g is None for g in golds):
        best = [r.best for r in ranked]
        nulls = [g is None for g in golds]
        parts = range(folds) if assignment is not None else [None]
        for fold in parts:
            train = [i for i in range(len(ranked)) if assignment is None or assignment[i] != fold]
            threshold = fit_threshold([best[i] for i in train], [nulls[i] for i in train])
            test = [i for i in range(len(ranked)) if assignment is None or assignment[i] == fold]
            for i in test:
                flagged[i] = threshold is not None and best[i] < threshold
    return metrics(ranked, golds, flagged)


@dataclass(frozen=True, slots=True)
class Report:
    ours: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    mode: str

    def as_json(self) -> dict[str, Any]:
        return {"ours": self.ours, "baselines": self.baselines}

    def table(self) -> str:
        def cell(value: Any) -> str:
            return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

        header = f"{'system':<28}{'hit@1':>8}{'hit@5':>8}{'MRR':>8}{'nm-prec':>9}{'nm-rec':>8}{'n':>7}"
        lines = [header, "-" * len(header)]
        rows = [(f"ours ({self.mode})", self.ours)] + [(name, m) for name, m in self.baselines.items()]
        for name, m in rows:
            lines.append(
                f"{name:<28}{cell(m['hit_at_1']):>8}{cell(m['hit_at_5']):>8}{cell(m['mrr']):>8}"
                f"{cell(m['no_match_precision']):>9}{cell(m['no_match_recall']):>8}{m['n_queries']:>7}"
            )
        return "\n".join(lines)


def evaluate(
    articles: Sequence[Article], queries: Sequence[tuple[str, str | None]], *, folds: int = 5,
    params: SuggestParams | None = None, cross_validate: bool = True,
) -> Report:
    """Run the engine and both baselines on the same questions.

    With `cross_validate` the engine's fusion and threshold are fitted per fold (starting from `params`
    or the shipped parameters for everything else); otherwise `params` (or the shipped ones) are used
    as they are and the baselines' thresholds are still cross-validated.
    """
    from chatsvc.kb_suggest.engine import SuggestionIndex

    base = params if params is not None else SuggestParams.load()
    index = SuggestionIndex.build(articles, params=base)
    known = set(index.article_ids)
    unknown = sorted({g for _, g in queries if g is not None and g not in known})
    if unknown:
        raise ValueError(f"{len(unknown)} article id(s) in the queries are not published articles, e.g. {unknown[0]!r}")
    items = collect(index, queries)
    golds = [g for _, g in queries]
    if cross_validate:
        ours = cross_validated(items, base, folds)
        assignment: NDArray[np.int64] | None = fold_ids(golds, folds)
        mode = f"{folds}-fold CV"
    else:
        ours = with_params(items, base)
        try:
            assignment = fold_ids(golds, folds)
        except ValueError:
            assignment = None
        mode = "given params" if params is not None else "shipped params"

    ids = index.article_ids
    by_id = {a.id: a for a in articles}
    titles = [by_id[i].title for i in ids]
    questions = [text for text, _ in queries]
    n_folds = folds if assignment is not None else 1
    baselines = {
        "tfidf_title": _baseline_metrics(_baseline_rankings(tfidf_title_scores(titles, questions), ids), golds,
                                         assignment, n_folds),
        "fuzz_title": _baseline_metrics(_baseline_rankings(fuzz_title_scores(titles, questions), ids), golds,
                                        assignment, n_folds),
    }
    return Report(ours=ours, baselines=baselines, mode=mode)
