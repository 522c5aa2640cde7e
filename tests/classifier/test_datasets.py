"""Converters of the public evaluation data sets, on tiny stand-ins written in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from chatsvc.classifier.datasets import REPOSITORY, main


def read(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.reader(stream))


def test_banking77(tmp_path: Path) -> None:
    source = tmp_path / "banking77"
    source.mkdir()
    (source / "train.csv").write_text('text,category\n"Where is my card, still?",card_arrival\n'
                                      "top up failed,top_up_failed\n", encoding="utf-8")
    assert main(["banking77", str(source), str(tmp_path / "out")]) == 0
    assert read(tmp_path / "out" / "banking77_train.csv") == [
        ["text", "label"], ["Where is my card, still?", "card_arrival"], ["top up failed", "top_up_failed"]]


def test_clinc150(tmp_path: Path) -> None:
    data = {"train": [["what is my balance", "balance"]], "val": [["balance please", "balance"]],
            "oos_train": [["tell me a joke about cats", "oos"]], "oos_val": [["how tall is everest", "oos"]]}
    (tmp_path / "data_trainval.json").write_text(json.dumps(data), encoding="utf-8")
    assert main(["clinc150", str(tmp_path), str(tmp_path / "out")]) == 0
    assert read(tmp_path / "out" / "clinc150_train.csv")[1:] == [["what is my balance", "balance"],
                                                                  ["tell me a joke about cats", "oos"]]
    assert read(tmp_path / "out" / "clinc150_val.csv")[1:] == [["balance please", "balance"],
                                                                ["how tall is everest", "oos"]]


def test_mooc(tmp_path: Path) -> None:
    (tmp_path / "All_Courses_REDACTED_CODED.csv").write_text(
        'id,post_time,post_text,Urgency_1_7\n1,0,"I cannot submit, deadline today!",6\n2,0,thanks all,1.0\n'
        '3,0,"multi\nline question",4.0\n4,0,"meh",3\n \n', encoding="utf-8")
    assert main(["mooc", str(tmp_path), str(tmp_path / "out")]) == 0
    assert read(tmp_path / "out" / "mooc_urgency.csv")[1:] == [
        ["I cannot submit, deadline today!", "urgent"], ["thanks all", "not_urgent"],
        ["multi\nline question", "urgent"], ["meh", "not_urgent"]]


def test_refuses_to_write_into_the_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.csv").write_text("text,category\nx,y\n", encoding="utf-8")
    assert main(["banking77", str(tmp_path), str(REPOSITORY / "eval-data")]) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not (REPOSITORY / "eval-data").exists()


def test_missing_source_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clinc150", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "data_trainval.json" in capsys.readouterr().err
