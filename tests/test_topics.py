"""Topic matching: the reply answers the question asked, measured on questions written blind."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bot.core.corpus import read_dir
from bot.core.engine import Inbound, State

CORPUS = Path(__file__).parent / "corpus"
TARGET = 0.90  # issue 13: at least 90% of realistic questions get the right topic
# First look at tests/corpus/topics-blind (2026-11-28): 290/335 right (86.6%; en 88.1%, es 84.7%).
# Second look, after a question head stopped chatter from getting stray excerpts: 288/335 (86.0%;
# en 89.2%, es 82.0%). Third and last look, after off-topic questions ("do you take my cat") taught
# the question head to leave them to the menu: 283/335 (84.5%; en 88.1%, es 80.0%). Short of the
# 90% target; kept as a regression floor, and the README says so.
BLIND_FLOOR = 0.84
# tests/corpus/topics-blind-2 (written later by two more writers who saw only the subject list, en 180 /
# es 160), first and only look after 880 more training questions from two other such writers
# (tests/corpus/questions): 308/340 right (90.6%; en 88.9%, es 92.5%). Target met on first look.
# Second look, after retraining so the model covers every question in tests/corpus/written (2,465 more
# lines had joined it for triage): 307/340 (90.3%; en 90.6%, es 90.0%). Since README "Measured" (24)
# (2026-11-29, fifth session: the page head pages a text no rule fires on by itself, as the thresholds were
# chosen for) one question here pages instead of getting its answer (a question about breastfeeding on
# diazepam: escalate head 0.33, page head 0.76): 305/340 (89.7%) through Bot.decide, the topic reader unchanged.
BLIND_2_FLOOR = 0.895


def topic_of(bot, text: str, language: str | None = None) -> str | None:
    return bot.decide(Inbound(sender="t", body=text), State(language=language)).topic


@pytest.mark.parametrize("text, topic", [
    ("what are the symptoms of benzo withdrawal", "withdrawal_symptoms"),
    ("how long does withdrawal last", "withdrawal_duration"),
    ("can i just cut my valium dose in half myself", "dose_change"),
    ("is it ok to drink a glass of wine with my valium", "mixing"),
    ("what is detox at your place like, do i have to stay overnight", "treatment"),
    ("can i quit cold turkey", "stopping"),
    ("cuanto dura la abstinencia", "withdrawal_duration"),
    ("puedo tomar alcohol con el diazepam", "mixing"),
])
def test_questions_the_issue_named_get_the_topic_that_answers_them(bot, text, topic):
    assert topic_of(bot, text) == topic


def test_the_duration_answer_says_it_varies_and_a_doctor_plans_it(bot):
    d = bot.decide(Inbound(sender="t", body="how long does withdrawal last"))
    assert "varies" in d.reply and "doctor" in d.reply and "(562) 573-1504" in d.reply


def test_the_dose_answer_says_not_to_change_it_alone(bot):
    d = bot.decide(Inbound(sender="t", body="can i just cut my valium dose in half myself"))
    assert "don't change" in d.reply.lower() and "doctor" in d.reply


@pytest.mark.parametrize("name, floor", [("topics-blind", BLIND_FLOOR), ("topics-blind-2", BLIND_2_FLOOR)])
def test_blind_questions_get_the_right_topic(bot, name, floor):
    """Questions by writers who never saw the topics or the training questions; only totals are read."""
    examples = read_dir(CORPUS / name)
    assert len(examples) >= 300 and {ex.lang for ex in examples} == {"en", "es"}
    right = Counter()
    for ex in examples:
        right[ex.lang, topic_of(bot, ex.text) == ex.topic] += 1
    total = sum(v for (_, ok), v in right.items() if ok) / len(examples)
    by_lang = {lang: right[lang, True] / (right[lang, True] + right[lang, False]) for lang in ("en", "es")}
    print(f"\n{name}: {total:.3f} right ({by_lang})")
    assert total >= floor
