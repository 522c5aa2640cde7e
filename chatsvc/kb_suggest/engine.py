"""The suggestion engine: an immutable index of published articles that ranks them for a question.

Two stages. The first retrieves candidates cheaply from sparse term-by-article matrices: BM25 over the
title, keyword (tags and headings) and body fields, and a character n-gram cosine over titles, each
passing on its top `candidates`. The second computes the signals in `params.FEATURES` for those
candidates only (rapidfuzz title scores, the best passage...) and fuses them with a logistic
regression whose weights were fitted on labelled questions, so every score is a probability-like
number in [0, 1] and "no match" is one threshold on the best score.

The first stage reads term-major matrices (one row of postings per term); the second looks up the
candidates' values in the same rows by binary search, so its cost depends on the number of candidates,
not of articles.

An index never changes; `with_article` and `without` return a new index that shares the vocabulary
and recomputes the statistics from the stored term counts (only the changed article is analysed).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA
from scipy import sparse

from chatsvc.kb_suggest import analysis
from chatsvc.kb_suggest.articles import Article
from chatsvc.kb_suggest.markdown import passages as body_passages
from chatsvc.kb_suggest.markdown import plain_text
from chatsvc.kb_suggest.params import FEATURES, SuggestParams

if TYPE_CHECKING:
    from numpy.typing import NDArray

# Second words that English glues onto a verb: "log in" is also indexed as "login", "sign up" as "signup".
_PARTICLES = frozenset({"in", "out", "up", "on", "off", "down", "back", "over"})
#: Shortest word the spelling correction touches; shorter ones are too ambiguous ("fee" / "free").
MIN_CORRECTED_CHARS = 4
#: First-stage pruning: a term in more than this share of articles (and more than _PRUNE_MIN_DF) does
#: not retrieve candidates; it still counts in every feature.
_PRUNE_DF_SHARE = 0.05
_PRUNE_MIN_DF = 100
#: How many of a question's words and character n-grams (the rarest) retrieve candidates.
_RETRIEVAL_WORDS = 10
_RETRIEVAL_GRAMS = 32
_HYPHENATED_RE = re.compile(r"\w+(?:-\w+)+")


@dataclass(frozen=True, slots=True)
class Match:
    """One suggested article. `title` and `passage` are plain text (never HTML); `score` is in [0, 1]."""

    article_id: str
    title: str
    score: float
    passage: str
    slug: str


@dataclass(frozen=True, slots=True)
class Suggestions:
    """The ranked matches (best first, at most k) and whether the best one is below the no-match threshold.

    `matches` is filled even when `no_match` is true: an agent may still want the closest articles, but
    the bot should not offer them as an answer.
    """

    matches: list[Match]
    no_match: bool
    #: The question was longer than analysis.MAX_QUESTION_CHARS and only its start was used.
    truncated: bool = False


class _Lexicon:
    """Term ids shared by every version of an index. Append-only, so an older index stays valid: it only
    knows the ids below its own column counts. Additions take a lock; lookups need none."""

    def __init__(self) -> None:
        self.words: dict[str, int] = {}
        self.grams: dict[str, int] = {}
        self.surface: set[str] = set()
        self.deletes: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def word_ids(self, terms: Iterable[str]) -> list[int]:
        return self._ids(self.words, terms)

    def gram_ids(self, grams: Iterable[str]) -> list[int]:
        return self._ids(self.grams, grams)

    def _ids(self, table: dict[str, int], keys: Iterable[str]) -> list[int]:
        out = []
        for key in keys:
            ident = table.get(key)
            if ident is None:
                with self._lock:
                    ident = table.setdefault(key, len(table))
            out.append(ident)
        return out

    def add_surface(self, surface_words: Iterable[str]) -> None:
        new = [w for w in set(surface_words) if w not in self.surface]
        if not new:
            return
        with self._lock:
            for word in new:
                if word in self.surface:
                    continue
                self.surface.add(word)
                for variant in _deletes(word):
                    self.deletes.setdefault(variant, []).append(word)


def _deletes(word: str) -> list[str]:
    return [word] + [word[:i] + word[i + 1 :] for i in range(len(word))]


@dataclass(frozen=True, slots=True)
class _Analysed:
    """One article reduced to what the index stores."""

    article: Article
    title: str
    title_fuzzy: str
    passages: list[str]
    title_terms: Counter[str]
    keyword_terms: Counter[str]
    passage_terms: list[Counter[str]]
    title_grams: Counter[str]
    surface: set[str]


def _with_compounds(tokens: list[str]) -> list[str]:
    """Content words plus glued verb-particle pairs ("log in" -> also "login")."""
    out = [t for t in tokens if t not in analysis.STOP_WORDS]
    for first, second in zip(tokens, tokens[1:]):
        if second in _PARTICLES and first not in analysis.STOP_WORDS:
            out.append(first + second)
    return out


def _text_terms(text: str, surface: set[str]) -> list[str]:
    """Stemmed index terms of one text (plus hyphen compounds: "e-mail" -> also "email"); adds the
    text's correctable words to `surface`."""
    normalized = analysis.normalize(text)
    tokens = analysis.words(normalized)
    surface.update(w for w in tokens if len(w) >= MIN_CORRECTED_CHARS and w.isalpha())
    joined = [w.replace("-", "") for w in _HYPHENATED_RE.findall(normalized.replace("'", ""))] if "-" in normalized else []
    stem = analysis.stem
    return [stem(w) for w in _with_compounds(tokens) + joined]


