"""Floor rules (replies/crisis/floor.toml): the model never learns from them, they only raise a tier.

The guarantee that makes them safe to add without retraining: with or without floor.toml, the model
reads every text exactly as before (the same document, the same rule evidence), so the only verdicts
a floor rule can change are the texts it fires on, and those only upwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.core.content import ContentError, load
from bot.core.corpus import DATA_DIR, read, read_dir, real_examples, real_texts
from bot.core.model import model_text
from bot.core.states import rank
from bot.core.triage import Triager

REPO = Path(__file__).resolve().parent.parent
REPLIES = REPO / "replies"
CORPUS = REPO / "tests" / "corpus"
LABELS = REPO / "tests" / "labels" / "real.tsv"
# Every labelled set that is not blind (blind sets are read only for their totals); "probe" holds the texts
# the floor rules of 2026-11-29 were found on; "probe-2" and "written-more" were written the session after.
# "floor-probe" (the session after that): one more writer's 120 emergencies of the kinds the floor rules of README
# "Measured" (19) cover and 120 ordinary texts with the same words, written from a list of the kinds, not the rules.
# "everyday-es" (fifth session): 1,191 ordinary Spanish texts, README "Measured" (28); "everyday-en" (sixth): 1,190
# ordinary English personal texts, "Measured" (36).
OPEN_SETS = ("written", "written-heldout", "written-heldout-2", "written-heldout-3", "probe", "probe-2", "written-more",
             "floor-probe", "everyday-es", "everyday-en")
TEXT_SETS = ("dev", "dev2", "heldout")
# The blind sets whose looks are spent, development text for the floor rules of README "Measured" (26): no floor rule
# may fire on their routine lines either, and the floor only raises their verdicts.
SPENT_BLIND = tuple(f"blind-{c}" for c in "abcdefghijklmno")


@pytest.fixture(scope="module")
def with_floor() -> Triager:
    return Triager(load(REPLIES))


@pytest.fixture(scope="module")
def without_floor(tmp_path_factory) -> Triager:
    copy = tmp_path_factory.mktemp("nofloor") / "replies"
    shutil.copytree(REPLIES, copy)
    (copy / "crisis" / "floor.toml").unlink()
    return Triager(load(copy))


def _open_examples(spent: bool = False):
    for name in OPEN_SETS + (SPENT_BLIND if spent else ()):
        yield from read_dir(CORPUS / name)
    for name in TEXT_SETS:
        for path in sorted((CORPUS / name).glob("*.txt")):
            yield from read(path)


def test_the_shipped_floor_has_rules(with_floor):
    floor = [r for r in with_floor.rules if r.floor]
    assert floor, "replies/crisis/floor.toml holds no rule"
    assert all(not r.idiomatic and r.examples for r in floor)


def test_the_model_reads_every_text_as_without_the_floor(with_floor, without_floor):
    """Same model document and same rule evidence for every training and held-out text, and for the
    real texts when ../shared/data is here: the floor changes no input of the model."""
    texts = [ex.text for ex in _open_examples()]
    texts += [t for r in without_floor.rules for t in r.examples]
    texts += [t for r in without_floor.idioms for t in r.examples]
    texts += [ex.text for ex in real_examples(LABELS)]
    assert len(texts) > 9_000
    differ = []
    for text in texts:
        a, b = with_floor.index.tokens(text), without_floor.index.tokens(text)
        if a != b or model_text(a) != model_text(b) or with_floor.read(a)[1] != without_floor.read(b)[1]:
            differ.append(text[:60])
    assert differ == []


def test_a_floor_rule_only_raises_a_verdict(with_floor, without_floor):
    """Over the open sets: every verdict with the floor is at least the verdict without it, and
    differs only where a floor rule fired or the model alone escalated a kind that pages
    (``model_kinds_that_page``: then from review to urgent, with no rule hit kept)."""
    raised_by_kind = 0
    for ex in _open_examples(spent=True):
        a, b = with_floor.triage(ex.text), without_floor.triage(ex.text)
        if any(h.floor for h in a.hits):
            assert rank(a.severity) >= rank(b.severity), ex.text[:60]
        elif (a.severity, a.rule) != (b.severity, b.rule):
            assert (a.severity, a.rule, b.severity, b.rule) == ("urgent", "model.kind", "review", "model.triage")
            assert a.kind in with_floor.kinds_that_page and not a.hits, ex.text[:60]
            raised_by_kind += 1
    assert raised_by_kind > 0


def test_floor_rules_fire_on_no_routine_text(with_floor):
    """A floor rule cannot be overruled, so it must be a clear structure: no routine line of the open
    sets, and no real everyday SMS or routine forum text (when ../shared/data is here), fires one."""
    fired = [ex.text[:60] for ex in _open_examples()
             if ex.label == "routine" and any(h.floor for h in with_floor.triage(ex.text).hits)]
    # The spent blind sets: no floor rule pages a routine line (one of 2026-11-29's, suicide.thoughts_of_self, reads
    # "I used to think about killing myself every day when I was on..." at review, lowered by "used to").
    fired += [ex.text[:60] for name in SPENT_BLIND for ex in read_dir(CORPUS / name) if ex.label == "routine"
              and any(h.floor and rank(h.severity) >= rank("urgent") for h in with_floor.triage(ex.text).hits)]
    real = [*real_examples(LABELS), *real_examples(LABELS.with_name("real-round2.tsv")),
            *real_examples(LABELS.with_name("real-round3.tsv"))]
    fired += [ex.id for ex in real if ex.label == "routine" and any(h.floor for h in with_floor.triage(ex.text).hits)]
    sms = {i: t for i, t in real_texts(DATA_DIR).items() if i.startswith("sms-")}
    fired += [i for i, t in sms.items() if any(h.floor for h in with_floor.triage(t).hits)]
    assert fired == []


# Ordinary sentences that share a floor rule's words (written for this test: the corpora hold none of them). A floor
# rule cannot be overruled, so each phrasing in floor.toml was read for the everyday sentences it could also be part of.
ORDINARY = [
    "my nails are blue this week, new polish", "my lips always look kinda blue after swimming lol", "his mouth is all blue from the slushie", "blue lips club, the lake was freezing",
    "i took the remainder of the day off", "took em all to the park lol", "took every one of them to the vet",
    "me tomé el resto de mis vacaciones", "me tomé lo que me quedaba de café",
    "i cut my finger cooking and it's bleeding a lot", "needed stitches after i cut my hand on a glass",
    "my back is seizing up again", "my calf keeps seizing up", "i started seizing up from the cold", "he seized the moment and proposed", "the cops seized my stash",
    "be quiet so you won't wake her", "im still not awake lol", "i'm hard to wake on valium, is that normal",
    "no puedo despertar a tiempo para el trabajo",
    "long pauses between doses of my meds", "me pesa el pecho por la ansiedad, puedo tomar mi clonazepam?",
    "i drank coffee with my meds, is that ok?", "im drinking water, can i take my valium",
    "my son ate, then took his meds", "my daughter ate lunch before her pills",
    # README "Measured" (26)
    "thanks for trying, bye!", "thanks for trying to get me in, I'll tell my mom to call you",
    "thank you for trying with my insurance, I'll call them tomorrow",
    "I gave my dog to my sister while I'm in detox, where I'm going there are no pets",
    "gave my old pills to the pharmacy take back, wont need them anymore",
    "my affairs are in order and my will is done, now I just want to get off valium",
    "he is blue about losing the game lol", "she's been feeling blue since her dog died",
    "grabbed the cat by the neck to put her in the carrier", "my dad hits the gym every day",
    "my buddy hits me up every friday", "my bf hits my vape all day", "mi papa me pega unos sustos jaja",
    "he pushed me to go to rehab", "abri el gas para cocinar", "turned on the gas stove to make tea",
    "I bite my nails until they bleed when I'm anxious", "me muerdo las unas cuando estoy nerviosa",
    "is quitting valium with no taper dangerous?", "what happens if you stop valium with no taper",
    "can i stop xanax with no taper if i only took it a month", "es seguro dejar el clonazepam asi nomas?",
    "my doctor went from 10mg to 5mg", "I don't see myself here long term, can I do outpatient?",
    "woke up disappointed it was monday",
    # (37)
    "the guy next to me at the range had a nice gun", "my brother has guns, he sat next to me at dinner and talked hunting",
    "the pistol is locked in the safe, not next to me", "a deer jumped out and i had to yank the wheel",
    "almost drove off the road in the fog, scary", "sitting on the bridge fishing with my son",
    "i was sitting on the roof of my car eating lunch", "the garden hose is by the exhaust fan",
    "la manguera del jardin esta junto al escape del carro?", "eat a bullet point list for breakfast at work lol",
    "I pray every night for my son in recovery", "que Dios me lleve con bien al trabajo",
    "le pido a Dios que me cuide dormida", "the rope is in the garage if you need it for the move",
    "parked on the street by the bridge, where do I go in?", "I'm standing in line at the pharmacy",
    # (41)
    "watched my son seize the moment at his interview", "saw my back seizing up on the x-ray, is that from withdrawal?",
    "i watched my engine seize up on the freeway", "vi a mi hija convulsionar de risa jaja",
    "watched her seizing every chance to get ahead",
    "took my son to get his adderall refilled, will he be okay without it for a day?",
    "i took my last valium last week, am i going to be okay tapering without it",
    "my mom took her meds with coffee, is she going to be okay with that?",
    "took the dog to the vet, he ate some of my meds earlier, will he be alright",
    "the whole bottle of wine wont do it for me anymore", "does half the bottle of shampoo do the trick for lice",
    "i finished the rest of the bottle of cough syrup over a week, will that be enough to help",
    "my mom just took her meds with her coffee, like every morning", "just took my valium, will i be ok to drive in 2 hours?",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_no_floor_rule_fires_on_an_ordinary_sentence_that_shares_its_words(with_floor, text):
    assert [h.rule for h in with_floor.triage(text).hits if h.floor] == []


def test_the_floor_probe_pages_its_emergencies(with_floor):
    """tests/corpus/floor-probe: its first look, before its texts were development text, was 108/120 paged with the
    floor rules (103 without the ten of "Measured" (19)) and 1 of its 120 ordinary texts paged by one of them; after
    the fixes it led to, 112 and none (README). A floor at today's figure."""
    examples = read_dir(CORPUS / "floor-probe")
    crises = [ex for ex in examples if ex.crisis]
    assert len(crises) == 120 and len(examples) == 240
    assert sum(with_floor.triage(ex.text).pages for ex in crises) >= 112


