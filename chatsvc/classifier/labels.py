"""Labelled examples and the two label-file formats (CSV and JSON Lines).

An agent's correction of a ticket's category or priority is one `Example`. The ticket store can
append corrections to a JSONL file with `append_examples` (or hand `Example`s straight to
`train`). Files are strict UTF-8; every error names the file and line.

CSV: a header row with `text` and at least one of `category`, `priority`; `plan` is optional.
JSONL: one object per line, {"text": ..., "category": ..., "priority": ..., "plan": ...};
other keys (ticket id, author, time ...) are ignored. In both, an empty or missing label means
"not labelled" for that field; a row needs at least one label.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chatsvc.classifier.errors import LabelFileError

PRIORITY_LABELS = ("P1", "P2", "P3", "P4")
LABEL_FIELDS = ("category", "priority")
_BOM = b"\xef\xbb\xbf"
_FIELD_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled message. `source` says where it came from, for error messages."""

    text: str
    category: str | None = None
    priority: str | None = None
    plan: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, str | None]:
        return {"text": self.text, "category": self.category, "priority": self.priority, "plan": self.plan}


def read_examples(path: str | Path) -> list[Example]:
    """Examples of a .csv or .jsonl (.ndjson) label file."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return list(_csv_examples(file))
    if suffix in (".jsonl", ".ndjson"):
        return list(_jsonl_examples(file))
    raise LabelFileError(f"{file}: unknown label file type {suffix or '(none)'!r}; use .csv or .jsonl")


def append_examples(path: str | Path, examples: Iterable[Example]) -> int:
    """Append examples to a JSONL label file (created if missing); returns how many were written."""
    lines = [json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True) + "\n" for e in examples]
    with open(path, "a", encoding="utf-8", newline="\n") as stream:
        stream.writelines(lines)
        stream.flush()
        os.fsync(stream.fileno())
    return len(lines)


def read_text_labels(path: str | Path, label_column: str = "label", text_column: str = "text"
                     ) -> tuple[list[str], list[str]]:
    """Texts and labels of an evaluation CSV; every row needs both."""
    file = Path(path)
    texts: list[str] = []
    labels: list[str] = []
    for line, row in _csv_rows(file, required=(text_column, label_column)):
        text = row.get(text_column) or ""
        label = (row.get(label_column) or "").strip()
        if not text.strip():
            raise LabelFileError(f"{file}:{line}: empty {text_column}")
        if not label:
            raise LabelFileError(f"{file}:{line}: missing {label_column}")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise LabelFileError(f"{file}: no rows")
    return texts, labels


# -- internals -------------------------------------------------------------------------------


def _decode(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise LabelFileError(f"{file}: cannot read ({exc.strerror or exc})") from None
    raw = raw.removeprefix(_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LabelFileError(f"{file}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                             f"save the file as UTF-8") from None


@contextmanager
def _large_fields() -> Iterator[None]:
    # csv's default limit (128 KiB per field) would reject long messages; restore it afterwards.
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, _FIELD_LIMIT))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_rows(file: Path, required: tuple[str, ...] = ("text",), one_of: tuple[str, ...] = ()
              ) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(_decode(file), newline=""))
    with _large_fields():
        try:
            header = next(reader, None)
            if header is None:
                raise LabelFileError(f"{file}: empty file; expected a header row such as "
                                     f"{','.join(required + one_of)}")
            names = [h.strip().lower() for h in header]
            missing = [c for c in required if c not in names]
            if missing or (one_of and not any(c in names for c in one_of)):
                wanted = ", ".join(required) + (f" and one of {', '.join(one_of)}" if one_of else "")
                raise LabelFileError(f"{file}:1: the header needs columns {wanted}; found {', '.join(names)}")
            line = reader.line_num
            for record in reader:
                start, line = line + 1, reader.line_num
                if not record or all(not v.strip() for v in record):
                    continue
                if len(record) != len(names):
                    raise LabelFileError(f"{file}:{start}: {len(record)} fields, the header has {len(names)} "
                                         f"(quote texts that contain commas)")
                yield start, dict(zip(names, record))
        except csv.Error as exc:
            raise LabelFileError(f"{file}:{reader.line_num}: {exc}") from None


def _csv_examples(file: Path) -> Iterator[Example]:
    for line, row in _csv_rows(file, required=("text",), one_of=LABEL_FIELDS):
        yield _example(row, f"{file}:{line}")


def _jsonl_examples(file: Path) -> Iterator[Example]:
    for number, line in enumerate(_decode(file).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelFileError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise LabelFileError(f"{where}: each line must be a JSON object")
        for key in ("text", "category", "priority", "plan"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise LabelFileError(f"{where}: {key} must be a string or null")
        yield _example({k: data.get(k) or "" for k in ("text", "category", "priority", "plan")}, where)


def _example(row: dict[str, str], where: str) -> Example:
    text = row.get("text") or ""
    if not text.strip():
        raise LabelFileError(f"{where}: empty text")
    category = (row.get("category") or "").strip() or None
    priority = (row.get("priority") or "").strip().upper() or None
    plan = (row.get("plan") or "").strip() or None
    if priority is not None and priority not in PRIORITY_LABELS:
        raise LabelFileError(f"{where}: priority {row.get('priority')!r} is not one of {', '.join(PRIORITY_LABELS)}")
    if category is None and priority is None:
        raise LabelFileError(f"{where}: no label (category and priority are both empty)")
    return Example(text=text, category=category, priority=priority, plan=plan, source=where)
