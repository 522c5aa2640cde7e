"""Convert public evaluation data sets to the `text,label` CSVs that `chatsvc eval classify` reads.

    python -m chatsvc.classifier.datasets banking77 /path/to/banking77 /tmp/eval
    python -m chatsvc.classifier.datasets clinc150  /path/to/clinc150  /tmp/eval
    python -m chatsvc.classifier.datasets mooc      /path/to/mooc_urgency /tmp/eval

The data sets are read where they are and written to a directory you choose outside this
repository (their licences do not all allow redistribution; the MOOC data has none).

banking77  train.csv (text,category)         -> banking77_train.csv
clinc150   data_trainval.json                -> clinc150_train.csv (train + oos_train),
                                                clinc150_val.csv (val + oos_val); out-of-scope label "oos"
mooc       All_Courses_REDACTED_CODED.csv    -> mooc_urgency.csv; label "urgent" when Urgency_1_7 >= 4,
                                                else "not_urgent" (the priority stand-in)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from chatsvc.classifier.errors import ClassifierError

REPOSITORY = Path(__file__).resolve().parents[2]
URGENT_FROM = 4.0


def _write(path: Path, rows: Iterable[tuple[str, str]]) -> Counter[str]:
    labels: Counter[str] = Counter()
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["text", "label"])
        for text, label in rows:
            writer.writerow([text, label])
            labels[label] += 1
    temporary.replace(path)
    return labels


def _source(directory: Path, name: str) -> Path:
    path = directory / name if directory.is_dir() else directory
    if not path.is_file():
        raise ClassifierError(f"{path}: not found (expected the data set's {name})")
    return path


def banking77(source: Path, out: Path) -> dict[str, Counter[str]]:
    path = _source(source, "train.csv")
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ClassifierError(f"{path}: expected columns text,category")
        rows = [(r["text"].strip(), r["category"].strip()) for r in reader if r["text"] and r["text"].strip()]
    return {"banking77_train.csv": _write(out / "banking77_train.csv", rows)}


def clinc150(source: Path, out: Path) -> dict[str, Counter[str]]:
    path = _source(source, "data_trainval.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = {"train", "val", "oos_train", "oos_val"} - set(data)
    if missing:
        raise ClassifierError(f"{path}: missing keys {', '.join(sorted(missing))}")
    written = {}
    for split in ("train", "val"):
        rows = [(text, intent) for text, intent in data[split]] + [(text, "oos") for text, _ in data[f"oos_{split}"]]
        written[f"clinc150_{split}.csv"] = _write(out / f"clinc150_{split}.csv", rows)
    return written


def mooc(source: Path, out: Path) -> dict[str, Counter[str]]:
    path = _source(source, "All_Courses_REDACTED_CODED.csv")
    rows = []
    with open(path, encoding="utf-8", newline="") as stream:
        for record in csv.DictReader(stream):
            text, urgency = (record.get("post_text") or "").strip(), (record.get("Urgency_1_7") or "").strip()
            if not text or not urgency:
                continue  # the file ends with a blank record
            rows.append((text, "urgent" if float(urgency) >= URGENT_FROM else "not_urgent"))
    return {"mooc_urgency.csv": _write(out / "mooc_urgency.csv", rows)}


CONVERTERS = {"banking77": banking77, "clinc150": clinc150, "mooc": mooc}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatsvc.classifier.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(CONVERTERS))
    parser.add_argument("source", type=Path, help="the data set's folder (or its file)")
    parser.add_argument("out", type=Path, help="directory for the CSVs, outside this repository (e.g. /tmp/eval)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out == REPOSITORY or REPOSITORY in out.parents:
        print(f"error: {out} is inside the repository; write evaluation data elsewhere (e.g. /tmp/eval)",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    try:
        written = CONVERTERS[args.dataset](args.source, out)
    except (ClassifierError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, labels in written.items():
        print(f"{out / name}: {sum(labels.values())} rows, {len(labels)} labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
