"""`chatsvc eval gaps`: clustering quality beside KMeans with the true k, and the end-to-end gap test.

Figures (the names are a contract, see docs/gaps.md):
- nmi, ari: scikit-learn's scores against the labels, over every question; noise is one more cluster
  (label -1), so leaving a question out is never free.
- acc: clustering accuracy, the share of questions in a cluster that the best one-to-one mapping of
  clusters to labels (Hungarian) maps to their label; noise is always wrong.
- noise_share: questions left in no topic.
- labels_recovered: share of labels that are the majority of some cluster of purity >= 0.8.
- hidden_recovered, false_gap_share (with --hide-articles): of the labels whose article was withheld,
  the share that is the majority label of one of the top gaps; of those top gaps, the share whose
  majority label does have an article. "Top" is as many gaps as labels were withheld. Beside ours, the
  same two figures for other rankings of the same gaps (impact alone; the previous near-article step).
"""

from __future__ import annotations

import csv
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chatsvc.gaps import engine

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from chatsvc.gaps.embed import Embedder

PURITY = 0.8
METRIC_KEYS = ("nmi", "ari", "acc", "noise_share", "labels_recovered", "n_clusters", "seconds")


class QueryFileError(ValueError):
    """A queries file that cannot be used; the message names the file and line."""


def load_labelled(path: str | Path) -> list[tuple[str, str]]:
    """Rows of a CSV with a header naming `text` and `label` (other columns are ignored)."""
    file = Path(path)
    if not file.is_file():
        raise QueryFileError(f"no such file: {file}")
    out = []
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise QueryFileError(f"{file}: the first line must name the columns text and label")
        for number, row in enumerate(reader, start=2):
            text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
            if not text or not label:
                raise QueryFileError(f"{file}:{number}: empty text or label")
            out.append((text, label))
    if not out:
        raise QueryFileError(f"{file}: no rows")
    return out


# ------------------------------------------------------------------ metrics

def clustering_metrics(golds: Sequence[str], labels: NDArray[np.int64]) -> dict[str, Any]:
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    n = len(golds)
    if n == 0:
        return {"nmi": 0.0, "ari": 0.0, "acc": 0.0, "noise_share": 0.0, "labels_recovered": 0.0, "n_clusters": 0}
    names = sorted(set(golds))
    gold_ids = _ids(golds, names)
    clusters = sorted(int(c) for c in set(labels.tolist()) if c >= 0)
    table = np.zeros((len(clusters), len(names)), dtype=np.int64)
    where = {c: i for i, c in enumerate(clusters)}
    for c, g in zip(labels, gold_ids):
        if c >= 0:
            table[where[int(c)], g] += 1
    acc = 0.0
    if clusters:
        rows, cols = linear_sum_assignment(-table)
        acc = float(table[rows, cols].sum()) / n
    recovered = set()
    for i in range(len(clusters)):
        size = table[i].sum()
        if size and table[i].max() / size >= PURITY:
            recovered.add(int(table[i].argmax()))
    return {
        "nmi": round(float(normalized_mutual_info_score(gold_ids, labels)), 4),
        "ari": round(float(adjusted_rand_score(gold_ids, labels)), 4),
        "acc": round(acc, 4),
        "noise_share": round(float((labels < 0).mean()), 4),
        "labels_recovered": round(len(recovered) / len(names), 4),
        "n_clusters": len(clusters),
    }


def _ids(golds: Sequence[str], names: Sequence[str]) -> NDArray[np.int64]:
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[g] for g in golds], dtype=np.int64)


# ------------------------------------------------------------------ systems

def ours(texts: Sequence[str], embedder: Embedder, params: engine.ClusterParams | None = None) -> NDArray[np.int64]:
    vectors = embedder.encode(texts)
    return engine.cluster(vectors, [engine.text_key(t) for t in texts], params or engine.params_for(embedder.name))


