"""Help-center articles and the suggestion engine.

    from chatsvc.kb_suggest import Article, SuggestionIndex, Suggestions, Match, load_articles, dump_articles, render_markdown

Importing the package is cheap: each name loads its module (numpy, scipy, markdown-it...) on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatsvc.kb_suggest.articles import (
        Article,
        ArticleDiff,
        LoadProblem,
        diff_articles,
        dump_articles,
        load_articles,
    )
    from chatsvc.kb_suggest.engine import Match, SuggestionIndex, Suggestions
    from chatsvc.kb_suggest.markdown import render_markdown
    from chatsvc.kb_suggest.params import SuggestParams

__all__ = [
    "Article",
    "ArticleDiff",
    "LoadProblem",
    "Match",
    "SuggestParams",
    "SuggestionIndex",
    "Suggestions",
    "diff_articles",
    "dump_articles",
    "load_articles",
    "render_markdown",
]

_HOME = {
    "Article": "articles",
    "ArticleDiff": "articles",
    "LoadProblem": "articles",
    "diff_articles": "articles",
    "dump_articles": "articles",
    "load_articles": "articles",
    "Match": "engine",
    "SuggestionIndex": "engine",
    "Suggestions": "engine",
    "render_markdown": "markdown",
    "SuggestParams": "params",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
