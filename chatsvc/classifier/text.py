"""Text normalisation and n-gram analysers shared by training and the fast scoring path.

Both the scikit-learn vectorisers (through `WordAnalyzer` / `CharAnalyzer`) and the runtime
scorer call these functions, so a feature seen in training is spelled exactly the same way at
prediction time. Nothing here imports scikit-learn or numpy.
"""

from __future__ import annotations

import re
import unicodedata

# Bump when the output of `normalize` or the analysers changes: artifacts record it, and a
# model trained with another version is refused instead of being scored with the wrong features.
TEXT_VERSION = 1

_QUOTES = ("\u2019", "\u2018", "\u02bc", "`", "\u00b4")
_WORD = re.compile(r"[^\W_]+")
_BOUNDARY = re.compile(r"[.!?;:,\n]")
# For ASCII text (nearly every message) bytes.translate + split is several times faster than the
# regex and gives the same tokens: letters and digits are kept, everything else separates words.
_ASCII_WORDS = bytes(c if chr(c).isascii() and chr(c).isalnum() else 32 for c in range(256))
_ASCII_CLAUSES = bytes(
    c if chr(c).isascii() and chr(c).isalnum() else (124 if chr(c) in ".!?;:,\n" else 32) for c in range(256)
)


def normalize(text: str) -> str:
    """Lower-case, fold compatibility characters, and drop apostrophes (can't == cant)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        for quote in _QUOTES:  # str.replace is far faster than str.translate on long texts
            if quote in text:
                text = text.replace(quote, "'")
    elif "`" in text:
        text = text.replace("`", "'")
    return text.lower().replace("'", "")


def words(normalized: str) -> list[str]:
    """Alphanumeric runs of already normalised text ("log-in" -> ["log", "in"])."""
    if normalized.isascii():
        return normalized.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    return _WORD.findall(normalized)


def clauses(normalized: str) -> list[list[str]]:
    """Words of already normalised text, split into clauses at sentence punctuation and line breaks."""
    if normalized.isascii():
        marked = normalized.encode("ascii").translate(_ASCII_CLAUSES).decode("ascii")
        return [part.split() for part in marked.split("|")]
    return [_WORD.findall(part) for part in _BOUNDARY.split(normalized)]


def word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """Word n-grams joined by one space, shortest first."""
    grams: list[str] = []
    count = len(tokens)
    for n in range(low, high + 1):
        if n == 1:
            grams.extend(tokens)
        else:
            grams.extend(" ".join(tokens[i:i + n]) for i in range(count - n + 1))
    return grams


def char_ngrams(word: str, low: int, high: int) -> list[str]:
    """Character n-grams of one word padded with a space on each side (like sklearn's char_wb)."""
    padded = f" {word} "
    size = len(padded)
    return [padded[i:i + n] for n in range(low, high + 1) for i in range(size - n + 1)]


class WordAnalyzer:
    """Callable analyser for `TfidfVectorizer(analyzer=...)`: word n-grams of normalised text."""

    def __init__(self, ngram_range: tuple[int, int] = (1, 2), max_chars: int = 20_000) -> None:
        self.ngram_range = ngram_range
        self.max_chars = max_chars

    def __call__(self, text: str) -> list[str]:
        low, high = self.ngram_range
        return word_ngrams(words(normalize(text[:self.max_chars])), low, high)


class CharAnalyzer:
    """Callable analyser for `TfidfVectorizer(analyzer=...)`: in-word character n-grams."""

    def __init__(self, ngram_range: tuple[int, int] = (2, 5), max_chars: int = 20_000) -> None:
        self.ngram_range = ngram_range
        self.max_chars = max_chars

    def __call__(self, text: str) -> list[str]:
        low, high = self.ngram_range
        grams: list[str] = []
        for word in words(normalize(text[:self.max_chars])):
            grams.extend(char_ngrams(word, low, high))
        return grams
