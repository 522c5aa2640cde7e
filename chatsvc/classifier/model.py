"""Trained linear models as plain arrays: safe loading, and scoring without scikit-learn.

A model is a word n-gram block and a character n-gram block of binary TF-IDF features (each
block L2-normalised, as scikit-learn's FeatureUnion of two TfidfVectorizers does), optionally a
block of static word vectors (the scaled mean of the vectors of the message's known words), followed by
linear heads (category, priority) whose decision values are turned into probabilities by a
temperature-scaled softmax. Scoring one message is a dictionary lookup per n-gram, one gather of
weight rows and two small matrix-vector products: a small fraction of the per-call overhead of a
scikit-learn pipeline (docs/benchmarks/classifier.md).

Artifacts are a directory `classifier/` holding
  weights.npz      float arrays only, read with allow_pickle=False (coef, intercept, idf; vectors)
  vocabulary.json  the n-grams of each block, in column order (and the words that have vectors)
  card.json        the model card: format, classes, thresholds, metrics, hashes of the two files
  MODEL_CARD.md    the same card for people.
Nothing is unpickled, and files whose hash differs from the card are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from pathlib import Path
from typing import Any, cast

import numpy as np

from chatsvc.classifier.errors import ModelError
from chatsvc.classifier.rules import PRIORITIES
from chatsvc.classifier.text import TEXT_VERSION, char_ngrams, normalize, word_ngrams, words

FORMAT = "chatsvc-classifier"
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # 1: no word vectors
ARTIFACT_DIR = "classifier"
CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "MODEL_CARD.md"
WEIGHTS_FILE = "weights.npz"
VOCABULARY_FILE = "vocabulary.json"
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
# Longer texts are scored on their first MAX_CHARS characters (rules and model alike).
MAX_CHARS = 20_000
HEAD_NAMES = ("category", "priority")
TRAIN_HINT = "chatsvc train --data LABELS.csv --out {dir}"

_WEIGHT_ARRAYS = {"coef": np.float32, "intercept": np.float64, "idf": np.float32}
_VECTOR_ARRAY = {"vectors": np.float16}  # present when the card's features have word_vectors
_CHAR_CACHE_SIZE = 65_536
_WARM_WORDS = 50_000


@dataclass(frozen=True, slots=True)
class Head:
    """One prediction target: its classes, its columns in the weight matrix, its calibration."""

    name: str
    classes: tuple[str, ...]
    start: int
    beta: float
    threshold: float

    @property
    def stop(self) -> int:
        return self.start + len(self.classes)


@dataclass(frozen=True, slots=True)
class Scored:
    """Decision values of every head for one text, with what is needed to explain them."""

    values: list[float]
    rows: np.ndarray | None
    features: np.ndarray
    n_word: int
    n_sparse: int  # features[:n_word] are word n-grams, then character n-grams up to n_sparse, then word vectors
    word_norm: float
    char_norm: float


class LinearTextModel:
    """Exported weights of a trained model, scored with our own tokenizer and a sparse dot product."""

    def __init__(self, *, card: Mapping[str, Any], word_vocabulary: list[str], char_vocabulary: list[str],
                 coef: np.ndarray, intercept: np.ndarray, idf: np.ndarray,
                 vector_words: list[str] | None = None, vectors: np.ndarray | None = None) -> None:
        features = card["features"]
        self.card = dict(card)
        self.model_id: str = card["model_id"]
        self.word_ngrams: tuple[int, int] = (int(features["word_ngrams"][0]), int(features["word_ngrams"][1]))
        self.char_ngrams: tuple[int, int] = (int(features["char_ngrams"][0]), int(features["char_ngrams"][1]))
        self.max_chars: int = int(features["max_chars"])
        self.heads: dict[str, Head] = {
            name: Head(name, tuple(h["classes"]), int(h["start"]), float(h["temperature_beta"]),
                       float(h["threshold"]))
            for name, h in card["heads"].items()
        }
        self.word_vocabulary = word_vocabulary
        self.char_vocabulary = char_vocabulary
        self._word_index = {g: i for i, g in enumerate(word_vocabulary)}
        self._char_index = {g: i + len(word_vocabulary) for i, g in enumerate(char_vocabulary)}
        self.coef = coef
        self.intercept = intercept
        self.idf = idf
        # Binary TF-IDF: a present feature's value is its idf, divided by its block's L2 norm. So
        # a message's decision values are the sums of idf * coef over its features, per block,
        # divided by sqrt(sum of idf**2) of the block; the last column carries idf**2 for that.
        n_sparse = len(idf)
        blocks = [np.hstack([coef[:n_sparse] * idf[:, None], (idf.astype(np.float64) ** 2)[:, None]])]
        # Word vectors: a message's block is scale * (the mean of its distinct known words' vectors),
        # so its decision values are the mean of P = scale * vector @ coef over those words. Their
        # rows follow the n-gram rows (last column 0), and one gather serves all three blocks.
        self.vector_words = vector_words or []
        self.vectors = vectors
        self._vector_get = None
        if vectors is not None and len(self.vector_words):
            scale = float(features["word_vectors"]["scale"])
            projected = scale * (vectors.astype(np.float64) @ coef[n_sparse:].astype(np.float64))
            blocks.append(np.hstack([projected, np.zeros((len(projected), 1))]))
            self._vector_get = {w: i + n_sparse for i, w in enumerate(self.vector_words)}.get
        self._augmented = np.vstack(blocks).astype(np.float32)
        self._intercept = [float(v) for v in intercept]
        self._word_get = self._word_index.get
        self._bigrams_only = self.word_ngrams == (1, 2)
        self._char_ids = lru_cache(maxsize=_CHAR_CACHE_SIZE)(self._compute_char_ids)
        self._bigram_heads = frozenset(g.split(" ", 1)[0] for g in word_vocabulary if " " in g)
        # Precompute the character n-grams of the known words, so that a freshly loaded model
        # serves ordinary messages at its steady-state speed; unknown words are added as they come.
        for gram in word_vocabulary[:_WARM_WORDS]:
            if " " not in gram:
                self._char_ids(gram)

    # -- scoring ---------------------------------------------------------------------------

    def score(self, text: str) -> Scored:
        """Decision values (before temperature) for every head's classes, in weight-column order."""
        tokens = words(normalize(text[:self.max_chars]))
        get = self._word_get
        if self._bigrams_only:
            found = set(map(get, tokens))
            heads = self._bigram_heads
            found.update(map(get, [a + " " + b for a, b in pairwise(tokens) if a in heads]))
        else:
            low, high = self.word_ngrams
            found = set(map(get, word_ngrams(tokens, low, high)))
        found.discard(None)
        word_ids = cast(set[int], found)
        n_word = len(word_ids)
        # Word vectors: the rows of the distinct known words, after the n-gram rows.
        vector_ids: set[int | None] = set(map(self._vector_get, tokens)) if self._vector_get is not None else set()
        vector_ids.discard(None)
        n_vector = len(vector_ids)
        # Character n-gram ids per distinct word come from a cache; the ids shared by several
        # words are deduplicated in numpy (sort + neighbour comparison), faster than a Python set.
        # The array starts with the word and vector ids, so that one concatenation builds it.
        head = np.fromiter(chain(word_ids, vector_ids), dtype=np.intp, count=n_word + n_vector)
        all_ids = np.concatenate([head, *map(self._char_ids, set(tokens))])
        chars = all_ids[n_word + n_vector:]
        if len(chars) > 1:
            chars.sort()
            keep = np.empty(len(chars), dtype=bool)
            keep[0] = True
            np.not_equal(chars[1:], chars[:-1], out=keep[1:])
            chars = chars[keep]
        features = np.concatenate([head[:n_word], chars, head[n_word:]])
        n_sparse = len(features) - n_vector
        if not len(features):
            return Scored(list(self._intercept), None, features, 0, 0, 0.0, 0.0)
        rows = self._augmented.take(features, axis=0)
        # The blocks' sums in one call (reduceat over the non-empty blocks), then one product:
        # each numpy call costs a microsecond or more, whatever its size.
        blocks = [(lo, hi) for lo, hi in ((0, n_word), (n_word, n_sparse), (n_sparse, len(features))) if hi > lo]
        sums = np.add.reduceat(rows, [lo for lo, _ in blocks], axis=0)
        squares = sums[:, -1].tolist()
        word_norm = char_norm = 0.0
        divisors = []
        for (lo, hi), square in zip(blocks, squares, strict=True):
            if lo >= n_sparse:
                divisors.append(1.0 / (hi - lo))  # word vectors: the mean of the words' rows
                continue
            norm = math.sqrt(square)
            if lo == 0 and n_word:
                word_norm = norm
            else:
                char_norm = norm
            divisors.append(1.0 / norm)
        total = (np.asarray(divisors, dtype=np.float32) @ sums).tolist()
        values = [t + b for t, b in zip(total, self._intercept, strict=False)]
        return Scored(values, rows, features, n_word, n_sparse, word_norm, char_norm)

    def probabilities(self, scored: Scored, head: str) -> list[float]:
        """Calibrated class probabilities of one head, in `heads[head].classes` order."""
        h = self.heads[head]
        values = scored.values[h.start:h.stop]
        if len(values) > 32:
            z = np.asarray(values)
            z = np.exp(h.beta * (z - z.max()))
            return cast(list[float], (z / z.sum()).tolist())
        top = max(values)
        beta = h.beta
        exps = [math.exp(beta * (v - top)) for v in values]
        total = sum(exps)
        return [e / total for e in exps]

    def predict_proba(self, text: str, head: str) -> list[float]:
        return self.probabilities(self.score(text), head)

    def explain(self, scored: Scored, head: str, label: str, limit: int = 3) -> list[str]:
        """The n-grams of the text that pushed most towards `label` (words first, else characters)."""
        if scored.rows is None:
            return []
        h = self.heads[head]
        column = h.start + h.classes.index(label)
        n_word = scored.n_word
        # Within a block every feature is divided by the same norm: rank by idf * coef alone.
        for lo, hi, vocabulary, offset in ((0, n_word, self.word_vocabulary, 0),
                                           (n_word, scored.n_sparse, self.char_vocabulary,
                                            len(self.word_vocabulary))):
            if hi <= lo:
                continue
            weights = scored.rows[lo:hi, column].tolist()
            best = sorted((i for i, w in enumerate(weights) if w > 0), key=weights.__getitem__, reverse=True)
            if best:
                return [vocabulary[int(scored.features[lo + i]) - offset].strip() for i in best[:limit]]
        return []

    def _compute_char_ids(self, token: str) -> np.ndarray:
        index = self._char_index
        low, high = self.char_ngrams
        ids = {index[g] for g in char_ngrams(token, low, high) if g in index}
        return np.fromiter(ids, dtype=np.intp, count=len(ids))

    # -- persistence -----------------------------------------------------------------------

    def save(self, models_dir: str | Path) -> Path:
        """Write the artifacts into `models_dir/classifier/`, each file atomically, the card last."""
        target = Path(models_dir) / ARTIFACT_DIR
        target.mkdir(parents=True, exist_ok=True)
        arrays = {"coef": self.coef, "intercept": self.intercept, "idf": self.idf}
        words = {"word": self.word_vocabulary, "char": self.char_vocabulary}
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
            words["vector_words"] = self.vector_words
        weights = _npz_bytes(arrays)
        vocabulary = _json_bytes(words)
        card = dict(self.card)
        card["files"] = {WEIGHTS_FILE: _sha256(weights), VOCABULARY_FILE: _sha256(vocabulary)}
        _atomic_write(target / WEIGHTS_FILE, weights)
        _atomic_write(target / VOCABULARY_FILE, vocabulary)
        _atomic_write(target / CARD_MARKDOWN_FILE, card_markdown(card).encode("utf-8"))
        _atomic_write(target / CARD_FILE, _json_bytes(card))
        self.card = card
        return target

    @classmethod
    def load(cls, models_dir: str | Path | None = None) -> LinearTextModel:
        """Load and check artifacts; any problem is a ModelError that says how to fix it."""
        base = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
        directory = base / ARTIFACT_DIR
        if not (directory / CARD_FILE).is_file() and (base / CARD_FILE).is_file():
            directory = base
        hint = TRAIN_HINT.format(dir=base)
        card_path = directory / CARD_FILE
        if not card_path.is_file():
            raise ModelError(f"no classifier model in {base} (expected {card_path}); "
                             f"train one with `{hint}`")
        card = _read_card(card_path, hint)
        files = card.get("files")
        if not isinstance(files, dict) or set(files) != {WEIGHTS_FILE, VOCABULARY_FILE}:
            raise ModelError(f"{card_path}: the card does not list the hashes of {WEIGHTS_FILE} and "
                             f"{VOCABULARY_FILE}; retrain with `{hint}`")
        blobs = {}
        for name, digest in files.items():
            path = directory / name
            try:
                blob = path.read_bytes()
            except OSError as exc:
                raise ModelError(f"{path}: cannot read ({exc.strerror or exc}); retrain with `{hint}`") from None
            if _sha256(blob) != digest:
                raise ModelError(f"{path} does not match its model card {card_path} (changed, replaced or "
                                 f"partly written); refusing to load it. Retrain with `{hint}`")
            blobs[name] = blob
        with_vectors = _word_vectors(card) is not None
        arrays = _read_npz(blobs[WEIGHTS_FILE], directory / WEIGHTS_FILE, hint, with_vectors)
        vocabulary = _read_vocabulary(blobs[VOCABULARY_FILE], directory / VOCABULARY_FILE, hint, with_vectors)
        _check_shapes(card, arrays, vocabulary, card_path, hint)
        return cls(card=card, word_vocabulary=vocabulary["word"], char_vocabulary=vocabulary["char"],
                   coef=arrays["coef"], intercept=arrays["intercept"], idf=arrays["idf"],
                   vector_words=vocabulary.get("vector_words"), vectors=arrays.get("vectors"))