def _analyse(article: Article) -> _Analysed:
    title = plain_text(article.title)
    headings, passages = body_passages(article.body)
    keyword_text = " . ".join([*article.tags, *headings])
    surface: set[str] = set()
    passage_terms = [Counter(_text_terms(p, surface)) for p in passages]
    return _Analysed(
        article=article,
        title=title,
        title_fuzzy=" ".join(analysis.content_words(title)),
        passages=passages,
        title_terms=Counter(_text_terms(title, surface)),
        keyword_terms=Counter(_text_terms(keyword_text, surface)),
        passage_terms=passage_terms,
        title_grams=Counter(analysis.char_ngrams(title)),
        surface=surface,
    )


class _RowsBuilder:
    """Accumulates sparse count rows as small arrays, so that no per-article dict outlives its article."""

    def __init__(self) -> None:
        self.indices: list[NDArray[np.int32]] = []
        self.data: list[NDArray[np.float32]] = []
        self.lengths: list[int] = []

    def add(self, counts: Counter[str], ids_of: dict[str, int]) -> None:
        ids = np.fromiter((ids_of[t] for t in counts), dtype=np.int32, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        order = np.argsort(ids, kind="stable")
        self.indices.append(ids[order])
        self.data.append(values[order])
        self.lengths.append(len(counts))

    def matrix(self, n_cols: int) -> sparse.csr_matrix:
        indptr = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=indptr[1:])
        indices = np.concatenate(self.indices) if self.indices else np.zeros(0, dtype=np.int32)
        data = np.concatenate(self.data) if self.data else np.zeros(0, dtype=np.float32)
        return sparse.csr_matrix((data, indices, indptr), shape=(len(self.lengths), n_cols))


def _widen(matrix: sparse.csr_matrix, n_cols: int) -> sparse.csr_matrix:
    if matrix.shape[1] == n_cols:
        return matrix
    return sparse.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], n_cols))


