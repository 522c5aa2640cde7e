"""Text analysis shared by the index and the questions: normalising, word terms, character n-grams.

Everything here is pure Python and deterministic, so an index built in one process scores exactly like
one built in another. Words are Unicode `\\w` runs, so any script tokenises (Arabic, Hebrew, CJK runs);
only the stemmer is English-specific and leaves other scripts untouched.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

#: A question longer than this is cut before analysis (at a word boundary): a visitor pasting a
#: log file must not cost more than a normal question by more than a bounded factor.
MAX_QUESTION_CHARS = 1_000

_WORD_RE = re.compile(r"\w+", re.UNICODE)

# Function words that carry no topic; kept short on purpose: negations ("not", "no", "can't") stay out
# of this list only because they never decide which article answers, not because they are meaningless.
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more
    most my myself no nor not of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves hi hello please thanks thank hey im ive dont cant doesnt
    isnt wont didnt get got also way want need like know tell anyone someone help possible able
    """.split()
)


def normalize(text: str) -> str:
    """Case-fold, apply NFKC and drop combining marks, so "Café", "CAFE" and "café" meet."""
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    if len(decomposed) != len(text):
        text = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return text


def truncate_question(text: str, limit: int = MAX_QUESTION_CHARS) -> str:
    """Keep the first `limit` characters, cut back to the last whitespace so no word is halved."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = head.rfind(" ")
    return head[:cut] if cut > limit // 2 else head


def words(normalized: str) -> list[str]:
    """Word tokens of already normalised text, apostrophes folded ("don't" -> "dont")."""
    return _WORD_RE.findall(normalized.replace("'", "").replace("\u2019", ""))


def terms(text: str) -> list[str]:
    """Stemmed content words of raw text, in order, duplicates kept (the counts are term frequencies)."""
    return [stem(w) for w in words(normalize(text)) if w not in STOP_WORDS]


def content_words(text: str) -> list[str]:
    """Unstemmed content words (stop words removed): what the fuzzy title scorers compare."""
    return [w for w in words(normalize(text)) if w not in STOP_WORDS]


def char_ngrams(text: str, low: int = 3, high: int = 5) -> list[str]:
    """Character n-grams inside word boundaries (padded with a space), like scikit-learn's `char_wb`.

    They make the title signal typo-tolerant: "pasword" shares most trigrams with "password".
    """
    grams: list[str] = []
    for word in words(normalize(text)):
        if word in STOP_WORDS:
            continue
        padded = f" {word} "
        size = len(padded)
        for n in range(low, high + 1):
            if n > size:
                break
            grams.extend(padded[i : i + n] for i in range(size - n + 1))
    return grams


# --- English stemming -----------------------------------------------------------------------------
# The classic Porter (1980) algorithm, so "payments", "paying" and "paid"... at least the first two meet.
# Only ASCII words are stemmed; other scripts pass through unchanged.

_VOWELS = frozenset("aeiou")


def _is_consonant(word: str, i: int) -> bool:
    ch = word[i]
    if ch in _VOWELS:
        return False
    if ch == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(stem_: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in the stem."""
    m = 0
    prev_vowel = False
    for i in range(len(stem_)):
        vowel = not _is_consonant(stem_, i)
        if prev_vowel and not vowel:
            m += 1
        prev_vowel = vowel
    return m


def _has_vowel(stem_: str) -> bool:
    return any(not _is_consonant(stem_, i) for i in range(len(stem_)))


def _ends_double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1)


def _cvc(word: str) -> bool:
    if len(word) < 3:
        return False
    return (
        _is_consonant(word, len(word) - 3)
        and not _is_consonant(word, len(word) - 2)
        and _is_consonant(word, len(word) - 1)
        and word[-1] not in "wxy"
    )


_STEP2 = (
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"),
    ("abli", "able"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"),
    ("ization", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"), ("iveness", "ive"),
    ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"),
)
_STEP3 = (
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", ""),
)
_STEP4 = (
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou", "ism",
    "ate", "iti", "ous", "ive", "ize",
)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Porter stem of one lower-case word; words that are short or not ASCII letters come back as is."""
    if len(word) <= 2 or not word.isascii() or not word.isalpha():
        return word
    w = word
    # Step 1a
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("ss"):
        pass
    elif w.endswith("s"):
        w = w[:-1]
    # Step 1b
    step1b_extra = False
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    elif w.endswith("ed") and _has_vowel(w[:-2]):
        w = w[:-2]
        step1b_extra = True
    elif w.endswith("ing") and _has_vowel(w[:-3]):
        w = w[:-3]
        step1b_extra = True
    if step1b_extra:
        if w.endswith(("at", "bl", "iz")):
            w += "e"
        elif _ends_double_consonant(w) and w[-1] not in "lsz":
            w = w[:-1]
        elif _measure(w) == 1 and _cvc(w):
            w += "e"
    # Step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # Step 2
    for suffix, replacement in _STEP2:
        if w.endswith(suffix):
            if _measure(w[: -len(suffix)]) > 0:
                w = w[: -len(suffix)] + replacement
            break
    # Step 3
    for suffix, replacement in _STEP3:
        if w.endswith(suffix):
            if _measure(w[: -len(suffix)]) > 0:
                w = w[: -len(suffix)] + replacement
            break
    # Step 4
    for suffix in _STEP4:
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            if _measure(base) > 1:
                if suffix != "ion" or base.endswith(("s", "t")):
                    w = base
            break
    # Step 5
    if w.endswith("e"):
        base = w[:-1]
        m = _measure(base)
        if m > 1 or (m == 1 and not _cvc(base)):
            w = base
    if _measure(w) > 1 and _ends_double_consonant(w) and w.endswith("l"):
        w = w[:-1]
    return w
