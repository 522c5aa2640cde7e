"""Command-line entry points of article-gap detection (registered by chatsvc.cli)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from chatsvc.gaps.embed import EMBEDDERS


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser],
             evals: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatsvc gaps` and `chatsvc eval gaps`. Heavy imports happen inside the handlers."""
    gaps = commands.add_parser(
        "gaps",
        help="cluster unanswered questions into article gaps now and print them ranked by impact",
        description=(
            "Collect the questions no article answered (no match, marked unhelpful, tickets closed without "
            "an article), cluster them into topics and print the gaps ranked by impact. By default this is "
            "a full re-clustering; --assign only attaches new questions to the existing gaps. Safe beside "
            "running servers: the run takes the same lease as their scheduled job."
        ),
    )
    gaps.add_argument("--database-url", default=None, help="the store (default: CHATSVC_DATABASE_URL or ./chatsvc.db)")
    gaps.add_argument("--assign", action="store_true", help="attach new questions only, no re-clustering")
    gaps.add_argument("--embedder", choices=EMBEDDERS, default=None,
                      help="question vectors: auto (MiniLM when installed), minilm or tfidf (default: the setting)")
    gaps.add_argument("--limit", type=int, default=20, help="gaps to print (default 20)")
    gaps.add_argument("--json", action="store_true", help="print the gaps as one JSON object")
    gaps.set_defaults(func=run_gaps)

    ev = evals.add_parser(
        "gaps",
        help="gap clustering: NMI, ARI, accuracy, noise and recovered labels beside KMeans with the true k",
        description=(
            "Cluster labelled questions without being told the number of labels and print NMI, ARI, "
            "clustering accuracy (Hungarian), the share of noise and the share of labels recovered as a "
            "topic of purity >= 0.8, beside KMeans told the true k on TF-IDF + LSA. With --hide-articles, "
            "build one article per label from the training questions, withhold that share of them, ask "
            "every question through the suggestion engine and report how many withheld labels surface "
            "among the top gaps and how many top gaps are false. The last line is one JSON object."
        ),
    )
    ev.add_argument("--queries", type=Path, required=True, help="CSV with columns text,label")
    ev.add_argument("--train", type=Path, default=None,
                    help="with --hide-articles: CSV text,label whose questions build the articles "
                         "(default: the first half of each label's queries)")
    ev.add_argument("--hide-articles", type=float, default=None, metavar="SHARE",
                    help="withhold this share of the labels' articles (e.g. 0.25) and run end to end")
    ev.add_argument("--embedder", choices=EMBEDDERS, default="auto", help="question vectors (default auto)")
    ev.add_argument("--seed", type=int, default=0, help="which labels are withheld (default 0)")
    ev.set_defaults(func=eval_gaps)


def eval_gaps(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError
    from chatsvc.gaps import evaluate
    from chatsvc.gaps.embed import EmbedderUnavailable, load_embedder

    try:
        rows = evaluate.load_labelled(args.queries)
        train = evaluate.load_labelled(args.train) if args.train is not None else None
    except evaluate.QueryFileError as exc:
        raise CommandError(str(exc)) from None
    try:
        embedder = load_embedder(args.embedder)
    except EmbedderUnavailable as exc:
        raise CommandError(str(exc)) from None
    if args.hide_articles is not None and not 0 < args.hide_articles < 1:
        raise CommandError("--hide-articles must be between 0 and 1, e.g. 0.25")
    labels = len({label for _, label in rows})
    print(f"{len(rows)} questions, {labels} labels; vectors: {embedder.name}", flush=True)
    try:
        if args.hide_articles is None:
            report = evaluate.evaluate_clustering(rows, embedder)
        else:
            report = evaluate.evaluate_hidden(rows, train, embedder, args.hide_articles, seed=args.seed)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(report.table())
    print(json.dumps(report.as_json()))
    return 0


def run_gaps(args: argparse.Namespace) -> int:
    from chatsvc.cli import CommandError
    from chatsvc.gaps.embed import EmbedderUnavailable

    try:
        result = asyncio.run(_run(args))
    except EmbedderUnavailable as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
        return 0
    summary = result["run"]
    print(f"{summary['questions']} questions, {summary['gaps']} gaps, {summary['noise']} unclustered "
          f"({summary['mode']}, {summary['embedder']}, {summary.get('embedded', 0)} texts embedded, "
          f"{summary['seconds']} s)")
    if summary.get("skipped"):
        print(f"skipped: {summary['skipped']}")
    for rank, gap in enumerate(result["items"], start=1):
        article = gap["nearest_article"]
        action = (f"update “{article['title']}” (similarity {article['similarity']:.2f})"
                  if gap["action"] == "update" and article else "write a new article")
        trend = f"{gap['current']} this period, {gap['previous']} the one before"
        print(f"{rank:>3}. [{gap['id']}] {gap['label']}: {gap['volume']} asking, {trend}; {action}")
        for question in gap["examples"][:3]:
            print(f"       “{question['text'][:100]}”")
    return 0


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from chatsvc.gaps.service import GapService
    from chatsvc.kb_suggest.store import ArticleStore, KnowledgeBase
    from chatsvc.settings import Settings
    from chatsvc.store import db

    settings = Settings.from_env(database_url=args.database_url, gaps_embedder=args.embedder)
    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine)
        kb = KnowledgeBase(ArticleStore(engine))
        await kb.refresh()
        service = GapService(engine, kb, settings, node="cli")
        summary = await service.run(full=not args.assign, wait=True)
        summary["embedded"] = service.embedded  # texts this run embedded (a new process: all of them)
        items, _ = await service.list(status="open", limit=args.limit, offset=0)
        return {"run": summary, "items": items}
    finally:
        await engine.dispose()