def test_each_floor_example_escalates_at_the_rules_tier(with_floor):
    for rule in (r for r in with_floor.rules if r.floor):
        for text in rule.examples:
            verdict = with_floor.triage(text)
            assert rule.id in verdict.rules, text
            assert rank(verdict.severity) >= rank(rule.severity), text


def test_explain_names_a_floor_rule_as_such():
    from bot.core.engine import get_bot
    hits = get_bot(str(REPLIES)).explain("my 2 year old ate some of my valium")["rules"]
    assert {(h["rule"], h["floor"]) for h in hits} >= {("overdose.child_swallowed", True)}
    assert not any(h["floor"] for h in get_bot(str(REPLIES)).explain("i took 30 valium")["rules"])


def test_floor_examples_are_not_training_texts():
    pytest.importorskip("sklearn")
    import sys
    sys.path.insert(0, str(REPO / "tools"))
    import train_triage
    assert REPLIES / "crisis" / "floor.toml" not in train_triage.training_files()


def _replies_with_floor(tmp_path: Path, floor: str) -> Path:
    copy = tmp_path / "replies"
    shutil.copytree(REPLIES, copy)
    (copy / "crisis" / "floor.toml").write_text(floor, encoding="utf-8")
    return copy


def test_a_floor_concept_may_not_redefine_the_lexicons(tmp_path):
    copy = _replies_with_floor(tmp_path, '[concepts]\nGUN = ["slingshot"]\n')
    with pytest.raises(ContentError, match="GUN"):
        load(copy)


