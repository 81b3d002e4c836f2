"""The shipped replies/ pass every content check, and the checker catches broken content."""

import shutil

import pytest

from bot.config import DEFAULT_REPLIES_DIR
from bot.core.checks import check
from bot.core.content import ContentError, load


def test_shipped_content_passes_every_check():
    assert check(load(DEFAULT_REPLIES_DIR)) == []


@pytest.fixture
def broken(tmp_path):
    target = tmp_path / "replies"
    shutil.copytree(DEFAULT_REPLIES_DIR, target)
    return target


def edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_curly_quote_in_an_english_reply_is_caught(broken):
    edit(broken / "topics.en.toml", "Don't stop suddenly", "Don’t stop suddenly")
    assert any("withdrawal" in p and "GSM-7" in p for p in check(load(broken)))


def test_a_reply_without_the_clinic_number_is_caught(broken):
    edit(broken / "messages.en.toml", "Or call us at {phone}.", "Or call us.")
    assert any("messages.en.menu" in p and "clinic number" in p for p in check(load(broken)))


@pytest.mark.parametrize("lang, line", [("en", "\\\nIf you are in danger, call 911, or call or text 988 (24/7)."),
                                        ("es", "\\\nPeligro: 911. Crisis: 988 (marca 2) o AYUDA al 988.")])
def test_a_menu_without_the_emergency_numbers_is_caught(broken, lang, line):
    edit(broken / f"messages.{lang}.toml", "{phone}. " + line, "{phone}.")
    problems = check(load(broken))
    assert f"messages.{lang}.menu: must mention 911" in problems and f"messages.{lang}.menu: must mention 988" in problems


def test_a_crisis_the_triage_misses_still_gets_911_and_988_in_the_menu():
    from bot.core.engine import Inbound, get_bot

    bot = get_bot(str(DEFAULT_REPLIES_DIR))
    for text in ("asdf qwerty", "ok?", "zzz"):  # the menu's texts: nothing triage or the topics read
        d = bot.decide(Inbound(sender="+15555550100", body=text))
        assert d.kind == "menu" and not d.triage.escalate
        assert "911" in d.reply and "988" in d.reply and "573-1504" in d.reply


def test_dosing_instructions_are_caught(broken):
    edit(broken / "topics.en.toml", "Don't stop suddenly;", "Drop 2 mg a week;")
    assert any("dosing" in p for p in check(load(broken)))


def test_a_keyword_in_two_topics_is_caught(broken):
    edit(broken / "topics.en.toml", '"withdrawal", "withdrawals"', '"withdrawal", "withdrawals", "insurance"')
    assert any("insurance" in p and "both" in p for p in check(load(broken)))


def test_a_rule_example_that_no_longer_fires_is_caught(broken):
    edit(broken / "crisis" / "rules.toml", '"I OD\'d",', '"I love my dog",')
    assert any("overdose.od" in p for p in check(load(broken)))


def test_a_withdrawal_reply_that_drops_the_doctor_is_caught(broken):
    edit(broken / "topics.en.toml", "talk to a doctor", "talk to us")
    assert any("withdrawal" in p and "doctor" in p for p in check(load(broken)))


def test_malformed_toml_is_a_content_error(broken):
    (broken / "crisis" / "rules.toml").write_text("[[rule]\nid=", encoding="utf-8")
    with pytest.raises(ContentError):
        load(broken)


def test_shorthand_that_is_not_one_lowercase_word_is_a_content_error(broken):
    edit(broken / "crisis" / "lexicon.toml", 'ima = "im gonna"', '"i ma" = "im gonna"')
    with pytest.raises(ContentError, match="spelled"):
        load(broken)
