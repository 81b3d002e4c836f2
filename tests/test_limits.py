"""Abuse and cost limits: per-number bot replies, never for a crisis."""

import dataclasses

import pytest
from sqlalchemy import func, select

from bot.store.models import Message
from bot.web import create_app
from conftest import SMS

pytestmark = pytest.mark.storage  # the database-backed counter


def limited_app(settings, limit):
    app = create_app(dataclasses.replace(settings, reply_limit_per_hour=limit))
    app.extensions["helpline"].db.create_all()
    return app


def test_replies_stop_at_the_hourly_limit_but_texts_are_still_stored(settings):
    app = limited_app(settings, 3)
    sms = SMS(app.test_client())
    replies = [sms.send("what are your hours").text for _ in range(6)]
    assert all("hours" in r for r in replies[:3])
    # The texter is told once that the bot has stopped answering, then it stays silent.
    assert "limit" in replies[3] and "(562) 573-1504" in replies[3] and "911" in replies[3]
    assert replies[4:] == [None, None]
    with app.extensions["helpline"].db.session() as s:
        assert s.scalar(select(func.count(Message.id)).where(Message.direction == "in")) == 6
        assert s.scalar(select(func.count(Message.id)).where(Message.kind == "limited")) == 3


def test_compliance_words_and_the_language_switch_are_never_limited(settings):
    app = limited_app(settings, 1)
    sms = SMS(app.test_client())
    sms.send("what are your hours")
    sms.send("what are your hours")  # the one notice
    assert sms.send("what are your hours").text is None
    assert "988" in sms.send("HELP").text
    assert "español" in sms.send("ESPANOL").text.lower() or "espanol" in sms.send("ESPANOL").text.lower()
    assert sms.send("STOP").text is None  # Twilio confirms opt-outs itself
    assert "(562) 573-1504" in sms.send("START").text


def test_concurrent_texts_cannot_overshoot_the_limit(settings):
    import threading
    app = limited_app(settings, 5)
    client = app.test_client()
    sms = SMS(client)
    answers = []
    lock = threading.Lock()

    def text(i):
        reply = SMS(app.test_client()).post(sms.params("what are your hours", sid=f"SM{i:032x}")).text
        with lock:
            answers.append(reply)

    threads = [threading.Thread(target=text, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for a in answers if a and "hours" in a) == 5
    assert sum(1 for a in answers if a and "limit" in a) == 1


def test_a_crisis_is_answered_even_over_the_limit(settings):
    app = limited_app(settings, 2)
    sms = SMS(app.test_client())
    for _ in range(4):
        sms.send("where are you located")
    assert "911" in sms.send("I took 30 valium").text


def test_the_limit_is_per_number(settings):
    app = limited_app(settings, 1)
    sms = SMS(app.test_client())
    assert "hours" in sms.send("hours", sender="+15555550101").text
    assert "limit" in sms.send("hours", sender="+15555550101").text
    assert sms.send("hours", sender="+15555550102").text


def test_the_previous_window_counts_as_much_as_it_overlaps_the_sliding_window(db):
    """A burst straddling a window boundary is not let through twice: half way into a window, each event of
    the previous one counts a half (the counter's one statement returns both windows' counts)."""
    from datetime import datetime, timedelta, timezone

    from bot.store.limits import Limit, Limiter

    limiter, limit = Limiter("secret"), Limit("test", 10, timedelta(hours=1))
    start = datetime(2026, 11, 29, 5, tzinfo=timezone.utc)  # a window's first instant
    with db.session() as s:
        assert not any(limiter.hit(s, limit, "+15555550123", start - timedelta(minutes=20)) for _ in range(10))
        half = start + timedelta(minutes=30)
        assert [limiter.hit(s, limit, "+15555550123", half) for _ in range(6)] == [False] * 5 + [True]  # 6 + 5 > 10
        assert not limiter.hit(s, limit, "+15555550999", half)  # another subject's windows are its own
        assert limiter.over(s, limit, "+15555550123", half) and not limiter.over(s, limit, "+15555550999", half)
