"""Bot.decide: the order of crisis, compliance words, silence, language and topics."""

import pytest

from bot.core.engine import Inbound, State
from bot.core.sms import fits


def decide(bot, body, **state):
    return bot.decide(Inbound(sender="+15555550100", body=body), State(**state))


def test_crisis_outranks_opt_out_and_an_open_escalation(bot):
    d = decide(bot, "i took all my pills", opted_out=True, escalated=True)
    assert d.kind == "crisis" and "911" in d.reply


@pytest.mark.parametrize("word", ["STOP", "stop.", "StopAll", "UNSUBSCRIBE", "cancel", "END", "quit", "REVOKE", "OPTOUT"])
def test_opt_out_words_opt_out_without_a_reply(bot, word):
    d = decide(bot, word)
    assert d.kind == "optout" and d.opt_out is True and d.reply is None


@pytest.mark.parametrize("word", ["START", "yes", "UNSTOP"])
def test_opt_in_words_only_act_for_opted_out_contacts(bot, word):
    assert decide(bot, word, opted_out=True).opt_out is False
    assert decide(bot, word).opt_out is None


@pytest.mark.parametrize("word", ["HELP", "info", "AYUDA"])
def test_help_words_name_the_clinic_and_emergency_numbers(bot, word):
    d = decide(bot, word)
    assert d.kind == "help"
    for needle in ("Solace Hills Detox", "(562) 573-1504", "911", "988"):
        assert needle in d.reply


def test_a_bare_help_is_also_a_review_escalation(bot):
    assert decide(bot, "HELP").triage.severity == "review"


def test_the_bot_stays_silent_on_routine_texts_while_a_human_owns_the_conversation(bot):
    d = decide(bot, "what are your hours", escalated=True)
    assert d.kind == "silent" and d.reply is None


def test_opted_out_contacts_get_no_routine_replies(bot):
    assert decide(bot, "what are your hours", opted_out=True).reply is None


def test_review_texts_get_the_answer_with_a_911_988_footer_when_it_fits(bot):
    d = decide(bot, "i honestly cant do this anymore, how does detox work")
    assert d.kind == "review" and "988" in d.reply and fits(d.reply, "en")


@pytest.mark.parametrize("text, lang", [("hola, que horario tienen?", "es"), ("what are your hours?", "en"),
                                        ("¿Cuánto cuesta?", "es")])
def test_language_is_detected_per_message(bot, text, lang):
    assert decide(bot, text).language == lang


def test_an_unclear_text_keeps_the_remembered_language(bot):
    d = decide(bot, "ok", language="es")
    assert d.language == "es" and d.remember_language is None


@pytest.mark.parametrize("word, lang", [("ESPANOL", "es"), ("Español", "es"), ("english", "en")])
def test_language_words_switch_and_are_remembered(bot, word, lang):
    d = decide(bot, word, language="en" if lang == "es" else "es")
    assert d.kind == "language" and d.language == lang and d.remember_language == lang


@pytest.mark.parametrize("text, topic", [
    ("what are the withdrawel symptoms", "withdrawal_symptoms"), ("valiumm withdrawel how long", "withdrawal_duration"),
    ("what r the sintoms of diazepam dependance", "signs"), ("do you take blue cross insurance", "insurance"),
    ("where are you located", "location"), ("how much does it cost", "cost"), ("valium", "what_is"),
    ("how can I support my wife through this", "family"), ("is this confidential", "confidentiality"),
    ("¿aceptan seguro médico?", "insurance"), ("cuales son los sintomas", "signs"),
])
def test_topics_match_anywhere_in_the_text_with_typos(bot, text, topic):
    assert decide(bot, text).topic == topic


def test_every_withdrawal_answer_says_do_not_stop_suddenly_and_see_a_doctor(bot):
    en, es = decide(bot, "withdrawal"), decide(bot, "abstinencia", language="es")
    assert "suddenly" in en.reply and "doctor" in en.reply
    assert "de golpe" in es.reply and "médico" in es.reply


def test_an_unmatched_text_gets_the_menu(bot):
    d = decide(bot, "asdf qwerty")
    assert d.kind == "menu" and "WITHDRAWAL" in d.reply


def test_media_only_and_empty_texts_get_a_safe_answer(bot):
    assert bot.decide(Inbound(sender="x", body="", media_count=1)).kind == "media"
    assert decide(bot, "   ").kind == "menu"


