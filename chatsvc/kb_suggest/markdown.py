"""Article bodies: Markdown to safe HTML, and to plain-text passages for matching and quoting.

Sanitising is nh3's (the Rust ammonia library) job, never a regular expression of ours: the HTML that
markdown-it produces, raw HTML blocks included, goes through an allow-list of tags, attributes and URL
schemes. Plain text (titles, passages) goes through nh3 with no tag allowed at all.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import TYPE_CHECKING

import nh3

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

#: Longest passage quoted back with a suggestion.
MAX_PASSAGE_CHARS = 300

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody",
        "td", "th", "thead", "tr", "ul",
    }
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "abbr": {"title"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer"

_TAG_OPENER_RE = re.compile(r"<[A-Za-z/!?]")
_SPACE_RE = re.compile(r"\s+")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?\u061f\u3002])\s+")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable("table").enable(
        "strikethrough"
    )


def render_markdown(body: str) -> str:
    """Render an article body to HTML that is safe to insert into a page.

    Raw HTML in the Markdown is allowed through the same allow-list as the rendered Markdown, so
    `<script>`, event-handler attributes, `style` and any link that is not http, https or mailto are
    removed; every link gets `rel="noopener noreferrer"`.
    """
    rendered = _parser().render(body)
    return nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


def plain_text(text: str) -> str:
    """Text with every tag removed (script and style content too) and whitespace collapsed.

    The result is plain text, not HTML: it may contain `&` or a lone `<` as in "a < b", but never the
    start of a tag, however the input was escaped ("&lt;script&gt;" is unescaped and stripped again).
    """
    if "<" not in text and "&" not in text:
        return _SPACE_RE.sub(" ", text).strip()
    current = text
    for _ in range(4):
        stripped = html.unescape(nh3.clean(current, tags=set(), strip_comments=True))
        if stripped == current:
            break
        current = stripped
    while _TAG_OPENER_RE.search(current):
        # Pathological nesting of escapes that outlasted the rounds above: drop the openers outright, until
        # none is left ("<</" loses one "<" a pass; each pass removes at least one, so this ends).
        current = _TAG_OPENER_RE.sub(lambda m: m.group(0)[1:], current)
    return _SPACE_RE.sub(" ", current).strip()


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(_inline_text(child))
        # html_inline is dropped: tags are markup, not words.
    return "".join(parts)


def blocks(body: str) -> tuple[list[str], list[list[str]]]:
    """Split a Markdown body into (headings, blocks); each block is a list of plain-text units.

    A paragraph, code block or table row is one unit; a list is one block whose units are its items,
    so that a window of a few steps can be quoted together.
    """
    headings: list[str] = []
    out: list[list[str]] = []
    list_depth = 0
    current_list: list[str] = []
    table_rows: list[str] | None = None
    row_cells: list[str] = []
    in_heading = False
    for token in _parser().parse(body):
        kind = token.type
        if kind == "table_open":
            table_rows = []
        elif kind == "table_close":
            if table_rows:
                out.append(table_rows)
            table_rows = None
        elif kind == "tr_open":
            row_cells = []
        elif kind == "tr_close" and table_rows is not None:
            if any(row_cells):
                table_rows.append(", ".join(cell for cell in row_cells if cell))
        elif kind in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
            if list_depth == 0 and current_list:
                out.append(current_list)
                current_list = []
        elif kind == "heading_open":
            in_heading = True
        elif kind == "heading_close":
            in_heading = False
        elif kind == "inline":
            text = plain_text(_inline_text(token))
            if not text and table_rows is None:
                continue
            if table_rows is not None:
                row_cells.append(text)
            elif in_heading:
                headings.append(text)
            elif list_depth:
                current_list.append(text)
            else:
                out.append([text])
        elif kind in ("fence", "code_block", "html_block"):
            text = plain_text(token.content)
            if text and list_depth:
                current_list.append(text)
            elif text:
                out.append([text])
    if current_list:
        out.append(current_list)
    return headings, out


def _sentences(unit: str) -> list[str]:
    pieces = [p for p in _SENTENCE_END_RE.split(unit) if p]
    result: list[str] = []
    for piece in pieces:
        while len(piece) > MAX_PASSAGE_CHARS:
            cut = piece.rfind(" ", 0, MAX_PASSAGE_CHARS - 1)
            cut = cut if cut > MAX_PASSAGE_CHARS // 2 else MAX_PASSAGE_CHARS - 1
            result.append(piece[:cut].rstrip() + "\u2026")
            piece = piece[cut:].lstrip()
        if piece:
            result.append(piece)
    return result


def passages(body: str) -> tuple[list[str], list[str]]:
    """(headings, passages) of a body: windows of whole sentences within one block, each at most
    MAX_PASSAGE_CHARS long, in reading order. A body with no text gives no passage."""
    headings, body_blocks = blocks(body)
    windows: list[str] = []
    for block in body_blocks:
        sentences = [s for unit in block for s in _sentences(unit)]
        window = ""
        for sentence in sentences:
            separator = " " if window.endswith((".", "!", "?", ":", ";", "\u2026")) else "; "
            candidate = f"{window}{separator}{sentence}" if window else sentence
            if len(candidate) <= MAX_PASSAGE_CHARS:
                window = candidate
            else:
                windows.append(window)
                window = sentence
        if window:
            windows.append(window)
    return headings, windows
