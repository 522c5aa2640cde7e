"""Per-message latency of the classifier: our exported fast path against the scikit-learn pipeline.

    python bench/classify_latency.py [--data LABELS.csv] [--rounds 5] [--cpu 0]

Trains the help-center model from the labelled CSV (default: the shipped demo data), then times,
one message at a time, in one thread (optionally pinned to one core with --cpu):
  - ours, full:   Classifier.classify(text)  (rules + both heads + rankings + reasons), on the
                  demo messages and on 1,000-character messages
  - ours, model:  the exported weights scored for both heads (no rules, no result object), for the
                  model `chatsvc train` builds here (with word vectors when the `embeddings` extra is
                  installed and they win on cross-validation) and for the TF-IDF-only model
  - sklearn:      pipeline.predict_proba([text]) for both heads, the same fitted model
  - the round trip of asyncio.to_thread, which aclassify pays for long texts
and prints p50/p99 in microseconds and the sklearn/ours ratio. "best-of p99" is the 99th percentile
over messages of each message's fastest round: the cost of the work itself, without the time spent
waiting for a core on a shared machine (which the plain p99 includes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatsvc.classifier.classifier import Classifier
from chatsvc.classifier.labels import read_examples
from chatsvc.classifier.rules import load_rules
from chatsvc.classifier.training import TrainingConfig, train

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "chatsvc" / "classifier" / "data" / "help_center_labels.csv"


def measure(function, texts: list[str], rounds: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Microseconds per call, shape (rounds, messages)."""
    for text in texts:  # warm-up: caches, branch predictors, lazy imports
        function(text)
    gc.collect()
    timings = []
    for _ in range(rounds):
        for text in texts:
            start = time.perf_counter_ns()
            function(text)
            timings.append(time.perf_counter_ns() - start)
    return np.asarray(timings, dtype=np.float64).reshape(rounds, len(texts)) / 1000.0


def thread_round_trip(calls: int = 300) -> np.ndarray:
    """What aclassify would pay to hand a message to a worker thread and get the answer back."""
    async def run() -> list[int]:
        timings = []
        for _ in range(calls):
            start = time.perf_counter_ns()
            await asyncio.to_thread(int)
            timings.append(time.perf_counter_ns() - start)
        return timings

    return np.asarray(asyncio.run(run()), dtype=np.float64)[None, :] / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=-1, help="pin to this CPU core (default -1: do not pin)")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    examples = read_examples(args.data)
    trained = train(examples, config=TrainingConfig(cv_folds=2))
    plain = train(examples, config=TrainingConfig(cv_folds=2, word_vectors="none")).model
    classifier = Classifier(trained.model, load_rules())
    model = trained.model
    vectors = model.card["features"]["word_vectors"]
    category, priority = trained.pipeline("category"), trained.pipeline("priority")
    texts = [e.text for e in examples]

    def ours_model(text: str) -> None:
        scored = model.score(text)
        model.probabilities(scored, "category")
        model.probabilities(scored, "priority")

    def ours_plain(text: str) -> None:
        scored = plain.score(text)
        plain.probabilities(scored, "category")
        plain.probabilities(scored, "priority")

    def sklearn_pipeline(text: str) -> None:
        category.predict_proba([text])
        priority.predict_proba([text])

    # ~1,000-character messages (the largest that aclassify runs inline): runs of demo messages.
    long_texts = []
    for start in range(0, len(texts), 7):
        message = ""
        for text in texts[start:] + texts[:start]:
            if len(message) >= 1000:
                break
            message += text + " "
        long_texts.append(message[:1000])

    reference = measure(lambda text: sum(range(1000)), texts, 1)
    results = {
        "ours: Classifier.classify": measure(classifier.classify, texts, args.rounds),
        "ours: Classifier.classify, 1000-char messages": measure(classifier.classify, long_texts, args.rounds),
        f"ours: exported model, 2 heads ({'with' if vectors else 'no'} word vectors)":
            measure(ours_model, texts, args.rounds),
        "ours: exported model, 2 heads, TF-IDF only": measure(ours_plain, texts, args.rounds),
        "sklearn: pipeline.predict_proba, 2 heads": measure(sklearn_pipeline, texts, max(1, args.rounds // 5)),
        "asyncio.to_thread round trip (no work)": thread_round_trip(),
    }
    pinned = f"pinned to cpu {args.cpu}" if args.cpu >= 0 else "not pinned"
    print(f"classify latency: {len(texts)} messages from {args.data.name}, {args.rounds} rounds, {pinned}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"machine speed reference: sum(range(1000)) takes {np.percentile(reference, 50):.1f} us (p50)")
    print(f"{'path':<56}{'p50 us':>10}{'p99 us':>10}{'best-of p99 us':>16}")
    for name, timings in results.items():
        best = np.percentile(timings.min(axis=0), 99) if len(timings) > 1 else float("nan")
        print(f"{name:<56}{np.percentile(timings, 50):>10.1f}{np.percentile(timings, 99):>10.1f}{best:>16.1f}")
    ours = results["ours: Classifier.classify"]
    sklearn = results["sklearn: pipeline.predict_proba, 2 heads"]
    print(f"ratio sklearn / ours (Classifier.classify): p50 {np.percentile(sklearn, 50) / np.percentile(ours, 50):.1f}x, "
          f"p99 {np.percentile(sklearn, 99) / np.percentile(ours, 99):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
