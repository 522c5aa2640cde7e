"""Label files (CSV, JSONL) and train(examples): formats, clear errors, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatsvc.classifier import Example, LabelFileError, TrainingError, append_examples, read_examples
from chatsvc.classifier.labels import read_text_labels
from chatsvc.classifier.rules import load_rules
from tests.classifier.helpers import shipped_examples, write_csv


def test_csv_with_both_labels_and_plan(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "l.csv", [("payment failed, help", "billing", "p1", "Pro"), ("hi", "", "P3", "")],
                     header=("Text", "category", "priority", "plan"))
    assert read_examples(path) == [
        Example("payment failed, help", "billing", "P1", "Pro", source=f"{path}:2"),
        Example("hi", None, "P3", None, source=f"{path}:3"),
    ]


def test_jsonl_and_append(tmp_path: Path) -> None:
    path = tmp_path / "corrections.jsonl"
    written = append_examples(path, [Example("cant login", "account", "P2"), Example("dark mode?", "feature_request")])
    assert written == 2
    append_examples(path, [Example("x y", priority="P4", plan="pmc")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[2]) == {"text": "x y", "category": None, "priority": "P4", "plan": "pmc"}
    with open(path, "a", encoding="utf-8") as stream:
        stream.write('\n{"text": "extra keys are fine", "priority": "P3", "ticket_id": 4821, "agent": "ana"}\n')
    examples = read_examples(path)
    assert [e.text for e in examples] == ["cant login", "dark mode?", "x y", "extra keys are fine"]
    assert examples[3].source == f"{path}:5"


def test_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,category\nok,billing\ncaf\u00e9 bill,billing\n".encode("latin-1"))
    with pytest.raises(LabelFileError, match=rf"^{path}:3: not valid UTF-8 \(byte 0xe9 at column 4\)"):
        read_examples(path)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(b'{"text": "ok", "priority": "P1"}\n{"text": "\xff", "priority": "P1"}\n')
    with pytest.raises(LabelFileError, match=rf"^{jsonl}:2: not valid UTF-8"):
        read_examples(jsonl)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,priority\nhello,P4\n")
    assert read_examples(path) == [Example("hello", None, "P4", None, source=f"{path}:2")]


@pytest.mark.parametrize(("content", "expected"), [
    ("", "empty file"),
    ("message,category\nhi,billing\n", ":1: the header needs columns text"),
    ("text,plan\nhi,pro\n", ":1: the header needs columns text and one of category, priority"),
    ("text,category,priority\nfine,billing,P3\n,billing,P3\n", ":3: empty text"),
    ("text,category,priority\nfine,billing,P3\nno label,,\n", ":3: no label"),
    ("text,category,priority\nbad,billing,P5\n", ":2: priority 'P5' is not one of"),
    ("text,category,priority\na,b,P1,extra\n", ":2: 4 fields, the header has 3"),
    ('text,category\n"multi\nline",billing\n"unterminated,billing\n', ":4:"),
])
def test_bad_csv_files_name_the_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelFileError) as caught:
        read_examples(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


@pytest.mark.parametrize(("line", "expected"), [
    ("{oops", ":1: not valid JSON"),
    ("[1, 2]", ":1: each line must be a JSON object"),
    ('{"text": 5, "priority": "P1"}', ":1: text must be a string"),
    ('{"text": "hi"}', ":1: no label"),
])
def test_bad_jsonl_lines(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=expected):
        read_examples(path)


def test_unknown_file_type_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="unknown label file type '.txt'"):
        read_examples(tmp_path / "labels.txt")
    with pytest.raises(LabelFileError, match="cannot read"):
        read_examples(tmp_path / "missing.csv")


def test_long_texts_are_read(tmp_path: Path) -> None:
    text = "payment failed " * 70_000  # beyond csv's default 128 KiB field limit
    path = write_csv(tmp_path / "long.csv", [(text, "P1")], header=("text", "priority"))
    assert read_examples(path)[0].text == text


def test_eval_reader_requires_both_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", [("hello", "greet"), ("bye", "")], header=("text", "intent"))
    with pytest.raises(LabelFileError, match=":3: missing intent"):
        read_text_labels(path, label_column="intent")
    assert read_text_labels(write_csv(tmp_path / "ok.csv", [("hi", "a")])) == (["hi"], ["a"])


# -- train(examples) ---------------------------------------------------------------------------


def test_train_rejects_a_single_class() -> None:
    from chatsvc.classifier import train

    examples = [Example(f"payment problem number {i}", "billing", "P1") for i in range(10)]
    with pytest.raises(TrainingError, match="category labels need at least two classes .* found billing \\(10\\)"):
        train(examples)


def test_train_rejects_empty_and_unlabelled_input() -> None:
    from chatsvc.classifier import train

    with pytest.raises(TrainingError, match="no examples"):
        train([])
    with pytest.raises(TrainingError, match="ticket #7: empty text"):
        train([Example("  ", "billing", source="ticket #7")])
    with pytest.raises(TrainingError, match="neither a category nor a priority"):
        train([Example("hello")])


def test_train_rejects_categories_missing_from_the_rules_file() -> None:
    from chatsvc.classifier import train

    examples = [Example("refund please", "biling", source="labels.csv:9")]
    with pytest.raises(TrainingError, match=r"labels.csv:9: category 'biling' is not in the rules file's categories"):
        train(examples)


def test_train_learns_each_head_from_its_own_labels_and_skips_rare_labels() -> None:
    from chatsvc.classifier import TrainingConfig, train

    examples = list(shipped_examples()[:150])
    examples += [Example(f"priority only example {i}", None, "P4") for i in range(3)]
    examples += [Example("the one security question", "security", None), Example("another", "security", None)]
    examples = [e for e in examples if e.category != "security" or e.priority is None]
    result = train(examples, config=TrainingConfig(cv_folds=2))
    heads = result.card["heads"]
    assert heads["category"]["skipped_labels"] == {"security": 2}
    assert "security" not in heads["category"]["classes"]
    assert sum(heads["priority"]["support"].values()) == sum(1 for e in examples if e.priority)


def test_train_with_only_priorities_gives_a_priority_model() -> None:
    from chatsvc.classifier import TrainingConfig, train

    examples = [Example(e.text, None, e.priority) for e in shipped_examples()[:120]]
    result = train(examples, config=TrainingConfig(cv_folds=2))
    assert set(result.card["heads"]) == {"priority"}


def test_plan_bumped_labels_are_learned_as_base_priorities() -> None:
    from chatsvc.classifier.training import _base_priority

    rules = load_rules()
    assert _base_priority(Example("x", priority="P2", plan="Pro"), rules) == "P3"
    assert _base_priority(Example("x", priority="P4", plan="pmc"), rules) == "P4"  # lowest stays lowest
    assert _base_priority(Example("x", priority="P1", plan="pro"), rules) == "P1"
    assert _base_priority(Example("x", priority="P2", plan="starter"), rules) == "P2"
    assert _base_priority(Example("x", priority="P2"), rules) == "P2"