def artifact_fingerprint(models_dir: str | Path) -> tuple[int, ...] | None:
    """Identity of the model card in `models_dir` (device, inode, mtime, size), None if there is none.

    `save` writes the card last, by renaming a new file over it, so a new fingerprint means a
    complete new model (or one being replaced again, which `load` then refuses until it is done).
    """
    base = Path(models_dir)
    for path in (base / ARTIFACT_DIR / CARD_FILE, base / CARD_FILE):
        try:
            stat = path.stat()
        except OSError:
            continue
        return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return None


# -- artifact checks -------------------------------------------------------------------------


def _read_card(path: Path, hint: str) -> dict[str, Any]:
    try:
        card = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable model card ({exc}); retrain with `{hint}`") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelError(f"{path}: not a chatsvc classifier model card (format {FORMAT!r} expected); "
                         f"retrain with `{hint}`")
    if card.get("format_version") not in READABLE_FORMAT_VERSIONS or card.get("text_version") != TEXT_VERSION:
        raise ModelError(
            f"{path}: model format {card.get('format_version')!r} / text version {card.get('text_version')!r} "
            f"is not the one this chatsvc reads ({FORMAT_VERSION} / {TEXT_VERSION}); retrain with `{hint}`")
    return card


def _word_vectors(card: Mapping[str, Any]) -> Any:
    features = card.get("features")
    return features.get("word_vectors") if isinstance(features, dict) else None


