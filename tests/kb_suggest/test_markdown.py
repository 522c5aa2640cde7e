"""Rendering and plain text are safe against a hostile corpus."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatsvc.kb_suggest import render_markdown
from chatsvc.kb_suggest.markdown import MAX_PASSAGE_CHARS, passages, plain_text

HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<svg onload="alert(1)"><circle/></svg>',
    "<iframe src='https://evil.example'></iframe>",
    '<div style="background:url(javascript:alert(1))">styled</div>',
    "<b><i>unclosed <p>broken <a href='https://ok.example'>link",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<<script>script>alert(1)<</script>/script>",
    "<!-- <script>alert(1)</script> -->",
    '<form action="https://evil.example"><input name=x></form>',
    '<a href="vbscript:msgbox(1)">x</a>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
]

_TAG = re.compile(r"<\s*/?\s*(script|iframe|svg|form|input|style|math)\b", re.IGNORECASE)


@pytest.mark.parametrize("body", HOSTILE)
def test_rendered_html_has_no_active_content(body: str) -> None:
    html = render_markdown(body)
    assert not _TAG.search(html)
    # A refused link stays as harmless text ("[click](javascript:...)"), never as an attribute.
    assert not re.search(r"(href|src|action)\s*=\s*[\"']?\s*(javascript|vbscript|data):", html, re.IGNORECASE)
    assert not re.search(r"\son\w+\s*=", html, re.IGNORECASE)
    assert "style=" not in html


def test_links_keep_safe_schemes_and_get_rel() -> None:
    html = render_markdown("[a](https://example.org) [b](mailto:help@example.org) [c](ftp://example.org/x)")
    assert 'href="https://example.org"' in html
    assert 'href="mailto:help@example.org"' in html
    assert "ftp://" not in html
    assert html.count('rel="noopener noreferrer"') == 3


def test_ordinary_markdown_renders() -> None:
    html = render_markdown("# Title\n\n**bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html and "<table>" in html


@pytest.mark.parametrize("body", HOSTILE)
def test_plain_text_never_contains_a_tag(body: str) -> None:
    assert not re.search(r"<[A-Za-z/!?]", plain_text(body))
    for passage in passages(body)[1]:
        assert not re.search(r"<[A-Za-z/!?]", passage)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/&;!?-=\"' abcsriptlgonerrohf:")), max_size=80))
@example("<</")  # dropping the opener "</" once left "<" + "/" = a new one
def test_plain_text_of_any_markup_soup_has_no_tag(text: str) -> None:
    assert not re.search(r"<[A-Za-z/!?]", plain_text(text))


def test_passages_are_short_windows_of_whole_sentences() -> None:
    body = "# Heading\n\n" + " ".join(f"Sentence number {i} is here." for i in range(60)) + "\n\n- step one\n- step two"
    headings, windows = passages(body)
    assert headings == ["Heading"]
    assert all(len(w) <= MAX_PASSAGE_CHARS for w in windows)
    assert windows[0].startswith("Sentence number 0 is here.")
    assert windows[-1] == "step one; step two"
    assert passages("")[1] == []
