"""Fitting the fusion: logistic regression over candidate signals, and the no-match threshold.

Each labelled question gives one row per first-stage candidate (its FEATURES) with label 1 for the
article that answers it and 0 for the others; a question no article answers gives only negatives. The
logistic regression's weights and intercept become the fusion; the no-match threshold is the value of
the best score that maximises the F1 of "no article answers this" on the same questions.

    python -m chatsvc.kb_suggest.fit --articles chatsvc/demo/helpcenter \\
        --queries chatsvc/demo/helpcenter_queries.jsonl --out chatsvc/kb_suggest/fusion.json

also reports the cross-validated figures of the fitted procedure (grouped by article, see
`evaluate.fold_ids`) and records them, with the data's hashes and library versions, in the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chatsvc.kb_suggest.params import FEATURES, SuggestParams, unfitted_params

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from chatsvc.kb_suggest.engine import SuggestionIndex

#: Regularisation of the fusion's logistic regression; pinned, like every model parameter.
FUSION_C = 1.0
RANDOM_STATE = 0


@dataclass(frozen=True, slots=True)
class Labelled:
    """One question with its first-stage candidates and their features."""

    text: str
    gold: str | None
    candidates: list[str]
    features: NDArray[np.float64]

    @property
    def gold_retrieved(self) -> bool:
        return self.gold is not None and self.gold in self.candidates


def collect(index: SuggestionIndex, queries: Sequence[tuple[str, str | None]]) -> list[Labelled]:
    out = []
    for text, gold in queries:
        candidates, features = index.features(text)
        out.append(Labelled(text=text, gold=gold, candidates=candidates, features=features))
    return out


def fit_fusion(items: Sequence[Labelled], c: float = FUSION_C) -> tuple[tuple[float, ...], float]:
    """Weights and intercept of a logistic regression of "is the answer" on the candidate features."""
    from sklearn.linear_model import LogisticRegression

    rows = [item.features for item in items if len(item.candidates)]
    labels = [
        np.asarray([1 if cand == item.gold else 0 for cand in item.candidates]) for item in items if len(item.candidates)
    ]
    if not rows:
        raise ValueError("no question retrieved any candidate; nothing to fit")
    x = np.vstack(rows)
    y = np.concatenate(labels)
    if y.min() == y.max():
        raise ValueError("fitting needs at least one question whose answer is among its candidates")
    model = LogisticRegression(C=c, max_iter=5000, random_state=RANDOM_STATE)
    model.fit(x, y)
    return tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0])


def top_scores(items: Sequence[Labelled], weights: Sequence[float], intercept: float) -> list[float]:
    """Best fused score of each question (0 when nothing was retrieved)."""
    w = np.asarray(weights)
    out = []
    for item in items:
        if not len(item.candidates):
            out.append(0.0)
            continue
        logits = item.features @ w + intercept
        out.append(float((1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))).max()))
    return out


def fit_threshold(best_scores: Sequence[float], is_null: Sequence[bool]) -> float | None:
    """The threshold t maximising the F1 of "no match" (best score < t); None without null questions.

    Ties go to the lowest such t, then it is moved half-way to the next observed score so that it does
    not sit exactly on a training question's score.
    """
    scores = np.asarray(best_scores, dtype=np.float64)
    truth = np.asarray(is_null, dtype=bool)
    if not truth.any() or truth.all():
        return None
    values = np.unique(np.concatenate([scores, [0.0, 1.0 + 1e-9]]))
    best_f1, best_t = -1.0, 0.5
    for i, t in enumerate(values):
        flagged = scores < t
        tp = int((flagged & truth).sum())
        if tp == 0:
            continue
        precision = tp / int(flagged.sum())
        recall = tp / int(truth.sum())
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            previous = values[i - 1] if i > 0 else 0.0
            best_f1, best_t = f1, (previous + t) / 2.0
    return float(min(1.0, max(0.0, best_t)))


def fit_params(items: Sequence[Labelled], base: SuggestParams, c: float = FUSION_C) -> SuggestParams:
    weights, intercept = fit_fusion(items, c)
    threshold = fit_threshold(top_scores(items, weights, intercept), [item.gold is None for item in items])
    return base.with_fusion(weights, intercept, threshold)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    import rapidfuzz
    import scipy
    import sklearn

    from chatsvc.kb_suggest.articles import load_articles
    from chatsvc.kb_suggest.engine import SuggestionIndex
    from chatsvc.kb_suggest.evaluate import cross_validated, load_queries

    parser = argparse.ArgumentParser(prog="python -m chatsvc.kb_suggest.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)

    articles, problems = load_articles(args.articles)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    queries = load_queries(args.queries)
    try:
        base = SuggestParams.load(args.out) if args.out.exists() else SuggestParams.load()
    except (OSError, ValueError, KeyError):  # parameters of another feature set: start afresh
        base = unfitted_params()
    index = SuggestionIndex.build(articles, params=base)
    items = collect(index, queries)
    cv = cross_validated(items, base, folds=args.folds)
    fitted = fit_params(items, base)
    provenance: dict[str, Any] = {
        "method": (
            f"sklearn LogisticRegression(C={FUSION_C}) of 'candidate answers the question' on the features of "
            "every first-stage candidate; no_match_threshold maximises the F1 of 'best score < threshold' on the "
            "same questions"
        ),
        "articles": str(args.articles),
        "articles_sha256": sha256_of(args.articles),
        "queries": str(args.queries),
        "queries_sha256": sha256_of(args.queries),
        "n_articles": len(index),
        "n_queries": len(queries),
        "n_null_queries": sum(1 for _, gold in queries if gold is None),
        "cross_validation": {"folds": args.folds, "grouped_by": "answering article", **cv},
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "rapidfuzz": rapidfuzz.__version__,
        },
    }
    final = SuggestParams(**{**_fields(fitted), "provenance": provenance})
    final.save(args.out)
    print(json.dumps({"weights": dict(zip(FEATURES, final.weights)), "intercept": final.intercept,
                      "no_match_threshold": final.no_match_threshold, "cross_validation": cv}, indent=2))
    return 0


def _fields(params: SuggestParams) -> dict[str, Any]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}


if __name__ == "__main__":
    raise SystemExit(main())
