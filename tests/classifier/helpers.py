"""Small data and a once-per-session trained model for the classifier tests."""

from __future__ import annotations

import csv
import functools
import random
from pathlib import Path

from chatsvc.classifier.labels import Example, read_examples

SHIPPED_DATA = Path(__file__).resolve().parents[2] / "chatsvc" / "classifier" / "data" / "help_center_labels.csv"

TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment", "receipt", "card", "plan", "price"],
    "login": ["password", "login", "sign", "account", "locked", "reset", "email", "code"],
    "export": ["export", "csv", "download", "report", "spreadsheet", "backup", "columns", "excel"],
}
OUT_OF_SCOPE = ["weather", "pizza", "football", "recipe", "holiday", "guitar", "movie", "garden"]
FILLER = ["please", "help", "my", "the", "today", "again", "with", "need", "question", "about"]


def synthetic_rows(per_label: int = 20, seed: int = 0, oos: int = 0) -> list[tuple[str, str]]:
    """Short texts whose topic words give the label away (plus optional out-of-scope rows)."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(per_label):
            picked = rng.sample(words, 3) + rng.sample(FILLER, 3)
            rng.shuffle(picked)
            rows.append((" ".join(picked), label))
    for _ in range(oos):
        picked = rng.sample(OUT_OF_SCOPE, 3) + rng.sample(FILLER, 2)
        rng.shuffle(picked)
        rows.append((" ".join(picked), "oos"))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@functools.lru_cache(maxsize=1)
def shipped_examples() -> tuple[Example, ...]:
    return tuple(read_examples(SHIPPED_DATA))


@functools.cache
def trained(seed: int = 0):  # type: ignore[no-untyped-def]
    """The help-center model trained once per test session (fewer folds than the shipped one, for speed)."""
    from chatsvc.classifier import wordvectors
    from chatsvc.classifier.training import TrainingConfig, train

    # With word vectors whenever they can be computed (the shipped model has them); forced rather
    # than "auto" so that one feature set is fitted, not two.
    vectors = wordvectors.MINILM if wordvectors.available() else wordvectors.NONE
    config = TrainingConfig(seed=seed, cv_folds=2, calibration_folds=3, word_vectors=vectors)
    return train(shipped_examples(), config=config, sources=["help_center_labels.csv"])
