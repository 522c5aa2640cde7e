"""A retrained model is picked up without a restart: in process (`reload_if_changed`) and by a real server
whose models directory `chatsvc train` writes into."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chatsvc.classifier import Classifier, Example, ModelError, TrainingConfig, train
from chatsvc.classifier.model import ARTIFACT_DIR, CARD_FILE, WEIGHTS_FILE
from tests.classifier.helpers import synthetic_rows, write_csv
from tests.support.poll import poll
from tests.support.server import FAST_SETTINGS, Server, make_agent

ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = {"billing": "billing", "login": "account", "export": "technical"}
SWAPPED = {"billing": "account", "login": "billing", "export": "technical"}
MESSAGE = "refund the charge on my invoice please"
FAST = TrainingConfig(cv_folds=2, calibration_folds=3, word_vectors="none")


def rows(mapping: dict[str, str]) -> list[tuple[str, str]]:
    return [(text, mapping[label]) for text, label in synthetic_rows(per_label=20)]


def save_model(models_dir: Path, mapping: dict[str, str]) -> str:
    trained = train([Example(text, category=label) for text, label in rows(mapping)], config=FAST)
    trained.save(models_dir)
    return str(trained.card["model_id"])


def test_reload_if_changed_swaps_in_a_new_model_and_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    first = save_model(tmp_path, CATEGORIES)
    classifier = Classifier.load(tmp_path)
    assert classifier.classify(MESSAGE).category == "billing"
    assert classifier.reload_if_changed() is False  # nothing new

    second = save_model(tmp_path, SWAPPED)
    assert second != first
    assert classifier.reload_if_changed() is True
    result = classifier.classify(MESSAGE)
    assert (result.category, result.reason["model"]) == ("account", second)

    # A model file that does not match its card (a write in progress, a bad copy) is refused and the
    # loaded model keeps serving; once the artifacts are whole again it is loaded.
    save_model(tmp_path, CATEGORIES)
    weights = tmp_path / ARTIFACT_DIR / WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes(good[:-10])
    with pytest.raises(ModelError, match="does not match its model card"):
        classifier.reload_if_changed()
    assert classifier.classify(MESSAGE).reason["model"] == second
    weights.write_bytes(good)
    assert classifier.reload_if_changed() is True
    assert classifier.classify(MESSAGE).category == "billing"


def test_a_running_server_picks_up_a_model_written_by_chatsvc_train(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = save_model(models, CATEGORIES)
    swapped_csv = write_csv(tmp_path / "swapped.csv", rows(SWAPPED), header=("text", "category"))
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'reload.db'}"
    _, token = make_agent(database_url, "Ann")
    server = Server({**FAST_SETTINGS, "CHATSVC_DATABASE_URL": database_url, "CHATSVC_MODELS_DIR": str(models),
                     "CHATSVC_CLASSIFIER_RELOAD_INTERVAL": "0.2"}, log_path=tmp_path / "server.log")
    server.start(timeout=40)
    try:
        def new_ticket() -> dict[str, object]:
            response = httpx.post(f"{server.http}/api/v1/tickets", headers={"Authorization": f"Bearer {token}"},
                                  json={"subject": "Invoice", "text": MESSAGE}, timeout=30)
            assert response.status_code == 201, response.text
            ticket = httpx.get(f"{server.http}/api/v1/tickets/{response.json()['id']}",
                               headers={"Authorization": f"Bearer {token}"}, timeout=30)
            return dict(ticket.json())

        before = new_ticket()
        assert before["category"] == "billing"
        assert before["triage"]["model"] == first  # type: ignore[index]

        subprocess.run([sys.executable, "-m", "chatsvc", "train", "--data", str(swapped_csv), "--out", str(models),
                        "--cv", "2", "--word-vectors", "none"], check=True, cwd=ROOT, capture_output=True)
        second = json.loads((models / ARTIFACT_DIR / CARD_FILE).read_text())["model_id"]
        assert second != first

        after = poll(new_ticket, lambda t: t["triage"]["model"] == second)  # type: ignore[index]
        assert after["triage"]["model"] == second, server.read_log()  # type: ignore[index]
        assert after["category"] == "account"
    finally:
        server.stop()
