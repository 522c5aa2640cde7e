"""bench/gaps_scale.py end to end on a tiny size: it runs, prints its table and its figures, and its last line
is the JSON contract. Timings and memory are not checked: they depend on the machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gaps_scale.py"
CLUSTER_KEYS = {"n", "vectors", "seconds", "topics", "noise_share", "peak_mb", "peak_mb_before", "kmeans_seconds"}
TFIDF_KEYS = {"n", "seconds", "topics", "noise_share", "peak_mb"}


def test_gaps_scale_tiny_run_prints_its_figures_and_the_contract(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--sizes", "200", "--embedder", "tfidf"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["questions", "what", "seconds", "peak", "MB", "topics", "noise", "kmeans", "s"]
    rows = [line.split() for line in lines[1:-1]]
    assert [row[:2] for row in rows] == [["200", "cluster"], ["200", "tfidf"]], lines

    result = json.loads(lines[-1])
    assert set(result) == {"ours", "baselines", "ratio_to_kmeans_at_largest"}
    (cluster,), (tfidf,) = result["ours"]["cluster"], result["ours"]["tfidf"]
    assert set(cluster) == CLUSTER_KEYS and set(tfidf) == TFIDF_KEYS
    assert cluster["n"] == tfidf["n"] == 200 and cluster["vectors"] == "tfidf"
    for figures in (cluster, tfidf):
        for key in figures.keys() - {"vectors"}:
            value = figures[key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, (key, value)
        assert figures["topics"] >= 1 and 0 <= figures["noise_share"] < 1 and figures["peak_mb"] > 0
    # The table shows the same figures as the JSON line.
    assert rows[0][2:5] == [str(cluster["seconds"]), str(cluster["peak_mb"]), str(cluster["topics"])]
    assert result["baselines"] == {"kmeans_k150_seconds": [cluster["kmeans_seconds"]]}
    assert result["ratio_to_kmeans_at_largest"] >= 0


def test_gaps_scale_refuses_a_size_too_small_to_cluster(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--sizes", "3"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "at least 10" in done.stderr
