"""The clustering core of article-gap detection: vectors in, topics out. No I/O.

1. `cluster`: HDBSCAN (scikit-learn) on the question vectors reduced by PCA. The number of topics is
   whatever density finds; points in no dense region are noise (label -1). A question that sits close
   enough to a topic's centroid (`attach_similarity`, a cosine) then joins it; the rest stay noise.
   HDBSCAN is quadratic in time, so past `max_points` it runs on a seeded sample and every other question
   is attached to the nearest centroid the same way; identical questions enter the sample at most
   `min_cluster_size + 1` times, so a flood of one question costs nothing and still makes a topic.
2. `describe`: each topic's most distinctive terms by class-based TF-IDF (terms frequent in the topic and
   rare in the others), bigrams first, and the questions nearest its centroid.
3. `match_previous`: new topics take the id of the previous run's topic they share the most questions
   with (Hungarian assignment on Jaccard overlap, or centroid cosine when the questions are all new),
   so a gap keeps its id, its dismissal and its draft across runs.
4. `impact`: who asked (distinct visitors), how urgent (ticket priorities), whether it grows, and how
   new it is to the help center (`novelty`).

Parameters were chosen on CLINC150's train split (docs/gaps.md); the evaluation reports its val split.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from chatsvc.kb_suggest import analysis

if TYPE_CHECKING:
    from numpy.typing import NDArray

NOISE = -1
PRIORITY_WEIGHT = {"P1": 4.0, "P2": 2.0, "P3": 1.0, "P4": 0.5}


@dataclass(frozen=True, slots=True)
class ClusterParams:
    reduce_dims: int = 32
    min_cluster_size: int = 5
    min_samples: int = 2
    #: A noise or unsampled question joins the nearest topic when its cosine to the centroid is at least this.
    attach_similarity: float = 0.5
    #: HDBSCAN runs on at most this many questions; the others are attached to the topics found.
    max_points: int = 8_000
    seed: int = 0


MINILM_PARAMS = ClusterParams()
#: TF-IDF + LSA: the attach threshold chosen the same way (CLINC150 train, samples of 20 per label).
TFIDF_PARAMS = ClusterParams(attach_similarity=0.4)


def params_for(embedder_name: str) -> ClusterParams:
    return TFIDF_PARAMS if embedder_name == "tfidf" else MINILM_PARAMS


def _normalise(matrix: NDArray[np.floating]) -> NDArray[np.float32]:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def text_key(text: str) -> str:
    """Questions that differ only in case, accents, punctuation or spacing share a key."""
    return " ".join(analysis.words(analysis.normalize(text)))


def _sample(keys: Sequence[str], params: ClusterParams) -> NDArray[np.int64]:
    """Indices HDBSCAN sees: each distinct question at most min_cluster_size + 1 times, then a seeded sample."""
    cap = params.min_cluster_size + 1
    seen: Counter[str] = Counter()
    picked = []
    for i, key in enumerate(keys):
        if seen[key] < cap:
            seen[key] += 1
            picked.append(i)
    chosen = np.asarray(picked, dtype=np.int64)
    if len(chosen) > params.max_points:
        rng = np.random.default_rng(params.seed)
        chosen = np.sort(rng.choice(chosen, params.max_points, replace=False))
    return chosen


def centroids(vectors: NDArray[np.float32], labels: NDArray[np.int64]) -> NDArray[np.float32]:
    """Unit-length mean of each topic's vectors, row i for topic i."""
    k = int(labels.max()) + 1 if len(labels) else 0
    if k == 0:
        return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    mask = labels >= 0
    np.add.at(sums, labels[mask], vectors[mask])
    return _normalise(sums)


