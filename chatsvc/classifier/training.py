"""Training with scikit-learn, and export of the fitted weights to `LinearTextModel`.

Imported only by `chatsvc train`, `chatsvc eval classify`, the benchmark and tests: the service
loads exported arrays and never imports scikit-learn.

The estimator for every head is pinned here (a library upgrade must not silently change it):
binary word 1-2-gram + in-word character 2-5-gram TF-IDF (each block L2-normalised), with or
without a block of static word vectors (wordvectors.py; kept when the heads' out-of-fold macro-F1
is better with them), a LinearSVC with balanced class weights, and temperature scaling fitted on
5-fold out-of-fold decision values (what CalibratedClassifierCV(method="temperature", ensemble=False) does), so
that the probabilities are calibrated and the model stays one linear map that we can export.
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import sklearn
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from chatsvc.classifier import wordvectors
from chatsvc.classifier.errors import TrainingError
from chatsvc.classifier.labels import Example
from chatsvc.classifier.model import FORMAT, FORMAT_VERSION, HEAD_NAMES, MAX_CHARS, LinearTextModel
from chatsvc.classifier.rules import PRIORITIES, RuleSet, load_rules
from chatsvc.classifier.text import TEXT_VERSION, CharAnalyzer, WordAnalyzer, normalize, words

METRIC_DIGITS = 6


@dataclass(frozen=True)
class TrainingConfig:
    """Every parameter that shapes a model; recorded in the model card."""

    seed: int = 0
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    min_df: int = 2
    max_chars: int = MAX_CHARS
    C: float = 0.5
    class_weight: str | None = "balanced"
    max_iter: int = 10_000
    calibration_folds: int = 5
    cv_folds: int = 5
    target_precision: float = 0.9
    min_examples_per_label: int = 3
    # "auto": word vectors distilled from all-MiniLM-L6-v2 when the `embeddings` extra is installed.
    word_vectors: str = "auto"
    vector_scale: float = 8.0

    def estimator_params(self) -> dict[str, Any]:
        return {"C": self.C, "class_weight": self.class_weight, "dual": True, "fit_intercept": True,
                "intercept_scaling": 1.0, "loss": "squared_hinge", "max_iter": self.max_iter,
                "multi_class": "ovr", "penalty": "l2", "random_state": self.seed, "tol": 1e-4, "verbose": 0}


# -- estimators ------------------------------------------------------------------------------


def build_features(config: TrainingConfig = TrainingConfig()) -> FeatureUnion:
    """Binary TF-IDF over our own analysers, so the fast path sees exactly the same n-grams."""
    def vectorizer(analyzer: Any) -> TfidfVectorizer:
        return TfidfVectorizer(analyzer=analyzer, binary=True, min_df=config.min_df, norm="l2",
                               use_idf=True, smooth_idf=True, sublinear_tf=False, dtype=np.float64)

    blocks: list[tuple[str, Any]] = [
        ("word", vectorizer(WordAnalyzer(config.word_ngrams, config.max_chars))),
        ("char", vectorizer(CharAnalyzer(config.char_ngrams, config.max_chars))),
    ]
    if wordvectors.resolve(config.word_vectors) == wordvectors.MINILM:
        blocks.append(("vectors", WordVectorFeatures(config.vector_scale, config.max_chars)))
    return FeatureUnion(blocks)


class WordVectorFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """`scale` times the mean of the word vectors of a text's distinct words (a dense block).

    The vocabulary is every word of the training texts; their vectors come from
    `wordvectors.encode_words`, once per word. Words never seen in training add nothing.
    """

    def __init__(self, scale: float = 8.0, max_chars: int = MAX_CHARS) -> None:
        self.scale = scale
        self.max_chars = max_chars

    def fit(self, texts: Any, y: Any = None) -> WordVectorFeatures:
        self.words_ = sorted({w for text in texts for w in words(normalize(text[:self.max_chars]))})
        self.vectors_ = wordvectors.encode_words(self.words_)
        self.index_ = {w: i for i, w in enumerate(self.words_)}
        return self

    def transform(self, texts: Any) -> sparse.csr_matrix:
        out = np.zeros((len(texts), self.vectors_.shape[1]), dtype=np.float64)
        index = self.index_
        for row, text in enumerate(texts):
            ids = sorted({index[w] for w in words(normalize(text[:self.max_chars])) if w in index})
            if ids:
                out[row] = self.scale * self.vectors_[ids].mean(axis=0, dtype=np.float64)
        return sparse.csr_matrix(out)


def build_classifier(config: TrainingConfig = TrainingConfig()) -> TemperatureScaledClassifier:
    return TemperatureScaledClassifier(LinearSVC(**config.estimator_params()), cv=config.calibration_folds, random_state=config.seed)


def build_pipeline(config: TrainingConfig = TrainingConfig()) -> Pipeline:
    """The scikit-learn pipeline of one head; `export` turns its fitted weights into arrays."""
    return Pipeline([("features", build_features(config)), ("classifier", build_classifier(config))])


class TemperatureScaledClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A linear classifier whose decision values become probabilities via softmax(beta * values).

    beta is fitted by minimising the log loss of out-of-fold decision values (stratified K-fold,
    shuffled with `random_state`); the final estimator is then fitted on all rows. The out-of-fold
    probabilities are kept (`oof_proba_`) to tune abstain thresholds without another fit.
    """

    def __init__(self, estimator: Any = None, cv: int = 5, random_state: int = 0) -> None:
        self.estimator = estimator
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> TemperatureScaledClassifier:
        y = np.asarray(y)
        base = self.estimator if self.estimator is not None else LinearSVC()
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise TrainingError("a classifier needs at least two classes")
        smallest = int(np.bincount(encoded).min())
        self.n_splits_ = min(self.cv, smallest)
        if self.n_splits_ < 2:
            raise TrainingError("every class needs at least two examples for calibration")
        folds = StratifiedKFold(self.n_splits_, shuffle=True, random_state=self.random_state)
        oof = cross_val_predict(clone(base), X, y, cv=folds, method="decision_function")
        logits = _as_logits(oof)
        self.beta_ = _fit_temperature(logits, encoded)
        self.oof_proba_ = softmax(self.beta_ * logits, axis=1)
        self.estimator_ = clone(base).fit(X, y)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return _as_logits(self.estimator_.decision_function(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(softmax(self.beta_ * self.decision_function(X), axis=1))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.decision_function(X), axis=1)])

    def linear_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(coef of shape n_features x n_classes, intercept) giving `decision_function`."""
        coef = np.asarray(self.estimator_.coef_, dtype=np.float64)
        intercept = np.asarray(self.estimator_.intercept_, dtype=np.float64)
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; logits are (-s, s)
            coef = np.vstack([-coef, coef])
            intercept = np.concatenate([-intercept, intercept])
        return coef.T, intercept


def _as_logits(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return np.column_stack([-values, values])
    return values


def _fit_temperature(logits: np.ndarray, encoded: np.ndarray) -> float:
    def loss(log_beta: float) -> float:
        return float(-log_softmax(np.exp(log_beta) * logits, axis=1)[np.arange(len(encoded)), encoded].mean())

    result = minimize_scalar(loss, bounds=(-5.0, 8.0), method="bounded", options={"xatol": 1e-8})
    return float(np.exp(result.x))


# -- export ----------------------------------------------------------------------------------


def export(features: FeatureUnion, heads: dict[str, TemperatureScaledClassifier], card: dict[str, Any]
           ) -> LinearTextModel:
    """Arrays of fitted vectorisers and heads, wrapped as a LinearTextModel with `card`."""
    word = dict(features.transformer_list)["word"]
    char = dict(features.transformer_list)["char"]
    vectors_block = dict(features.transformer_list).get("vectors")
    word_vocabulary = _vocabulary_list(word.vocabulary_)
    char_vocabulary = _vocabulary_list(char.vocabulary_)
    idf = np.concatenate([word.idf_, char.idf_]).astype(np.float32)
    coefs, intercepts, start = [], [], 0
    card = json.loads(json.dumps(card))
    for name, head in heads.items():
        coef, intercept = head.linear_weights()
        coefs.append(coef)
        intercepts.append(intercept)
        card["heads"][name].update(start=start, classes=[str(c) for c in head.classes_],
                                   temperature_beta=round(float(head.beta_), 12))
        start += len(head.classes_)
    coef = np.hstack(coefs).astype(np.float32)
    intercept = np.concatenate(intercepts).astype(np.float64)
    vector_words, vectors = None, None
    if vectors_block is not None:
        vector_words = list(vectors_block.words_)
        vectors = vectors_block.vectors_.astype(np.float16)
        card["features"]["word_vectors"] = {"source": wordvectors.SOURCE, "dims": int(vectors.shape[1]),
                                            "scale": float(vectors_block.scale), "words": len(vector_words)}
    else:
        card["features"]["word_vectors"] = None
    digest = hashlib.sha256()
    for part in (coef.tobytes(), intercept.tobytes(), idf.tobytes(),
                 b"" if vectors is None else vectors.tobytes(),
                 json.dumps([word_vocabulary, char_vocabulary, vector_words, card["heads"]], sort_keys=True).encode()):
        digest.update(part)
    card["model_id"] = "clf-" + digest.hexdigest()[:12]
    # What the fast path needs to rebuild the features is read from the fitted analysers themselves.
    card["features"].update(
        word_ngrams=list(word.analyzer.ngram_range), char_ngrams=list(char.analyzer.ngram_range),
        max_chars=int(word.analyzer.max_chars), min_df=word.min_df,
        n_word_features=len(word_vocabulary), n_char_features=len(char_vocabulary))
    return LinearTextModel(card=card, word_vocabulary=word_vocabulary, char_vocabulary=char_vocabulary,
                           coef=coef, intercept=intercept, idf=idf, vector_words=vector_words, vectors=vectors)


def export_pipeline(pipeline: Pipeline, head: str = "category", threshold: float = 0.0) -> LinearTextModel:
    """Export a fitted single-head `build_pipeline` (used by evaluation and tests)."""
    classifier = pipeline.named_steps["classifier"]
    card = _base_card(TrainingConfig(), seed=int(classifier.random_state))
    card["heads"] = {head: {"threshold": threshold}}
    return export(pipeline.named_steps["features"], {head: classifier}, card)


def _vocabulary_list(vocabulary: dict[str, int]) -> list[str]:
    out = [""] * len(vocabulary)
    for gram, index in vocabulary.items():
        out[index] = gram
    return out


# -- thresholds and metrics ------------------------------------------------------------------


THRESHOLD_GRID = np.round(np.arange(0.0, 1.0, 0.01), 2)


def precision_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """Smallest threshold at which predictions at or above it are right `target` of the time."""
    for t in THRESHOLD_GRID:
        kept = confidence >= t
        if kept.any() and correct[kept].mean() >= target:
            return float(t)
    return 1.0


def metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    return {"accuracy": round(float(accuracy_score(y_true, y_pred)), METRIC_DIGITS),
            "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), METRIC_DIGITS)}


def fit_quietly(estimator: Any, X: Any, y: Any, notes: list[str]) -> Any:
    """Fit, turning convergence warnings into notes for the model card instead of failures."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            notes.append(f"{type(estimator).__name__}: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return estimator


