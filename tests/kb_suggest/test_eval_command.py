"""`chatsvc eval suggest` end to end on tiny files, and the StackFAQ converter."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from chatsvc.kb_suggest.stackfaq import convert

CONTRACT = {"hit_at_1", "hit_at_5", "mrr", "no_match_precision", "no_match_recall", "n_queries"}

ARTICLES = [
    {"id": "pw", "title": "Reset a forgotten password", "body": "Click Forgot password and follow the email link."},
    {"id": "refund", "title": "Request a refund", "body": "Annual plans are refunded within 30 days."},
    {"id": "book", "title": "Book the clubhouse", "body": "Choose a free slot in Amenities and click Book."},
    {"id": "cache", "title": "Clear your browser cache", "body": "Press Ctrl Shift R to reload without the cache."},
    {"id": "invoice", "title": "Download invoices", "body": "Billing, Invoices, Download PDF."},
    {"id": "app", "title": "Get the mobile app", "body": "Install LotWize from the App Store or Google Play."},
]
QUERIES = [
    ("forgot my password", "pw"), ("reset pasword", "pw"), ("i want my money back", "refund"),
    ("refund please", "refund"), ("reserve the clubhouse", "book"), ("book a slot", "book"),
    ("page not loading cache", "cache"), ("clear cache", "cache"), ("where are my invoices", "invoice"),
    ("download invoice pdf", "invoice"), ("iphone app", "app"), ("install the mobile app", "app"),
    ("what is the weather", None), ("recipe for pancakes", None), ("who won the match", None),
]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    try:
        import chatsvc.server_commands  # noqa: F401
    except ModuleNotFoundError:  # the serving commands live elsewhere; this test needs only `eval`
        stub = types.ModuleType("chatsvc.server_commands")
        stub.register = lambda commands: None  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "chatsvc.server_commands", stub)
    from chatsvc.cli import main

    return main


def _write(tmp_path: Path, queries: list[tuple[str, str | None]]) -> tuple[Path, Path]:
    articles = tmp_path / "articles.jsonl"
    articles.write_text("".join(json.dumps(a) + "\n" for a in ARTICLES), encoding="utf-8")
    questions = tmp_path / "queries.jsonl"
    questions.write_text("".join(json.dumps({"text": t, "article_id": g}) + "\n" for t, g in queries), encoding="utf-8")
    return articles, questions


@pytest.mark.parametrize("mode", [["--folds", "3"], ["--shipped-params"]])
def test_eval_prints_the_contract_as_last_line(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                               mode: list[str]) -> None:
    articles, queries = _write(tmp_path, QUERIES)
    assert cli(["eval", "suggest", "--articles", str(articles), "--queries", str(queries), *mode]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert set(report) == {"ours", "baselines"}
    assert set(report["baselines"]) == {"tfidf_title", "fuzz_title"}
    for figures in (report["ours"], *report["baselines"].values()):
        assert set(figures) == CONTRACT
        assert figures["n_queries"] == len(QUERIES)
        for key in CONTRACT - {"n_queries"}:
            assert 0.0 <= figures[key] <= 1.0
        assert figures["hit_at_1"] <= figures["hit_at_5"]
    assert report["ours"]["hit_at_5"] >= 0.8
    assert any("hit@1" in line for line in lines)


def test_no_match_figures_are_null_without_null_questions(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    articles, queries = _write(tmp_path, [q for q in QUERIES if q[1] is not None])
    assert cli(["eval", "suggest", "--articles", str(articles), "--queries", str(queries), "--folds", "2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for figures in (report["ours"], *report["baselines"].values()):
        assert figures["no_match_precision"] is None and figures["no_match_recall"] is None


@pytest.mark.parametrize(
    ("queries_text", "message"),
    [("{broken\n", "queries.jsonl:1"), ('{"text": "x", "article_id": "missing"}\n', "not published"),
     ('{"text": "x"}\n', "article_id")],
)
def test_user_errors_exit_2(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                            queries_text: str, message: str) -> None:
    articles, queries = _write(tmp_path, QUERIES)
    queries.write_text(queries_text, encoding="utf-8")
    assert cli(["eval", "suggest", "--articles", str(articles), "--queries", str(queries), "--shipped-params"]) == 2
    assert message in capsys.readouterr().err


def test_missing_articles_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, queries = _write(tmp_path, QUERIES)
    assert cli(["eval", "suggest", "--articles", str(tmp_path / "none.jsonl"), "--queries", str(queries)]) == 2


def test_stackfaq_converter(tmp_path: Path) -> None:
    xml = tmp_path / "faq.xml"
    threads = "".join(
        f"<qapair><rephr>\nparaphrase {i} a\n</rephr><rephr>\n*\n</rephr><rephr>how about {i}</rephr>"
        f"<question>\nQuestion {i} [closed]\n</question><answer>  Answer &lt;b&gt; {i}  </answer><answer>More</answer></qapair>"
        for i in range(20)
    )
    xml.write_text(f"<root>{threads}</root>", encoding="utf-8")
    counts = convert(xml, tmp_path / "out")
    assert counts == {"threads": 20, "queries": 40, "heldout_threads": 3, "heldout_null_queries": 6}
    articles = [json.loads(line) for line in (tmp_path / "out" / "articles.jsonl").read_text().splitlines()]
    assert articles[0]["title"] == "Question 0" and articles[0]["id"] == "sf-001"
    assert articles[0]["body"].split("\n\n")[1] == "More"
    held = [json.loads(line) for line in (tmp_path / "out" / "heldout" / "queries.jsonl").read_text().splitlines()]
    held_articles = (tmp_path / "out" / "heldout" / "articles.jsonl").read_text().splitlines()
    assert len(held_articles) == 17 and sum(q["article_id"] is None for q in held) == 6