def test_a_floor_rule_may_not_be_idiomatic(tmp_path):
    copy = _replies_with_floor(tmp_path, '[[rule]]\nid = "x.y"\nkind = "overdose"\nseverity = "urgent"\n'
                                         'pattern = "GUN"\nidiomatic = true\n')
    with pytest.raises(ContentError, match="idiomatic"):
        load(copy)


def test_the_kinds_that_page_must_be_kinds(tmp_path):
    copy = _replies_with_floor(tmp_path, 'model_kinds_that_page = ["violence", "violent"]\n')
    with pytest.raises(ContentError, match="violent"):
        load(copy)
    assert load(_replies_with_floor(tmp_path / "b", 'model_kinds_that_page = ["medical"]\n')).model_kinds_that_page == {
        "medical"}


def test_a_floor_rule_may_not_reuse_a_rules_id(tmp_path):
    copy = _replies_with_floor(tmp_path, '[[rule]]\nid = "overdose.took_count"\nkind = "overdose"\n'
                                         'severity = "urgent"\npattern = "GUN"\n')
    with pytest.raises(ContentError, match="overdose.took_count"):
        load(copy)


def test_without_a_floor_file_content_loads(tmp_path, without_floor):
    assert not any(r.floor for r in without_floor.rules)
    assert without_floor.floor_concepts == frozenset() and without_floor.kinds_that_page == frozenset()