# -- train(examples) -------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """What `train` returns: the exported model and the fitted scikit-learn objects behind it."""

    model: LinearTextModel
    features: FeatureUnion
    heads: dict[str, TemperatureScaledClassifier] = field(default_factory=dict)

    @property
    def card(self) -> dict[str, Any]:
        return self.model.card

    def pipeline(self, head: str) -> Pipeline:
        """The fitted scikit-learn pipeline of one head (what the fast path must agree with)."""
        return Pipeline([("features", self.features), ("classifier", self.heads[head])])

    def save(self, models_dir: str | Path) -> Path:
        return self.model.save(models_dir)


def train(examples: Iterable[Example], *, rules: RuleSet | None = None, config: TrainingConfig | None = None,
          sources: Sequence[str] = (), command: str = "") -> TrainedModel:
    """Train the category and priority heads from labelled examples.

    `examples` may mix rows with both labels and rows with only one (an agent corrected only the
    priority, say); each head learns from the rows that carry its label. Priorities are learned
    before the plan bump: an example whose `plan` gets a bump in `rules` has its label lowered
    back by that many levels (P1 stays P1, as it cannot be undone). Categories must be listed in
    the rules' `categories` when the rules file has that list. Labels with fewer than
    `min_examples_per_label` examples are left out (listed in the card). Raises TrainingError.
    """
    config = config or TrainingConfig()
    rules = rules if rules is not None else load_rules()
    rows = [e for e in examples]
    if not rows:
        raise TrainingError("no examples to train on")
    for example in rows:
        _check_example(example, rules)
    digest = hashlib.sha256()
    for example in rows:
        digest.update(json.dumps([example.text, example.category, example.priority, example.plan],
                                 ensure_ascii=False).encode("utf-8") + b"\n")

    targets: dict[str, tuple[list[int], list[str]]] = {}
    for name in HEAD_NAMES:
        index, labels = [], []
        for i, example in enumerate(rows):
            label = example.category if name == "category" else _base_priority(example, rules)
            if label is not None:
                index.append(i)
                labels.append(label)
        if index:
            targets[name] = (index, labels)
    if not targets:
        raise TrainingError("no example carries a category or a priority label")

    notes: list[str] = []
    texts = [e.text for e in rows]
    card = _base_card(config, seed=config.seed)
    card.update(
        command=command or "chatsvc.classifier.train(examples)",
        training_data={"sha256": digest.hexdigest(), "examples": len(rows), "sources": list(sources)},
        heads={},
    )
    prepared: dict[str, tuple[list[int], list[str], Counter[str], dict[str, int]]] = {}
    for name, (index, labels) in targets.items():
        counts = Counter(labels)
        skipped = {k: v for k, v in sorted(counts.items()) if v < config.min_examples_per_label}
        keep = [j for j, label in enumerate(labels) if label not in skipped]
        kept_labels = [labels[j] for j in keep]
        if len(set(kept_labels)) < 2:
            found = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())) or "none"
            raise TrainingError(
                f"the {name} labels need at least two classes with {config.min_examples_per_label} or more "
                f"examples each; found {found}")
        prepared[name] = ([index[j] for j in keep], kept_labels, counts, skipped)

    # One fit per feature set (with and without word vectors when both are possible); the heads'
    # out-of-fold macro-F1, which their calibration computes anyway, picks the feature set.
    fits = []
    for candidate in feature_candidates(config):
        # fit, then transform (not fit_transform): the matrix is then built exactly as at prediction time.
        candidate_features = build_features(candidate).fit(texts)
        matrix = candidate_features.transform(texts)
        candidate_heads = {name: fit_quietly(build_classifier(candidate), matrix[rows_index], kept_labels, notes)
                           for name, (rows_index, kept_labels, _, _) in prepared.items()}
        score = float(np.mean([oof_macro_f1(candidate_heads[name], kept_labels)
                               for name, (_, kept_labels, _, _) in prepared.items()]))
        fits.append((candidate, candidate_features, candidate_heads, score))
    chosen, features, heads, _ = max(fits, key=lambda fit: fit[3])  # ties: the first, without vectors
    card["feature_selection"] = {
        "criterion": "mean out-of-fold macro-F1 of the heads",
        "scores": {wordvectors.resolve(c.word_vectors): round(score, METRIC_DIGITS) for c, _, _, score in fits},
        "chosen": wordvectors.resolve(chosen.word_vectors),
    }
    for name, (rows_index, kept_labels, counts, skipped) in prepared.items():
        head = heads[name]
        classes = sorted(set(kept_labels))
        cv = _cross_validate(texts, rows_index, kept_labels, config, notes)
        oof = head.oof_proba_
        encoded = np.searchsorted(head.classes_, kept_labels)
        confidence = oof.max(axis=1)
        correct = oof.argmax(axis=1) == encoded
        threshold = precision_threshold(confidence, correct, config.target_precision)
        kept = confidence >= threshold
        if threshold >= 1.0:
            notes.append(f"{name}: out-of-fold predictions never reach precision {config.target_precision}; "
                         f"the model will abstain until it has more examples")
        card["heads"][name] = {
            "support": {c: counts[c] for c in classes},
            "skipped_labels": skipped,
            "threshold": threshold,
            "coverage_at_threshold": round(float(kept.mean()), METRIC_DIGITS),
            "accuracy_at_threshold": round(float(correct[kept].mean()) if kept.any() else 0.0, METRIC_DIGITS),
            "calibration_folds": int(head.n_splits_),
            "cv": cv,
        }
    card["warnings"] = sorted(set(notes))
    model = export(features, heads, card)
    return TrainedModel(model=model, features=features, heads=heads)


