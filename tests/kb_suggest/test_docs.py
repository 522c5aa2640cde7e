"""docs/suggestions.md states the public API, the evaluation contract and the engine's signals."""

from __future__ import annotations

from pathlib import Path

import chatsvc.kb_suggest
from chatsvc.kb_suggest.evaluate import BASELINES, METRIC_KEYS
from chatsvc.kb_suggest.params import FEATURES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_public_api_is_documented_and_importable() -> None:
    text = (DOCS / "suggestions.md").read_text(encoding="utf-8")
    api = ["Article", "SuggestionIndex", "Suggestions", "Match", "load_articles", "dump_articles", "render_markdown"]
    assert f"from chatsvc.kb_suggest import {', '.join(api)}" in text
    for name in api:
        assert getattr(chatsvc.kb_suggest, name) is not None
    assert "Match(article_id, title, score, passage, slug)" in text


def test_evaluation_contract_is_documented() -> None:
    text = (DOCS / "suggestions.md").read_text(encoding="utf-8")
    for key in (*METRIC_KEYS, *BASELINES):
        assert f"`{key}`" in text or f'"{key}"' in text, key
    assert "--shipped-params" in text


def test_every_signal_is_named_in_the_params_module_and_counted_in_the_docs() -> None:
    text = (DOCS / "suggestions.md").read_text(encoding="utf-8")
    counts = {6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
    assert f"{counts[len(FEATURES)]} signals" in text


def test_benchmark_page_gives_its_commands() -> None:
    text = (DOCS / "benchmarks" / "suggestions.md").read_text(encoding="utf-8")
    assert "python bench/suggest_latency.py" in text
    assert "python -m chatsvc.kb_suggest.stackfaq" in text
    assert "chatsvc eval suggest" in text