def attach(vectors: NDArray[np.float32], centres: NDArray[np.float32], min_similarity: float,
           chunk: int = 4096) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Nearest centre of each vector when its cosine reaches min_similarity, else NOISE; and the cosine."""
    n = len(vectors)
    labels = np.full(n, NOISE, dtype=np.int64)
    best = np.zeros(n, dtype=np.float32)
    if n == 0 or len(centres) == 0:
        return labels, best
    for start in range(0, n, chunk):
        sims = vectors[start:start + chunk] @ centres.T
        nearest = sims.argmax(axis=1)
        score = sims[np.arange(len(nearest)), nearest]
        ok = score >= min_similarity
        labels[start:start + chunk] = np.where(ok, nearest, NOISE)
        best[start:start + chunk] = score
    return labels, best


def _hdbscan(points: NDArray[np.float32], params: ClusterParams) -> NDArray[np.int64]:
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    n, d = points.shape
    dims = min(params.reduce_dims, d, n - 1)
    reduced = points
    if 2 <= dims < d:
        reduced = _normalise(PCA(n_components=dims, random_state=params.seed).fit_transform(points))
    reduced = np.asarray(reduced, dtype=np.float64)
    min_samples = min(params.min_samples, n - 1)
    labels = HDBSCAN(min_cluster_size=params.min_cluster_size, min_samples=max(min_samples, 1),
                     cluster_selection_method="eom", copy=True).fit_predict(reduced)
    if labels.max() < 0:
        # HDBSCAN never returns a single topic on its own; one tight group (a flood of one question) is one.
        centre = _normalise(points.mean(axis=0, keepdims=True))[0]
        close = points @ centre >= max(params.attach_similarity, 0.6)
        if close.sum() >= params.min_cluster_size:
            labels = np.where(close, 0, NOISE)
    return np.asarray(labels, dtype=np.int64)


def cluster(vectors: NDArray[np.float32], keys: Sequence[str], params: ClusterParams) -> NDArray[np.int64]:
    """Topic of each question (0..k-1) or NOISE. Deterministic for the same input and parameters."""
    n = len(vectors)
    labels = np.full(n, NOISE, dtype=np.int64)
    if n < params.min_cluster_size or vectors.ndim != 2 or vectors.shape[1] == 0:
        return labels
    chosen = _sample(keys, params)
    if len(chosen) < params.min_cluster_size:
        return labels
    sampled = _hdbscan(vectors[chosen], params)
    if sampled.max() < 0:
        return labels
    inner = np.full(n, NOISE, dtype=np.int64)
    inner[chosen] = sampled
    centres = centroids(vectors, inner)
    attached, _ = attach(vectors, centres, params.attach_similarity)
    # HDBSCAN's members stay where it put them unless far from their topic's centroid in the full space
    # (density in the reduced space can pull a stray in); noise and unsampled questions are attached.
    own = np.full(n, -np.inf, dtype=np.float32)
    members = inner >= 0
    own[members] = np.einsum("ij,ij->i", vectors[members], centres[inner[members]])
    keep = members & (own >= params.attach_similarity)
    labels = np.where(keep, inner, attached)
    return _renumber(labels)


def _renumber(labels: NDArray[np.int64]) -> NDArray[np.int64]:
    """Topics numbered 0..k-1 by decreasing size (ties by first member), noise stays NOISE."""
    present = [int(c) for c in np.unique(labels) if c >= 0]
    sizes = {c: int((labels == c).sum()) for c in present}
    first = {c: int(np.argmax(labels == c)) for c in present}
    order = sorted(present, key=lambda c: (-sizes[c], first[c]))
    mapping = {old: new for new, old in enumerate(order)}
    return np.asarray([mapping.get(int(c), NOISE) for c in labels], dtype=np.int64)


# ------------------------------------------------------------------ labels

_BIGRAM_BONUS = 1.5
_LABEL_TERMS = 3


def _label_tokens(text: str) -> list[str]:
    tokens = [w for w in analysis.words(analysis.normalize(text)) if w not in analysis.STOP_WORDS and not w.isdigit()]
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def distinctive_terms(texts_by_topic: Sequence[Sequence[str]], top: int = 8) -> list[list[str]]:
    """Class-based TF-IDF: per topic, the terms frequent in it and rare across topics, best first.

    Counted once per question, so one long question cannot dominate; bigrams get a bonus because a
    phrase ("gate code") reads better than its words, and a word already in a chosen bigram is skipped."""
    counts = [Counter(t for text in texts for t in set(_label_tokens(text))) for texts in texts_by_topic]
    topic_freq: Counter[str] = Counter()
    for c in counts:
        topic_freq.update(c.keys())
    n_topics = max(len(counts), 1)
    out = []
    for c, texts in zip(counts, texts_by_topic):
        size = max(len(texts), 1)
        scored = []
        for term, count in c.items():
            if count < 2 and size > 2:
                continue
            idf = math.log(1 + n_topics / topic_freq[term])
            weight = (count / size) * idf * (_BIGRAM_BONUS if " " in term else 1.0)
            scored.append((weight, term))
        scored.sort(key=lambda s: (-s[0], s[1]))
        chosen: list[str] = []
        stems: set[str] = set()
        for _, term in scored:
            term_stems = {analysis.stem(w) for w in term.split(" ")}
            if term_stems & stems:  # "pet" after "pets", or a word of a chosen phrase
                continue
            chosen.append(term)
            stems |= term_stems
            if len(chosen) >= top:
                break
        out.append(chosen)
    return out


def label_from_terms(terms: Sequence[str], fallback: str) -> str:
    if not terms:
        return _clip(fallback, 80)
    return ", ".join(terms[:_LABEL_TERMS])


def _clip(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


def representatives(vectors: NDArray[np.float32], texts: Sequence[str], centre: NDArray[np.float32],
                    k: int = 5) -> list[int]:
    """Positions of up to k distinct questions nearest the centre (duplicates skipped)."""
    if len(texts) == 0:
        return []
    order = np.argsort(-(vectors @ centre), kind="stable")
    seen: set[str] = set()
    out = []
    for i in order:
        key = text_key(texts[int(i)])
        if key in seen:
            continue
        seen.add(key)
        out.append(int(i))
        if len(out) >= k:
            break
    return out


# ------------------------------------------------------------------ stable ids

@dataclass(frozen=True, slots=True)
class PreviousTopic:
    gap_id: str
    members: frozenset[int]
    centre: NDArray[np.float32] | None


def match_previous(members: Sequence[set[int]], centres: NDArray[np.float32], previous: Sequence[PreviousTopic],
                   min_overlap: float = 0.2, min_cosine: float = 0.85) -> dict[int, str]:
    """New topic index -> previous gap id, one to one: by question overlap (Jaccard), else centroid cosine."""
    if not members or not previous:
        return {}
    from scipy.optimize import linear_sum_assignment

    score = np.zeros((len(members), len(previous)), dtype=np.float64)
    for j, prev in enumerate(previous):
        for i, mine in enumerate(members):
            if prev.members:
                inter = len(mine & prev.members)
                if inter:
                    score[i, j] = inter / len(mine | prev.members)
            if score[i, j] < min_overlap and prev.centre is not None and len(prev.centre) == centres.shape[1]:
                cosine = float(centres[i] @ prev.centre)
                if cosine >= min_cosine:
                    score[i, j] = max(score[i, j], min_overlap * cosine)  # an overlap match always wins
    rows, cols = linear_sum_assignment(-score)
    return {int(i): previous[j].gap_id for i, j in zip(rows, cols)
            if score[i, j] >= min_overlap * min_cosine and score[i, j] > 0}


# ------------------------------------------------------------------ volume, trend, impact

@dataclass(frozen=True, slots=True)
class Asked:
    """One question of a topic, as far as ranking is concerned."""

    asker: str  # visitor id, or a per-question id when nobody is known
    created_at: datetime
    priority: str | None


@dataclass(frozen=True, slots=True)
class Figures:
    volume: int  # distinct askers: a visitor who asks ten times counts once
    questions: int
    current: int  # distinct askers in the last period
    previous: int  # ... and in the period before it
    trend: float  # (current + 1) / (previous + 1)
    priority_mix: dict[str, int]
    impact: float


def figures(asked: Sequence[Asked], now: datetime, period: timedelta) -> Figures:
    askers = {a.asker for a in asked}
    current = {a.asker for a in asked if a.created_at > now - period}
    previous = {a.asker for a in asked if now - 2 * period < a.created_at <= now - period}
    mix = Counter(a.priority for a in asked if a.priority)
    trend = (len(current) + 1) / (len(previous) + 1)
    impact = impact_score(len(askers), mix, trend)
    return Figures(volume=len(askers), questions=len(asked), current=len(current), previous=len(previous),
                   trend=round(trend, 3), priority_mix=dict(sorted(mix.items())), impact=impact)


#: Novelty, the last factor of impact: is the topic new to the help center, or an existing article's topic
#: asked in words the article lacks? Two measures, each worth at most a halving (chosen on CLINC150 train,
#: docs/gaps.md):
#: - distance: how far outside the topic its nearest published article lies, as the article's cosine
#:   distance to the topic's centre beyond the mean distance of the topic's own questions (its radius). An
#:   article within NEAR_ARTICLE of the radius: × 0.5; FAR_ARTICLE or more beyond it: × 1; linear between.
#:   A step on the plain cosine cannot tell a loose topic beside its own article from a tight new topic
#:   beside a sibling article; measured from the radius it can.
#: - answered share: of the questions asked within the topic's radius of its centre, the share the bot
#:   answered (offered articles nobody rejected), against the topic's own unanswered questions. None: × 1;
#:   ANSWERED_SHARE or more: × 0.5; linear between. Most people asking this get an article already.
NEAR_ARTICLE = 0.25
FAR_ARTICLE = 0.5
ANSWERED_SHARE = 0.4
NOVELTY_WEIGHT = 0.5


def cohesion(vectors: NDArray[np.float32], centre: NDArray[np.float32]) -> float:
    """Mean cosine of a topic's questions to its centre: 1 - its radius."""
    return float((vectors @ centre).mean()) if len(vectors) else 1.0


