"""Exported models: agreement with scikit-learn, safe save/load, refusal of bad artifacts, reproducibility."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from chatsvc.classifier import wordvectors
from chatsvc.classifier.errors import ModelError
from chatsvc.classifier.model import CARD_FILE, VOCABULARY_FILE, WEIGHTS_FILE, LinearTextModel, _sha256
from tests.classifier.helpers import shipped_examples, trained

EXTRA_TEXTS = [
    "", "   ", "?!", "payment failed", "CAN'T LOG IN", "ñandú café naïve résumé", "Zahlung fehlgeschlagen",
    "x" * 3000, "how do i export the resident list to excel " * 40, "log-in doesnt work 123 456",
]


@pytest.mark.parametrize("head", ["category", "priority"])
def test_fast_path_agrees_with_the_sklearn_pipeline(head: str) -> None:
    model = trained()
    texts = [e.text for e in shipped_examples()] + EXTRA_TEXTS
    expected = model.pipeline(head).predict_proba(texts)
    ours = np.array([model.model.predict_proba(text, head) for text in texts])
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert (ours.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert list(model.model.heads[head].classes) == list(model.heads[head].classes_)


def test_binary_heads_export_correctly() -> None:
    from chatsvc.classifier.training import TrainingConfig, build_pipeline, export_pipeline

    texts = [f"urgent help needed now {i}" for i in range(12)] + [f"just a small question {i}" for i in range(12)]
    labels = ["urgent"] * 12 + ["not_urgent"] * 12
    pipeline = build_pipeline(TrainingConfig(min_df=1)).fit(texts, labels)
    model = export_pipeline(pipeline, head="label")
    probe = ["urgent please", "a question", "nothing in common"]
    ours = np.array([model.predict_proba(t, "label") for t in probe])
    np.testing.assert_allclose(ours, pipeline.predict_proba(probe), atol=1e-6)


def test_round_trip_save_and_load(tmp_path: Path) -> None:
    model = trained().model
    model.save(tmp_path)
    loaded = LinearTextModel.load(tmp_path)
    assert loaded.model_id == model.model_id
    for text in [e.text for e in shipped_examples()[:50]] + EXTRA_TEXTS:
        for head in ("category", "priority"):
            assert loaded.predict_proba(text, head) == pytest.approx(model.predict_proba(text, head), abs=1e-12)
    assert sorted(p.name for p in (tmp_path / "classifier").iterdir()) == [
        "MODEL_CARD.md", CARD_FILE, VOCABULARY_FILE, WEIGHTS_FILE]  # no temporary files left behind


def test_load_accepts_the_artifact_directory_itself(tmp_path: Path) -> None:
    trained().model.save(tmp_path)
    assert LinearTextModel.load(tmp_path / "classifier").model_id == trained().model.model_id


def test_the_shipped_model_loads_and_matches_its_card() -> None:
    model = LinearTextModel.load()
    card = json.loads((Path(__file__).resolve().parents[2] / "models" / "classifier" / CARD_FILE).read_text())
    assert model.model_id == card["model_id"]
    assert set(model.heads) == {"category", "priority"}
    assert model.heads["priority"].classes == ("P1", "P2", "P3", "P4")
    size = sum(p.stat().st_size for p in (Path(__file__).resolve().parents[2] / "models" / "classifier").iterdir())
    assert size < 3_000_000


def test_missing_model_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no classifier model in .*chatsvc train --data"):
        LinearTextModel.load(tmp_path)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    trained().model.save(tmp_path)
    return tmp_path / "classifier"


def rewrite_card(directory: Path, **changes: object) -> None:
    card = json.loads((directory / CARD_FILE).read_text())
    card.update(changes)
    (directory / CARD_FILE).write_text(json.dumps(card))


def test_tampered_weights_are_refused(saved: Path) -> None:
    blob = bytearray((saved / WEIGHTS_FILE).read_bytes())
    blob[-40] ^= 0xFF
    (saved / WEIGHTS_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match=r"weights.npz does not match its model card .*refusing.*chatsvc train"):
        LinearTextModel.load(saved.parent)


def test_tampered_vocabulary_is_refused(saved: Path) -> None:
    data = json.loads((saved / VOCABULARY_FILE).read_text())
    data["word"][0] = "evil"
    (saved / VOCABULARY_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="vocabulary.json does not match its model card"):
        LinearTextModel.load(saved.parent)


class Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_a_pickle_is_never_unpickled(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blob = pickle.dumps(Boom())
    (saved / WEIGHTS_FILE).write_bytes(blob)
    files = json.loads((saved / CARD_FILE).read_text())["files"]
    rewrite_card(saved, files={**files, WEIGHTS_FILE: _sha256(blob)})  # even with a matching hash
    with pytest.raises(ModelError, match="not a plain array file.*refusing"):
        LinearTextModel.load(saved.parent)
    assert "unpickled!" not in capsys.readouterr().out


def test_object_arrays_are_refused(saved: Path) -> None:
    with np.load(saved / WEIGHTS_FILE, allow_pickle=False) as npz:
        names = list(npz.files)  # the model's own arrays (with word vectors when they were used)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.array([Boom()], dtype=object), allow_pickle=True)
            archive.writestr(f"{name}.npy", payload.getvalue())
    blob = buffer.getvalue()
    (saved / WEIGHTS_FILE).write_bytes(blob)
    files = json.loads((saved / CARD_FILE).read_text())["files"]
    rewrite_card(saved, files={**files, WEIGHTS_FILE: _sha256(blob)})
    with pytest.raises(ModelError, match="refusing"):
        LinearTextModel.load(saved.parent)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"format": "sklearn-pickle"}, "not a chatsvc classifier model card"),
    ({"format_version": 99}, "model format 99 .* is not the one this chatsvc reads"),
    ({"text_version": 0}, "text version 0"),
    ({"files": {}}, "does not list the hashes"),
])
def test_unknown_or_incompatible_cards_are_refused(saved: Path, changes: dict[str, object], expected: str) -> None:
    rewrite_card(saved, **changes)
    with pytest.raises(ModelError, match=f"{expected}.*chatsvc train"):
        LinearTextModel.load(saved.parent)


def test_inconsistent_shapes_are_refused(saved: Path) -> None:
    card = json.loads((saved / CARD_FILE).read_text())
    card["heads"]["priority"]["classes"].append("P9")
    (saved / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not all of P1"):
        LinearTextModel.load(saved.parent)
    card["heads"]["priority"]["classes"] = ["P1", "P2", "P3"]
    (saved / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="weights have shape"):
        LinearTextModel.load(saved.parent)


def test_unreadable_card_is_refused(saved: Path) -> None:
    (saved / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not a readable model card"):
        LinearTextModel.load(saved.parent)


def test_same_data_and_seed_give_byte_identical_artifacts(tmp_path: Path) -> None:
    from chatsvc.classifier.training import TrainingConfig, train

    examples = shipped_examples()[:160]
    config = TrainingConfig(seed=3, cv_folds=2, calibration_folds=3)
    first = train(examples, config=config)
    second = train(list(examples), config=config)
    first.save(tmp_path / "a")
    second.save(tmp_path / "b")
    for name in (CARD_FILE, WEIGHTS_FILE, VOCABULARY_FILE, "MODEL_CARD.md"):
        assert (tmp_path / "a" / "classifier" / name).read_bytes() == (tmp_path / "b" / "classifier" / name).read_bytes()
    assert first.card["heads"]["category"]["cv"] == second.card["heads"]["category"]["cv"]
    texts = [e.text for e in shipped_examples()[160:220]]
    for head in ("category", "priority"):
        assert [first.model.predict_proba(t, head) for t in texts] == [second.model.predict_proba(t, head) for t in texts]


def test_a_failed_save_leaves_the_previous_model_intact(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import chatsvc.classifier.model as model_module

    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real_replace = model_module.os.replace

    def failing_replace(source: str, target: Path) -> None:
        if Path(target).name == VOCABULARY_FILE:
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(model_module.os, "replace", failing_replace)
    model = trained().model
    other = LinearTextModel(card=model.card, word_vocabulary=model.word_vocabulary,
                            char_vocabulary=model.char_vocabulary, coef=model.coef * 2, intercept=model.intercept,
                            idf=model.idf)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved.parent)
    monkeypatch.undo()
    assert not [p for p in saved.iterdir() if p.name.endswith(".tmp")]
    # weights.npz was replaced but the card was not: the mismatch is detected, nothing half-loads
    with pytest.raises(ModelError, match="does not match its model card"):
        LinearTextModel.load(saved.parent)
    assert (saved / CARD_FILE).read_bytes() == before[CARD_FILE]
    shutil.rmtree(saved)


@pytest.mark.skipif(not wordvectors.available(), reason="needs the `embeddings` extra")
def test_word_vectors_are_kept_only_when_they_win_out_of_fold(tmp_path: Path) -> None:
    from chatsvc.classifier.training import TrainingConfig, train

    examples = [e for e in shipped_examples() if e.category][:300]
    result = train(examples, config=TrainingConfig(cv_folds=2, calibration_folds=3))
    selection = result.card["feature_selection"]
    assert set(selection["scores"]) == {"none", "minilm"}
    assert selection["chosen"] == max(selection["scores"], key=selection["scores"].__getitem__)
    vectors = result.card["features"]["word_vectors"]
    assert (vectors is not None) == (selection["chosen"] == "minilm")
    if vectors is not None:  # float16 vectors travel with the model, and load back to the same answers
        result.save(tmp_path)
        with np.load(tmp_path / "classifier" / WEIGHTS_FILE, allow_pickle=False) as npz:
            assert npz["vectors"].dtype == np.float16
            assert npz["vectors"].shape == (vectors["words"], vectors["dims"])
        loaded = LinearTextModel.load(tmp_path)
        text = "my card payment was declined twice"
        assert loaded.predict_proba(text, "category") == pytest.approx(
            result.model.predict_proba(text, "category"), abs=1e-6)
