"""Article-gap clustering at scale: time and peak memory to cluster 1,000, 10,000 and 100,000 questions.

Questions are CLINC150 texts (train split) repeated with small word-level variations up to the size,
spread over 150 intents, as a help center's unanswered questions would be. Each size runs in a fresh
child process (so peak memory is that size's own) and measures:

- `cluster`: what a full re-clustering costs once the questions are embedded: PCA, HDBSCAN on at most
  8,000 of them, attaching the rest, labels. Vectors are stored as each question arrives, so this is the
  job's cost; the target is <= 60 s and <= 4 GB at 100,000 on 2 cores.
- `embed`: all-MiniLM-L6-v2 questions per second (measured on 1,000 questions and projected), paid
  once per question when the job first sees it.
- `tfidf`: the fallback end to end (TF-IDF + LSA of every question, then clustering).
- baseline: MiniBatchKMeans told k = 150 on the same vectors, in the same process.

    python bench/gaps_scale.py                                # 1,000, 10,000, 100,000
    python bench/gaps_scale.py --quick                        # 1,000 only
    python bench/gaps_scale.py --sizes 200 --embedder tfidf   # the smoke test (tests/bench): no model to load

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLINC = ROOT.parent / "shared" / "data" / "clinc150" / "data_trainval.json"
FILLERS = ("please", "hi", "hello", "thanks", "quick question", "help", "asap", "again", "today", "now")


def questions(n: int, seed: int = 0) -> list[str]:
    """n questions: CLINC150 train texts, then variations of them (a filler word, a dropped word)."""
    rng = random.Random(seed)
    if CLINC.exists():
        base = [text for text, _ in json.loads(CLINC.read_text())["train"]]
    else:  # without the data set: synthetic topics, so the script still runs
        base = [f"topic {i % 150} question about item {i % 150} number {i}" for i in range(15_000)]
    out = list(base[:n])
    while len(out) < n:
        words = rng.choice(base).split()
        if len(words) > 3 and rng.random() < 0.5:
            del words[rng.randrange(len(words))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
        out.append(" ".join(words))
    return out


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(kind: str, n: int, embedder: str, queue: Any) -> None:
    import numpy as np

    from chatsvc.gaps import engine
    from chatsvc.gaps.embed import MiniLMVectors, TfidfVectors

    texts = questions(n)
    keys = [engine.text_key(t) for t in texts]
    figures: dict[str, Any] = {"n": n}
    if kind == "cluster":
        rng = np.random.default_rng(0)
        if embedder == "minilm" or (embedder == "auto" and MiniLMVectors.available()):
            sample = texts[: min(n, 1_000)]
            start = time.perf_counter()
            base = MiniLMVectors().encode(sample)
            figures["embed_per_s"] = round(len(sample) / (time.perf_counter() - start), 1)
            # Every question's stored vector: the sample's, with noise for the variations.
            picks = rng.integers(0, len(base), n)
            vectors = base[picks] + 0.02 * rng.standard_normal((n, base.shape[1])).astype(np.float32)
            figures["vectors"] = "minilm"
        else:
            vectors = TfidfVectors().encode(texts)
            figures["vectors"] = "tfidf"
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors.astype(np.float32)
        before = _peak_mb()
        start = time.perf_counter()
        labels = engine.cluster(vectors, keys, engine.params_for(figures["vectors"]))
        topics = int(labels.max()) + 1
        groups = [[texts[i] for i in np.flatnonzero(labels == c)[:200]] for c in range(topics)]
        engine.distinctive_terms(groups)
        figures.update(seconds=round(time.perf_counter() - start, 2), topics=topics,
                       noise_share=round(float((labels < 0).mean()), 4), peak_mb=round(_peak_mb(), 1),
                       peak_mb_before=round(before, 1))
        from sklearn.cluster import MiniBatchKMeans

        start = time.perf_counter()
        MiniBatchKMeans(n_clusters=min(150, n), random_state=0, n_init=3, batch_size=4096).fit(vectors)
        figures["kmeans_seconds"] = round(time.perf_counter() - start, 2)
    else:
        start = time.perf_counter()
        vectors = TfidfVectors().encode(texts)
        labels = engine.cluster(vectors, keys, engine.TFIDF_PARAMS)
        figures.update(seconds=round(time.perf_counter() - start, 2), topics=int(labels.max()) + 1,
                       noise_share=round(float((labels < 0).mean()), 4), peak_mb=round(_peak_mb(), 1))
    queue.put(figures)


def measure(kind: str, n: int, embedder: str = "auto") -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_run, args=(kind, n, embedder, queue))
    child.start()
    result = queue.get(timeout=3600)
    child.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 questions only")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="sizes to run")
    parser.add_argument("--embedder", choices=("auto", "minilm", "tfidf"), default="auto",
                        help="the stored vectors `cluster` works on: auto (MiniLM when installed), minilm or tfidf")
    args = parser.parse_args()
    if any(n < 10 for n in args.sizes or []):
        parser.error("--sizes: at least 10 questions")
    sizes = args.sizes or ([1_000] if args.quick else [1_000, 10_000, 100_000])
    results: dict[str, Any] = {"cluster": [], "tfidf": []}
    print(f"{'questions':>10} {'what':<8} {'seconds':>8} {'peak MB':>8} {'topics':>7} {'noise':>6} {'kmeans s':>9}")
    for n in sizes:
        for kind in ("cluster", "tfidf"):
            figures = measure(kind, n, args.embedder)
            results[kind].append(figures)
            print(f"{n:>10} {kind:<8} {figures['seconds']:>8} {figures['peak_mb']:>8} {figures['topics']:>7} "
                  f"{figures['noise_share']:>6} {figures.get('kmeans_seconds', '-'):>9}", flush=True)
    largest = results["cluster"][-1]
    embed = largest.get("embed_per_s")
    if embed:
        print(f"all-MiniLM-L6-v2: {embed} questions/s; embedding {largest['n']:,} questions once would take "
              f"{largest['n'] / embed:.0f} s")
    ratio = round(largest["seconds"] / max(largest["kmeans_seconds"], 1e-3), 2)
    print(json.dumps({"ours": results, "baselines": {"kmeans_k150_seconds": [r["kmeans_seconds"]
                                                                             for r in results["cluster"]]},
                      "ratio_to_kmeans_at_largest": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
