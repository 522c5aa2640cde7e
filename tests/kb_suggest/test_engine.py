"""The suggestion engine on a tiny hand-made help center."""

from __future__ import annotations

import re

import pytest

from chatsvc.kb_suggest import Article, Match, SuggestionIndex, Suggestions
from chatsvc.kb_suggest.analysis import MAX_QUESTION_CHARS
from chatsvc.kb_suggest.params import FEATURES, SuggestParams

KB = [
    Article(id="password", title="Reset a forgotten password", tags=["login"],
            body="Click **Forgot password?** on the sign-in page.\n\nWe email you a reset link that expires after an hour."),
    Article(id="refund", title="Request a refund", tags=["billing"],
            body="Annual plans cancelled within 30 days are refunded in full.\n\nRefunds reach your card in ten days."),
    Article(id="booking", title="Book the clubhouse or tennis court", tags=["amenities"],
            body="Open Amenities, choose a free slot and click Book.\n\nSome amenities need approval by the board."),
    Article(id="cache", title="Pages not loading: clear your browser cache", tags=["browser"],
            body="Press Ctrl + Shift + R for a hard refresh.\n\nThen delete cached images and files in your browser settings."),
    Article(id="twofa", title="Set up two-factor authentication", tags=["security", "2fa"],
            body="Scan the QR code with an authenticator app and enter the six-digit code."),
    Article(id="hostile", title="<script>alert(1)</script>Export your <b>data</b>",
            body="Download a CSV <img src=x onerror=alert(1)> of residents.\n\n<script>steal()</script>"),
    Article(id="arabic", title="إعادة تعيين كلمة المرور", body="انقر على نسيت كلمة المرور في صفحة الدخول.", locale="ar"),
    Article(id="draft", title="Reset password draft", body="Not published yet.", status="draft"),
]

# Fixed, hand-set weights keep these tests independent of the fitted parameters shipped in fusion.json.
PARAMS = SuggestParams(weights=(-0.5, 1.2, 0.9, 0.5, 2.4, 1.1, 1.0, 5.7), intercept=-8.8, no_match_threshold=0.28)
_TAG = re.compile(r"<[A-Za-z/!?]")


@pytest.fixture(scope="module")
def index() -> SuggestionIndex:
    return SuggestionIndex.build(KB, params=PARAMS)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("how do I reset my password", "password"),
        ("I forgot my password", "password"),
        ("can I get a refund", "refund"),
        ("reserve the tennis court", "booking"),
        ("the page won't load", "cache"),
        ("enable 2fa", "twofa"),
        ("export residents to csv", "hostile"),
    ],
)
def test_ranks_the_answering_article_first(index: SuggestionIndex, question: str, expected: str) -> None:
    result = index.suggest(question)
    assert isinstance(result, Suggestions)
    assert result.matches[0].article_id == expected


@pytest.mark.parametrize("question", ["how do I reset my password", "can I get a refund for my annual plan"])
def test_clear_questions_are_answered(index: SuggestionIndex, question: str) -> None:
    assert not index.suggest(question).no_match


@pytest.mark.parametrize(
    ("question", "expected"),
    [("how do i rest my pasword", "password"), ("refnud plz", "refund"), ("tenis cort bokking", "booking"),
     ("clear brower cahce", "cache"), ("two factr autentication", "twofa")],
)
def test_tolerates_typos(index: SuggestionIndex, question: str, expected: str) -> None:
    assert index.suggest(question).matches[0].article_id == expected


def test_matches_are_well_formed(index: SuggestionIndex) -> None:
    result = index.suggest("reset password link", k=3)
    assert 1 <= len(result.matches) <= 3
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)
    top = result.matches[0]
    assert isinstance(top, Match)
    assert (top.article_id, top.slug, top.title) == ("password", "reset-a-forgotten-password", "Reset a forgotten password")
    assert "reset link" in top.passage
    assert len(top.passage) <= 300


def test_no_match_for_unrelated_questions(index: SuggestionIndex) -> None:
    assert index.suggest("what is the weather in lisbon tomorrow").no_match
    assert index.suggest("zzzz qqqq xxxx").no_match
    result = index.suggest("😀🎉🙈")
    assert result.no_match and result.matches == []


def test_drafts_are_not_suggested(index: SuggestionIndex) -> None:
    assert "draft" not in index
    assert all(m.article_id != "draft" for m in index.suggest("reset password draft", k=10).matches)


