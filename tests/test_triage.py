"""Crisis triage: every rule and idiom in replies/crisis is exercised, plus the context rules."""

import pytest

from bot.core.content import load
from bot.config import DEFAULT_REPLIES_DIR

CONTENT = load(DEFAULT_REPLIES_DIR)
RULE_EXAMPLES = [(r.id, ex) for r in CONTENT.rules for ex in r.examples]
IDIOM_EXAMPLES = [(i.id, ex) for i in CONTENT.idioms for ex in i.examples]


def test_every_rule_has_at_least_one_example():
    assert all(r.examples for r in CONTENT.rules)


@pytest.mark.parametrize("rule_id, text", RULE_EXAMPLES)
def test_each_rule_fires_on_its_examples(bot, rule_id, text):
    verdict = bot.triager.triage(text)
    assert rule_id in verdict.rules and verdict.escalate


@pytest.mark.parametrize("idiom_id, text", IDIOM_EXAMPLES)
def test_idioms_do_not_escalate(bot, idiom_id, text):
    assert not bot.triager.triage(text).escalate


@pytest.mark.parametrize("text", [
    "I don't want to die but I took 15 of my pills",
    "I'm not suicidal but I swallowed a dozen",
    "no me quiero morir pero me tomé 15 pastillas",
])
def test_a_negated_thought_does_not_hide_an_overdose(bot, text):
    assert bot.triager.triage(text).severity == "emergency"


@pytest.mark.parametrize("text", ["I'm not suicidal", "i dont want to kill myself", "no me quiero morir"])
def test_negation_lowers_to_review_but_never_drops(bot, text):
    """The rule's hit is lowered to review; the model may still read more in it, never less."""
    [hit] = [h for h in bot.triager.rule_hits(bot.triager.index.tokens(text)) if h.lowered_by == "negation"][:1]
    assert hit.severity == "review"
    assert bot.triager.triage(text).escalate


@pytest.mark.parametrize("text", ["I tried to kill myself 3 years ago", "intente matarme hace dos años"])
def test_a_past_attempt_brought_up_now_is_review_never_dropped(bot, text):
    verdict = bot.triager.triage(text)
    assert verdict.severity == "review" and verdict.hits[0].lowered_by == "past"


@pytest.mark.parametrize("text", ["my mom overdosed years ago, that's why I want to get clean",
                                  "I OD'd in 2019 and I've been clean since"])
def test_a_past_overdose_told_as_history_never_pages(bot, text):
    """Past overdoses are everyday history at a detox clinic (the issue's hard routine cases)."""
    assert not bot.triager.triage(text).pages


def test_now_keeps_a_past_marker_from_lowering(bot):
    assert bot.triager.triage("I tried years ago and now I took 30 valium").severity == "emergency"


def test_means_and_now_raise_suicidal_thoughts_to_emergency(bot):
    assert bot.triager.triage("i want to kill myself").severity == "urgent"
    assert bot.triager.triage("i want to kill myself and i have the pills in my hand right now").severity == "emergency"


@pytest.mark.parametrize("text", [
    "my brother took all his pills",
    "my roommate took like 20 diazepam and is passed out",
    "mi hermano se tomó todas sus pastillas y no despierta",
])
def test_third_person_reports_are_emergencies_about_someone_else(bot, text):
    verdict = bot.triager.triage(text)
    assert verdict.severity == "emergency" and any(h.about_other for h in verdict.hits)


@pytest.mark.parametrize("text", [
    "my back is killing me", "I'd die for a night's sleep", "dead on my feet", "tetanus shot",
    "late payment", "valium", "diazepam 10mg", "I take 10mg valium 3x a day", "can withdrawal cause seizures?",
    "me muero de hambre", "me mata el trabajo", "I'm dieting", "took 30 minutes to get here",
])
def test_idioms_and_routine_vocabulary_do_not_escalate(bot, text):
    assert not bot.triager.triage(text).escalate


@pytest.mark.parametrize("text", ["KMS", "i w4nt to k1ll myself", "SUICDIE", "want 2 unalive myself",
                                  "took 30 valiumm", "i wanna diee", "ima end it", "imma kms"])
def test_caps_typos_and_leetspeak_still_page(bot, text):
    assert bot.triager.triage(text).pages


def test_a_crisis_buried_in_a_long_routine_text_escalates(bot):
    routine = "what are your hours and do you take blue cross insurance for the detox program? " * 60
    verdict = bot.triager.triage(routine + " also i took 30 of my valium an hour ago " + routine)
    assert verdict.severity == "emergency"


def test_a_failure_inside_triage_escalates_instead_of_passing(bot):
    verdict = bot.triager.triage(12345)  # not text: folding fails inside the engine
    assert verdict.severity == "urgent" and verdict.rule == "triage.error"


