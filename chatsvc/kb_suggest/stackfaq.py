"""Convert the StackFAQ data set into the evaluation format of `chatsvc eval suggest`.

StackFAQ (Karan and Snajder, 2018) holds 125 StackExchange threads (a question title and its top
answers) and about 1,250 human paraphrases of the questions, each labelled with its thread. Each thread
becomes an article (title = the question, body = the answers, one paragraph each) and each paraphrase
a query. The data set stays where it is: the converter reads it from the path given and writes to
OUTDIR, which should lie outside the repository.

    python -m chatsvc.kb_suggest.stackfaq ../shared/data/stackfaq/stackExchange-FAQ.xml OUTDIR

writes OUTDIR/articles.jsonl and OUTDIR/queries.jsonl, and, for measuring "no match", a clearly
separate held-out variant in OUTDIR/heldout/: a fixed random 15% of the threads (seed 0) are left out
of the articles and their paraphrases kept as queries labelled `null`, since no article answers them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SPACE_RE = re.compile(r"\s+")
_CLOSED_RE = re.compile(r"\s*\[(closed|duplicate|migrated)\]\s*$", re.IGNORECASE)
#: Paraphrase slots the annotators left empty are a lone "*" in the file.
_EMPTY_PARAPHRASE = "*"


@dataclass(frozen=True, slots=True)
class Thread:
    id: str
    question: str
    answers: list[str]
    paraphrases: list[str]


def _clean(text: str | None) -> str:
    return _SPACE_RE.sub(" ", text or "").strip()


def read_threads(xml_path: str | Path) -> list[Thread]:
    """Threads in file order, ids `sf-001`...; empty paraphrase slots are dropped."""
    root = ET.parse(xml_path).getroot()
    threads = []
    for number, pair in enumerate(root.iter("qapair"), start=1):
        question = _CLOSED_RE.sub("", _clean(pair.findtext("question")))
        answers = [a for a in (_clean(node.text) for node in pair.findall("answer")) if a]
        paraphrases = [
            p for p in (_clean(node.text) for node in pair.findall("rephr")) if p and p != _EMPTY_PARAPHRASE
        ]
        threads.append(Thread(id=f"sf-{number:03d}", question=question, answers=answers, paraphrases=paraphrases))
    return threads


def _escape_markdown(text: str) -> str:
    # The answers were flattened to plain text by the data set's authors; keep them literal.
    return text.replace("\\", "\\\\").replace("<", "&lt;").replace("*", "\\*").replace("_", "\\_").replace("#", "\\#")


def article_record(thread: Thread) -> dict[str, object]:
    return {
        "id": thread.id,
        "title": thread.question,
        "body": "\n\n".join(_escape_markdown(a) for a in thread.answers),
        "tags": [],
    }


def _write_jsonl(path: Path, records: Sequence[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def convert(xml_path: str | Path, out_dir: str | Path, heldout_fraction: float = 0.15, seed: int = 0) -> dict[str, int]:
    threads = read_threads(xml_path)
    out = Path(out_dir)
    articles = [article_record(t) for t in threads]
    queries = [{"text": p, "article_id": t.id} for t in threads for p in t.paraphrases]
    _write_jsonl(out / "articles.jsonl", articles)
    _write_jsonl(out / "queries.jsonl", queries)

    rng = random.Random(seed)
    held = set(rng.sample([t.id for t in threads], k=round(len(threads) * heldout_fraction)))
    _write_jsonl(out / "heldout" / "articles.jsonl", [a for a in articles if a["id"] not in held])
    _write_jsonl(
        out / "heldout" / "queries.jsonl",
        [{"text": q["text"], "article_id": None if q["article_id"] in held else q["article_id"]} for q in queries],
    )
    return {
        "threads": len(threads),
        "queries": len(queries),
        "heldout_threads": len(held),
        "heldout_null_queries": sum(1 for q in queries if q["article_id"] in held),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatsvc.kb_suggest.stackfaq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("xml", type=Path, help="stackExchange-FAQ.xml of the StackFAQ data set")
    parser.add_argument("out_dir", type=Path, help="folder to write articles.jsonl, queries.jsonl and heldout/")
    parser.add_argument("--heldout-fraction", type=float, default=0.15, help="share of threads left out (default 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out draw (default 0)")
    args = parser.parse_args(argv)
    if not args.xml.is_file():
        parser.error(f"no such file: {args.xml}")
    counts = convert(args.xml, args.out_dir, args.heldout_fraction, args.seed)
    print(json.dumps(counts), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
