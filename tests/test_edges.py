"""Attacks at the edges: Twilio's fields, log lines, ids and the login redirect, unstorable text.

Each test here failed on the build the break test ran against (issue 10).
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bot.store.models import Escalation, Message
from conftest import TOKEN
from staffclient import login, post

CRISIS = "I took 30 valium"
SID = "SM" + "0123456789abcdef" * 2


def stored(db) -> list[Message]:
    with db.session() as s:
        return list(s.scalars(select(Message).where(Message.direction == "in")))


# --- Twilio's fields ----------------------------------------------------------------------------

def test_a_signed_request_cannot_be_replayed_as_a_second_message_by_moving_a_field_into_the_sid(sms, db):
    params = sms.params(CRISIS, sid=SID)
    signature = sms.signature(params, "http://localhost/sms")
    assert sms.client.post("/sms", data=params, headers={"X-Twilio-Signature": signature}).status_code == 200
    # Twilio signs sorted keys and values run together: "MessageSid" SID "NumMedia" "0" reads the same as
    # "MessageSid" SID+"NumMedia0" with NumMedia left out. The old signature fits the forged form.
    forged = {k: v for k, v in params.items() if k != "NumMedia"}
    forged["MessageSid"] = SID + "NumMedia0"
    assert RequestValidator(TOKEN).validate("http://localhost/sms", forged, signature)
    resp = sms.client.post("/sms", data=forged, headers={"X-Twilio-Signature": signature})
    assert resp.status_code == 400
    assert [m.sid for m in stored(db)] == [SID]


@pytest.mark.parametrize("field, value", [
    ("MessageSid", "SMshort"), ("MessageSid", "XX" + "0" * 32), ("MessageSid", SID.upper()),
    ("AccountSid", "AC" + "1" * 32),  # another account's message
    ("From", "+1555555010" + "0" * 60), ("From", "hello"), ("To", "+0000"), ("NumMedia", "-1"), ("NumMedia", "99"),
])
def test_a_field_not_in_twilios_shape_is_refused_with_400(sms, db, field, value):
    assert sms.post(sms.params(CRISIS, **{field: value})).status == 400
    assert stored(db) == []


@pytest.mark.parametrize("field", ["MessageSid", "AccountSid", "From", "To", "NumMedia"])
def test_a_field_twilio_always_sends_is_required(sms, db, field):
    params = sms.params(CRISIS)
    del params[field]
    assert sms.post(params).status == 400
    assert stored(db) == []


def test_a_status_callback_with_a_malformed_sid_is_refused(sms):
    assert sms.post({"MessageSid": "SM1\nCRITICAL x", "MessageStatus": "failed"}, path="/sms/status").status == 400


def test_a_newline_in_a_message_sid_cannot_write_a_log_line(sms, db, caplog):
    forged = SID + "\n2026-01-01 00:00:00,000 CRITICAL bot.service: ESCALATION NOT STORED"
    with caplog.at_level(logging.INFO):
        assert sms.post(sms.params(CRISIS, sid=forged)).status == 400
    assert "ESCALATION NOT STORED" not in caplog.text and stored(db) == []


def test_log_lines_escape_newlines_whatever_a_value_carries(tmp_path):
    # The shipped log set-up, in a fresh process as gunicorn and the worker use it.
    code = ("import logging; from bot import logs; logs.setup(); "
            "logging.getLogger('bot.web').warning('refused %s', 'x\\n2026 CRITICAL forged\\r\\x1b[2J')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stderr
    assert out.count("\n") == 1 and "CRITICAL forged" in out and "\\n2026" in out and "\\x1b" in out


def test_the_shipped_log_setup_leaves_gunicorns_log_format_working(tmp_path):
    # logs.setup() skips the caller lookup for every record; gunicorn's own handler prints process ids (a
    # record without one failed to format), and any handler may print the thread's.
    code = ("import logging, os; from bot import logs; logs.setup(); h = logging.StreamHandler(); "
            "h.setFormatter(logging.Formatter('[%(process)d] [%(thread)d %(threadName)s] %(message)s')); "
            "g = logging.getLogger('gunicorn.error'); g.propagate = False; g.addHandler(h); "
            "g.warning('Worker exiting (pid: %s)', os.getpid()); logging.getLogger('bot').warning('ours')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Logging error" not in proc.stderr and "MainThread] Worker exiting" in proc.stderr
    assert " WARNING bot: ours" in proc.stderr


# --- text a database cannot store ---------------------------------------------------------------

def test_a_nul_byte_in_a_text_is_cleaned_at_the_webhook(sms, db):
    reply = sms.send("I took 30 valium\x00")
    assert reply.status == 200 and "911" in reply.text
    [msg] = stored(db)
    assert msg.body.startswith("I took 30 valium") and "\x00" not in msg.body
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Escalation)) == 1


@pytest.mark.parametrize("char", ["\u0000", "\ud800"])  # JSON carries both; no database driver stores either
def test_unstorable_text_from_the_web_chat_is_cleaned_and_the_crisis_escalates(client, db, char):
    token = client.post("/chat/api/start", json={}).get_json()["token"]
    resp = client.post("/chat/api/messages", json={"text": f"i took 30 valium{char}"},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and "911" in resp.get_json()["reply"]
    [msg] = stored(db)
    assert msg.body == "i took 30 valium\ufffd"


# --- ids and numbers ----------------------------------------------------------------------------

BIG = str(2**64 + 1)


@pytest.fixture
def staff_client(app, db):
    from bot.staff.accounts import add_staff
    with db.session() as s:
        add_staff(s, "Ann", "ann@clinic.test", "+15555550901", "correct horse battery", on_call=True)
    client = app.test_client()
    assert login(client, "ann@clinic.test").status_code == 302
    return client


@pytest.mark.parametrize("path", [
    f"/dashboard/escalations/{BIG}", f"/dashboard/escalations/{2**31}", f"/dashboard/escalations/{BIG}/poll",
    f"/dashboard/contacts/{BIG}", f"/dashboard/contacts/{BIG}/poll",
    "/dashboard/escalations/1/poll?after=" + BIG, "/dashboard/contacts/1/poll?after=-5",
    "/dashboard/escalations/1/poll?after=1e9",
])
def test_an_id_beyond_any_column_is_a_4xx_not_a_500(staff_client, sms, path):
    sms.send(CRISIS)
    assert 400 <= staff_client.get(path).status_code < 500


def test_claiming_an_id_beyond_any_column_is_a_404(staff_client):
    assert post(staff_client, f"/dashboard/escalations/{BIG}/claim").status_code == 404


def test_an_audit_filter_beyond_any_column_is_said_not_a_500(staff_client):
    resp = staff_client.get(f"/dashboard/audit?escalation={BIG}")
    assert resp.status_code == 200 and "whole number" in resp.get_data(as_text=True)


@pytest.mark.parametrize("after", [BIG, "-1", "abc", "1.5"])
def test_the_chat_api_refuses_a_malformed_after_with_400(client, after):
    token = client.post("/chat/api/start", json={}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/chat/api/messages", query_string={"after": after}, headers=auth).status_code == 400
    after_json = int(after) if after.lstrip("-").isdigit() else after
    assert client.post("/chat/api/messages", json={"text": "hi", "after": after_json},
                       headers=auth).status_code == 400


@pytest.mark.parametrize("target", ["/dashboard/\r\nSet-Cookie: x=1", "/dashboard/%0d%0a", "/dashboard/\nx"])
def test_a_login_next_with_cr_or_lf_is_ignored_not_a_500(app, db, target):
    from bot.staff.accounts import add_staff
    with db.session() as s:
        add_staff(s, "Ann", "ann@clinic.test", "+15555550901", "correct horse battery")
    client = app.test_client()
    resp = login(client, "ann@clinic.test", next=target.replace("%0d%0a", "\r\n"))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/dashboard/")
    assert client.get("/dashboard/login", query_string={"next": "/dashboard/\r\nx"}).status_code == 302


# --- chat limits: one database counter, under concurrency, for every tier but a paging crisis ---

def test_concurrent_chat_messages_cannot_exceed_the_conversation_limit(app, client):
    import threading
    token = client.post("/chat/api/start", json={}).get_json()["token"]
    codes, lock = [], threading.Lock()
    barrier = threading.Barrier(8)

    def send(n):
        c = app.test_client()
        barrier.wait() if n < 8 else None
        code = c.post("/chat/api/messages", json={"text": "what are your hours"},
                      headers={"Authorization": f"Bearer {token}"}).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes.count(200) == 12 and codes.count(429) == 6  # the break test saw 14 of 12


def test_review_tier_chat_messages_count_toward_the_address_limit(client):
    codes = []
    for n in range(7):  # several conversations from one address, each under its own limit
        token = client.post("/chat/api/start", json={}).get_json()["token"]
        for _ in range(9):
            codes.append(client.post("/chat/api/messages", json={"text": "i cant do this anymore"},
                                     headers={"Authorization": f"Bearer {token}"}).status_code)
    assert codes.count(200) == 60 and codes[60:] == [429, 429, 429]