def kmeans_true_k(texts: Sequence[str], k: int, seed: int = 0) -> NDArray[np.int64]:
    """The baseline: word TF-IDF, LSA to 100 dimensions, unit length, KMeans told the true k."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    matrix = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(texts)
    dims = max(2, min(100, matrix.shape[1] - 1, len(texts) - 1))
    reduced = make_pipeline(TruncatedSVD(dims, random_state=seed), Normalizer(copy=False)).fit_transform(matrix)
    k = max(1, min(k, len(texts)))
    return np.asarray(KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced), dtype=np.int64)


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - start, 2)


@dataclass
class Report:
    ours: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"ours": self.ours, "baselines": self.baselines}

    def table(self) -> str:
        def cell(value: Any) -> str:
            return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

        header = f"{'system':<28}{'NMI':>8}{'ARI':>8}{'acc':>8}{'noise':>8}{'rec@.8':>8}{'k':>6}{'s':>9}"
        lines = [header, "-" * len(header)]
        for name, m in [("ours", self.ours), *((n, b) for n, b in self.baselines.items() if "nmi" in b)]:
            lines.append(f"{name:<28}{cell(m.get('nmi')):>8}{cell(m.get('ari')):>8}{cell(m.get('acc')):>8}"
                         f"{cell(m.get('noise_share')):>8}{cell(m.get('labels_recovered')):>8}"
                         f"{cell(m.get('n_clusters')):>6}{cell(m.get('seconds')):>9}")
        for key in ("hidden_recovered", "false_gap_share", "hidden_labels", "top_gaps", "unanswered"):
            if key in self.ours:
                lines.append(f"{key}: {cell(self.ours[key])}")
        for name, m in self.baselines.items():
            if "hidden_recovered" in m:
                lines.append(f"{name} (same gaps): hidden_recovered {cell(m['hidden_recovered'])}, "
                             f"false_gap_share {cell(m['false_gap_share'])}")
        return "\n".join(lines + self.notes)


def evaluate_clustering(rows: Sequence[tuple[str, str]], embedder: Embedder,
                        params: engine.ClusterParams | None = None) -> Report:
    texts = [t for t, _ in rows]
    golds = [g for _, g in rows]
    labels, seconds = _timed(lambda: ours(texts, embedder, params))
    mine = {**clustering_metrics(golds, labels), "seconds": seconds, "embedder": embedder.name}
    k = len(set(golds))
    base, base_seconds = _timed(lambda: kmeans_true_k(texts, k))
    baseline = {**clustering_metrics(golds, base), "seconds": base_seconds}
    return Report(ours=mine, baselines={"kmeans_true_k": baseline})


# ------------------------------------------------------------------ end to end: withheld articles

def _title(label: str) -> str:
    words = label.replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:]) or label


def build_articles(train: Sequence[tuple[str, str]], labels: Sequence[str], per_article: int = 20) -> list[Any]:
    """One published article per label: the label as its title, its training questions as the body."""
    from chatsvc.kb_suggest.articles import Article

    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in train:
        by_label[label].append(text)
    out = []
    for i, label in enumerate(labels):
        questions = by_label.get(label, [])[:per_article]
        body = "Questions this article answers:\n\n" + "\n".join(f"- {q}" for q in questions)
        out.append(Article(id=f"a{i}", title=_title(label), body=body, tags=[], slug=f"article-{i}"))
    return out


def split_per_label(rows: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Without a training file: each label's first half (in file order) builds articles, the rest is asked."""
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    train, test = [], []
    for items in by_label.values():
        half = max(1, len(items) // 2)
        train.extend(items[:half])
        test.extend(items[half:])
    return train, test


def evaluate_hidden(rows: Sequence[tuple[str, str]], train: Sequence[tuple[str, str]] | None, embedder: Embedder,
                    hide: float, seed: int = 0, params: engine.ClusterParams | None = None) -> Report:
    """Withhold a share of the labels' articles, ask every question, cluster what went unanswered."""
    from chatsvc.kb_suggest.engine import SuggestionIndex

    notes = []
    if train is None:
        train, rows = split_per_label(rows)
        notes.append("no --train file: each label's first half of the questions built its article")
    labels = sorted({g for _, g in rows})
    if len(labels) < 2:
        raise ValueError("--hide-articles needs at least two labels")
    n_hidden = max(1, round(len(labels) * hide))
    hidden = set(random.Random(seed).sample(labels, n_hidden))
    shown = [label for label in labels if label not in hidden]
    articles = build_articles(train, shown)
    article_label = {a.id: label for a, label in zip(articles, shown)}
    index = SuggestionIndex.build(articles)
    from chatsvc.kb_suggest.markdown import plain_text

    article_texts = [f"{a.title}. {plain_text(a.body)[:300]}" for a in articles]  # as the service embeds them

    def run() -> dict[str, Any]:
        unanswered: list[tuple[str, str, str]] = []
        answered: list[str] = []
        for text, gold in rows:
            try:
                result = index.suggest(text, 3)
            except ValueError:
                continue
            if result.no_match or not result.matches:
                unanswered.append((text, gold, "no_match"))
            elif gold not in {article_label[m.article_id] for m in result.matches}:
                unanswered.append((text, gold, "unhelpful"))  # the visitor says none of the three helped
            else:
                answered.append(text)
        texts = [t for t, _, _ in unanswered]
        all_vectors = embedder.encode(texts)
        labels_ = engine.cluster(all_vectors, [engine.text_key(t) for t in texts],
                                 params or engine.params_for(embedder.name))
        now = datetime(2026, 1, 1, tzinfo=UTC)
        # Nearest articles and answered neighbours need vectors comparable across calls (the service only
        # has them with MiniLM).
        vectors = all_vectors if embedder.stable and texts else None
        article_vectors = embedder.encode(article_texts) if vectors is not None else None
        answered_vectors = embedder.encode(answered) if vectors is not None else None
        gaps = []
        for c in sorted({int(c) for c in labels_ if c >= 0}):
            members = [i for i, lab in enumerate(labels_) if lab == c]
            asked = [engine.Asked(asker=str(i), created_at=now, priority=None) for i in members]
            fig = engine.figures(asked, now, timedelta(days=7))
            novelty, step = 1.0, 1.0
            if vectors is not None and article_vectors is not None and answered_vectors is not None:
                centre = engine.centroids(vectors[members], np.zeros(len(members), dtype=np.int64))[0]
                cohesion = engine.cohesion(vectors[members], centre)
                similarity = float((article_vectors @ centre).max())
                novelty = engine.novelty(similarity, cohesion,
                                         engine.answered_share(answered_vectors, centre, cohesion, len(members)))
                step = PREVIOUS_STEP_WEIGHT if similarity >= PREVIOUS_STEP_COSINE else 1.0
            majority = Counter(unanswered[i][1] for i in members).most_common(1)[0][0]
            gaps.append((c, majority, fig.impact, novelty, step))
        ours_top = _top_gaps([(g[2] * g[3], g) for g in gaps], n_hidden, hidden)
        rankings[IMPACT_ONLY] = _top_gaps([(g[2], g) for g in gaps], n_hidden, hidden)
        rankings[PREVIOUS_STEP] = _top_gaps([(g[2] * g[4], g) for g in gaps], n_hidden, hidden)
        return {**ours_top, "hidden_labels": n_hidden, "top_gaps": min(n_hidden, len(gaps)),
                "unanswered": len(unanswered), "n_clusters": len(gaps),
                **{k: v for k, v in clustering_metrics([u[1] for u in unanswered], labels_).items()
                   if k in ("nmi", "ari", "noise_share")}}

    rankings: dict[str, dict[str, float]] = {}

    mine, seconds = _timed(run)
    mine["seconds"] = seconds
    mine["embedder"] = embedder.name
    # Beside it, the clustering figures of KMeans told the true k, on all questions (no articles involved).
    texts = [t for t, _ in rows]
    base, base_seconds = _timed(lambda: kmeans_true_k(texts, len(labels)))
    baseline = {**clustering_metrics([g for _, g in rows], base), "seconds": base_seconds}
    notes.append(f"{n_hidden} of {len(labels)} labels' articles withheld (seed {seed}); "
                 f"{len(articles)} articles built from {len(train)} training questions")
    return Report(ours=mine, baselines={"kmeans_true_k": baseline, **rankings}, notes=notes)


#: Rankings printed beside ours on the same gaps: impact without novelty, and the previous novelty (impact
#: halved when a published article lies at cosine 0.4 or more from the topic's centre).
IMPACT_ONLY = "ranking_impact_only"
PREVIOUS_STEP = "ranking_near_article_step"
PREVIOUS_STEP_COSINE = 0.4
PREVIOUS_STEP_WEIGHT = 0.5


def _top_gaps(scored: Sequence[tuple[float, tuple[Any, ...]]], n_hidden: int, hidden: set[str]) -> dict[str, float]:
    """hidden_recovered and false_gap_share of the top n_hidden gaps by score (ties: the larger topic)."""
    top = [gap for _, gap in sorted(scored, key=lambda s: (-s[0], s[1][0]))[:n_hidden]]
    found = {gap[1] for gap in top if gap[1] in hidden}
    false = sum(1 for gap in top if gap[1] not in hidden)
    return {"hidden_recovered": round(len(found) / n_hidden, 4),
            "false_gap_share": round(false / len(top), 4) if top else 0.0}


def clinc150_csv(source: Path, split: str, out: Path, *, include_oos: bool = False) -> int:
    """Write one CLINC150 split (train or val) as text,label CSV; returns the number of rows."""
    import json

    data = json.loads((source / "data_trainval.json").read_text(encoding="utf-8"))
    rows = list(data[split]) + (list(data[f"oos_{split}"]) if include_oos else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return len(rows)


def split_in_val_shape(rows: Sequence[tuple[str, str]], build: int = 80) -> tuple[list[tuple[str, str]],
                                                                               list[tuple[str, str]]]:
    """Train split in val's shape, for choosing the ranking without val: each label's first `build` questions
    (in file order) build the articles, the rest are asked."""
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    building, asked = [], []
    for label in sorted(by_label):
        building.extend(by_label[label][:build])
        asked.extend(by_label[label][build:])
    return building, asked


def write_labelled(rows: Sequence[tuple[str, str]], out: Path) -> None:
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _main() -> None:  # pragma: no cover - data preparation for the evaluation
    import argparse

    parser = argparse.ArgumentParser(description="Write CLINC150's train and val splits as text,label CSV files, "
                                                 "and train in val's shape (train_build.csv, train_asked.csv).")
    parser.add_argument("source", type=Path, help="the clinc150 folder (with data_trainval.json)")
    parser.add_argument("out", type=Path, help="folder to write the CSV files into")
    args = parser.parse_args()
    for split in ("train", "val"):
        n = clinc150_csv(args.source, split, args.out / f"{split}.csv")
        print(f"{args.out / f'{split}.csv'}: {n} rows")
    building, asked = split_in_val_shape(load_labelled(args.out / "train.csv"))
    for name, part in (("train_build", building), ("train_asked", asked)):
        write_labelled(part, args.out / f"{name}.csv")
        print(f"{args.out / f'{name}.csv'}: {len(part)} rows")


if __name__ == "__main__":
    _main()

