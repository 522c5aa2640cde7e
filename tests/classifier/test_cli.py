"""`chatsvc train` and `chatsvc eval classify` end to end, through chatsvc.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatsvc.classifier import Classifier
from chatsvc.classifier.evaluation import CONTRACT_KEYS
from chatsvc.cli import main
from tests.classifier.helpers import shipped_examples, synthetic_rows, write_csv


@pytest.fixture
def labels_csv(tmp_path: Path) -> Path:
    rows = [(e.text, e.category or "", e.priority or "") for e in shipped_examples()[:160]]
    return write_csv(tmp_path / "labels.csv", rows, header=("text", "category", "priority"))


def test_train_writes_a_loadable_model_with_a_card(tmp_path: Path, labels_csv: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models"
    assert main(["train", "--data", str(labels_csv), "--out", str(out), "--seed", "7", "--cv", "2"]) == 0
    printed = capsys.readouterr().out
    assert "written to" in printed and "category: 8 classes" in printed
    card = json.loads((out / "classifier" / "card.json").read_text())
    assert card["seed"] == 7
    assert card["training_data"]["examples"] == 160 and len(card["training_data"]["sha256"]) == 64
    assert set(card["libraries"]) == {"python", "numpy", "scipy", "scikit-learn"}
    assert card["heads"]["priority"]["classes"] == ["P1", "P2", "P3", "P4"]
    assert {"accuracy", "macro_f1", "folds"} <= set(card["heads"]["category"]["cv"])
    assert card["command"].startswith("chatsvc train --data labels.csv")
    assert (out / "classifier" / "MODEL_CARD.md").read_text().startswith(f"# Model card: {card['model_id']}")
    c = Classifier.load(out).classify("I cant log in to the portal")
    assert c.priority in {"P1", "P2", "P3", "P4"}


def test_train_twice_with_the_same_seed_is_reproducible(tmp_path: Path, labels_csv: Path) -> None:
    for name in ("a", "b"):
        assert main(["train", "--data", str(labels_csv), "--out", str(tmp_path / name), "--cv", "2"]) == 0
    for file in ("card.json", "weights.npz", "vocabulary.json"):
        assert (tmp_path / "a" / "classifier" / file).read_bytes() == (tmp_path / "b" / "classifier" / file).read_bytes()


def test_train_from_several_files_and_jsonl(tmp_path: Path, labels_csv: Path) -> None:
    jsonl = tmp_path / "corrections.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": e.text, "priority": e.priority})
                               for e in shipped_examples()[160:220]), encoding="utf-8")
    assert main(["train", "--data", str(labels_csv), "--data", str(jsonl), "--out", str(tmp_path), "--cv", "2"]) == 0
    card = json.loads((tmp_path / "classifier" / "card.json").read_text())
    assert card["training_data"]["examples"] == 220
    assert card["training_data"]["sources"] == ["labels.csv", "corrections.jsonl"]


@pytest.mark.parametrize(("rows", "expected"), [
    ([("only billing here", "billing", "P3")] * 6, "need at least two classes"),
    ([("fine", "billing", "P3"), ("odd", "billing", "P9")], ":3: priority 'P9' is not one of"),
])
def test_train_user_errors_exit_2_without_writing(tmp_path: Path, rows: list[tuple[str, ...]], expected: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "bad.csv", rows, header=("text", "category", "priority"))
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chatsvc train: error: ") and expected in err
    assert not (tmp_path / "models" / "classifier" / "card.json").exists()


def test_train_non_utf8_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "win.csv"
    path.write_bytes(b"text,priority\nok,P3\nna\xefve,P3\n")
    assert main(["train", "--data", str(path), "--out", str(tmp_path)]) == 2
    assert f"{path}:3: not valid UTF-8" in capsys.readouterr().err


def test_train_bad_rules_file(tmp_path: Path, labels_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "x"\npriority = "urgent"\nphrases = ["a"]\n', encoding="utf-8")
    assert main(["train", "--data", str(labels_csv), "--rules", str(rules), "--out", str(tmp_path)]) == 2
    assert f"{rules}: rule 'x' (#1): priority 'urgent'" in capsys.readouterr().err


def last_json(output: str) -> dict[str, dict[str, object]]:
    return json.loads(output.strip().splitlines()[-1])


def assert_contract(document: dict[str, dict[str, object]]) -> None:
    assert list(document) == ["ours", "baselines"]
    assert list(document["baselines"]) == ["majority", "tfidf_logreg"]
    for result in (document["ours"], *document["baselines"].values()):  # type: ignore[union-attr]
        assert list(result) == list(CONTRACT_KEYS)  # type: ignore[arg-type]


def test_eval_classify_train_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_csv(tmp_path / "train.csv", synthetic_rows(20, seed=1))
    test = write_csv(tmp_path / "test.csv", synthetic_rows(8, seed=2) + [("a brand new topic", "unseen")])
    assert main(["eval", "classify", "--train", str(train), "--test", str(test)]) == 0
    output = capsys.readouterr().out
    document = last_json(output)
    assert_contract(document)
    ours = document["ours"]
    assert ours["inscope_accuracy"] is None and ours["oos_recall"] is None
    assert 0.8 <= ours["accuracy"] <= 1.0  # type: ignore[operator]
    assert ours["p99_predict_us"] > 0  # type: ignore[operator]
    majority = document["baselines"]["majority"]
    assert majority["accuracy"] < ours["accuracy"]  # type: ignore[operator]
    assert "labels never seen in training (unseen)" in output


def test_eval_classify_with_reject_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_csv(tmp_path / "train.csv", synthetic_rows(20, seed=1, oos=15))
    test = write_csv(tmp_path / "test.csv", synthetic_rows(6, seed=2, oos=6))
    assert main(["eval", "classify", "--train", str(train), "--test", str(test), "--reject-label", "oos"]) == 0
    output = capsys.readouterr().out
    document = last_json(output)
    assert_contract(document)
    for result in (document["ours"], document["baselines"]["tfidf_logreg"]):
        assert 0.0 <= result["inscope_accuracy"] <= 1.0  # type: ignore[operator]
        assert 0.0 <= result["oos_recall"] <= 1.0  # type: ignore[operator]
    assert "abstain threshold for ours (tuned on TRAIN only)" in output


def test_eval_classify_cross_validation_and_label_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_csv(tmp_path / "train.csv", synthetic_rows(10, seed=3), header=("text", "intent"))
    assert main(["eval", "classify", "--train", str(train), "--cv", "3", "--label-column", "intent"]) == 0
    output = capsys.readouterr().out
    assert "3-fold stratified cross-validation" in output
    document = last_json(output)
    assert_contract(document)
    assert document["ours"]["accuracy"] is not None


@pytest.mark.parametrize(("extra", "rows", "expected"), [
    ([], [("a b", "x")] * 5, "give either --test TEST.csv or --cv K"),
    (["--cv", "3"], [("a b", "x")] * 5, "all rows have the label 'x'"),
    (["--cv", "5"], [("a b", "x")] * 5 + [("c d", "y")] * 3, "label 'y' has only 3 rows, fewer than --cv 5"),
    (["--cv", "2", "--reject-label", "oos"], [("a b", "x")] * 5 + [("c d", "y")] * 5, "no row has the reject label"),
    (["--cv", "2", "--label-column", "intent"], [("a b", "x")] * 5, "the header needs columns text, intent"),
])
def test_eval_classify_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                   rows: list[tuple[str, str]], expected: str) -> None:
    train = write_csv(tmp_path / "train.csv", rows)
    assert main(["eval", "classify", "--train", str(train), *extra]) == 2
    assert expected in capsys.readouterr().err
