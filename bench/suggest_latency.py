"""Latency, build time and memory of article suggestions over synthetic knowledge bases.

    python bench/suggest_latency.py            # 100, 1,000, 10,000 and 100,000 articles
    python bench/suggest_latency.py --quick    # without 100,000

Articles are generated from a fixed pseudo-word vocabulary with Zipf-distributed word frequencies
(seed 0): titles of 4-9 words, 2-4 tags, bodies of 150-300 words in 3-6 paragraphs. Questions take 3-7
words from one article's title and body, a third of them with one typo. For each size it prints the
p50 and p99 of one `suggest(text, k=3)` call in CPU time of this process (on a shared machine the
wall-clock time also counts waiting for a core; it is printed too), the same for a baseline measured in
the same run (plain TF-IDF cosine over titles with scikit-learn, top 3) and their ratio, the time to
build the index, the time for `with_article` (replace one article) and the resident memory the index
added. Everything runs on one thread.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatsvc.kb_suggest.articles import Article  # noqa: E402
from chatsvc.kb_suggest.engine import SuggestionIndex  # noqa: E402

SIZES = (100, 1_000, 10_000, 100_000)
VOCABULARY = 30_000
SEED = 0
_SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


class Generator:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(VOCABULARY, self.rng)
        ranks = np.arange(1, len(self.words) + 1)
        weights = 1.0 / ranks**1.07
        self.cumulative = np.cumsum(weights / weights.sum())
        self.np_rng = np.random.default_rng(seed)

    def sample(self, n: int) -> list[str]:
        picks = np.searchsorted(self.cumulative, self.np_rng.random(n))
        return [self.words[min(i, len(self.words) - 1)] for i in picks]

    def article(self, number: int) -> Article:
        rng = self.rng
        title = " ".join(self.sample(rng.randint(4, 9))).capitalize()
        paragraphs = []
        remaining = rng.randint(150, 300)
        for _ in range(rng.randint(3, 6)):
            size = max(10, remaining // 2)
            remaining -= size
            sentences = []
            words = self.sample(size)
            for start in range(0, len(words), 12):
                sentences.append(" ".join(words[start : start + 12]).capitalize() + ".")
            paragraphs.append(" ".join(sentences))
        return Article(id=f"a{number}", title=title, body="\n\n".join(paragraphs), tags=self.sample(rng.randint(2, 4)))

    def question(self, article: Article) -> str:
        rng = self.rng
        pool = article.title.lower().split() + rng.sample(article.body.lower().replace(".", "").split(), 8)
        words = rng.sample(pool, min(len(pool), rng.randint(3, 7)))
        if rng.random() < 1 / 3:
            i = rng.randrange(len(words))
            word = words[i]
            if len(word) > 3:
                j = rng.randrange(len(word) - 1)
                words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        return "how do i " + " ".join(words)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the peak, which only grows
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def bench_size(size: int, n_questions: int) -> dict[str, float | int]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    generator = Generator(SEED + size)
    articles = [generator.article(i) for i in range(size)]
    questions = [generator.question(generator.rng.choice(articles)) for _ in range(n_questions)]

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    index = SuggestionIndex.build(articles)
    build_seconds = time.perf_counter() - started
    gc.collect()
    memory = rss_bytes() - before

    changed = Article(id=articles[0].id, title=articles[0].title + " updated", body=articles[0].body, tags=articles[0].tags)
    started = time.perf_counter()
    updated = index.with_article(changed)
    update_seconds = time.perf_counter() - started
    assert changed.id in updated

    for question in questions[:20]:
        index.suggest(question)
    ours, ours_wall = [], []
    for question in questions:
        started, started_cpu = time.perf_counter(), time.process_time()
        index.suggest(question, k=3)
        ours.append(time.process_time() - started_cpu)
        ours_wall.append(time.perf_counter() - started)

    vectorizer = TfidfVectorizer()
    titles = vectorizer.fit_transform([a.title for a in articles]).T.tocsr()
    baseline = []
    for question in questions:
        started_cpu = time.process_time()
        scores = (vectorizer.transform([question]) @ titles).toarray()[0]
        top = np.argpartition(-scores, min(3, size - 1))[:3]
        top[np.argsort(-scores[top])]
        baseline.append(time.process_time() - started_cpu)

    p50, p99 = percentiles(ours)
    w50, w99 = percentiles(ours_wall)
    b50, b99 = percentiles(baseline)
    return {
        "articles": size,
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "wall_p50_ms": round(w50, 3),
        "wall_p99_ms": round(w99, 3),
        "baseline_p50_ms": round(b50, 3),
        "baseline_p99_ms": round(b99, 3),
        "ratio_p50": round(p50 / b50, 2),
        "ratio_p99": round(p99 / b99, 2),
        "build_s": round(build_seconds, 3),
        "with_article_s": round(update_seconds, 4),
        "index_mb": round(memory / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 100,000-article knowledge base")
    parser.add_argument("--questions", type=int, default=500, help="timed questions per size (default 500)")
    args = parser.parse_args(argv)
    sizes = [s for s in SIZES if not (args.quick and s >= 100_000)]
    header = (f"{'articles':>9} {'p50 ms':>8} {'p99 ms':>8} {'base p50':>9} {'base p99':>9} {'x p50':>6} "
              f"{'x p99':>6} {'wall p50':>9} {'wall p99':>9} {'build s':>8} {'update s':>9} {'MB':>7}")
    print("CPU time per question (wall-clock in the 'wall' columns); baseline: TF-IDF title cosine")
    print(header)
    rows = []
    for size in sizes:
        row = bench_size(size, args.questions)
        rows.append(row)
        print(f"{row['articles']:>9,} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['baseline_p50_ms']:>9.2f} "
              f"{row['baseline_p99_ms']:>9.2f} {row['ratio_p50']:>6.2f} {row['ratio_p99']:>6.2f} "
              f"{row['wall_p50_ms']:>9.2f} {row['wall_p99_ms']:>9.2f} "
              f"{row['build_s']:>8.2f} {row['with_article_s']:>9.3f} {row['index_mb']:>7.1f}", flush=True)
    print(json.dumps({"suggest_latency": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