def answered_share(answered: NDArray[np.float32], centre: NDArray[np.float32], radius_cosine: float,
                   unanswered: int, weight: float = 1.0) -> float:
    """Share answered among the questions within the topic's radius: answered ones (each counting `weight`,
    for a sample) against the topic's `unanswered` questions."""
    if len(answered) == 0 or answered.shape[1] != centre.shape[0]:
        return 0.0
    inside = float(np.count_nonzero(answered @ centre >= radius_cosine)) * weight
    return inside / (inside + unanswered) if inside + unanswered > 0 else 0.0


def _ramp_down(x: float, start: float, end: float) -> float:
    """1 at or below `start`, NOVELTY_WEIGHT at or above `end`, linear between."""
    t = min(max((x - start) / (end - start), 0.0), 1.0)
    return 1.0 - (1.0 - NOVELTY_WEIGHT) * t


def novelty(article_similarity: float | None, topic_cohesion: float = 1.0, answered: float = 0.0) -> float:
    """Impact factor in [NOVELTY_WEIGHT², 1]: 1 for a topic nothing answers and no article is near."""
    factor = _ramp_down(answered, 0.0, ANSWERED_SHARE)
    if article_similarity is not None:
        beyond = topic_cohesion - article_similarity  # (1 - article_similarity) - (1 - topic_cohesion)
        factor *= _ramp_down(-beyond, -FAR_ARTICLE, -NEAR_ARTICLE)
    return factor


def impact_score(volume: int, priority_mix: dict[str, int], trend: float) -> float:
    """Distinct askers, weighted by the urgency of the linked tickets and by growth.

    Priority: the tickets' mean weight (P1 4, P2 2, P3 1, P4 0.5) over the questions that became tickets,
    counted for those only; growth: the square root of the trend, kept between 0.5 and 2."""
    tickets = sum(priority_mix.values())
    urgency = 1.0
    if tickets:
        urgency = sum(PRIORITY_WEIGHT.get(p, 1.0) * n for p, n in priority_mix.items()) / tickets
        urgency = 1.0 + (urgency - 1.0) * min(tickets / max(volume, 1), 1.0)
    growth = min(max(math.sqrt(trend), 0.5), 2.0)
    return round(volume * urgency * growth, 3)
