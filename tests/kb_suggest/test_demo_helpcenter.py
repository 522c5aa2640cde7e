"""The demo help center and its labelled questions are complete and consistent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import chatsvc.kb_suggest
from chatsvc.kb_suggest import load_articles

DEMO = Path(chatsvc.kb_suggest.__file__).resolve().parent.parent / "demo"


def test_demo_articles_are_valid_and_published() -> None:
    articles, problems = load_articles(DEMO / "helpcenter")
    assert problems == []
    assert len(articles) >= 40
    for article in articles:
        assert article.published and article.locale == "en" and article.tags
        words = len(re.findall(r"\w+", article.body))
        assert 150 <= words <= 400, (article.id, words)
    ids = {a.id for a in articles}
    for article in articles:  # internal links point at existing articles
        for target in re.findall(r"\]\(([a-z0-9-]+)\)", article.body):
            assert target in ids, (article.id, target)


def test_demo_queries_point_at_existing_articles() -> None:
    ids = {a.id for a in load_articles(DEMO / "helpcenter")[0]}
    lines = (DEMO / "helpcenter_queries.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line) for line in lines]
    assert len(queries) >= 200
    assert all(set(q) == {"text", "article_id"} and q["text"].strip() for q in queries)
    assert all(q["article_id"] is None or q["article_id"] in ids for q in queries)
    unanswerable = sum(q["article_id"] is None for q in queries) / len(queries)
    assert 0.12 <= unanswerable <= 0.2
    assert {q["article_id"] for q in queries} - {None} == ids  # every article is asked about


def test_package_import_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, chatsvc.kb_suggest; print(sorted(m for m in ('numpy','scipy','sklearn','markdown_it','nh3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