def _read_npz(blob: bytes, path: Path, hint: str, with_vectors: bool) -> dict[str, np.ndarray]:
    expected = {**_WEIGHT_ARRAYS, **(_VECTOR_ARRAY if with_vectors else {})}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            names = set(npz.files)
            if names != set(expected):
                raise ModelError(f"{path}: holds arrays {sorted(names)}, expected {sorted(expected)}; "
                                 f"retrain with `{hint}`")
            arrays = {name: npz[name] for name in expected}
    except ModelError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{path}: not a plain array file ({exc}); refusing to load it. "
                         f"Retrain with `{hint}`") from None
    for name, dtype in expected.items():
        if arrays[name].dtype != dtype:
            raise ModelError(f"{path}: array {name} has type {arrays[name].dtype}, expected "
                             f"{np.dtype(dtype)}; retrain with `{hint}`")
        if not np.all(np.isfinite(arrays[name])):
            raise ModelError(f"{path}: array {name} holds non-finite values; retrain with `{hint}`")
    return arrays


def _read_vocabulary(blob: bytes, path: Path, hint: str, with_vectors: bool) -> dict[str, list[str]]:
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not readable ({exc}); retrain with `{hint}`") from None
    keys = {"word", "char", "vector_words"} if with_vectors else {"word", "char"}
    if (not isinstance(data, dict) or set(data) != keys
            or not all(isinstance(v, list) and all(isinstance(g, str) for g in v) for v in data.values())):
        raise ModelError(f"{path}: expected lists of n-grams under {', '.join(sorted(keys))}; "
                         f"retrain with `{hint}`")
    for block, grams in data.items():
        if len(set(grams)) != len(grams):
            raise ModelError(f"{path}: the {block} vocabulary repeats n-grams; retrain with `{hint}`")
    return data


