"""Normalising, typo-tolerant phrase finding and SMS segment arithmetic."""

from pathlib import Path

import pytest

from bot.core.normalize import BOUNDARY, expand, fold, squeeze, tokenize, words
from bot.core.phrases import load_real_words, PhraseIndex, edit_distance, max_typos
from bot.core.sms import fits, is_gsm7, segments

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, expected", [
    ("I DON'T want", ["i", "dont", "want"]),
    ("Síntomas de abstinencia", ["sintomas", "de", "abstinencia"]),
    ("took 10mg", ["took", "10", "mg"]),
    ("k1ll mys3lf", ["kill", "myself"]),
    ("one. two!", ["one", BOUNDARY, "two"]),
    ("it’s fine", ["its", "fine"]),
])
def test_words_are_lowercase_accent_free_and_split_units(text, expected):
    assert words(text) == expected


def test_emoji_become_words_and_rewrites_apply_before_tokenising():
    assert tokenize(fold("i OD'd 💊", emoji={"💊": "pill"}, replace={"od'd": " od "})) == ["i", "od", "pill"]


def test_shorthand_is_spelled_out_as_whole_words_only():
    spelled = {"ima": ("im", "gonna"), "tryna": ("trying", "to")}
    assert words("Ima end it, tryna sleep", spelled=spelled) == ["im", "gonna", "end", "it", ",", "trying", "to",
                                                                 "sleep"]
    assert expand(["animal", "imagine"], spelled) == ["animal", "imagine"]  # never part of a word


def test_the_shipped_lexicon_spells_shorthand_out_for_rules_and_model(bot):
    assert bot.triager.index.tokens("i'ma end it") == ["im", "gonna", "end", "it"]
    assert bot.triager.index.tokens("me ama") == ["me", "ama"]  # Spanish 'loves', not 'im gonna'


def test_strip_accents_drops_exactly_the_combining_marks_of_every_character():
    """strip_accents translates through a table filled from unicodedata.combining: over every code
    point (in texts of a few thousand), it must give what dropping them one by one gives."""
    import unicodedata
    from bot.core.normalize import strip_accents
    changed = 0
    for start in range(0, 0x110000, 4096):
        text = "".join(chr(c) for c in range(start, min(start + 4096, 0x110000)) if not 0xD800 <= c <= 0xDFFF)
        want = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
        assert strip_accents(text) == want, hex(start)
        changed += want != text
    assert changed > 10 and strip_accents("Síntomas ñ") == "Sintomas n"


def test_squeeze_collapses_repeated_letters():
    assert squeeze("valiumm") == "valium" and squeeze("killl") == "kil"


@pytest.mark.parametrize("a, b, d", [("suicide", "suicdie", 1), ("withdrawal", "withdrawel", 1),
                                      ("kitten", "sitting", 3), ("same", "same", 0)])
def test_edit_distance_counts_swaps_as_one(a, b, d):
    assert edit_distance(a, b) == d


def test_short_words_must_be_exact_and_long_words_allow_more_typos():
    assert max_typos("kms") == 0 and max_typos("seizure") == 1 and max_typos("withdrawal") == 2


@pytest.fixture
def index():
    return PhraseIndex({"withdrawal": ["W"], "kill myself": ["K"], "diet": ["D"], "valium": ["V"],
                        "noose": ["N"], "abused": ["A"], "carve": ["C"]}, real_words=load_real_words())


@pytest.mark.parametrize("token, expected, fuzzy", [
    ("withdrawel", {"withdrawal"}, True), ("valiumm", {"valium"}, False), ("vallium", {"valium"}, False),  # squeezed, not corrected
    ("xithdrawal", set(), False),  # first letters are not guessed
    ("dieting", set(), False),  # a real word, never a typo
    ("died", set(), False),  # four letters: exact only
])
def test_resolve_tolerates_typos_but_not_on_short_or_real_words(index, token, expected, fuzzy):
    words, was_fuzzy = index.resolve(token)
    assert set(words) == expected and was_fuzzy == fuzzy


@pytest.mark.parametrize("token", ["nose", "amused", "crave", "noise"])
def test_a_common_word_is_never_corrected_into_a_crisis_word(index, token):
    """'nose essay' is not 'noose', 'keep us amused' is not 'abused', 'do you crave me' is not 'carve'."""
    assert index.resolve(token) == (frozenset(), False)


def test_the_word_list_is_a_real_word_list_in_both_languages():
    words = load_real_words()
    assert len(words) > 40_000
    assert {"nose", "amused", "crave", "pizza", "casa", "trabajo", "mañana".replace("ñ", "n")} <= words
    assert not {"sucide", "overdozed", "kil"} & words


def test_find_reports_multi_word_phrases_with_typos(index):
    found = index.find(index.tokens("i want to kil myslef"))
    assert [(f.label, f.start, f.end, f.fuzzy) for f in found] == [("K", 3, 5, True)]


def _gathered(index, tokens):
    """What the triage engine made of matches() before occurrences(): each label's spans, and the fuzzy ones."""
    occ, fuzzy = {}, []
    for label, start, end, fuzzy_match in index.matches(tokens):
        occ.setdefault(label, []).append((start, end))
        if fuzzy_match:
            fuzzy.append((start, end))
    return occ, fuzzy


def test_occurrences_gathers_exactly_what_matches_finds(bot):
    """occurrences() gathers the matches() walk as the triage engine reads it: the same labels in the same
    order (rules are tried label by label), the same spans, the same fuzzy matches (their spans: the
    engine marks the tokens corrected inside them, so each span counts once)."""
    from bot.core.corpus import read_dir
    index = bot.triager.index
    texts = [ex.text for name in ("dev", "written") for ex in read_dir(REPO / "tests" / "corpus" / name)]
    texts += ["i want to kil myslef", "took 30 valium and a bottle of wine", "ya no quiero vivir, me quiero morir"]
    fuzzy_texts = multi = 0
    for text in texts:
        tokens = index.tokens(text)
        occ, fuzzy = index.occurrences(tokens)
        want_occ, want_fuzzy = _gathered(index, tokens)
        assert list(occ.items()) == list(want_occ.items()) and set(fuzzy) == set(want_fuzzy), text
        fuzzy_texts += bool(fuzzy)
        multi += any(len(spans) > 1 for spans in occ.values())
    assert fuzzy_texts > 5 and multi > 50  # both paths were exercised


@pytest.mark.parametrize("text, n", [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
                                      ("é" * 160, 1), ("á" * 70, 1), ("á" * 71, 2), ("{" * 80, 1), ("{" * 81, 2)])
def test_segments_follow_gsm7_and_ucs2_rules(text, n):
    assert segments(text) == n


def test_one_curly_quote_makes_a_message_ucs2_and_unfit_in_english():
    text = "Call us’ today"
    assert not is_gsm7(text) and not fits(text, "en") and fits(text.replace("’", "'"), "en")


def test_english_replies_over_320_characters_do_not_fit():
    assert fits("a" * 320, "en") and not fits("a" * 321, "en")
