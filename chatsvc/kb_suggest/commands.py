"""Command-line entry points of the help center and suggestions (registered by chatsvc.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser],
             evals: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatsvc eval suggest`. Heavy imports happen inside the handlers."""
    suggest = evals.add_parser(
        "suggest",
        help="article suggestions: hit@1, hit@5, MRR and no-match precision/recall beside two baselines",
        description=(
            "Rank the articles for every question and print hit@1, hit@5, MRR and, when some questions are "
            "labelled null, no-match precision and recall, for the engine and two baselines (TF-IDF and "
            "rapidfuzz token_set_ratio on titles). The engine's fusion weights and no-match threshold are "
            "cross-validated over the questions unless --shipped-params or --params is given. The last line "
            "printed is one JSON object with every figure."
        ),
    )
    suggest.add_argument("--articles", type=Path, required=True,
                         help="articles: JSON Lines ({id, title, body}) or a folder of Markdown files")
    suggest.add_argument("--queries", type=Path, required=True,
                         help="JSON Lines of {text, article_id}; article_id null when no article answers")
    suggest.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    source = suggest.add_mutually_exclusive_group()
    source.add_argument("--shipped-params", action="store_true",
                        help="score with the fusion weights and threshold shipped with chatsvc instead of "
                             "cross-validating them")
    source.add_argument("--params", type=Path, help="score with the parameters in this JSON file")
    suggest.set_defaults(func=eval_suggest)


def eval_suggest(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError
    from chatsvc.kb_suggest.articles import load_articles
    from chatsvc.kb_suggest.evaluate import QueryFileError, evaluate, load_queries
    from chatsvc.kb_suggest.params import SuggestParams

    try:
        articles, problems = load_articles(args.articles)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    for problem in problems:
        print(f"warning: skipped {problem}", file=sys.stderr)
    if not articles:
        raise CommandError(f"no article could be loaded from {args.articles}")
    try:
        queries = load_queries(args.queries)
    except QueryFileError as exc:
        raise CommandError(str(exc)) from None
    params = None
    if args.params is not None:
        try:
            params = SuggestParams.load(args.params)
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot read parameters from {args.params}: {exc}") from None
    use_given = args.shipped_params or args.params is not None
    try:
        report = evaluate(articles, queries, folds=args.folds, params=params, cross_validate=not use_given)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(f"{len(articles)} articles, {len(queries)} questions "
          f"({sum(1 for _, gold in queries if gold is None)} with no answering article)")
    print(report.table())
    print(json.dumps(report.as_json()))
    return 0
