"""Article files: both formats round-trip, broken files are reported by name and line, diffs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvc.kb_suggest import Article, dump_articles, load_articles
from chatsvc.kb_suggest.articles import diff_articles, make_slug

ARTICLES = [
    Article(id="reset-password", title="Reset a forgotten password", body="Click **Forgot password?**.\n\n- one\n- two",
            tags=["login", "password"], slug="reset-password"),
    Article(id="42", title="Café opening: ünïcode & <angle> \"quotes\": yes", body="Body with: colons\n---\nand a rule",
            tags=[], locale="fr", status="draft", url="https://example.org/x"),
    Article(id="refunds", title="Request a refund", body="", tags=["billing"]),
]


@pytest.mark.parametrize("target", ["folder", "articles.jsonl"])
def test_round_trip(tmp_path: Path, target: str) -> None:
    written = dump_articles(ARTICLES, tmp_path / target)
    assert written
    loaded, problems = load_articles(tmp_path / target)
    assert problems == []
    assert sorted(loaded, key=lambda a: a.id) == sorted(ARTICLES, key=lambda a: a.id)


def test_slug_is_derived_from_title_when_missing() -> None:
    assert Article(id="x", title="Reset a Forgotten Password!", body="").slug == "reset-a-forgotten-password"
    assert make_slug("¿Qué pasa?") == "que-pasa"
    assert make_slug("مرحبا") == "مرحبا"


def test_invalid_articles_are_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        Article(id="x", title="t", body="", status="live")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="title"):
        Article(id="x", title="  ", body="")
    with pytest.raises(ValueError, match="id"):
        Article(id="", title="t", body="")
    with pytest.raises(ValueError, match="id"):
        Article(id="<img src=x onerror=alert(1)>", title="t", body="")
    with pytest.raises(ValueError, match="slug"):
        Article(id="x", title="t", body="", slug='"><script>')


def test_broken_markdown_file_is_reported_and_the_rest_load(tmp_path: Path) -> None:
    dump_articles(ARTICLES[:1], tmp_path)
    (tmp_path / "broken.md").write_text("---\nid: broken\ntitle: ok\n\tbad: x\nmore: y\n---\nbody\n", encoding="utf-8")
    (tmp_path / "no-title.md").write_text("---\nid: nt\n---\nbody\n", encoding="utf-8")
    (tmp_path / "latin1.md").write_bytes("---\nid: l\ntitle: caf\xe9\n---\n".encode("latin-1"))
    (tmp_path / "sub").mkdir()
    dump_articles(ARTICLES[2:], tmp_path / "sub")
    loaded, problems = load_articles(tmp_path)
    assert {a.id for a in loaded} == {"reset-password", "refunds"}
    by_file = {Path(p.source).name: p for p in problems}
    assert set(by_file) == {"broken.md", "no-title.md", "latin1.md"}
    assert by_file["broken.md"].line == 4  # the YAML error is reported on its line in the file
    assert "broken.md:4:" in str(by_file["broken.md"])
    assert "title" in by_file["no-title.md"].message
    assert "UTF-8" in by_file["latin1.md"].message


def test_broken_jsonl_lines_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    path = tmp_path / "articles.jsonl"
    lines = [
        json.dumps({"id": "a", "title": "A", "body": "x"}),
        "{not json",
        "",
        json.dumps({"id": "b", "title": "B"}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "c", "title": "C", "body": "y", "tags": ["t"], "extra": 1}),
        json.dumps({"id": "a", "title": "A again", "body": "z"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded, problems = load_articles(path)
    assert [a.id for a in loaded] == ["a", "c"]
    assert [(p.line, p.source) for p in problems] == [(2, str(path)), (4, str(path)), (5, str(path)), (7, str(path))]
    assert "body" in problems[1].message
    assert "duplicate" in problems[3].message


def test_duplicate_ids_in_a_folder_keep_the_first(tmp_path: Path) -> None:
    dump_articles([ARTICLES[0]], tmp_path / "a")
    dump_articles([Article(id="reset-password", title="Other", body="")], tmp_path / "b")
    loaded, problems = load_articles(tmp_path)
    assert [a.title for a in loaded] == ["Reset a forgotten password"]
    assert len(problems) == 1 and "duplicate" in problems[0].message


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_articles(tmp_path / "nope")


def test_diff_articles() -> None:
    old = [ARTICLES[0], ARTICLES[1]]
    changed = Article(id="42", title=ARTICLES[1].title, body="new body", tags=[], locale="fr", status="draft",
                      url="https://example.org/x")
    diff = diff_articles(old, [ARTICLES[0], changed, ARTICLES[2]])
    assert diff.added == ["refunds"]
    assert diff.updated == ["42"]
    assert diff.unchanged == ["reset-password"]
    assert diff.removed == []
    assert diff_articles(old, []).removed == ["42", "reset-password"]
    assert diff.summary() == "1 added, 1 updated, 1 unchanged, 0 removed"


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(lambda s: s.strip())


@settings(max_examples=25, deadline=None)
@given(title=_text, body=st.text(max_size=200).map(str.strip), tags=st.lists(_text, max_size=3))
def test_round_trip_of_arbitrary_text(tmp_path_factory: pytest.TempPathFactory, title: str, body: str,
                                      tags: list[str]) -> None:
    article = Article(id="x", title=title.strip(), body=body, tags=tags)
    folder = tmp_path_factory.mktemp("rt")
    for target in (folder / "md", folder / "a.jsonl"):
        dump_articles([article], target)
        loaded, problems = load_articles(target)
        assert problems == []
        assert loaded == [article]
