"""`chatsvc eval classify`: our classifier beside a majority-class and a TF-IDF + LogisticRegression
baseline, on a train/test pair of CSVs or by cross-validation on the training file alone.

Nothing is tuned on the reported split: the abstain threshold for `--reject-label` is chosen on
held-out parts of TRAIN (for our model the 5-fold out-of-fold probabilities its calibration
already computes, for the logistic regression an 80/20 split of TRAIN), then fixed. The rule is
the same for both: the highest threshold that costs at most one point of in-scope accuracy.

The last line printed is one JSON object, a contract for scripts:
{"ours": {"accuracy", "macro_f1", "inscope_accuracy", "oos_recall", "p99_predict_us"},
 "baselines": {"majority": {...}, "tfidf_logreg": {...}}}  (reject keys null without --reject-label)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from chatsvc.classifier.errors import ClassifierError
from chatsvc.classifier.labels import read_text_labels

SYSTEMS = ("ours", "majority", "tfidf_logreg")
CONTRACT_KEYS = ("accuracy", "macro_f1", "inscope_accuracy", "oos_recall", "p99_predict_us")
LATENCY_SAMPLE = 300


@dataclass
class Outcome:
    """Predictions of one system on some test rows, with per-call latencies in nanoseconds."""

    predicted: list[str] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)


MAX_INSCOPE_LOSS = 0.01


def reject_threshold(confidence: np.ndarray, top: np.ndarray, truth: np.ndarray, reject: str,
                     max_inscope_loss: float = MAX_INSCOPE_LOSS) -> float:
    """The highest abstain threshold that costs at most `max_inscope_loss` of in-scope accuracy.

    Measured on tuning rows (never the reported split): in-scope accuracy without any threshold
    (out-of-scope only when it is the top label) is the reference; the threshold is raised in
    steps of 0.01 for as long as in-scope accuracy stays within `max_inscope_loss` of it, so that
    as many out-of-scope messages as possible are caught at a bounded cost.
    """
    in_scope = truth != reject
    if not in_scope.any():
        return 0.0

    def inscope_accuracy(t: float) -> float:
        predicted = np.where((confidence < t) | (top == reject), reject, top)
        return float((predicted[in_scope] == truth[in_scope]).mean())

    floor = inscope_accuracy(0.0) - max_inscope_loss
    best = 0.0
    for t in np.round(np.arange(0.01, 1.0, 0.01), 2):
        if inscope_accuracy(float(t)) < floor - 1e-12:
            break
        best = float(t)
    return best


def _timed(predict: Callable[[str], str], texts: Sequence[str], sample: int | None) -> Outcome:
    outcome = Outcome()
    timed = set(range(len(texts))) if sample is None else set(np.linspace(0, len(texts) - 1, sample, dtype=int))
    for i, text in enumerate(texts):
        if i in timed:
            start = time.perf_counter_ns()
            label = predict(text)
            outcome.latencies_ns.append(time.perf_counter_ns() - start)
        else:
            label = predict(text)
        outcome.predicted.append(label)
    return outcome


def _run_ours(train_texts: list[str], train_labels: list[str], test_texts: list[str], reject: str | None,
              seed: int, notes: list[str]) -> tuple[Outcome, float | None]:
    from chatsvc.classifier.training import TrainingConfig, export_pipeline, fit_selected_pipeline

    pipeline, scores = fit_selected_pipeline(train_texts, train_labels, TrainingConfig(seed=seed), notes)
    if len(scores) > 1:
        chosen = max(scores, key=lambda name: scores[name])
        shown = ", ".join(f"{name} {score:.4f}" for name, score in scores.items())
        notes.append(f"ours: word vectors {chosen!r} chosen by out-of-fold macro-F1 on TRAIN ({shown})")
    classifier = pipeline.named_steps["classifier"]
    threshold = None
    if reject is not None:
        oof = classifier.oof_proba_
        threshold = reject_threshold(oof.max(axis=1), classifier.classes_[oof.argmax(axis=1)],
                                              np.asarray(train_labels), reject)
    model = export_pipeline(pipeline, head="label")
    classes = model.heads["label"].classes
    cut = threshold or 0.0

    def predict(text: str) -> str:
        probabilities = model.probabilities(model.score(text), "label")
        best = probabilities.index(max(probabilities))
        label = classes[best]
        if reject is not None and (probabilities[best] < cut or label == reject):
            return reject
        return label

    for text in test_texts[:50]:  # warm the per-token caches a little, as a running service would be
        predict(text)
    return _timed(predict, test_texts, None), threshold


def _run_logreg(train_texts: list[str], train_labels: list[str], test_texts: list[str], reject: str | None,
                seed: int, notes: list[str]) -> tuple[Outcome, float | None]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    from chatsvc.classifier.training import fit_quietly

    def make() -> Any:
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                             LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000,
                                                random_state=seed))

    threshold = None
    if reject is not None:
        counts = Counter(train_labels)
        stratify = train_labels if min(counts.values()) >= 2 else None
        fit_texts, tune_texts, fit_labels, tune_labels = train_test_split(
            train_texts, train_labels, test_size=0.2, random_state=seed, stratify=stratify)
        tuned = fit_quietly(make(), fit_texts, fit_labels, notes)
        probabilities = tuned.predict_proba(tune_texts)
        top = tuned.classes_[probabilities.argmax(axis=1)]
        threshold = reject_threshold(probabilities.max(axis=1), top, np.asarray(tune_labels), reject)
    pipeline = fit_quietly(make(), train_texts, train_labels, notes)
    predicted_probabilities = pipeline.predict_proba(test_texts)
    top = pipeline.classes_[predicted_probabilities.argmax(axis=1)]
    if reject is not None:
        top = np.where((predicted_probabilities.max(axis=1) < (threshold or 0.0)) | (top == reject), reject, top)
    outcome = Outcome(predicted=[str(label) for label in top])
    # Latency of the scikit-learn pipeline called once per message, as a service would call it.
    sample = [test_texts[i] for i in np.linspace(0, len(test_texts) - 1, min(LATENCY_SAMPLE, len(test_texts)),
                                                 dtype=int)]
    for text in sample[:20]:
        pipeline.predict_proba([text])
    for text in sample:
        start = time.perf_counter_ns()
        pipeline.predict_proba([text])
        outcome.latencies_ns.append(time.perf_counter_ns() - start)
    return outcome, threshold


def _run_majority(train_labels: list[str], test_texts: list[str]) -> Outcome:
    counts = Counter(train_labels)
    label = min(counts, key=lambda k: (-counts[k], k))
    return _timed(lambda text: label, test_texts, None)


def _scores(truth: Sequence[str], outcome: Outcome, reject: str | None) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, f1_score

    y = np.asarray(truth)
    predicted = np.asarray(outcome.predicted)
    result: dict[str, float | None] = {
        "accuracy": round(float(accuracy_score(y, predicted)), 4),
        "macro_f1": round(float(f1_score(y, predicted, average="macro", zero_division=0)), 4),
        "inscope_accuracy": None,
        "oos_recall": None,
        "p99_predict_us": (round(float(np.percentile(outcome.latencies_ns, 99)) / 1000, 1)
                           if outcome.latencies_ns else None),
    }
    if reject is not None:
        in_scope = y != reject
        if in_scope.any():
            result["inscope_accuracy"] = round(float((predicted[in_scope] == y[in_scope]).mean()), 4)
        if (~in_scope).any():
            result["oos_recall"] = round(float((predicted[~in_scope] == reject).mean()), 4)
    return result


def evaluate(train_path: str, test_path: str | None = None, *, label_column: str = "label",
             text_column: str = "text", reject_label: str | None = None, cv: int | None = None, seed: int = 0,
             out: TextIO | None = None) -> dict[str, Any]:
    """Run the comparison, print a table and the JSON line to `out`, and return the JSON object."""
    import sys

    from sklearn.model_selection import StratifiedKFold

    stream = out or sys.stdout
    if (test_path is None) == (cv is None):
        raise ClassifierError("give either --test TEST.csv or --cv K")
    train_texts, train_labels = read_text_labels(train_path, label_column=label_column, text_column=text_column)
    counts = Counter(train_labels)
    if len(counts) < 2:
        raise ClassifierError(f"{train_path}: all rows have the label {next(iter(counts))!r}; "
                              f"a classifier needs at least two labels")
    if reject_label is not None and reject_label not in counts:
        raise ClassifierError(f"{train_path}: no row has the reject label {reject_label!r} "
                              f"(labels: {', '.join(sorted(counts)[:10])}{' ...' if len(counts) > 10 else ''})")
    too_small = sorted(label for label, n in counts.items() if n < 3)
    if too_small:
        raise ClassifierError(f"{train_path}: labels {', '.join(too_small[:10])} have fewer than 3 rows; "
                              f"calibration needs at least 3 per label")
    notes: list[str] = []
    outcomes = {name: Outcome() for name in SYSTEMS}
    thresholds: dict[str, list[float]] = {"ours": [], "tfidf_logreg": []}
    if cv is not None:
        if cv < 2:
            raise ClassifierError("--cv needs at least 2 folds")
        smallest = min(counts.values())
        if smallest < cv:
            rare = min(counts, key=counts.__getitem__)
            raise ClassifierError(f"{train_path}: label {rare!r} has only {smallest} rows, fewer than --cv {cv}")
        truth: list[str] = []
        description = f"{cv}-fold stratified cross-validation on {train_path}"
        splitter = StratifiedKFold(cv, shuffle=True, random_state=seed)
        for fold_train, fold_test in splitter.split(np.zeros(len(train_labels)), train_labels):
            tr_texts = [train_texts[i] for i in fold_train]
            tr_labels = [train_labels[i] for i in fold_train]
            te_texts = [train_texts[i] for i in fold_test]
            truth.extend(train_labels[i] for i in fold_test)
            _extend(outcomes, thresholds, *_run_all(tr_texts, tr_labels, te_texts, reject_label, seed, notes))
    else:
        assert test_path is not None
        test_texts, truth = read_text_labels(test_path, label_column=label_column, text_column=text_column)
        description = f"train {train_path}, test {test_path}"
        _extend(outcomes, thresholds, *_run_all(train_texts, train_labels, test_texts, reject_label, seed, notes))
        unseen = Counter(label for label in truth if label not in counts)
        if unseen:
            notes.append(f"{sum(unseen.values())} test rows carry labels never seen in training "
                         f"({', '.join(sorted(unseen)[:5])}{' ...' if len(unseen) > 5 else ''}); they count as errors")

    results = {name: _scores(truth, outcomes[name], reject_label) for name in SYSTEMS}
    print(f"chatsvc eval classify: {description}; {len(train_texts)} training rows, {len(counts)} labels, "
          f"{len(truth)} evaluated rows, seed {seed}", file=stream)
    if reject_label is not None:
        for name, values in thresholds.items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(f"abstain threshold for {name} (tuned on TRAIN only): {shown}", file=stream)
    for note in sorted(set(notes)):
        print(f"note: {note}", file=stream)
    header = f"{'system':<14}" + "".join(f"{key:>18}" for key in CONTRACT_KEYS)
    print(header, file=stream)
    for name in SYSTEMS:
        cells = "".join(f"{'-' if results[name][k] is None else results[name][k]:>18}" for k in CONTRACT_KEYS)
        print(f"{name:<14}{cells}", file=stream)
    medians = ", ".join(f"{name} {np.percentile(outcomes[name].latencies_ns, 50) / 1000:.1f} us"
                        for name in ("ours", "tfidf_logreg") if outcomes[name].latencies_ns)
    print(f"median latency per message: {medians}", file=stream)
    document = {"ours": results["ours"],
                "baselines": {"majority": results["majority"], "tfidf_logreg": results["tfidf_logreg"]}}
    print(json.dumps(document, sort_keys=False), file=stream)
    return document


def _run_all(train_texts: list[str], train_labels: list[str], test_texts: list[str], reject: str | None,
             seed: int, notes: list[str]) -> tuple[dict[str, Outcome], dict[str, float | None]]:
    ours, ours_threshold = _run_ours(train_texts, train_labels, test_texts, reject, seed, notes)
    logreg, logreg_threshold = _run_logreg(train_texts, train_labels, test_texts, reject, seed, notes)
    majority = _run_majority(train_labels, test_texts)
    return ({"ours": ours, "majority": majority, "tfidf_logreg": logreg},
            {"ours": ours_threshold, "tfidf_logreg": logreg_threshold})


def _extend(outcomes: dict[str, Outcome], thresholds: dict[str, list[float]], new: dict[str, Outcome],
            new_thresholds: dict[str, float | None]) -> None:
    for name, outcome in new.items():
        outcomes[name].predicted.extend(outcome.predicted)
        outcomes[name].latencies_ns.extend(outcome.latencies_ns)
    for name, value in new_thresholds.items():
        if value is not None:
            thresholds[name].append(value)
