"""``helpline report --json`` against a database seeded with known times (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.staff.report import median_p90, normalise_question
from bot.store.models import Contact, Escalation, Message

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAY1 = NOW - timedelta(days=2)


def at(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)


@pytest.fixture
def seeded(db):
    """Five real escalations with known claim and first-reply times, texts on two days, training noise."""
    with db.session() as s:
        sms = Contact(address="+15555550101", channel="sms", language="en")
        web = Contact(address="web:abc", channel="web", language="es")
        wa = Contact(address="whatsapp:+15555550102", channel="whatsapp", language="en")
        test = Contact(address="test:+15550001234", channel="test", language="en")
        s.add_all([sms, web, wa, test])
        s.flush()

        def text(contact, when, body, kind="topic", topic=None, severity=None, language=None):
            s.add(Message(contact_id=contact.id, direction="in", body=body, kind=kind, topic=topic, severity=severity,
                          language=language or contact.language, created_at=when))

        # Day 1: 3 texts; day 3 (today): 4 texts; one from 30 days ago is outside the window.
        text(sms, at(DAY1, 0), "what are the withdrawal symptoms", topic="withdrawal")
        text(sms, at(DAY1, 60), "Do you take my cat?", kind="menu")
        text(web, at(DAY1, 120), "cuanto cuesta", topic="cost")
        text(sms, at(NOW, -3600), "do you take my CAT", kind="menu")
        text(wa, at(NOW, -3000), "Call me at 555 123 4567 about parking", kind="menu")
        text(wa, at(NOW, -2900), "withdrawal", topic="withdrawal")
        text(web, at(NOW, -2800), "I took 30 valium", kind="crisis", severity="emergency")
        text(sms, at(NOW, -timedelta(days=30).total_seconds()), "old question nobody answered", kind="menu")
        text(test, at(NOW, -100), "training question nobody answered", kind="menu")

        def esc(contact, created, severity, kind, claim=None, reply=None, status="resolved", outcome=None,
                pages=0, followup=False, channel=None):
            e = Escalation(contact_id=contact.id, status=status, severity=severity, kind=kind, rule="r",
                           channel=channel or contact.channel, created_at=created, updated_at=created,
                           first_claimed_at=at(created, claim) if claim is not None else None,
                           claimed_at=at(created, claim) if claim is not None else None,
                           first_reply_at=at(created, reply) if reply is not None else None,
                           outcome=outcome, pages_sent=pages,
                           followup_sent_at=at(created, 600) if followup else None)
            s.add(e)
            s.flush()
            return e

        base = at(NOW, -7200)
        esc(sms, base, "emergency", "overdose", claim=30, reply=90, outcome="referred_911", pages=2)
        esc(web, at(base, 10), "emergency", "medical", claim=60, reply=150, outcome="reached_safe", pages=1)
        esc(wa, at(base, 20), "urgent", "suicide", claim=120, reply=300, outcome="referred_988", pages=3)
        esc(sms, at(base, 30), "urgent", "self_harm", claim=600, status="handed_back", pages=4, followup=True)
        esc(web, at(base, 40), "review", "distress", status="open")
        esc(test, at(base, 50), "emergency", "overdose", claim=5, reply=6, outcome="other", channel="test")
        esc(sms, at(NOW, -timedelta(days=30).total_seconds()), "emergency", "overdose", claim=1, reply=2)
    return db


def run_report(runner, settings, *args) -> dict:
    env = {"DATABASE_URL": settings.sqlalchemy_url, "HELPLINE_INSTANCE_DIR": str(settings.instance_dir)}
    result = runner.invoke(main, ["report", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_report_json_has_the_documented_fields_with_the_seeded_numbers(runner, settings, seeded):
    r = run_report(runner, settings, "--since", "7d", "--json")
    assert r["version"] == 1
    assert r["texts"] == 7
    days = [at(DAY1, 0), at(DAY1, 60), at(DAY1, 120), at(NOW, -3600), at(NOW, -3000), at(NOW, -2900), at(NOW, -2800)]
    expected = {}
    for d in days:
        expected[d.date().isoformat()] = expected.get(d.date().isoformat(), 0) + 1
    assert {k: v for k, v in r["texts_by_day"].items() if v} == expected
    assert len(r["texts_by_day"]) in (7, 8) and set(r["texts_by_day"].values()) <= {0, *expected.values()}
    assert r["texts_by_channel"] == {"sms": 3, "web": 2, "whatsapp": 2}
    assert r["texts_by_language"] == {"en": 5, "es": 2}
    assert r["escalations"] == 5
    assert r["escalations_by_tier"] == {"emergency": 2, "urgent": 2, "review": 1}
    assert r["escalations_by_kind"] == {"suicide": 1, "self_harm": 1, "overdose": 1, "medical": 1, "violence": 0,
                                        "distress": 1}
    # Claims at 30, 60, 120, 600 s: median (60+120)/2 = 90; nearest-rank p90 of 4 values is the 4th.
    assert r["time_to_claim_s"] == {"median": 90.0, "p90": 600.0}
    # First replies at 90, 150, 300 s.
    assert r["time_to_first_reply_s"] == {"median": 150.0, "p90": 300.0}
    assert r["pages"] == 10 and r["pages_per_escalation"] == {"mean": 2.5, "max": 4}
    assert r["followups"] == 1
    assert r["outcomes"]["referred_911"] == 1 and r["outcomes"]["reached_safe"] == 1 and r["outcomes"]["other"] == 0
    assert r["escalations_by_status"]["handed_back"] == 1 and r["escalations_by_status"]["open"] == 1
    assert r["top_topics"] == [{"topic": "withdrawal", "count": 2}, {"topic": "cost", "count": 1}]
    assert r["unmatched"] == [{"text": "do you take my cat", "count": 2},
                              {"text": "call me at # # # about parking", "count": 1}]


def test_a_longer_window_takes_in_older_rows_and_an_empty_window_gives_nulls(runner, settings, seeded):
    month = run_report(runner, settings, "--since", "31d", "--json")
    assert month["escalations"] == 6 and month["texts"] == 8
    assert month["unmatched"][-1] == {"text": "old question nobody answered", "count": 1}
    with seeded.session() as s:
        for e in s.scalars(select(Escalation)):
            e.created_at = NOW - timedelta(days=60)
        for m in s.scalars(select(Message)):
            m.created_at = NOW - timedelta(days=60)
    empty = run_report(runner, settings, "--since", "1d", "--json")
    assert empty["texts"] == 0 and empty["escalations"] == 0 and empty["unmatched"] == []
    assert empty["time_to_claim_s"] == {"median": None, "p90": None}
    assert empty["time_to_first_reply_s"] == {"median": None, "p90": None}
    assert empty["pages_per_escalation"] == {"mean": None, "max": None}


def test_the_text_report_is_readable_and_a_bad_window_is_refused(runner, settings, seeded):
    env = {"DATABASE_URL": settings.sqlalchemy_url}
    out = runner.invoke(main, ["report"], env=env)
    assert out.exit_code == 0
    assert "escalations: 5" in out.output and "time to claim: median 90 s, p90 600 s" in out.output
    assert "   2  do you take my cat" in out.output
    bad = runner.invoke(main, ["report", "--since", "last week"], env=env)
    assert bad.exit_code == 2 and "--since" in bad.output


@pytest.mark.parametrize("values, expected", [
    ([], {"median": None, "p90": None}),
    ([42.0], {"median": 42.0, "p90": 42.0}),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], {"median": 5.5, "p90": 9}),
    ([10, 1, 100], {"median": 10, "p90": 100}),
])
def test_median_and_nearest_rank_p90(values, expected):
    assert median_p90(values) == expected


def test_questions_are_folded_and_lose_their_digits():
    assert normalise_question("  ¿Cuánto CUESTA el detox?  ") == "cuanto cuesta el detox"
    assert normalise_question("my number is +1 (555) 010-0199!") == "my number is +# (#) #-#"