def _check_shapes(card: dict[str, Any], arrays: dict[str, np.ndarray], vocabulary: dict[str, list[str]],
                  path: Path, hint: str) -> None:
    def fail(message: str) -> ModelError:
        return ModelError(f"{path}: {message}; retrain with `{hint}`")

    try:
        features = card["features"]
        for key in ("word_ngrams", "char_ngrams"):
            low, high = features[key]
            if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high <= 8):
                raise fail(f"bad {key} {features[key]!r}")
        if not isinstance(features["max_chars"], int) or features["max_chars"] < 1:
            raise fail("bad max_chars")
        heads = card["heads"]
        if not isinstance(heads, dict) or not heads or not set(heads) <= set(HEAD_NAMES):
            raise fail(f"heads must be some of {', '.join(HEAD_NAMES)}")
        n_columns = 0
        for name, head in heads.items():
            classes = head["classes"]
            if (not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes)
                    or not all(isinstance(c, str) and c for c in classes)):
                raise fail(f"head {name}: classes must be two or more distinct labels")
            if name == "priority" and not set(classes) <= set(PRIORITIES):
                raise fail(f"head priority: classes {classes} are not all of {', '.join(PRIORITIES)}")
            if head["start"] != n_columns:
                raise fail(f"head {name}: columns out of order")
            n_columns += len(classes)
            beta = head["temperature_beta"]
            if not isinstance(beta, float | int) or not 0 < beta < 1e6:
                raise fail(f"head {name}: bad temperature")
            threshold = head["threshold"]
            if not isinstance(threshold, float | int) or not 0 <= threshold <= 1:
                raise fail(f"head {name}: bad threshold")
        if not isinstance(card["model_id"], str):
            raise fail("bad model_id")
        word_vectors = _word_vectors(card)
        dims = 0
        if word_vectors is not None:
            dims = word_vectors["dims"]
            scale = word_vectors["scale"]
            if not isinstance(dims, int) or dims < 1 or not isinstance(scale, float | int) or not 0 < scale < 1e6:
                raise fail("bad word_vectors")
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"incomplete model card ({exc!r})") from None
    n_features = len(vocabulary["word"]) + len(vocabulary["char"])
    if "vectors" in arrays and arrays["vectors"].shape != (len(vocabulary["vector_words"]), dims):
        raise fail(f"vectors have shape {arrays['vectors'].shape}, expected {(len(vocabulary['vector_words']), dims)}")
    if arrays["coef"].shape != (n_features + dims, n_columns):
        raise fail(f"weights have shape {arrays['coef'].shape}, the vocabulary and classes need "
                   f"{(n_features + dims, n_columns)}")
    if arrays["intercept"].shape != (n_columns,) or arrays["idf"].shape != (n_features,):
        raise fail("intercept or idf has the wrong length")