def feature_candidates(config: TrainingConfig) -> list[TrainingConfig]:
    """The feature sets to compare: `auto` tries both without and with word vectors when installed."""
    if config.word_vectors == "auto" and wordvectors.resolve("auto") == wordvectors.MINILM:
        return [replace(config, word_vectors=wordvectors.NONE), replace(config, word_vectors=wordvectors.MINILM)]
    return [replace(config, word_vectors=wordvectors.resolve(config.word_vectors))]


def oof_macro_f1(head: TemperatureScaledClassifier, labels: Sequence[str]) -> float:
    predicted = head.classes_[head.oof_proba_.argmax(axis=1)]
    return float(f1_score(np.asarray(labels), predicted, average="macro", zero_division=0))


def fit_selected_pipeline(texts: list[str], labels: list[str], config: TrainingConfig, notes: list[str]
                          ) -> tuple[Pipeline, dict[str, float]]:
    """A fitted single-head pipeline, its feature set chosen as `train` does; with the candidates' scores."""
    fitted = []
    for candidate in feature_candidates(config):
        pipeline = fit_quietly(build_pipeline(candidate), texts, labels, notes)
        fitted.append((pipeline, wordvectors.resolve(candidate.word_vectors),
                       oof_macro_f1(pipeline.named_steps["classifier"], labels)))
    best = max(fitted, key=lambda fit: fit[2])
    return best[0], {name: score for _, name, score in fitted}


