"""Abuse and cost limits: per-number bot replies, never for a crisis."""

import dataclasses

from sqlalchemy import func, select

from bot.store.models import Message
from bot.web import create_app
from conftest import SMS


def limited_app(settings, limit):
    app = create_app(dataclasses.replace(settings, reply_limit_per_hour=limit))
    app.extensions["helpline"].db.create_all()
    return app


def test_replies_stop_at_the_hourly_limit_but_texts_are_still_stored(settings):
    app = limited_app(settings, 3)
    sms = SMS(app.test_client())
    replies = [sms.send("what are your hours").text for _ in range(5)]
    assert all(replies[:3]) and replies[3:] == [None, None]
    with app.extensions["helpline"].db.session() as s:
        assert s.scalar(select(func.count(Message.id)).where(Message.direction == "in")) == 5
        assert s.scalar(select(func.count(Message.id)).where(Message.kind == "limited")) == 2


def test_a_crisis_is_answered_even_over_the_limit(settings):
    app = limited_app(settings, 2)
    sms = SMS(app.test_client())
    for _ in range(4):
        sms.send("where are you located")
    assert "911" in sms.send("I took 30 valium").text


def test_the_limit_is_per_number(settings):
    app = limited_app(settings, 1)
    sms = SMS(app.test_client())
    assert sms.send("hours", sender="+15555550101").text
    assert sms.send("hours", sender="+15555550101").text is None
    assert sms.send("hours", sender="+15555550102").text