@dataclass(frozen=True, slots=True)
class _Raw:
    """Per-article stored data: term counts and display text. Rows are articles (passages for `passage`)."""

    ids: list[str]
    titles: list[str]
    titles_fuzzy: list[str]
    slugs: list[str]
    locales: list[str]
    passages: list[list[str]]
    passage_offsets: NDArray[np.int64]  # article i owns passage rows offsets[i]:offsets[i+1]
    title: sparse.csr_matrix
    keywords: sparse.csr_matrix
    passage: sparse.csr_matrix
    grams: sparse.csr_matrix

    @staticmethod
    def from_articles(articles: Iterable[Article], lexicon: _Lexicon) -> _Raw:
        """Analyse each article and keep only its counts (as arrays) and display text."""
        ids: list[str] = []
        titles: list[str] = []
        titles_fuzzy: list[str] = []
        slugs: list[str] = []
        locales: list[str] = []
        passages: list[list[str]] = []
        title, keywords, passage, grams = _RowsBuilder(), _RowsBuilder(), _RowsBuilder(), _RowsBuilder()
        for article in articles:
            item = _analyse(article)
            lexicon.word_ids(item.title_terms)
            lexicon.word_ids(item.keyword_terms)
            for counts in item.passage_terms:
                lexicon.word_ids(counts)
            lexicon.gram_ids(item.title_grams)
            lexicon.add_surface(item.surface)
            title.add(item.title_terms, lexicon.words)
            keywords.add(item.keyword_terms, lexicon.words)
            for counts in item.passage_terms:
                passage.add(counts, lexicon.words)
            grams.add(item.title_grams, lexicon.grams)
            ids.append(article.id)
            titles.append(item.title)
            titles_fuzzy.append(item.title_fuzzy)
            slugs.append(article.slug)
            locales.append(article.locale)
            passages.append(item.passages)
        n_words, n_grams = len(lexicon.words), len(lexicon.grams)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in passages], out=offsets[1:])
        return _Raw(
            ids=ids,
            titles=titles,
            titles_fuzzy=titles_fuzzy,
            slugs=slugs,
            locales=locales,
            passages=passages,
            passage_offsets=offsets,
            title=title.matrix(n_words),
            keywords=keywords.matrix(n_words),
            passage=passage.matrix(n_words),
            grams=grams.matrix(n_grams),
        )

    def select(self, keep: NDArray[np.bool_]) -> _Raw:
        rows = np.flatnonzero(keep)
        lengths = np.diff(self.passage_offsets)[rows]
        passage_rows = _ranges(self.passage_offsets[rows], lengths)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        return _Raw(
            ids=[self.ids[i] for i in rows],
            titles=[self.titles[i] for i in rows],
            titles_fuzzy=[self.titles_fuzzy[i] for i in rows],
            slugs=[self.slugs[i] for i in rows],
            locales=[self.locales[i] for i in rows],
            passages=[self.passages[i] for i in rows],
            passage_offsets=offsets,
            title=self.title[rows],
            keywords=self.keywords[rows],
            passage=self.passage[passage_rows],
            grams=self.grams[rows],
        )

    def concat(self, other: _Raw) -> _Raw:
        n_words = max(self.title.shape[1], other.title.shape[1])
        n_grams = max(self.grams.shape[1], other.grams.shape[1])

        def stack(a: sparse.csr_matrix, b: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
            return sparse.vstack([_widen(a, n), _widen(b, n)], format="csr")

        return _Raw(
            ids=self.ids + other.ids,
            titles=self.titles + other.titles,
            titles_fuzzy=self.titles_fuzzy + other.titles_fuzzy,
            slugs=self.slugs + other.slugs,
            locales=self.locales + other.locales,
            passages=self.passages + other.passages,
            passage_offsets=np.concatenate([self.passage_offsets, other.passage_offsets[1:] + self.passage_offsets[-1]]),
            title=stack(self.title, other.title, n_words),
            keywords=stack(self.keywords, other.keywords, n_words),
            passage=stack(self.passage, other.passage, n_words),
            grams=stack(self.grams, other.grams, n_grams),
        )


def _ranges(starts: NDArray[np.int64], lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """Concatenation of range(s, s + n) for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    out = np.ones(total, dtype=np.int64)
    nonempty = lengths > 0
    first_positions = (ends - lengths)[nonempty]
    out[first_positions] = starts[nonempty]
    out[first_positions[1:]] -= (starts[nonempty][:-1] + lengths[nonempty][:-1] - 1)
    return np.cumsum(out)


def _bm25(counts: sparse.csr_matrix, k1: float, b: float) -> sparse.csr_matrix:
    """Replace each count by its BM25 saturation tf*(k1+1)/(tf + k1*(1-b+b*len/avglen)), divided by k1+1."""
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    average = float(lengths.mean()) if lengths.size and lengths.mean() > 0 else 1.0
    norm = k1 * (1.0 - b + b * lengths / average)
    row_of_entry = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    tf = counts.data
    weighted = counts.copy()
    weighted.data = (tf / (tf + norm[row_of_entry])).astype(np.float32)
    return weighted


class SuggestionIndex:
    """Immutable index of published articles; build with `SuggestionIndex.build(articles)`."""

    __slots__ = (
        "params", "_lexicon", "_raw", "_n", "_n_words", "_n_grams", "_word_idf", "_word_df", "_gram_idf",
        "_fields_t", "_grams_t", "_passage_t", "_row_of", "_titles_fuzzy", "_locale_masks",
        "_idf_unknown", "_gram_idf_unknown", "_gram_df", "_grams_w", "_retrieval_t",
    )

    params: SuggestParams

    def __init__(self, raw: _Raw, lexicon: _Lexicon, params: SuggestParams) -> None:
        """Internal; use `build`. Computes every statistic from the stored counts."""
        self.params = params
        self._lexicon = lexicon
        self._raw = raw
        n = len(raw.ids)
        self._n = n
        self._n_words = raw.title.shape[1]
        self._n_grams = raw.grams.shape[1]
        self._row_of = {article_id: i for i, article_id in enumerate(raw.ids)}
        self._titles_fuzzy = raw.titles_fuzzy

        # Body counts are the sum of an article's passage counts.
        n_passages = raw.passage.shape[0]
        owner = np.repeat(np.arange(n), np.diff(raw.passage_offsets))
        gather = sparse.csr_matrix(
            (np.ones(n_passages, dtype=np.float32), (owner, np.arange(n_passages))), shape=(n, n_passages)
        )
        body = (gather @ raw.passage).tocsr()
        anywhere = (raw.title + raw.keywords + body).tocsr()
        presence = anywhere.copy()
        presence.data = np.ones_like(presence.data)
        df = np.asarray((presence > 0).sum(axis=0)).ravel().astype(np.float64)
        self._word_df = df
        # BM25's idf, kept positive; a word no article has gets the largest value.
        self._word_idf = np.log1p((n - df + 0.5) / (df + 0.5))
        self._idf_unknown = float(np.log1p((n + 0.5) / 0.5))

        p = params
        title_w = _bm25(raw.title, p.bm25_k1, p.bm25_b_title)
        keywords_w = _bm25(raw.keywords, p.bm25_k1, p.bm25_b_title)
        body_w = _bm25(body, p.bm25_k1, p.bm25_b_body)
        # Term-major matrices (rows are terms, with sorted article columns): one row slice gives a
        # term's postings for the first stage, one binary search its values for given candidates.
        # The field matrix's columns are [title | keywords | body | presence] blocks of n articles.
        self._fields_t = sparse.vstack([title_w, keywords_w, body_w, presence], format="csr").T.tocsr()
        fw = p.retrieval_field_weights
        self._retrieval_t = (fw[0] * title_w + fw[1] * keywords_w + fw[2] * body_w).T.tocsr()
        self._passage_t = _bm25(raw.passage, p.bm25_k1, p.bm25_b_passage).T.tocsr()

        grams = raw.grams
        gram_df = np.asarray((grams > 0).sum(axis=0)).ravel().astype(np.float64)
        self._gram_df = gram_df
        self._gram_idf = np.log((1.0 + n) / (1.0 + gram_df)) + 1.0
        self._gram_idf_unknown = float(np.log(1.0 + n) + 1.0)
        weighted = grams.copy()
        weighted.data = (1.0 + np.log(weighted.data)) * self._gram_idf[weighted.indices]
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        weighted = sparse.diags(1.0 / norms) @ weighted
        self._grams_w = weighted.astype(np.float32).tocsr()
        self._grams_t = self._grams_w.T.tocsr()

        masks: dict[str, NDArray[np.bool_]] = {}
        locales = np.asarray(raw.locales, dtype=object)
        for locale in set(raw.locales):
            masks[locale] = locales == locale
        self._locale_masks = masks

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def build(cls, articles: Iterable[Article], params: SuggestParams | None = None) -> SuggestionIndex:
        """Index the published articles (drafts are skipped). Raises ValueError on a repeated id."""
        chosen: list[Article] = []
        seen: set[str] = set()
        for article in articles:
            if article.id in seen:
                raise ValueError(f"article id {article.id!r} appears twice")
            seen.add(article.id)
            if article.published:
                chosen.append(article)
        lexicon = _Lexicon()
        raw = _Raw.from_articles(chosen, lexicon)
        return cls(raw, lexicon, params if params is not None else SuggestParams.load())

    def with_article(self, article: Article) -> SuggestionIndex:
        """A new index in which `article` is added or replaces the one with its id; a draft is removed."""
        keep = np.ones(self._n, dtype=bool)
        row = self._row_of.get(article.id)
        if row is not None:
            keep[row] = False
        base = self._raw.select(keep) if row is not None else self._raw
        if not article.published:
            return SuggestionIndex(base, self._lexicon, self.params)
        added = _Raw.from_articles([article], self._lexicon)
        return SuggestionIndex(base.concat(added), self._lexicon, self.params)

    def without(self, article_id: str) -> SuggestionIndex:
        """A new index without the article; KeyError if it is not indexed."""
        row = self._row_of.get(article_id)
        if row is None:
            raise KeyError(article_id)
        keep = np.ones(self._n, dtype=bool)
        keep[row] = False
        return SuggestionIndex(self._raw.select(keep), self._lexicon, self.params)

    def with_params(self, params: SuggestParams) -> SuggestionIndex:
        return SuggestionIndex(self._raw, self._lexicon, params)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._row_of

    @property
    def article_ids(self) -> list[str]:
        return list(self._raw.ids)

    # --- questions ----------------------------------------------------------------------------------

    def suggest(self, text: str, k: int = 3, *, locale: str | None = None) -> Suggestions:
        """Rank articles for a visitor's question.

        Raises ValueError when the question is empty or only whitespace (there is nothing to answer), or
        `k` < 1. A question longer than `analysis.MAX_QUESTION_CHARS` is cut to its start
        (`Suggestions.truncated`). `locale` restricts the matches to articles of that locale.
        """
        if not isinstance(text, str):
            raise TypeError(f"question must be a string, not {type(text).__name__}")
        if k < 1:
            raise ValueError("k must be at least 1")
        if not text.strip():
            raise ValueError("question is empty")
        truncated = len(text) > analysis.MAX_QUESTION_CHARS
        scored = self._score(analysis.truncate_question(text), locale)
        if scored is None:
            return Suggestions(matches=[], no_match=True, truncated=truncated)
        candidates, scores, best_passages = scored
        order = np.lexsort((candidates, -scores))[:k]
        matches = []
        for position in order:
            row = int(candidates[position])
            passages = self._raw.passages[row]
            passage = passages[best_passages[position]] if passages else ""
            matches.append(
                Match(
                    article_id=self._raw.ids[row],
                    title=self._raw.titles[row],
                    score=float(min(1.0, max(0.0, scores[position]))),
                    passage=passage,
                    slug=self._raw.slugs[row],
                )
            )
        no_match = not matches or matches[0].score < self.params.no_match_threshold
        return Suggestions(matches=matches, no_match=no_match, truncated=truncated)

    def features(self, text: str, *, locale: str | None = None) -> tuple[list[str], NDArray[np.float64]]:
        """The candidate article ids and their signal matrix (one row per candidate, columns FEATURES).

        Used to fit the fusion weights; the features do not depend on the weights.
        """
        found = self._candidate_features(analysis.truncate_question(text), locale)
        if found is None:
            return [], np.zeros((0, len(FEATURES)))
        candidates, matrix, _ = found
        return [self._raw.ids[int(i)] for i in candidates], matrix

    def _score(
        self, text: str, locale: str | None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]] | None:
        found = self._candidate_features(text, locale)
        if found is None:
            return None
        candidates, matrix, best_passages = found
        logits = matrix @ np.asarray(self.params.weights) + self.params.intercept
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        return candidates, scores, best_passages

    def _question_terms(self, text: str) -> tuple[dict[int, float], float]:
        """Known word-term columns with their weights (idf x correction discount), and the question's
        total idf mass, counting words no article has at the highest idf."""
        normalized = analysis.normalize(text)
        tokens = analysis.words(normalized)
        weights: dict[int, float] = {}
        total = 0.0
        words = self._lexicon.words
        n_words = self._n_words
        df = self._word_df

        def known(term: str) -> int | None:
            col = words.get(term)
            if col is None or col >= n_words or df[col] == 0:
                return None
            return col

        content = [t for t in tokens if t not in analysis.STOP_WORDS]
        seen: set[str] = set()
        for token in content:
            if token in seen:
                continue
            seen.add(token)
            col = known(analysis.stem(token))
            weight = 1.0
            if col is None:
                col, weight = self._correct(token, known)
            idf = float(self._word_idf[col]) if col is not None else self._idf_unknown
            total += idf
            if col is not None:
                weights[col] = max(weights.get(col, 0.0), idf * weight)
        # Glued pairs count only when the glued word is indexed ("pass word" -> "password").
        for first, second in zip(tokens, tokens[1:]):
            col = known(analysis.stem(first + second))
            if col is not None and col not in weights:
                idf = float(self._word_idf[col])
                weights[col] = idf
                total += idf
        return weights, total

    def _correct(self, token: str, known: object) -> tuple[int | None, float]:
        if len(token) < MIN_CORRECTED_CHARS or not token.isalpha():
            return None, 0.0
        lexicon = self._lexicon
        options: set[str] = set()
        for variant in _deletes(token):
            options.update(lexicon.deletes.get(variant, ()))
        best_rank: tuple[int, float] | None = None
        best_col: int | None = None
        for option in sorted(options):
            distance = OSA.distance(token, option)
            if distance > (1 if len(token) < 8 else 2):
                continue
            col = known(analysis.stem(option))  # type: ignore[operator]
            if col is None:
                continue
            rank = (-distance, float(self._word_df[col]))
            if best_rank is None or rank > best_rank:
                best_rank, best_col = rank, col
        if best_col is None:
            return None, 0.0
        return best_col, self.params.typo_weight

    def _question_grams(self, text: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        counts = Counter(analysis.char_ngrams(text))
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        grams = self._lexicon.grams
        n_grams = self._n_grams
        cols = np.fromiter((grams.get(g, n_grams) for g in counts), dtype=np.int64, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        known = cols < n_grams
        cols = np.where(known, cols, 0)
        idf = np.where(known, self._gram_idf[cols], self._gram_idf_unknown)
        values = tf * idf
        norm = float(np.sqrt(values @ values))
        if not known.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return cols[known], values[known] / norm

    def _candidate_features(
        self, text: str, locale: str | None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]] | None:
        n = self._n
        if n == 0:
            return None
        term_weights, total_idf = self._question_terms(text)
        gram_cols, gram_values = self._question_grams(text)
        if not term_weights and gram_cols.size == 0:
            return None
        p = self.params
        fw = p.retrieval_field_weights
        if term_weights:
            cols = np.fromiter(term_weights.keys(), dtype=np.int64, count=len(term_weights))
            q = np.fromiter(term_weights.values(), dtype=np.float64, count=len(term_weights))
        else:
            cols, q = np.zeros(0, dtype=np.int64), np.zeros(0)

        # First stage. In a large index the terms most articles contain would make every question cost
        # O(articles); they are left out of retrieval only (the features below count every term), and
        # only the rarest few words and character n-grams of a question retrieve.
        limit = max(_PRUNE_MIN_DF, _PRUNE_DF_SHARE * n)
        if cols.size:
            df = self._word_df[cols]
            rarest = np.argsort(df, kind="stable")[:_RETRIEVAL_WORDS]
            selective = rarest[df[rarest] <= limit]
            chosen = selective if selective.size else rarest
            word_score = _postings_sum(self._retrieval_t, cols[chosen], q[chosen], n)
        else:
            word_score = np.zeros(n)
        if gram_cols.size:
            df = self._gram_df[gram_cols]
            rarest = np.argsort(df, kind="stable")[:_RETRIEVAL_GRAMS]
            selective = rarest[df[rarest] <= limit]
            chosen = selective if selective.size else rarest
            char_score = _postings_sum(self._grams_t, gram_cols[chosen], gram_values[chosen], n)
        else:
            char_score = np.zeros(n)
        if locale is not None:
            mask = self._locale_masks.get(locale)
            if mask is None:
                return None
            word_score = np.where(mask, word_score, 0.0)
            char_score = np.where(mask, char_score, 0.0)
        candidates = np.union1d(_top(word_score, p.candidates), _top(char_score, p.candidates))
        if candidates.size == 0:
            return None

        # Exact per-field and per-passage sums for the candidates only.
        offsets = self._raw.passage_offsets
        lengths = np.diff(offsets)[candidates]
        passage_rows = _ranges(offsets[candidates], lengths)
        size = candidates.size
        passage_scores = np.zeros(passage_rows.size)
        if cols.size:
            targets = np.concatenate([candidates + block * n for block in range(4)])
            sums = np.zeros(targets.size)
            for col, weight in zip(cols.tolist(), q.tolist()):
                _add_row_values(sums, self._fields_t, col, targets, weight)
                if passage_rows.size:
                    _add_row_values(passage_scores, self._passage_t, col, passage_rows, weight)
            sums /= total_idf
            passage_scores /= total_idf
            title, keywords = sums[:size], sums[size : 2 * size]
            body, coverage = sums[2 * size : 3 * size], sums[3 * size :]
        else:
            title = keywords = body = coverage = np.zeros(size)
        chars = _rows_dot(self._grams_w, candidates, gram_cols, gram_values) if gram_cols.size else np.zeros(
            candidates.size
        )

        # Best passage of each candidate.
        passage_best = np.zeros(candidates.size)
        best_index = np.zeros(candidates.size, dtype=np.int64)
        if cols.size and passage_rows.size:
            scores = passage_scores
            nonempty = lengths > 0
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
            passage_best[nonempty] = np.maximum.reduceat(scores, starts)
            # argmax within each segment: the first passage reaching the segment's maximum
            segment = np.repeat(np.arange(int(nonempty.sum())), lengths[nonempty])
            is_best = scores >= passage_best[nonempty][segment]
            first = np.full(int(nonempty.sum()), scores.size, dtype=np.int64)
            positions = np.flatnonzero(is_best)
            np.minimum.at(first, segment[positions], positions)
            best_index[nonempty] = first - starts

        question = " ".join(analysis.content_words(text))
        titles = [self._titles_fuzzy[int(i)] for i in candidates]
        fuzz_set = process.cdist([question], titles, scorer=fuzz.token_set_ratio, dtype=np.float64, workers=1)[0]
        first_stage = fw[0] * title + fw[1] * keywords + fw[2] * body + chars
        top = float(first_stage.max())
        relative = first_stage / top if top > 0 else np.zeros(candidates.size)

        matrix = np.column_stack(
            [
                title,
                keywords,
                body,
                passage_best,
                coverage,
                chars,
                fuzz_set / 100.0,
                relative,
            ]
        )
        return candidates, np.clip(matrix, 0.0, 1.0), best_index


def _postings_sum(
    matrix: sparse.csr_matrix, rows: NDArray[np.int64], weights: NDArray[np.float64], size: int
) -> NDArray[np.float64]:
    """weights @ matrix[rows] as a dense vector, gathering the rows' entries directly: scipy's fancy
    indexing validates its arguments at a cost that dominates for a handful of rows."""
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    entries = _ranges(starts, lengths)
    values = matrix.data[entries] * np.repeat(weights, lengths)
    return np.bincount(matrix.indices[entries], weights=values, minlength=size)


def _add_row_values(
    out: NDArray[np.float64], matrix: sparse.csr_matrix, row: int, targets: NDArray[np.int64], weight: float
) -> None:
    """out += weight * matrix[row, targets], by binary search in the row's sorted column indices."""
    start, end = int(matrix.indptr[row]), int(matrix.indptr[row + 1])
    if start == end:
        return
    row_indices = matrix.indices[start:end]
    position = np.searchsorted(row_indices, targets)
    np.minimum(position, end - start - 1, out=position)
    hit = row_indices[position] == targets
    out += np.where(hit, matrix.data[start:end][position], 0.0) * weight


def _rows_dot(
    matrix: sparse.csr_matrix, rows: NDArray[np.int64], cols: NDArray[np.int64], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """matrix[rows] @ w, where w is `weights` at columns `cols` and zero elsewhere."""
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    entries = _ranges(starts, lengths)
    terms = matrix.indices[entries]
    order = np.argsort(cols)
    sorted_cols = cols[order]
    position = np.minimum(np.searchsorted(sorted_cols, terms), sorted_cols.size - 1)
    hit = sorted_cols[position] == terms
    values = np.where(hit, matrix.data[entries] * weights[order][position], 0.0)
    owner = np.repeat(np.arange(rows.size), lengths)
    return np.bincount(owner, weights=values, minlength=rows.size)


def _top(scores: NDArray[np.float64], count: int) -> NDArray[np.int64]:
    positive = np.flatnonzero(scores > 0)
    if positive.size <= count:
        return positive
    part = np.argpartition(-scores[positive], count - 1)[:count]
    return positive[part]
