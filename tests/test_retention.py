"""Retention: purge erases bodies and numbers past the cutoff and keeps metrics and the audit log."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.staff import actions
from bot.staff.accounts import add_staff
from bot.store.models import AuditLog, Contact, Escalation, Message
from bot.store.retention import PURGED, parse_age, purge

pytestmark = pytest.mark.storage  # purge is SQL over every table


def age_everything(db, days):
    """Move every stored timestamp into the past (what the passing of time would do)."""
    with db.session() as s:
        for model, cols in ((Message, ("created_at",)), (Contact, ("last_seen_at", "created_at")),
                            (Escalation, ("created_at", "resolved_at"))):
            for col in cols:
                column = getattr(model, col)
                for obj in s.scalars(select(model)):
                    value = getattr(obj, col)
                    if value is not None:
                        setattr(obj, col, value - timedelta(days=days))


def test_purge_erases_old_bodies_and_numbers_but_keeps_metrics_and_audit(sms, db):
    sms.send("I took 30 valium")
    with db.session() as s:
        staff = add_staff(s, "Dana", "dana@clinic.test", "+15555550111", "long enough pw")
    with db.session() as s:
        esc = s.scalars(select(Escalation)).one()
        esc_id = esc.id
    actions.claim(db, esc_id, staff)
    actions.resolve(db, esc_id, staff, "reached_safe", "called her, she is with her sister")
    age_everything(db, 100)
    sms.send("what are your hours", sender="+15555550177")  # a recent, unrelated texter

    report = purge(db, timedelta(days=90))

    assert report.messages >= 2 and report.contacts == 1 and report.notes == 1
    with db.session() as s:
        old = s.scalars(select(Message).join(Contact).where(Contact.address == f"purged:{esc.contact_id}")).all()
        assert old and all(m.body == PURGED for m in old)
        esc = s.get(Escalation, esc_id)
        assert (esc.severity, esc.rule, esc.outcome, esc.note) == ("emergency", "overdose.took_count", "reached_safe", None)
        assert s.scalars(select(Contact).where(Contact.address == "+15555550100")).first() is None
        recent = s.scalars(select(Message).join(Contact).where(Contact.address == "+15555550177")).all()
        assert recent and all(m.body != PURGED for m in recent)
        assert {a.action for a in s.scalars(select(AuditLog))} >= {"claim", "resolve"}


def test_purge_is_idempotent(sms, db):
    sms.send("hello")
    age_everything(db, 200)
    first = purge(db, timedelta(days=90))
    second = purge(db, timedelta(days=90))
    assert first.messages > 0 and (second.messages, second.contacts) == (0, 0)


@pytest.mark.parametrize("text, days", [("90d", 90), ("12w", 84), ("48h", 2), ("30", 30)])
def test_retention_ages_parse(text, days):
    assert parse_age(text) == timedelta(days=days)


def test_purge_command_reports_what_it_erased(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("HELPLINE_INSTANCE_DIR", str(tmp_path))
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["purge", "--older-than", "90d"])
    assert result.exit_code == 0 and "message bodies" in result.output
    assert runner.invoke(main, ["purge", "--older-than", "soon"]).exit_code != 0


def test_purge_drops_old_chat_sessions_and_callback_numbers(app, db):
    from bot.store.models import ChatSession
    client = app.test_client()
    token = client.post("/chat/api/start", json={}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    client.post("/chat/api/messages", json={"text": "I took 30 valium"}, headers=auth)
    assert client.post("/chat/api/callback", json={"phone": "+15625550142"}, headers=auth).status_code < 300
    with db.session() as s:
        for chat in s.scalars(select(ChatSession)):
            chat.created_at -= timedelta(days=100)
    age_everything(db, 100)
    purge(db, timedelta(days=90))
    with db.session() as s:
        assert s.scalars(select(ChatSession)).all() == []
        assert [e.callback_number for e in s.scalars(select(Escalation))] == [None]
