"""`chatsvc eval gaps` and `chatsvc gaps` as a user runs them: real subprocesses, real files, real store."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.gaps.support import TOPICS, seed_store

EXTRA = {"pets": ["are dogs allowed in the building", "pet policy for cats", "how many pets can I have",
                  "do I need to register my dog", "pet deposit amount", "is there a weight limit for pets",
                  "can I keep a rabbit as a pet"]}


def chatsvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chatsvc", *args], capture_output=True, text=True, timeout=300)


def write_csv(path: Path, topics: dict[str, list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for label, texts in topics.items():
            writer.writerows((text, label) for text in texts)
    return path


def test_eval_gaps_prints_figures_beside_the_baseline(tmp_path: Path) -> None:
    queries = write_csv(tmp_path / "q.csv", {**TOPICS, **EXTRA})
    done = chatsvc("eval", "gaps", "--queries", str(queries), "--embedder", "tfidf")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[1].split()[:3] == ["system", "NMI", "ARI"] and lines[3].startswith("ours")
    assert lines[4].startswith("kmeans_true_k")
    report = json.loads(lines[-1])
    assert set(report["ours"]) >= {"nmi", "ari", "acc", "noise_share", "labels_recovered", "n_clusters", "seconds"}
    assert set(report["baselines"]["kmeans_true_k"]) >= {"nmi", "ari", "acc", "noise_share", "labels_recovered"}
    assert report["ours"]["nmi"] > 0.5 and report["ours"]["n_clusters"] >= 3

    hidden = chatsvc("eval", "gaps", "--queries", str(queries), "--hide-articles", "0.25", "--embedder", "tfidf")
    assert hidden.returncode == 0, hidden.stderr
    figures = json.loads(hidden.stdout.strip().splitlines()[-1])["ours"]
    assert 0 <= figures["hidden_recovered"] <= 1 and 0 <= figures["false_gap_share"] <= 1
    assert figures["hidden_labels"] == 1


def test_eval_gaps_explains_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question,intent\nhello,greet\n", encoding="utf-8")
    done = chatsvc("eval", "gaps", "--queries", str(bad), "--embedder", "tfidf")
    assert done.returncode == 2 and "text and label" in done.stderr
    missing = chatsvc("eval", "gaps", "--queries", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_gaps_command_ranks_the_gaps_of_a_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    seed_store(url)
    done = chatsvc("gaps", "--database-url", url, "--embedder", "tfidf", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["run"]["gaps"] == 3
    assert [g["volume"] for g in result["items"]] == sorted((g["volume"] for g in result["items"]), reverse=True)
    text = chatsvc("gaps", "--database-url", url, "--embedder", "tfidf", "--assign")
    assert text.returncode == 0 and "write a new article" in text.stdout
