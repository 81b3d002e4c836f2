"""The webhook's durable path (issue 11): one lookup, the decision outside any lock, a short write phase.

Two app instances on one database stand for two processes (each has its own engine, pool and SQLite
writer mutex): what one stores, the other must read on the next text, since nothing about a sender
is cached between texts. On PostgreSQL a pooled connection that died is not pinged when it was used
a moment ago: the text must still be stored, not spooled.
"""

from __future__ import annotations

import itertools
import time

import pytest
from sqlalchemy import func, select, text

import bot.store.db as store_db
from bot.staff.accounts import add_staff
from bot.store.models import Contact, Escalation, Message, Outbox
from bot.web import create_app
from conftest import SMS, TEXTER

pytestmark = pytest.mark.storage

CRISIS = "I took 30 valium"
ROUTINE = "what are your hours"


@pytest.fixture
def pair(settings):
    """Two app instances on one database, like two gunicorn workers."""
    apps = []
    for _ in range(2):
        app = create_app(settings)
        app.config["TESTING"] = True
        apps.append(app)
    db = apps[0].extensions["helpline"].db
    db.create_all()
    with db.session() as s:
        add_staff(s, "Ann", "ann@clinic.test", "+15555550901", "correct horse battery", on_call=True)
    senders = [SMS(app.test_client()) for app in apps]
    senders[1]._sids = itertools.count(10_000)  # its own MessageSids (both would start at 1)
    yield apps, senders
    for app in apps:
        app.extensions["helpline"].db.engine.dispose()


def message(app, key: str, language: str = "en") -> str:
    return app.extensions["helpline"].helpline.bot.content.message(key, language)


def count(db, model, *where) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_an_opt_out_or_a_language_change_made_through_one_process_holds_in_the_other(pair):
    (app_a, app_b), (a, b) = pair
    a.send("hola, cuáles son los síntomas?")
    assert b.send("ok?").text == message(app_b, "menu", "es")
    assert b.send("ENGLISH").text == message(app_b, "language_set", "en")
    assert a.send("ok?").text == message(app_a, "menu", "en")
    assert a.send("STOP").text is None
    assert b.send(ROUTINE).text is None  # opted out through the other process: silent
    b.send("START")
    assert a.send(ROUTINE).text is not None
    assert b.send("STOP").text is None
    assert "911" in a.send(CRISIS).text  # opted out, but a crisis is still answered
    db = app_a.extensions["helpline"].db
    with db.session() as s:
        contact = s.scalar(select(Contact).where(Contact.address == TEXTER))
        assert contact.opted_out is True and contact.language == "en"
        [esc] = s.scalars(select(Escalation)).all()
        assert esc.opted_out is True  # it opened while the texter was opted out: call, don't text


def test_a_retry_through_the_other_process_is_stored_once_and_answered_alike(pair):
    (app_a, _), (a, b) = pair
    sid = "SM" + "7" * 32
    first, retry = a.send(CRISIS, sid=sid), b.send(CRISIS, sid=sid)
    assert first.text == retry.text and "911" in first.text
    db = app_a.extensions["helpline"].db
    assert count(db, Message, Message.direction == "in") == 1
    assert count(db, Message, Message.direction == "out") == 1
    assert count(db, Escalation) == 1 and count(db, Outbox, Outbox.kind == "page") == 1


def test_a_new_escalation_is_stored_whole_in_the_texts_transaction(pair):
    (app_a, _), (a, _) = pair
    reply = a.send(CRISIS)
    db = app_a.extensions["helpline"].db
    with db.session() as s:
        [esc] = s.scalars(select(Escalation)).all()
        inbound = s.scalar(select(Message).where(Message.direction == "in"))
        out = s.scalar(select(Message).where(Message.direction == "out"))
        [page] = s.scalars(select(Outbox)).all()
        assert esc.first_message_id == inbound.id and inbound.escalation_id == esc.id
        assert out.reply_to_id == inbound.id and out.escalation_id == esc.id and out.body == reply.text
        assert esc.status == "open" and esc.message_count == 1 and esc.page_round == 0 and esc.pages_sent == 0
        assert esc.first_paged_at is not None and esc.first_paged_at == esc.last_paged_at
        assert esc.page_problem is None
        assert page.escalation_id == esc.id and page.to_address == "+15555550901"
        assert f"#{esc.id}" in page.body and "***-" in page.body and CRISIS not in page.body


def test_a_pooled_connection_that_died_costs_no_text(app, sms, db, database_url, postgres_admin, monkeypatch):
    if database_url is None:
        pytest.skip("PostgreSQL only: a SQLite connection cannot die under the app")
    monkeypatch.setattr(store_db, "PING_IDLE", 3600.0)  # never pinged: the first statement finds it dead
    sms.send(ROUTINE)  # a connection in the pool
    with db.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with postgres_admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = time.monotonic() + 5
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    reply = sms.send(CRISIS, sender="+15555550166")
    assert "911" in reply.text
    assert count(db, Message, Message.direction == "in") == 2 and count(db, Escalation) == 1
    assert app.extensions["helpline"].helpline.spool.counts().pending == 0


@pytest.mark.sqlite_only
def test_the_writer_lock_file_held_elsewhere_bounds_the_wait_and_the_text_is_spooled(app, sms, db, settings):
    import fcntl
    import os
    sms.send(ROUTINE)
    path = db.url.split("///", 1)[-1] + "-writer"
    assert os.path.exists(path)  # the webhook's processes queue on it
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process in the middle of its write phase, and stuck there
        started = time.monotonic()
        reply = sms.send(CRISIS, sender="+15555550167")
        assert "911" in reply.text and time.monotonic() - started < 5.0
        assert app.extensions["helpline"].helpline.spool.counts().pending == 1
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    db.breaker.succeeded()  # as after the cool-down's probe
    assert app.extensions["helpline"].helpline.replay_spool() == 1
    assert count(db, Message, Message.direction == "in") == 2 and count(db, Escalation) == 1