def _cross_validate(texts: list[str], index: list[int], labels: list[str], config: TrainingConfig,
                    notes: list[str]) -> dict[str, Any]:
    """Pooled out-of-fold accuracy and macro-F1 of the whole pipeline (vectorisers refitted per fold)."""
    y = np.asarray(labels)
    counts = Counter(labels)
    folds = min(config.cv_folds, min(counts.values()))
    majority = round(max(counts.values()) / len(labels), METRIC_DIGITS)
    if folds < 2 or min(counts.values()) < 3:
        notes.append("too few examples per class to cross-validate (3 needed)")
        return {"folds": 0, "accuracy": 0.0, "macro_f1": 0.0, "majority_accuracy": majority}
    subset = [texts[i] for i in index]
    predicted = np.empty(len(labels), dtype=object)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=config.seed)
    # The calibration step needs two examples per class inside each training fold.
    inner = replace(config, calibration_folds=min(config.calibration_folds, max(2, folds - 1)))
    for train_index, test_index in splitter.split(np.zeros(len(y)), y):
        fold_counts = Counter(y[train_index])
        if min(fold_counts.values()) < 2 or len(fold_counts) < len(counts):
            return {"folds": 0, "accuracy": 0.0, "macro_f1": 0.0, "majority_accuracy": majority}
        pipeline, _ = fit_selected_pipeline([subset[i] for i in train_index], list(y[train_index]), inner, notes)
        predicted[test_index] = pipeline.predict([subset[i] for i in test_index])
    result = {"folds": folds, **metrics(y, predicted.astype(str)), "majority_accuracy": majority}
    return result


