"""Category and priority for chats and tickets: the manuals' rules plus trained models.

    from chatsvc.classifier import Classifier, Classification
    clf = Classifier.load(models_dir=None, rules_path=None)
    c = clf.classify("payment failed", plan="pro")

Attributes are imported on first use, so importing the package (as the command line does to
register its commands) loads neither numpy nor scikit-learn. `train` needs scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatsvc.classifier.classifier import Classification, Classifier
    from chatsvc.classifier.errors import (
        ClassifierError,
        LabelFileError,
        ModelError,
        RulesError,
        TrainingError,
    )
    from chatsvc.classifier.labels import Example, append_examples, read_examples
    from chatsvc.classifier.rules import RuleSet, load_rules
    from chatsvc.classifier.training import TrainedModel, TrainingConfig, train

_EXPORTS = {
    "Classifier": "chatsvc.classifier.classifier",
    "Classification": "chatsvc.classifier.classifier",
    "ClassifierError": "chatsvc.classifier.errors",
    "LabelFileError": "chatsvc.classifier.errors",
    "ModelError": "chatsvc.classifier.errors",
    "RulesError": "chatsvc.classifier.errors",
    "TrainingError": "chatsvc.classifier.errors",
    "Example": "chatsvc.classifier.labels",
    "append_examples": "chatsvc.classifier.labels",
    "read_examples": "chatsvc.classifier.labels",
    "RuleSet": "chatsvc.classifier.rules",
    "load_rules": "chatsvc.classifier.rules",
    "TrainedModel": "chatsvc.classifier.training",
    "TrainingConfig": "chatsvc.classifier.training",
    "train": "chatsvc.classifier.training",
}

__all__ = [
    "Classification",
    "Classifier",
    "ClassifierError",
    "Example",
    "LabelFileError",
    "ModelError",
    "RuleSet",
    "RulesError",
    "TrainedModel",
    "TrainingConfig",
    "TrainingError",
    "append_examples",
    "load_rules",
    "read_examples",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