def test_locale_filter_and_right_to_left_text(index: SuggestionIndex) -> None:
    result = index.suggest("نسيت كلمة المرور")
    assert result.matches[0].article_id == "arabic"
    assert index.suggest("نسيت كلمة المرور", locale="ar").matches[0].article_id == "arabic"
    assert all(m.article_id != "arabic" for m in index.suggest("password", locale="en", k=10).matches)
    assert index.suggest("password", locale="xx").matches == []


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
def test_empty_question_raises(index: SuggestionIndex, question: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        index.suggest(question)


def test_bad_k_and_type(index: SuggestionIndex) -> None:
    with pytest.raises(ValueError):
        index.suggest("password", k=0)
    with pytest.raises(TypeError):
        index.suggest(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "question",
    [
        "password " * 20_000,  # about 180 KB
        "x" * 100_000,
        "🔑" * 30_000 + " password",
        "<script>alert(1)</script> reset my <b>password</b> <img src=x onerror=alert(1)>",
        "كيف أعيد تعيين كلمة المرور؟ password",
        "\u202eReset\u202c password \x00 \ufeff",
    ],
)
def test_hostile_questions_never_crash(index: SuggestionIndex, question: str) -> None:
    result = index.suggest(question, k=5)
    assert result.truncated == (len(question) > MAX_QUESTION_CHARS)
    for match in result.matches:
        assert 0.0 <= match.score <= 1.0
        assert not _TAG.search(match.title) and not _TAG.search(match.passage)


def test_returned_text_of_hostile_article_is_plain(index: SuggestionIndex) -> None:
    match = next(m for m in index.suggest("export data csv residents", k=8).matches if m.article_id == "hostile")
    assert match.title == "Export your data"
    assert not _TAG.search(match.passage) and "steal" not in match.passage and "onerror" not in match.passage


def test_updates_are_new_indexes(index: SuggestionIndex) -> None:
    article = Article(id="pets", title="Register your dog or cat", body="Add pets under My home and upload a photo.")
    with_pets = index.with_article(article)
    assert "pets" in with_pets and "pets" not in index
    assert with_pets.suggest("register my dog").matches[0].article_id == "pets"
    assert index.suggest("register my dog").matches[0].article_id != "pets"

    renamed = with_pets.with_article(Article(id="pets", title="Register your parrot", body="Birds are welcome."))
    assert len(renamed) == len(with_pets)
    assert renamed.suggest("register my parrot").matches[0].article_id == "pets"

    unpublished = renamed.with_article(Article(id="pets", title="Register your parrot", body="", status="draft"))
    assert "pets" not in unpublished
    without = with_pets.without("pets")
    assert without.article_ids == index.article_ids
    with pytest.raises(KeyError):
        index.without("nope")


def test_rebuilt_index_scores_like_a_fresh_one(index: SuggestionIndex) -> None:
    updated = index.without("refund").with_article(KB[1])
    fresh = SuggestionIndex.build([KB[i] for i in (0, 2, 3, 4, 5, 6, 1)], params=PARAMS)
    for question in ("refund my annual plan", "reset password", "tennis"):
        a, b = updated.suggest(question, k=5), fresh.suggest(question, k=5)
        assert [m.article_id for m in a.matches] == [m.article_id for m in b.matches]
        assert [m.score for m in a.matches] == pytest.approx([m.score for m in b.matches])


def test_empty_index_and_duplicate_ids() -> None:
    empty = SuggestionIndex.build([], params=PARAMS)
    assert len(empty) == 0
    assert empty.suggest("password").no_match
    with pytest.raises(ValueError, match="twice"):
        SuggestionIndex.build([KB[0], KB[0]], params=PARAMS)
    one = empty.with_article(KB[0])
    assert one.suggest("password").matches[0].article_id == "password"


def test_shipped_parameters_load_and_describe_their_fitting() -> None:
    params = SuggestParams.load()
    assert params.features == FEATURES
    assert 0.0 < params.no_match_threshold < 1.0
    provenance = params.provenance
    assert provenance["n_queries"] >= 200 and "cross_validation" in provenance
    with pytest.raises(ValueError, match="features"):
        SuggestParams(weights=(1.0,), intercept=0.0, no_match_threshold=0.5, features=("other",))
