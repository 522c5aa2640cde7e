"""Command-line entry points of the classifier (registered by chatsvc.cli)."""

import argparse
from pathlib import Path
from typing import Any


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
             evals: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `chatsvc train` and `chatsvc eval classify`. Heavy imports happen inside the handlers."""
    train = commands.add_parser(
        "train", help="retrain the category and priority classifier from labelled files",
        description="Train the category and priority models from labelled CSV/JSONL files (columns text, "
                    "category, priority, optional plan) and write them, with a model card, to OUT/classifier/.")
    train.add_argument("--data", action="append", default=[], metavar="FILE",
                       help="labelled examples, .csv or .jsonl; repeat for several files")
    train.add_argument("--from-store", action="store_true",
                       help="also learn from the store's resolved and closed tickets, with the priority and "
                            "category agents corrected them to (the store of CHATSVC_DATABASE_URL or --database-url)")
    train.add_argument("--database-url", default=None, help="the store to read with --from-store")
    train.add_argument("--out", metavar="MODELS_DIR", default=None,
                       help="models directory (default: the repository's models/)")
    train.add_argument("--rules", metavar="RULES.toml", default=None,
                       help="rules file whose categories and plan bump apply (default: the shipped rules.toml)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0); same data + seed = same model")
    train.add_argument("--cv", type=int, default=5, metavar="K", help="folds for the model card's metrics (default 5)")
    train.add_argument("--target-precision", type=float, default=0.9, metavar="P",
                       help="the model abstains below the confidence where cross-validated precision reaches P "
                            "(default 0.9)")
    train.add_argument("--word-vectors", choices=("auto", "minilm", "none"), default="auto",
                       help="add word vectors distilled from all-MiniLM-L6-v2 (the `embeddings` extra): auto uses "
                            "them when installed (default); none trains the TF-IDF model alone")
    train.set_defaults(func=_train)

    classify = evals.add_parser(
        "classify", help="accuracy and macro-F1 of the classifier beside baselines",
        description="Train on TRAIN and score TEST (or cross-validate TRAIN with --cv), printing our model beside a "
                    "majority-class and a TF-IDF + LogisticRegression baseline. The last line is JSON.")
    classify.add_argument("--train", required=True, metavar="TRAIN.csv", help="CSV with columns text,label")
    classify.add_argument("--test", metavar="TEST.csv", help="CSV with columns text,label")
    classify.add_argument("--cv", type=int, metavar="K", help="cross-validate on TRAIN alone instead of --test")
    classify.add_argument("--label-column", default="label", help="name of the label column (default: label)")
    classify.add_argument("--text-column", default="text", help="name of the text column (default: text)")
    classify.add_argument("--reject-label", metavar="LABEL",
                          help="label of out-of-scope rows: tune an abstain threshold on TRAIN and report "
                               "in-scope accuracy and out-of-scope recall")
    classify.add_argument("--seed", type=int, default=0)
    classify.set_defaults(func=_eval_classify)


def _store_examples(database_url: str | None) -> list[Any]:
    import asyncio

    from chatsvc.settings import Settings
    from chatsvc.store import db
    from chatsvc.tickets.service import training_examples

    settings = Settings.from_env(database_url=database_url)

    async def run() -> list[Any]:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            return await training_examples(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _train(args: argparse.Namespace) -> int:
    from chatsvc.classifier.errors import ClassifierError
    from chatsvc.classifier.labels import read_examples
    from chatsvc.classifier.model import DEFAULT_MODELS_DIR
    from chatsvc.classifier.rules import load_rules
    from chatsvc.cli import CommandError

    if args.cv < 2:
        raise CommandError("--cv needs at least 2 folds")
    if not 0.0 < args.target_precision <= 1.0:
        raise CommandError("--target-precision must be above 0 and at most 1")
    try:
        rules = load_rules(args.rules)
        if not args.data and not args.from_store:
            raise CommandError("give --data FILE (repeatable) and/or --from-store")
        examples = [e for path in args.data for e in read_examples(path)]
        sources = [Path(p).name for p in args.data]
        if args.from_store:
            stored = _store_examples(args.database_url)
            examples += stored
            sources.append(f"store ({len(stored)} resolved tickets)")
        from chatsvc.classifier.training import TrainingConfig, train

        config = TrainingConfig(seed=args.seed, cv_folds=args.cv, target_precision=args.target_precision,
                                word_vectors=args.word_vectors)
        command = " ".join(["chatsvc train"] + [f"--data {Path(p).name}" for p in args.data]
                           + (["--from-store"] if args.from_store else [])
                           + ([f"--rules {Path(args.rules).name}"] if args.rules else [])
                           + [f"--seed {args.seed}", f"--cv {args.cv}", f"--target-precision {args.target_precision}"]
                           + ([f"--word-vectors {args.word_vectors}"] if args.word_vectors != "auto" else []))
        trained = train(examples, rules=rules, config=config, sources=sources,
                        command=command)
        out = Path(args.out) if args.out is not None else DEFAULT_MODELS_DIR
        written = trained.save(out)
    except ClassifierError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write the model: {exc}") from None
    card = trained.card
    print(f"model {card['model_id']} written to {written} ({len(examples)} examples)")
    for name, head in card["heads"].items():
        cv = head["cv"]
        print(f"  {name}: {len(head['classes'])} classes, {cv['folds']}-fold CV accuracy {cv['accuracy']:.3f}, "
              f"macro-F1 {cv['macro_f1']:.3f} (majority {cv['majority_accuracy']:.3f}); abstains below "
              f"{head['threshold']:.2f} (covers {head['coverage_at_threshold']:.0%} at accuracy "
              f"{head['accuracy_at_threshold']:.3f})")
        if head["skipped_labels"]:
            print(f"  {name}: left out for too few examples: {', '.join(head['skipped_labels'])}")
    for warning in card["warnings"]:
        print(f"  warning: {warning}")
    return 0


def _eval_classify(args: argparse.Namespace) -> int:
    from chatsvc.classifier.errors import ClassifierError
    from chatsvc.classifier.evaluation import evaluate
    from chatsvc.cli import CommandError

    try:
        evaluate(args.train, args.test, label_column=args.label_column, text_column=args.text_column,
                 reject_label=args.reject_label, cv=args.cv, seed=args.seed)
    except ClassifierError as exc:
        raise CommandError(str(exc)) from None
    return 0
