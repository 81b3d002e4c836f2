"""Saved staff replies are content: loaded from replies/canned.*.toml and checked like the rest."""

from __future__ import annotations

import shutil

import pytest

from bot.config import DEFAULT_REPLIES_DIR
from bot.core.canned import load_canned
from bot.core.checks import check, check_canned
from bot.core.content import load


@pytest.fixture
def replies(tmp_path):
    """A copy of the shipped replies/ folder to break."""
    return shutil.copytree(DEFAULT_REPLIES_DIR, tmp_path / "replies")


def test_the_shipped_saved_replies_load_in_both_languages_and_pass_the_check():
    canned = load_canned(DEFAULT_REPLIES_DIR)
    assert [r.id for r in canned["en"]] == [r.id for r in canned["es"]] and len(canned["en"]) >= 6
    intro = canned["en"][0]
    assert "Solace Hills Detox" in intro.text and "{clinic}" not in intro.text
    assert intro.for_staff("Ann Alvarez").startswith("Hi, this is Ann,")
    assert check_canned(load(DEFAULT_REPLIES_DIR)) == []


def edit(replies, lang: str, old: str, new: str) -> None:
    path = replies / f"canned.{lang}.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("lang, old, new, problem", [
    ("en", 'id = "closing"', 'id = "goodbye"', "canned replies differ between languages"),
    ("en", "I'm here with you now.", "I’m here with you now.", "not plain GSM-7"),
    ("en", "Is anyone with you?", "Is anyone with you? " + "Take care. " * 30, "too long"),
    ("en", "Is anyone with you?", "Take 5 mg now.", "dosing"),
    ("es", "¿Hay alguien contigo?", "¿Hay alguien contigo, {nombre}?", "unknown placeholder {nombre}"),
    ("en", "call or text 988, the Suicide", "call the Suicide", "must include '988'"),
])
def test_a_broken_edit_is_caught_by_check_content(replies, lang, old, new, problem):
    edit(replies, lang, old, new)
    problems = check(load(replies))
    assert any(problem in p and p.startswith("canned") for p in problems), problems


def test_a_missing_saved_replies_file_is_a_content_problem(replies):
    (replies / "canned.es.toml").unlink()
    assert any("missing content file" in p for p in check_canned(load(replies)))