def _check_example(example: Example, rules: RuleSet) -> None:
    where = example.source or "example"
    if not isinstance(example.text, str) or not example.text.strip():
        raise TrainingError(f"{where}: empty text")
    if example.priority is not None and example.priority not in PRIORITIES:
        raise TrainingError(f"{where}: priority {example.priority!r} is not one of {', '.join(PRIORITIES)}")
    if example.category is not None and rules.categories is not None and example.category not in rules.categories:
        raise TrainingError(f"{where}: category {example.category!r} is not in the rules file's categories "
                            f"({', '.join(rules.categories)}); fix the label or add it to {rules.source}")
    if example.category is None and example.priority is None:
        raise TrainingError(f"{where}: has neither a category nor a priority label")


def _base_priority(example: Example, rules: RuleSet) -> str | None:
    if example.priority is None:
        return None
    if example.plan is None or example.plan.strip().lower() not in rules.bump_plans or example.priority == "P1":
        return example.priority
    position = min(len(PRIORITIES) - 1, PRIORITIES.index(example.priority) + rules.bump_levels)
    return PRIORITIES[position]


def _base_card(config: TrainingConfig, seed: int) -> dict[str, Any]:
    estimator = config.estimator_params()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "text_version": TEXT_VERSION,
        "model_id": "",
        "seed": seed,
        "libraries": {"python": platform.python_version(), "numpy": np.__version__,
                      "scipy": scipy.__version__, "scikit-learn": sklearn.__version__},
        "features": {"word_ngrams": list(config.word_ngrams), "char_ngrams": list(config.char_ngrams),
                     "min_df": config.min_df, "binary": True, "max_chars": config.max_chars},
        "estimator": {
            "description": (f"LinearSVC(C={config.C}, class_weight={config.class_weight!r}, squared hinge, "
                            f"one-vs-rest) with temperature scaling on {config.calibration_folds}-fold "
                            f"out-of-fold decision values"),
            "linear_svc": estimator,
            "calibration_folds": config.calibration_folds,
        },
        "target_precision": config.target_precision,
        "cv_folds": config.cv_folds,
    }