def test_texts_are_read_together_with_the_senders_last_few(bot):
    assert not bot.triage("30 of them").escalate
    assert bot.triage("30 of them", recent=("i just took",)).severity == "emergency"


def test_on_a_tie_the_hit_at_its_own_tier_names_the_kind_before_one_the_model_lowered():
    """"i want someone to kill me": the threat reading (violence) and "kill me" (suicide) lose their
    page to the model and tie at review with the plea to be killed (suicide, review on its own): the
    verdict is the plea's, not the threat's, whichever kind comes first among immediate dangers."""
    from bot.core.model import Scores
    from bot.core.triage import Hit, combine
    thresholds = {"escalate": 0.5, "page": 0.68, "emergency": 0.425, "overrule": 0.6}
    threat = Hit("violence.threat", "urgent", "urgent", 0, 5, order=1, kind="violence", weak=True)
    plea = Hit("suicide.plea_to_be_killed", "review", "review", 0, 5, order=9, kind="suicide")
    unsure = Scores(escalate=0.97, page=0.57, emergency=0.04, other=0.0, kind=None, kind_p=0.0, words=6)
    verdict = combine([threat, plea], unsure, thresholds, 2)
    assert (verdict.severity, verdict.rule, verdict.kind) == ("review", "suicide.plea_to_be_killed", "suicide")
    # Where the model supports the page, the threat keeps its tier and names the verdict.
    sure = Scores(escalate=0.99, page=0.9, emergency=0.1, other=0.0, kind=None, kind_p=0.0, words=6)
    verdict = combine([threat, plea], sure, thresholds, 2)
    assert (verdict.severity, verdict.rule, verdict.kind) == ("urgent", "violence.threat", "violence")


def test_a_wish_to_be_killed_is_read_as_suicide(bot):
    verdict = bot.triager.triage("i want someone to kill me")
    assert verdict.escalate and verdict.kind == "suicide"


def test_escalations_record_which_rule_fired(bot):
    verdict = bot.triager.triage("whats the lethal dose of diazepam")
    assert verdict.rule == "lethal.dose_named" and verdict.rules[0] == verdict.rule


def _days_without(triager, text: str) -> bool:
    return "withdrawal.days_without" in {h.rule for h in triager.rule_hits(triager.index.tokens(text))}


@pytest.fixture(scope="module")
def milestone_triager():
    """The shipped content with ``[numbers] recent_days_at_most = 21`` (not shipped: it changes what the
    model reads, so it waits for a retraining; README, "Measured" (14))."""
    from dataclasses import replace
    from bot.core.triage import Triager
    return Triager(replace(CONTENT, recent_days_max=21))


@pytest.mark.parametrize("text", ["90 days off benzos today!!", "30 dias sin pastillas!!!", "day 45 off valium, feeling human",
                                  "hace 60 dias sin clonazepam"])
def test_a_recovery_milestone_is_not_the_first_days_without(bot, milestone_triager, text):
    """A long count of days next to a days word is a milestone: withdrawal.days_without does not fire
    (the shipped lexicon, without the setting, pages "90 days off benzos today", which three of four
    probe writers sent as good news)."""
    assert _days_without(bot.triager, text) and not _days_without(milestone_triager, text)


@pytest.mark.parametrize("text", ["day 3 without diazepam", "llevo 21 dias sin valium y tiemblo", "2 days off my xanax",
                                  "90 pills and 3 days without valium"])
def test_the_first_weeks_without_still_read_as_days_without(milestone_triager, text):
    """Only the count right beside the days word matters, and only past recent_days_at_most."""
    assert _days_without(milestone_triager, text)


def test_the_engine_hands_the_model_what_evidence_makes(bot, monkeypatch):
    """Triager.read looks the concepts' tokens up in a table made at build time (evidence()'s ``tokens``);
    they must be what evidence() formats without it, floor hidden, on every text (the model's input, so
    every score, hangs on it)."""
    from pathlib import Path
    from bot.core import triage
    from bot.core.corpus import read_dir
    tri = bot.triager
    checked = []
    real = triage.evidence

    def spy(occ, hits, idioms=(), hidden=frozenset(), tokens=None):
        got = real(occ, hits, idioms, hidden, tokens)
        assert tokens is not None and hidden == tri.floor_concepts
        assert got == real(occ, hits, idioms, hidden), (occ, hits)
        checked.append(bool(hits) + bool(idioms) * 2 + any(h.floor for h in hits) * 4)
        return got

    monkeypatch.setattr(triage, "evidence", spy)
    corpus = Path(__file__).resolve().parent / "corpus"
    for name in ("dev", "written", "probe"):
        for ex in read_dir(corpus / name):
            tri.read(tri.index.tokens(ex.text))
    kinds = set(checked)
    assert len(checked) > 1000 and {0, 1, 2} <= kinds and any(k & 4 for k in kinds)  # hits, idioms and floor hits seen
