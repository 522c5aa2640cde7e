"""The suggestion engine's parameters: fixed retrieval settings plus the fitted fusion weights.

The fusion is a logistic regression over per-candidate signal features (see FEATURES); its weights,
intercept and the "no match" threshold are fitted on labelled questions by `python -m
chatsvc.kb_suggest.fit` and shipped in `fusion.json` beside this module, with how they were fitted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

#: Signals computed for each candidate article, in the order the weights use. All lie in [0, 1].
FEATURES: tuple[str, ...] = (
    "title_bm25",  # share of the question's IDF mass matched in the title (BM25-saturated)
    "keywords_bm25",  # same over tags and section headings
    "body_bm25",  # same over the whole body
    "passage_bm25",  # same over the best paragraph / sentence window
    "coverage",  # share of the question's IDF mass present anywhere in the article
    "title_chars",  # cosine of character 3-5-gram TF-IDF vectors, question vs title (typo-tolerant)
    "title_fuzz",  # rapidfuzz token_set_ratio / 100, question vs title
    "retrieval_rel",  # first-stage score relative to the best candidate's
)

PARAMS_FORMAT = 1
DEFAULT_PARAMS_FILE = "fusion.json"


@dataclass(frozen=True, slots=True)
class SuggestParams:
    """Everything that decides a ranking. `weights` align with `features`."""

    weights: tuple[float, ...]
    intercept: float
    no_match_threshold: float
    features: tuple[str, ...] = FEATURES
    #: First stage: how many articles each retrieval channel (words, title characters) passes on.
    candidates: int = 30
    bm25_k1: float = 1.2
    bm25_b_title: float = 0.3
    bm25_b_body: float = 0.75
    bm25_b_passage: float = 0.5
    #: Field weights of the first-stage word score (title, keywords, body).
    retrieval_field_weights: tuple[float, float, float] = (2.0, 1.0, 1.0)
    #: Weight of a question word replaced by its spelling correction.
    typo_weight: float = 0.8
    #: How the weights were obtained; informative only.
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.features) != FEATURES:
            raise ValueError(
                f"parameters are for features {list(self.features)}, this engine computes {list(FEATURES)}; "
                "refit them with `python -m chatsvc.kb_suggest.fit`"
            )
        if len(self.weights) != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} weights, got {len(self.weights)}")
        if not all(math.isfinite(w) for w in (*self.weights, self.intercept, self.no_match_threshold)):
            raise ValueError("weights, intercept and threshold must be finite numbers")
        if not 0.0 <= self.no_match_threshold <= 1.0:
            raise ValueError("no_match_threshold must lie in [0, 1]")
        if self.candidates < 1:
            raise ValueError("candidates must be at least 1")

    def with_fusion(self, weights: tuple[float, ...], intercept: float, threshold: float | None = None) -> SuggestParams:
        return replace(
            self,
            weights=tuple(float(w) for w in weights),
            intercept=float(intercept),
            no_match_threshold=self.no_match_threshold if threshold is None else float(threshold),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PARAMS_FORMAT,
            "features": list(self.features),
            "weights": [round(w, 6) for w in self.weights],
            "intercept": round(self.intercept, 6),
            "no_match_threshold": round(self.no_match_threshold, 6),
            "retrieval": {
                "candidates": self.candidates,
                "bm25_k1": self.bm25_k1,
                "bm25_b_title": self.bm25_b_title,
                "bm25_b_body": self.bm25_b_body,
                "bm25_b_passage": self.bm25_b_passage,
                "field_weights": list(self.retrieval_field_weights),
                "typo_weight": self.typo_weight,
            },
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuggestParams:
        if data.get("format") != PARAMS_FORMAT:
            raise ValueError(f"unsupported parameters format {data.get('format')!r} (expected {PARAMS_FORMAT})")
        retrieval = data.get("retrieval", {})
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            intercept=float(data["intercept"]),
            no_match_threshold=float(data["no_match_threshold"]),
            features=tuple(data["features"]),
            candidates=int(retrieval.get("candidates", 30)),
            bm25_k1=float(retrieval.get("bm25_k1", 1.2)),
            bm25_b_title=float(retrieval.get("bm25_b_title", 0.3)),
            bm25_b_body=float(retrieval.get("bm25_b_body", 0.75)),
            bm25_b_passage=float(retrieval.get("bm25_b_passage", 0.5)),
            retrieval_field_weights=tuple(float(x) for x in retrieval.get("field_weights", (2.0, 1.0, 1.0))),  # type: ignore[arg-type]
            typo_weight=float(retrieval.get("typo_weight", 0.8)),
            provenance=dict(data.get("provenance", {})),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> SuggestParams:
        """Read parameters from a JSON file; without a path, the ones shipped with the package."""
        if path is None:
            text = resources.files("chatsvc.kb_suggest").joinpath(DEFAULT_PARAMS_FILE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def unfitted_params() -> SuggestParams:
    """Equal weights: only a starting point for fitting, never shipped."""
    return SuggestParams(weights=(1.0,) * len(FEATURES), intercept=-3.0, no_match_threshold=0.5)
