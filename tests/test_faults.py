"""Twilio's REST API down: webhooks are untouched, the backlog shows, then drains."""

import dataclasses
import json
from uuid import uuid4
from datetime import timedelta

import pytest
import responses
from requests.exceptions import ConnectionError as RequestsConnectionError
from sqlalchemy import select

from bot.staff.accounts import add_staff
from bot.staff.dispatcher import Dispatcher
from bot.store.models import Heartbeat, Outbox, utcnow
from conftest import ACCOUNT_SID

pytestmark = pytest.mark.storage  # database faults

MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def test_twilio_down_never_touches_webhooks_and_the_backlog_drains_when_it_returns(app, db, sms, settings):
    with db.session() as s:
        add_staff(s, "Ann", "ann@clinic.test", "+15555550901", "correct horse battery", on_call=True)
    content = app.extensions["helpline"].helpline.bot.content
    quiet = dataclasses.replace(settings, repage_seconds=10**6, followup_seconds=10**6)  # only these pages
    dispatcher = Dispatcher(db, quiet, content, name="faults")
    t0 = utcnow()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as down:
        down.add(responses.POST, MESSAGES_URL, body=RequestsConnectionError("Twilio unreachable"))
        # The webhook path makes no Twilio call: with the API down, texters are answered as usual.
        for n in range(5):
            reply = sms.send("I took 30 valium", sender=f"+1555888{n:04d}")
            assert reply.status == 200 and "911" in reply.text
        assert len(down.calls) == 0
        for k in range(3):  # the dispatcher keeps trying and backing off
            dispatcher.tick(t0 + timedelta(seconds=70 * k))
        assert len(down.calls) >= 5
    with db.session() as s:
        s.merge(Heartbeat(name="faults", beat_at=utcnow()))
        rows = s.scalars(select(Outbox)).all()
        assert rows and {r.status for r in rows} == {"pending"} and all(r.attempts >= 1 for r in rows)
        for row in rows:  # let time pass for the backlog: queued a while ago
            row.created_at = utcnow() - timedelta(minutes=5)
    health = app.test_client().get("/healthz").get_json()
    assert health["checks"]["oldest_unsent_age_s"] >= 290
    assert "outbound texts are backing up" in health["checks"]["problems"]

    with responses.RequestsMock(assert_all_requests_are_fired=False) as up:
        up.add_callback(responses.POST, MESSAGES_URL, callback=lambda request: (201, {}, json.dumps(
            {"sid": "SM" + uuid4().hex, "status": "queued", "account_sid": ACCOUNT_SID})))
        later = t0 + timedelta(minutes=10)
        for k in range(3):
            dispatcher.tick(later + timedelta(seconds=61 * k))
        assert len(up.calls) == 5
    with db.session() as s:
        assert {r.status for r in s.scalars(select(Outbox))} == {"sent"}
    assert app.test_client().get("/healthz").get_json()["checks"]["oldest_unsent_age_s"] == 0
