"""The clustering core on synthetic vectors: topics without k, noise left alone, floods, stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from chatsvc.gaps import engine
from chatsvc.gaps.embed import TfidfVectors, from_blobs, to_blob


def blobs(k: int, per: int, dims: int = 48, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dims))
    points = np.concatenate([c + spread * np.linalg.norm(c) / np.sqrt(dims) * rng.normal(size=(per, dims))
                             for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), np.repeat(np.arange(k), per)


def keys(n: int) -> list[str]:
    return [f"q{i}" for i in range(n)]


def test_finds_the_number_of_topics_itself() -> None:
    for k in (3, 9):
        points, truth = blobs(k, 12, seed=k)
        labels = engine.cluster(points, keys(len(points)), engine.ClusterParams())
        assert labels.max() + 1 == k
        # Every topic is pure and whole.
        for c in range(k):
            assert len(set(truth[labels == c])) == 1
        assert (labels >= 0).mean() == 1.0


def test_outliers_stay_noise() -> None:
    points, _ = blobs(4, 15, seed=1)
    rng = np.random.default_rng(7)
    outliers = rng.normal(size=(4, points.shape[1])).astype(np.float32)  # fewer than a topic needs
    outliers /= np.linalg.norm(outliers, axis=1, keepdims=True)
    labels = engine.cluster(np.concatenate([points, outliers]), keys(64), engine.ClusterParams())
    assert labels.max() + 1 == 4
    assert (labels[-4:] == engine.NOISE).all() and (labels[:-4] >= 0).all()


@pytest.mark.parametrize("n", [0, 1, 4])
def test_too_few_questions_make_no_topic(n: int) -> None:
    points, _ = blobs(1, max(n, 1))
    labels = engine.cluster(points[:n], keys(n), engine.ClusterParams())
    assert labels.shape == (n,) and (labels == engine.NOISE).all()


def test_thousands_of_identical_questions_are_one_topic_and_cheap() -> None:
    one = blobs(1, 1)[0]
    flood = np.repeat(one, 3000, axis=0)
    labels = engine.cluster(flood, ["same"] * 3000, engine.ClusterParams())
    assert set(labels.tolist()) == {0}


def test_more_points_than_the_sample_are_attached() -> None:
    points, truth = blobs(5, 300, seed=3)
    labels = engine.cluster(points, keys(len(points)), engine.ClusterParams(max_points=400))
    assert labels.max() + 1 == 5 and (labels >= 0).mean() > 0.99
    for c in range(5):
        assert len(set(truth[labels == c])) == 1


def test_deterministic() -> None:
    points, _ = blobs(6, 10, seed=4)
    a = engine.cluster(points, keys(60), engine.ClusterParams())
    b = engine.cluster(points, keys(60), engine.ClusterParams())
    assert (a == b).all()


def test_labels_are_distinctive_terms_of_any_script() -> None:
    topics = [["How do I change the gate code?", "gate code not working", "new gate code please"],
              ["parking permit for my guest", "renew my parking permit", "lost parking permit"],
              ["Как изменить код ворот?", "код ворот не работает", "новый код ворот"]]
    terms = engine.distinctive_terms(topics)
    assert terms[0][0] == "gate code" and terms[1][0] == "parking permit" and terms[2][0] == "код ворот"
    assert engine.label_from_terms(terms[0], "x").startswith("gate code")
    assert engine.label_from_terms([], "A question that is the fallback label") == "A question that is the fallback label"


def test_previous_ids_follow_their_questions() -> None:
    centres = np.eye(3, dtype=np.float32)
    previous = [engine.PreviousTopic("gA", frozenset({1, 2, 3}), centres[0]),
                engine.PreviousTopic("gB", frozenset({4, 5, 6}), centres[1])]
    # Topic order changed, one topic grew, one is new.
    matched = engine.match_previous([{4, 5, 6, 7}, {1, 2, 3}, {8, 9, 10}], centres[[1, 0, 2]], previous)
    assert matched == {0: "gB", 1: "gA"}
    # All-new questions on the same topic keep the id by centroid.
    assert engine.match_previous([{20, 21}], centres[[0]], previous) == {0: "gA"}


def test_figures_count_each_visitor_once_and_compare_periods() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    asked = [engine.Asked("spammer", now - timedelta(hours=i), None) for i in range(500)]
    asked += [engine.Asked(f"v{i}", now - timedelta(days=1), "P1" if i == 0 else None) for i in range(3)]
    asked += [engine.Asked("old", now - timedelta(days=10), None)]
    fig = engine.figures(asked, now, timedelta(days=7))
    assert fig.volume == 5 and fig.questions == 504
    assert (fig.current, fig.previous) == (4, 2) and fig.priority_mix == {"P1": 1}  # the spammer asked in both
    quiet = engine.figures([engine.Asked(f"v{i}", now - timedelta(days=1), None) for i in range(5)], now,
                           timedelta(days=7))
    urgent = engine.figures([engine.Asked(f"v{i}", now - timedelta(days=1), "P1") for i in range(5)], now,
                            timedelta(days=7))
    assert urgent.impact > quiet.impact
    assert engine.novelty(0.9) < engine.novelty(0.1) == engine.novelty(None) == 1.0


def test_novelty_measures_the_article_from_the_topics_radius_and_counts_answered_neighbours() -> None:
    # The same article cosine (0.55) is inside a loose topic (radius: mean cosine 0.7) and far outside a tight
    # one (0.95): the first is probably that article's topic asked in other words, the second a new topic.
    assert engine.novelty(0.55, 0.7) == engine.NOVELTY_WEIGHT
    assert engine.novelty(0.4, 0.95) == 1.0
    assert engine.novelty(0.55, 0.925) == pytest.approx((1 + engine.NOVELTY_WEIGHT) / 2)  # halfway: linear
    # Answered share: none answered nearby counts 1, 40 % or more halves, and both factors multiply.
    assert engine.novelty(None, 0.8, 0.0) == 1.0 and engine.novelty(None, 0.8, 0.9) == engine.NOVELTY_WEIGHT
    assert engine.novelty(0.55, 0.7, 0.5) == engine.NOVELTY_WEIGHT ** 2

    centre = np.asarray([1.0, 0.0], dtype=np.float32)
    members = np.asarray([[1.0, 0.0], [0.8, 0.6]], dtype=np.float32)
    assert engine.cohesion(members, centre) == pytest.approx(0.9)
    answered = np.asarray([[1.0, 0.0], [0.95, 0.312], [0.0, 1.0]], dtype=np.float32)  # two inside the radius
    assert engine.answered_share(answered, centre, 0.9, unanswered=2) == pytest.approx(0.5)
    assert engine.answered_share(answered, centre, 0.9, unanswered=2, weight=3.0) == pytest.approx(0.75)
    assert engine.answered_share(np.zeros((0, 0), dtype=np.float32), centre, 0.9, unanswered=2) == 0.0


def test_tfidf_vectors_and_blobs() -> None:
    texts = ["gate code", "gate code broken", "pool hours", "", "ворота", "门禁密码"]
    vectors = TfidfVectors().encode(texts)
    assert vectors.shape[0] == len(texts) and np.isfinite(vectors).all()
    assert TfidfVectors().encode([]).shape[0] == 0
    assert TfidfVectors().encode(["!!!"]).shape[0] == 1
    restored = from_blobs([to_blob(v) for v in vectors[:3]])
    assert np.allclose(restored, vectors[:3], atol=1e-2)
