"""Errors of the classifier. Each message names the file (and line or rule) and how to fix it."""

from __future__ import annotations


class ClassifierError(Exception):
    """Base class: a problem the operator can fix (bad file, missing model, bad input)."""


class ModelError(ClassifierError):
    """A model artifact is missing, incompatible, or does not match its model card."""


class RulesError(ClassifierError):
    """The rules file cannot be read or one of its rules is invalid."""


class LabelFileError(ClassifierError):
    """A labelled-example file (CSV or JSONL) cannot be read; the message names file and line."""


class TrainingError(ClassifierError):
    """The examples cannot train a model (too few, a single class, unknown labels)."""