# -- deterministic, atomic files -------------------------------------------------------------


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz readable by numpy.load, byte-identical for identical arrays (fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload.getvalue(), compresslevel=6)
    return buffer.getvalue()


def _atomic_write(path: Path, blob: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(blob)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _vectors_line(word_vectors: Mapping[str, Any] | None) -> str:
    if not word_vectors:
        return "- Word vectors: none (TF-IDF n-grams only)"
    return (f"- Word vectors: {word_vectors['dims']} dimensions for {word_vectors['words']} words from "
            f"{word_vectors['source']}; mean over a message's words, scaled by {word_vectors['scale']}")


def _selection_line(selection: Mapping[str, Any] | None) -> list[str]:
    if not selection or len(selection["scores"]) < 2:
        return []
    scores = ", ".join(f"{name} {score:.3f}" for name, score in selection["scores"].items())
    return [f"- Word vectors chosen by {selection['criterion']}: {scores} -> {selection['chosen']}"]


def card_markdown(card: Mapping[str, Any]) -> str:
    """The model card for people; generated from card.json so the two never disagree."""
    data = card["training_data"]
    lines = [
        f"# Model card: {card['model_id']}",
        "",
        "Category and priority classifier for chats and tickets (chatsvc). Generated by `chatsvc train`",
        "from card.json in this directory; do not edit by hand.",
        "",
        f"- Command: `{card.get('command', 'chatsvc train')}`",
        (f"- Training data: {data['examples']} examples from {', '.join(data['sources']) or '(in memory)'}, "
         f"sha256 `{data['sha256']}`"),
        f"- Seed: {card['seed']}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(card["libraries"].items())),
        (f"- Features: word {card['features']['word_ngrams']}-grams + character "
         f"{card['features']['char_ngrams']}-grams inside words, binary TF-IDF, min_df "
         f"{card['features']['min_df']}, first {card['features']['max_chars']} characters; "
         f"{card['features']['n_word_features']} + {card['features']['n_char_features']} features"),
        _vectors_line(card["features"].get("word_vectors")),
        *_selection_line(card.get("feature_selection")),
        f"- Estimator: {card['estimator']['description']}",
        "",
        ("| head | classes | CV folds | CV accuracy | CV macro-F1 | majority acc. | threshold "
         "| coverage at threshold | accuracy at threshold |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, head in card["heads"].items():
        cv = head["cv"]
        lines.append(
            f"| {name} | {', '.join(head['classes'])} | {cv['folds']} | {cv['accuracy']:.3f} | "
            f"{cv['macro_f1']:.3f} | {cv['majority_accuracy']:.3f} | {head['threshold']:.2f} | "
            f"{head['coverage_at_threshold']:.3f} | {head['accuracy_at_threshold']:.3f} |")
    lines += ["", "Examples per class:", ""]
    for name, head in card["heads"].items():
        support = ", ".join(f"{k} {v}" for k, v in head["support"].items())
        lines.append(f"- {name}: {support}")
        if head["skipped_labels"]:
            skipped = ", ".join(f"{k} ({v})" for k, v in head["skipped_labels"].items())
            lines.append(f"  - left out (too few examples): {skipped}")
    if card.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in card["warnings"]]
    lines += [
        "",
        "Cross-validated figures refit the whole pipeline (vectorisers included) in each fold. The",
        "threshold is the smallest confidence at which out-of-fold predictions reach the target",
        f"precision ({card['target_precision']}); below it the model abstains and the rules or the",
        "defaults decide.",
        "",
    ]
    return "\n".join(lines)
