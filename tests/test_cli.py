"""The ``helpline`` command line: triage, check-content, db upgrade, simulate and help texts."""

from __future__ import annotations

import json
import shutil

import click
import pytest
from sqlalchemy import select

from bot.cli import main
from bot.config import DEFAULT_REPLIES_DIR, Settings
from bot.store.db import Database
from bot.store.models import Contact, Message
from conftest import TEXTER, TOKEN

PHONE = "(562) 573-1504"
KEYS = {"escalate", "severity", "kind", "rules", "topic", "language", "reply"}


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    """A clean environment: the instance folder in tmp_path, shipped replies, a real token."""
    for name in ("DATABASE_URL", "HELPLINE_REPLIES_DIR", "HELPLINE_PUBLIC_URL", "HELPLINE_DEV",
                 "HELPLINE_TRUSTED_PROXIES", "HELPLINE_CONTEXT_MINUTES", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    return tmp_path


def triage(runner, *lines: str) -> list[dict]:
    result = runner.invoke(main, ["triage"], input="".join(line + "\n" for line in lines))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# --- triage ---------------------------------------------------------------------------------

def test_triage_writes_one_json_verdict_per_line_with_fixed_keys(runner):
    verdicts = triage(runner, "what are your hours", "I took 30 valium", "hola, cuánto cuesta?", "STOP")
    assert len(verdicts) == 4
    for verdict in verdicts:
        assert set(verdict) == KEYS


def test_triage_escalates_a_crisis_line_with_a_911_reply(runner):
    [verdict] = triage(runner, "I took 30 valium")
    assert verdict["escalate"] is True
    assert verdict["severity"] in ("emergency", "urgent")
    assert "911" in verdict["reply"]


def test_triage_answers_a_routine_line_with_its_topic(runner):
    [verdict] = triage(runner, "what are the withdrawal symptoms")
    assert verdict["escalate"] is False and verdict["severity"] is None
    assert verdict["topic"] == "withdrawal_symptoms"
    assert PHONE in verdict["reply"]


def test_triage_names_the_kind_and_the_rules_that_fired(runner):
    [verdict] = triage(runner, "I took 30 valium")
    assert verdict["kind"] == "overdose" and "overdose.took_count" in verdict["rules"]
    [routine] = triage(runner, "what are your hours")
    assert routine["kind"] is None and routine["rules"] == []


def test_triage_explain_adds_the_rules_and_the_models_words(runner):
    result = runner.invoke(main, ["triage", "--explain"], input="i swallowed 40 of my valium\nwhat are your hours\n")
    assert result.exit_code == 0, result.output
    crisis, routine = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(crisis) == KEYS | {"explain"}
    assert [r["rule"] for r in crisis["explain"]["rules"]][0] == crisis["rules"][0]
    model = crisis["explain"]["model"]
    assert model["escalate"] > model["page"] * 0 and model["for"] and all(len(p) == 2 for p in model["for"])
    assert routine["explain"]["rules"] == [] and routine["explain"]["model"]["escalate"] < 0.5


def test_triage_detects_a_spanish_line(runner):
    [verdict] = triage(runner, "hola, cuáles son los síntomas?")
    assert verdict["language"] == "es"
    assert "síntomas" in verdict["reply"]


def test_triage_gives_no_reply_to_stop(runner):
    [verdict] = triage(runner, "STOP")
    assert verdict["reply"] == "" and verdict["escalate"] is False


@pytest.mark.parametrize("text", [
    "what are your hours", "I took 30 valium", "i want to kill myself", "I relapsed",
    "hola, cuáles son los síntomas?", "me quiero morir", "STOP", "HELP", "asdf qwerty",
])
def test_triage_replies_exactly_as_the_webhook_would_to_a_new_number(runner, sms, text):
    [verdict] = triage(runner, text)
    reply = sms.send(text, sender="+15555550142")
    assert reply.status == 200
    assert verdict["reply"] == (reply.text or "")


# --- check-content --------------------------------------------------------------------------

def test_check_content_passes_on_the_shipped_replies(runner):
    result = runner.invoke(main, ["check-content"])
    assert result.exit_code == 0, result.output
    assert "content OK" in result.output and "PROBLEM" not in result.output


def broken_copy(tmp_path, filename: str, old: str, new: str):
    replies = tmp_path / "replies"
    shutil.copytree(DEFAULT_REPLIES_DIR, replies)
    path = replies / filename
    source = path.read_text(encoding="utf-8")
    assert old in source  # the edit must really change the copy
    path.write_text(source.replace(old, new, 1), encoding="utf-8")
    return replies


@pytest.mark.parametrize("filename, old, new, complaint", [
    ("messages.en.toml", "ESPANOL. Or call us at {phone}.", "ESPANOL.", "messages.en.menu: lacks the clinic number"),
    ("topics.en.toml", "Don't stop suddenly", "Don\u2019t stop suddenly", "topics.en.withdrawal_symptoms: too long or not plain GSM-7"),
])
def test_check_content_fails_on_a_broken_copy(runner, env, monkeypatch, filename, old, new, complaint):
    monkeypatch.setenv("HELPLINE_REPLIES_DIR", str(broken_copy(env, filename, old, new)))
    result = runner.invoke(main, ["check-content"])
    assert result.exit_code == 1
    assert "PROBLEM" in result.output
    assert complaint in result.output


# --- db upgrade -----------------------------------------------------------------------------

def test_db_upgrade_creates_the_sqlite_file_and_can_run_twice(runner, env):
    database_file = env / "instance" / "helpline.sqlite3"
    assert not database_file.exists()
    first = runner.invoke(main, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert database_file.exists()
    second = runner.invoke(main, ["db", "upgrade"])
    assert second.exit_code == 0, second.output
    database = Database(Settings.from_env().sqlalchemy_url)
    try:
        assert database.missing_tables() == []
    finally:
        database.engine.dispose()


# --- simulate -------------------------------------------------------------------------------

def test_simulate_answers_each_line_and_stores_the_conversation(runner):
    result = runner.invoke(main, ["simulate"], input="what are your hours\nI took 30 valium\n")
    assert result.exit_code == 0, result.output
    bot_lines = [line for line in result.stdout.splitlines() if line.startswith("bot")]
    assert len(bot_lines) == 2
    assert PHONE in bot_lines[0] and "911" not in bot_lines[0]
    assert "911" in bot_lines[1]

    database = Database(Settings.from_env().sqlalchemy_url)
    try:
        with database.session() as s:
            who = s.scalar(select(Contact).where(Contact.address == TEXTER))
            texts = s.scalars(select(Message.body).where(Message.contact_id == who.id, Message.direction == "in")
                              .order_by(Message.id)).all()
            replies = s.scalars(select(Message).where(Message.direction == "out")).all()
        assert texts == ["what are your hours", "I took 30 valium"]
        assert len(replies) == 2
    finally:
        database.engine.dispose()


# --- help -----------------------------------------------------------------------------------

def command_paths(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name), command


@pytest.mark.parametrize("path, command", list(command_paths(main)),
                         ids=[" ".join(path) or "helpline" for path, _ in command_paths(main)])
def test_every_command_has_help_text(runner, path, command):
    assert command.help and command.help.strip()
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert " ".join(command.help.split()) in " ".join(result.output.split())  # wrapped to the terminal