@pytest.mark.parametrize("text, lang", [("I took 30 valium", "en"), ("me tomé 30 valium", "es")])
def test_crisis_replies_are_in_the_texters_language(bot, text, lang):
    d = decide(bot, text)
    assert d.language == lang and d.reply == bot.content.crisis_reply("emergency", "overdose", lang, alerted=False)
    assert d.alerted_reply == bot.content.crisis_reply("emergency", "overdose", lang, alerted=True)


# --- uneasy: not escalated, but the answer carries 911 and 988 --------------------------------------

def test_an_answer_ends_with_911_and_988_when_triage_was_uneasy(bot):
    """A figure of speech the model overruled ("kill this habit") is no escalation, but the texter sees the line."""
    d = decide(bot, "i want to kill this habit for good, what's the first step")
    assert d.kind == "topic" and not d.triage.escalate and d.triage.uneasy
    topic = next(t for t in bot.content.topics["en"] if t.id == d.topic)
    assert d.reply == f"{topic.reply} {bot.content.message('review_footer', 'en')}" and fits(d.reply, "en")


def test_a_plain_question_gets_the_answer_alone(bot):
    d = decide(bot, "what are your hours on saturday")
    assert d.kind == "topic" and not d.triage.uneasy
    assert d.reply == next(t for t in bot.content.topics["en"] if t.id == d.topic).reply and "988" not in d.reply


def test_an_uneasy_answer_that_would_not_fit_is_sent_as_it_is(bot):
    d = decide(bot, "qué riesgos tiene tomar diazepam mucho tiempo")  # Spanish excerpts: the line rarely fits
    assert d.kind == "topic" and d.triage.uneasy and d.language == "es"
    assert d.reply == next(t for t in bot.content.topics["es"] if t.id == d.topic).reply and fits(d.reply, "es")


def test_triage_is_uneasy_about_an_overruled_hit_or_a_middling_score_only(bot):
    from bot.core.triage import UNEASY
    triage = bot.triager.triage
    assert not triage("what are your hours on saturday").uneasy
    overruled = triage("omg the traffic on the 405 is actually killing me")  # a rule hit the model dropped
    assert not overruled.escalate and overruled.overruled and overruled.uneasy
    for text in ("i want to kill this habit for good, what's the first step", "whats narcan and should my family keep some at home"):
        v = triage(text)
        assert not v.escalate and v.uneasy
    escalated = triage("i took 30 valium and cant stay awake")
    assert escalated.escalate and not escalated.uneasy  # an escalation has its own reply and line
    assert 0 < UNEASY < bot.triager.model.thresholds["escalate"]


def test_quick_init_builds_what_the_dataclass_init_built():
    """Decision, Triage and Scores fill their dict in one update (states.quick_init): the same fields
    and defaults as the dataclass's own __init__, and still frozen, equal, hashable and replaceable."""
    import dataclasses
    from bot.core.engine import Decision
    from bot.core.model import Scores
    from bot.core.states import quick_init
    from bot.core.triage import Triage

    for cls, args in ((Decision, ("topic", "hi", "en", None)), (Triage, ("urgent", "r")),
                      (Scores, (0.1, 0.2, 0.3, 0.4, "suicide", 0.5, 7))):
        # The class as dataclass made it, for reference.
        plain = dataclasses.dataclass(frozen=True)(type(cls.__name__, (), {"__annotations__": dict(cls.__annotations__)}
                                                         | {f.name: f.default for f in dataclasses.fields(cls)
                                                            if f.default is not dataclasses.MISSING}))
        names = [f.name for f in dataclasses.fields(cls)]
        calls = [(args, {}), (args[:-1], {names[len(args) - 1]: args[-1]})]
        if len(names) > len(args):
            calls.append((args, {names[-1]: "last"}))
        for pos, kwargs in calls:
            got, want = cls(*pos, **kwargs), plain(*pos, **kwargs)
            assert list(vars(got).items()) == list(vars(want).items())
            assert got == cls(*pos, **kwargs) and hash(got) == hash(cls(*pos, **kwargs))
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(got, names[0], "changed")
            assert getattr(dataclasses.replace(got, **{names[1]: "other"}), names[1]) == "other"
        with pytest.raises(TypeError):
            cls()
    with pytest.raises(TypeError):
        quick_init(dataclasses.dataclass(frozen=True, slots=True)(type("S", (), {"__annotations__": {"a": int}})))
