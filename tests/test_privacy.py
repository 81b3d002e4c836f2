"""A full run, scanned: no message body, full phone number or password in any log line at INFO+."""

import json
import logging
from urllib.parse import parse_qsl
from uuid import uuid4

import pytest
import responses
from sqlalchemy import select

from bot.staff.accounts import add_staff
from bot.staff.dispatcher import Dispatcher
from bot.store.models import Escalation, Outbox
from bot.store.retention import purge
from conftest import ACCOUNT_SID, SMS

pytestmark = pytest.mark.storage  # database errors must hide SQL parameters on both engines

MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TEXTERS = ["+15555550100", "+15555550123", "whatsapp:+15555550188"]
STAFF_PHONES = ["+15555550901", "+15555550902"]
PASSWORD = "a secret staff password"
BODIES = ["my brother took all his pills and won't wake up", "what are your hours on saturday",
          "me quiero morir", "STOP", "Hi, this is Dana from Solace Hills. Are you with him now?",
          "called back, sister is with him"]


def twilio_answer(request):
    form = dict(parse_qsl(request.body if isinstance(request.body, str) else request.body.decode()))
    if form["To"] == STAFF_PHONES[1]:  # Twilio's real 21211 text quotes the number
        return 400, {}, json.dumps({"code": 21211, "status": 400,
                                    "message": f"The 'To' number {form['To']} is not a valid phone number."})
    return 201, {}, json.dumps({"sid": "SM" + uuid4().hex, "status": "queued", "to": form["To"],
                                "body": form["Body"], "account_sid": ACCOUNT_SID})


def test_a_full_run_never_logs_bodies_numbers_or_passwords(app, db, settings, caplog):
    app.config["WTF_CSRF_ENABLED"] = False
    with db.session() as s:
        add_staff(s, "Dana", "dana@clinic.test", STAFF_PHONES[0], PASSWORD, on_call=True)
        add_staff(s, "Eli", "eli@clinic.test", STAFF_PHONES[1], PASSWORD, on_call=True)
    sms = SMS(app.test_client())
    staff = app.test_client()
    content = app.extensions["helpline"].helpline.bot.content

    with caplog.at_level(logging.DEBUG), responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, MESSAGES_URL, callback=twilio_answer)
        sms.send(BODIES[0], sender=TEXTERS[0])
        sms.send(BODIES[1], sender=TEXTERS[1])
        sms.send(BODIES[2], sender=TEXTERS[2])
        sms.send(BODIES[3], sender=TEXTERS[1])
        staff.post("/dashboard/login", data={"email": "dana@clinic.test", "password": "wrong " + PASSWORD})
        staff.post("/dashboard/login", data={"email": "dana@clinic.test", "password": PASSWORD})
        with db.session() as s:
            esc_id = s.scalars(select(Escalation.id).order_by(Escalation.id)).first()
        staff.get(f"/dashboard/escalations/{esc_id}")
        staff.post(f"/dashboard/escalations/{esc_id}/claim")
        staff.post(f"/dashboard/escalations/{esc_id}/reply", data={"body": BODIES[4]})
        Dispatcher(db, settings, content, name="privacy").tick()
        with db.session() as s:
            sid = s.scalars(select(Outbox.twilio_sid).where(Outbox.twilio_sid.is_not(None), Outbox.kind == "page")
                            .order_by(Outbox.id)).first()
        sms.post({"MessageSid": sid, "MessageStatus": "delivered", "To": TEXTERS[0]}, path="/sms/status")
        staff.post(f"/dashboard/escalations/{esc_id}/resolve", data={"outcome": "reached_safe", "note": BODIES[5]})
        staff.get("/dashboard/search?q=0100")
        purge(db, older_than=__import__("datetime").timedelta(days=0))

    with db.session() as s:  # the run did what it says: pages, a failed page, a reply
        kinds = [(o.kind, o.status) for o in s.scalars(select(Outbox))]
    assert ("page", "delivered") in kinds and ("page", "failed") in kinds and ("reply", "sent") in kinds

    secrets = [*BODIES, *TEXTERS, *STAFF_PHONES, PASSWORD, "15555550100"]
    leaks = [(r.levelname, r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO
             and any(secret in r.getMessage() or (r.exc_text or "").find(secret) >= 0 for secret in secrets)]
    assert leaks == []
    assert len([r for r in caplog.records if r.levelno >= logging.INFO]) > 10  # the run was really logged
