"""Paging and outbound texts: pages queued with the escalation, sent through Twilio, retried,
failed over, re-paged, followed up, claimed once, and recovered after a crash.

Only Twilio's REST API is mocked (``responses``); the database is real SQLite and time moves by
passing ``now=`` into the dispatcher.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qsl
from uuid import uuid4

import pytest
import responses
from sqlalchemy import select, update

from bot.config import DEFAULT_REPLIES_DIR, Settings
from bot.staff import actions
from bot.staff.accounts import add_staff, remove_staff, set_on_call
from bot.staff.dispatcher import LEASE, Dispatcher, backoff
from bot.staff.sender import LocalSender, TwilioSender
from bot.store.models import AuditLog, Contact, Escalation, Message, Outbox, Staff, aware, utcnow
from bot.web import create_app
from conftest import ACCOUNT_SID, CLINIC_NUMBER, SMS, TEXTER, make_healthy

pytestmark = pytest.mark.storage  # paging queues, leases and compare-and-set claims live in the database

MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
CLINIC_PHONE = "(562) 573-1504"  # how the clinic number is written in texts
EMERGENCY = "I took 30 valium"
URGENT = "I want to kill myself"
REVIEW = "I relapsed"
SPANISH_EMERGENCY = "me tomé 30 pastillas"
ROUTINE = "what are your hours"
PASSWORD = "correct horse battery"
ALICE, BOB, CAROL, DAVE = "+15555550901", "+15555550902", "+15555550903", "+15555550904"


class TwilioAPI:
    """Twilio's Messages endpoint under ``responses``: records every POST, answers from a script."""

    def __init__(self, rsps: responses.RequestsMock):
        self.posts: list[dict] = []
        self.script: dict[str, list] = defaultdict(list)
        self.lists: list[dict] = []
        rsps.add_callback(responses.POST, MESSAGES_URL, callback=self._answer)
        rsps.add_callback(responses.GET, MESSAGES_URL, callback=self._list)

    def _list(self, request):
        """GET Messages.json: the accepted messages, filtered by To and From like Twilio."""
        query = dict(parse_qsl(request.url.split("?", 1)[1] if "?" in request.url else ""))
        self.lists.append(query)
        found = [{"sid": p["_sid"], "to": p.get("To"), "from": p.get("From"), "body": p.get("Body"),
                  "status": "sent", "account_sid": ACCOUNT_SID, "direction": "outbound-api",
                  "api_version": "2010-04-01", "num_segments": "1"}
                 for p in self.posts if "_sid" in p and p.get("To") == query.get("To")
                 and p.get("From") == query.get("From")]
        return 200, {"Content-Type": "application/json"}, json.dumps({
            "messages": found, "next_page_uri": None, "page": 0, "page_size": 50,
            "uri": "/2010-04-01/Accounts/x/Messages.json", "first_page_uri": None, "previous_page_uri": None})

    def fail(self, to: str, status: int = 400, code: int | None = 21211, message: str = "error", times: int = 1):
        """The next ``times`` POSTs to ``to`` get this Twilio error."""
        payload = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                   "status": status}
        self.script[to].extend([(status, payload)] * times)

    def to(self, address: str) -> list[dict]:
        """The POSTs sent to one address."""
        return [p for p in self.posts if p["To"] == address]

    def _answer(self, request):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        form = dict(parse_qsl(body or ""))
        self.posts.append(form)
        headers = {"Content-Type": "application/json"}
        if self.script[form.get("To")]:
            status, payload = self.script[form["To"]].pop(0)
            return status, headers, json.dumps(payload)
        form["_sid"] = sid = "SM" + uuid4().hex
        return 201, headers, json.dumps({
            "sid": sid, "status": "queued", "to": form.get("To"), "from": form.get("From"),
            "body": form.get("Body"), "account_sid": ACCOUNT_SID, "num_segments": "1",
            "direction": "outbound-api", "api_version": "2010-04-01"})


@pytest.fixture
def twilio():
    """Twilio's REST API, mocked in-process; any other outbound HTTP call fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield TwilioAPI(rsps)


@pytest.fixture
def content(app):
    """The shipped reply content the app loaded."""
    return app.extensions["helpline"].helpline.bot.content


@pytest.fixture
def dispatcher(db, settings, content) -> Dispatcher:
    """A dispatcher on the app's database, sending through (mocked) Twilio."""
    return Dispatcher(db, settings, content, name="test-dispatcher")


def staff(db, name: str, phone: str, on_call: bool = True, admin: bool = False) -> Staff:
    """Add a staff member and return the (detached) row."""
    with db.session() as s:
        return add_staff(s, name, f"{name.lower()}@clinic.test", phone, PASSWORD, admin=admin, on_call=on_call)


def escalations(db) -> list[Escalation]:
    with db.session() as s:
        return list(s.scalars(select(Escalation).order_by(Escalation.id)))


def the_escalation(db) -> Escalation:
    [esc] = escalations(db)
    return esc


def get_escalation(db, esc_id: int) -> Escalation:
    with db.session() as s:
        return s.get(Escalation, esc_id)


def outbox(db, **where) -> list[Outbox]:
    with db.session() as s:
        q = select(Outbox).order_by(Outbox.id)
        for key, value in where.items():
            q = q.where(getattr(Outbox, key) == value)
        return list(s.scalars(q))


def get_row(db, oid: int) -> Outbox:
    with db.session() as s:
        return s.get(Outbox, oid)


def status_params(sid: str, status: str, to: str, error_code: str | None = None) -> dict:
    """The form of a Twilio status callback for an outbound message."""
    params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": ACCOUNT_SID, "From": CLINIC_NUMBER, "To": to, "ApiVersion": "2010-04-01"}
    if error_code:
        params["ErrorCode"] = error_code
    return params


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


# --- pages queued with the escalation -------------------------------------------------------

def test_emergency_text_pages_each_on_call_staff_member_with_no_texter_words(db, sms, settings, content, twilio):
    alice, bob = staff(db, "Alice", ALICE), staff(db, "Bob", BOB)
    carol = staff(db, "Carol", CAROL, on_call=False)

    reply = sms.send(EMERGENCY)

    assert reply.status == 200 and "911" in reply.text
    esc = the_escalation(db)
    assert esc.severity == "emergency"
    # Queued by the webhook itself, before any dispatcher has run.
    pages = outbox(db)
    assert len(pages) == 2
    assert {p.staff_id for p in pages} == {alice.id, bob.id}
    assert carol.id not in {p.staff_id for p in pages}
    assert all(p.kind == "page" and p.status == "pending" and p.escalation_id == esc.id for p in pages)
    assert twilio.posts == []

    sent = Dispatcher(db, settings, content).tick(utcnow())

    assert sent == 2
    assert sorted(p["To"] for p in twilio.posts) == [ALICE, BOB]
    for post in twilio.posts:
        assert post["From"] == settings.twilio_phone_number == CLINIC_NUMBER
        body = post["Body"]
        assert "EMERGENCY" in body
        assert "***-0100" in body
        assert "min ago" in body
        assert f"/dashboard/escalations/{esc.id}" in body
        assert "valium" not in body.lower() and EMERGENCY not in body
        assert TEXTER not in body and TEXTER[2:] not in body
    assert get_escalation(db, esc.id).pages_sent == 2
    rows = outbox(db, kind="page")
    assert all(r.status == "sent" for r in rows)
    assert {r.twilio_sid for r in rows} == {p["_sid"] for p in twilio.posts}
    assert all(r.sent_at is not None and r.attempts == 1 and not r.local for r in rows)


@pytest.mark.sqlite_only  # the fault is injected with a SQLite trigger
def test_pages_roll_back_with_the_escalation_when_storing_fails(db, sms):
    staff(db, "Alice", ALICE)
    # A database fault late in the webhook's transaction (when the bot's reply row is written).
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER fail_out BEFORE INSERT ON messages WHEN NEW.direction = 'out' "
                             "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")

    reply = sms.send(EMERGENCY)

    assert "911" in reply.text  # the texter still gets the crisis reply
    assert escalations(db) == []
    assert outbox(db) == []  # no orphan page for an escalation that does not exist

    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER fail_out")
    sms.send(ROUTINE)  # the next text replays the spooled crisis first

    esc = the_escalation(db)
    assert esc.severity == "emergency"
    assert [p.to_address for p in outbox(db, kind="page")] == [ALICE]


def test_urgent_text_pages_on_call_staff_too(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    staff(db, "Carol", CAROL, on_call=False)

    sms.send(URGENT)

    esc = the_escalation(db)
    assert esc.severity == "urgent"
    assert [p.to_address for p in outbox(db, kind="page")] == [ALICE]
    assert dispatcher.tick(utcnow()) == 1
    [post] = twilio.posts
    assert post["To"] == ALICE and "URGENT" in post["Body"] and "kill" not in post["Body"]


def test_review_text_escalates_without_paging_anyone(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)

    sms.send(REVIEW)

    esc = the_escalation(db)
    assert esc.severity == "review"
    assert outbox(db) == []
    base = aware(esc.created_at)
    for later in (0, 300, 600, 3600):
        dispatcher.tick(base + seconds(later))
    assert outbox(db) == []  # no re-page, no texter follow-up for a review
    assert twilio.posts == []


def test_page_links_to_the_public_dashboard_and_asks_for_status_callbacks(tmp_path, twilio):
    settings = Settings(twilio_auth_token="tok", twilio_account_sid=ACCOUNT_SID, twilio_phone_number=CLINIC_NUMBER,
                        secret_key="s", instance_dir=tmp_path / "public", replies_dir=DEFAULT_REPLIES_DIR,
                        public_url="https://help.example.org/")
    app = create_app(settings)
    db = app.extensions["helpline"].db
    db.create_all()
    try:
        staff(db, "Alice", ALICE)
        reply = SMS(app.test_client(), token="tok", base_url="https://help.example.org").send(EMERGENCY)
        assert reply.status == 200
        esc = the_escalation(db)

        Dispatcher(db, settings, app.extensions["helpline"].helpline.bot.content).tick(utcnow())

        [post] = twilio.posts
        assert f"https://help.example.org/dashboard/escalations/{esc.id}" in post["Body"]
        assert post["StatusCallback"] == "https://help.example.org/sms/status"
    finally:
        db.engine.dispose()


# --- failures --------------------------------------------------------------------------------

@pytest.mark.parametrize("status,code", [(500, 20500), (429, 20429), (503, None)])
def test_transient_twilio_error_puts_the_page_back_with_backoff(db, sms, dispatcher, twilio, status, code):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    twilio.fail(ALICE, status=status, code=code, message="try later")
    t0 = utcnow()

    assert dispatcher.tick(t0) == 0

    [row] = outbox(db, kind="page")
    assert row.status == "pending"
    assert row.attempts == 1
    assert aware(row.next_attempt_at) > t0
    assert row.twilio_sid is None
    # Not due before the backoff has passed.
    assert dispatcher.tick(t0 + backoff(1) - seconds(1)) == 0
    assert len(twilio.to(ALICE)) == 1

    assert dispatcher.tick(aware(row.next_attempt_at)) == 1

    row = get_row(db, row.id)
    assert row.status == "sent" and row.twilio_sid and row.attempts == 2
    assert len(twilio.to(ALICE)) == 2
    assert the_escalation(db).pages_sent == 1


def test_invalid_number_fails_the_page_and_pages_the_next_person(db, sms, dispatcher, twilio):
    alice, bob = staff(db, "Alice", ALICE), staff(db, "Bob", BOB)
    carol = staff(db, "Carol", CAROL, on_call=False)
    sms.send(EMERGENCY)
    twilio.fail(ALICE, status=400, code=21211, message="Invalid 'To' Phone Number")
    t0 = utcnow()

    assert dispatcher.tick(t0) == 1  # Bob's page

    esc = the_escalation(db)
    [failed] = outbox(db, staff_id=alice.id)
    assert failed.status == "failed" and failed.error_code == "21211"
    assert "Alice" in esc.page_problem and "21211" in esc.page_problem
    # Both on-call staff were already paged, so the off-call member is next.
    [failover] = outbox(db, staff_id=carol.id)
    assert failover.status == "pending" and failover.kind == "page" and failover.to_address == CAROL
    assert twilio.to(CAROL) == []

    assert dispatcher.tick(t0 + seconds(1)) == 1

    assert len(twilio.to(CAROL)) == 1
    assert "EMERGENCY" in twilio.to(CAROL)[0]["Body"]
    assert get_row(db, failover.id).status == "sent"
    assert len(twilio.to(ALICE)) == 1  # a permanent error is never retried
    assert len(twilio.to(BOB)) == 1
    assert get_escalation(db, esc.id).pages_sent == 2


def test_failover_prefers_another_on_call_member_over_off_call_staff(db, sms, dispatcher, twilio):
    alice = staff(db, "Alice", ALICE)
    bob = staff(db, "Bob", BOB, on_call=False)
    staff(db, "Carol", CAROL, on_call=False)
    sms.send(EMERGENCY)
    with db.session() as s:
        set_on_call(s, bob.email, True)  # came on call after the first round went out
    twilio.fail(ALICE, status=400, code=21211, message="Invalid 'To' Phone Number")
    t0 = utcnow()

    dispatcher.tick(t0)
    dispatcher.tick(t0 + seconds(1))

    assert [p["To"] for p in twilio.posts] == [ALICE, BOB]
    assert [r.staff_id for r in outbox(db, status="sent")] == [bob.id]
    assert outbox(db, to_address=CAROL) == []


def test_failed_page_with_nobody_left_says_so(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    twilio.fail(ALICE, status=400, code=21211, message="Invalid 'To' Phone Number")

    dispatcher.tick(utcnow())

    esc = the_escalation(db)
    assert "21211" in esc.page_problem and "nobody else to page" in esc.page_problem
    assert len(outbox(db)) == 1


def test_a_failed_page_never_logs_the_full_staff_number(db, sms, dispatcher, twilio, caplog):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    # Twilio's real 21211 message names the number it rejected.
    twilio.fail(ALICE, status=400, code=21211, message=f"The 'To' number {ALICE} is not a valid phone number.")
    caplog.set_level(logging.DEBUG)

    dispatcher.tick(utcnow())

    leaks = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG and ALICE[2:] in r.getMessage()]
    assert leaks == []


def test_no_staff_on_call_pages_every_active_staff_member_and_says_so(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE, on_call=False)
    staff(db, "Bob", BOB, on_call=False)
    gone = staff(db, "Dave", DAVE, on_call=True)
    with db.session() as s:
        remove_staff(s, gone.email)

    reply = sms.send(EMERGENCY)

    assert "911" in reply.text
    esc = the_escalation(db)
    assert esc.page_problem.startswith("NO STAFF ON CALL")
    assert sorted(p.to_address for p in outbox(db, kind="page")) == [ALICE, BOB]
    dispatcher.tick(utcnow())
    assert sorted(p["To"] for p in twilio.posts) == [ALICE, BOB]


def test_no_active_staff_still_stores_the_escalation_with_a_loud_problem(db, sms, dispatcher, twilio):
    gone = staff(db, "Dave", DAVE)
    with db.session() as s:
        remove_staff(s, gone.email)

    reply = sms.send(EMERGENCY)

    assert "911" in reply.text
    esc = the_escalation(db)
    assert esc.severity == "emergency" and esc.status == "open"
    assert esc.page_problem.startswith("NO ACTIVE STAFF")
    assert outbox(db) == []
    dispatcher.tick(utcnow())
    assert twilio.posts == []


def test_healthz_reports_no_staff_on_call(app, client, db):
    make_healthy(app)
    assert "no staff on call" not in client.get("/healthz").get_json()["checks"]["problems"]

    with db.session() as s:
        set_on_call(s, "oncall@clinic.test", False)
    health = client.get("/healthz").get_json()

    assert health["status"] == "degraded"
    assert health["checks"]["staff_on_call"] == 0
    assert "no staff on call" in health["checks"]["problems"]


# --- re-paging and the texter follow-up ------------------------------------------------------

def test_unclaimed_escalation_is_re_paged_to_all_active_staff_every_interval_until_claimed(
        db, sms, settings, content, twilio):
    settings = replace(settings, repage_seconds=300)
    d = Dispatcher(db, settings, content, name="repager")
    alice = staff(db, "Alice", ALICE)
    staff(db, "Bob", BOB, on_call=False)
    gone = staff(db, "Dave", DAVE, on_call=False)
    with db.session() as s:
        remove_staff(s, gone.email)
    staff_phones = {ALICE, BOB, DAVE}

    def page_posts():
        return [p for p in twilio.posts if p["To"] in staff_phones]

    sms.send(EMERGENCY)
    esc = the_escalation(db)
    base = aware(esc.last_paged_at)
    d.tick(base)
    assert [p["To"] for p in page_posts()] == [ALICE]

    d.tick(base + seconds(299))
    assert len(outbox(db, kind="page")) == 1

    d.tick(base + seconds(300))
    round1 = outbox(db, kind="page", page_round=1)
    assert sorted(r.to_address for r in round1) == [ALICE, BOB]  # widened to every active member
    assert all("re-page" in r.body and r.status == "sent" for r in round1)
    assert get_escalation(db, esc.id).page_round == 1
    assert len(page_posts()) == 3

    d.tick(base + seconds(450))
    assert len(outbox(db, kind="page")) == 3

    d.tick(base + seconds(600))
    assert sorted(r.to_address for r in outbox(db, kind="page", page_round=2)) == [ALICE, BOB]
    assert len(page_posts()) == 5

    d.schedule(base + seconds(900))  # round 3 queued; the worker dies before sending it
    round3 = outbox(db, kind="page", page_round=3)
    assert len(round3) == 2 and all(r.status == "pending" for r in round3)

    assert actions.claim(db, esc.id, alice) is True

    assert all(get_row(db, r.id).status == "cancelled" for r in round3)
    for later in (900, 1200, 1500, 3600):
        d.tick(base + seconds(later))
    assert len(outbox(db, kind="page")) == 7
    assert len(page_posts()) == 5
    assert get_escalation(db, esc.id).page_round == 3


def test_unclaimed_paged_escalation_gets_exactly_one_texter_followup(db, sms, settings, content, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    esc = the_escalation(db)
    base = aware(esc.created_at)

    dispatcher.tick(base + seconds(599))
    assert outbox(db, kind="followup") == []

    dispatcher.tick(base + seconds(600))

    [row] = outbox(db, kind="followup")
    assert row.to_address == TEXTER and row.status == "sent" and row.escalation_id == esc.id
    for needed in ("911", "988", CLINIC_PHONE):
        assert needed in row.body
    [post] = twilio.to(TEXTER)
    assert post["From"] == CLINIC_NUMBER and post["Body"] == row.body
    with db.session() as s:
        [msg] = s.scalars(select(Message).where(Message.kind == "followup")).all()
        assert msg.direction == "out" and msg.body == row.body and msg.escalation_id == esc.id
        assert row.message_id == msg.id

    other = Dispatcher(db, settings, content, name="second-worker")
    for later in (601, 1200, 7200):
        dispatcher.tick(base + seconds(later))
        other.tick(base + seconds(later))
    assert len(outbox(db, kind="followup")) == 1
    assert len(twilio.to(TEXTER)) == 1


def test_claimed_escalation_gets_no_texter_followup(db, sms, dispatcher, twilio):
    alice = staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    esc = the_escalation(db)
    assert actions.claim(db, esc.id, alice)

    dispatcher.tick(aware(esc.created_at) + seconds(600))
    dispatcher.tick(aware(esc.created_at) + seconds(3600))

    assert outbox(db, kind="followup") == []
    assert twilio.to(TEXTER) == []


def test_opted_out_texter_gets_no_followup_but_staff_are_still_paged(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send("STOP")
    sms.send(EMERGENCY)
    esc = the_escalation(db)
    assert esc.opted_out is True
    assert len(outbox(db, kind="page")) == 1

    dispatcher.tick(aware(esc.created_at) + seconds(600))

    assert outbox(db, kind="followup") == []
    with db.session() as s:
        assert s.scalars(select(Message).where(Message.kind == "followup")).all() == []
    assert twilio.to(TEXTER) == []
    assert len(twilio.to(ALICE)) >= 1


def test_spanish_texter_gets_the_spanish_followup(db, sms, content, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send(SPANISH_EMERGENCY)
    esc = the_escalation(db)
    with db.session() as s:
        assert s.get(Contact, esc.contact_id).language == "es"

    dispatcher.tick(aware(esc.created_at) + seconds(600))

    [row] = outbox(db, kind="followup")
    assert row.body == content.message("followup", "es") != content.message("followup", "en")
    for needed in ("911", "988", CLINIC_PHONE):
        assert needed in row.body
    assert twilio.to(TEXTER)[0]["Body"] == row.body


def test_followup_waits_for_the_interval_after_a_review_turns_urgent(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send(REVIEW)
    esc = the_escalation(db)
    # Half an hour passes before the texter writes again (simulated by moving the stored times back).
    past = utcnow() - timedelta(minutes=30)
    with db.session() as s:
        s.execute(update(Escalation).values(created_at=past, updated_at=past))
        s.execute(update(Message).values(created_at=past))

    sms.send(URGENT)
    esc = the_escalation(db)
    assert esc.severity == "urgent" and len(outbox(db, kind="page")) == 1

    dispatcher.tick(utcnow())  # pages go out

    assert len(twilio.to(ALICE)) == 1
    assert outbox(db, kind="followup") == []


# --- claims and the bot's silence ------------------------------------------------------------

def test_eight_simultaneous_claims_have_exactly_one_winner(db, sms):
    people = [staff(db, f"Staff{i}", f"+1555555{910 + i:04d}", on_call=(i == 0)) for i in range(8)]
    sms.send(EMERGENCY)
    esc = the_escalation(db)
    barrier = threading.Barrier(len(people))
    results: list[bool | None] = [None] * len(people)
    errors: list[BaseException] = []

    def attempt(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = actions.claim(db, esc.id, people[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(people))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert results.count(True) == 1 and results.count(False) == 7
    winner = people[results.index(True)]
    esc = get_escalation(db, esc.id)
    assert esc.status == "claimed" and esc.claimed_by_id == winner.id
    with db.session() as s:
        claims = s.scalars(select(AuditLog).where(AuditLog.action == "claim")).all()
        assert [a.staff_id for a in claims] == [winner.id]


def test_bot_stays_quiet_while_claimed_and_answers_again_after_hand_back_or_resolve(db, sms):
    alice = staff(db, "Alice", ALICE)

    sms.send(EMERGENCY)
    esc = the_escalation(db)
    assert actions.claim(db, esc.id, alice)
    quiet = sms.send(ROUTINE)
    assert quiet.status == 200 and quiet.text is None and "<Message" not in quiet.raw

    actions.hand_back(db, esc.id, alice)
    answered = sms.send(ROUTINE)
    assert answered.text and CLINIC_PHONE in answered.text

    sms.send(URGENT)
    second = escalations(db)[-1]
    assert second.id != esc.id and second.status == "open"
    assert actions.claim(db, second.id, alice)
    assert sms.send(ROUTINE).text is None

    actions.resolve(db, second.id, alice, "reached_safe", "called back, safe at home")
    answered = sms.send(ROUTINE)
    assert answered.text and CLINIC_PHONE in answered.text


# --- staff replies ---------------------------------------------------------------------------

@pytest.mark.parametrize("texter,sent_from", [(TEXTER, CLINIC_NUMBER),
                                              ("whatsapp:" + TEXTER, "whatsapp:" + CLINIC_NUMBER)])
def test_staff_reply_is_queued_then_sent_from_the_clinic_number(db, sms, dispatcher, twilio, texter, sent_from):
    alice = staff(db, "Alice", ALICE)
    sms.send(EMERGENCY, sender=texter)
    esc = the_escalation(db)
    assert actions.claim(db, esc.id, alice)
    text = "This is Alice at Solace Hills. Are you safe right now?"

    msg = actions.reply(db, esc.id, alice, text)

    [row] = outbox(db, kind="reply")
    assert row.to_address == texter and row.body == text and row.status == "pending"
    assert row.message_id == msg.id and row.staff_id == alice.id
    assert twilio.to(texter) == []

    dispatcher.tick(utcnow())

    [post] = twilio.to(texter)
    assert post["From"] == sent_from and post["Body"] == text
    row = get_row(db, row.id)
    assert row.status == "sent" and row.twilio_sid == post["_sid"]
    assert twilio.to(ALICE) == []  # the claim cancelled the pending page


def test_staff_reply_to_an_unsubscribed_texter_records_the_opt_out_and_is_not_retried(db, sms, dispatcher, twilio):
    alice = staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    esc = the_escalation(db)
    assert actions.claim(db, esc.id, alice)
    actions.reply(db, esc.id, alice, "Alice here. Can I call you?")
    twilio.fail(TEXTER, status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    t0 = utcnow()

    dispatcher.tick(t0)
    dispatcher.tick(t0 + timedelta(hours=1))

    [row] = outbox(db, kind="reply")
    assert row.status == "failed" and row.error_code == "21610"
    assert len(twilio.to(TEXTER)) == 1
    esc = get_escalation(db, esc.id)
    assert esc.opted_out is True and "21610" in esc.page_problem
    with db.session() as s:
        assert s.get(Contact, esc.contact_id).opted_out is True


# --- status callbacks ------------------------------------------------------------------------

def test_delivered_status_callback_marks_the_page_delivered(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    dispatcher.tick(utcnow())
    [row] = outbox(db, kind="page")

    answer = sms.post(status_params(row.twilio_sid, "delivered", ALICE), path="/sms/status")

    assert answer.status == 204
    row = get_row(db, row.id)
    assert row.status == "delivered" and row.delivered_at is not None


def test_failed_status_callback_on_a_page_pages_the_next_person(db, sms, dispatcher, twilio):
    alice = staff(db, "Alice", ALICE)
    staff(db, "Bob", BOB)
    carol = staff(db, "Carol", CAROL, on_call=False)
    sms.send(EMERGENCY)
    t0 = utcnow()
    dispatcher.tick(t0)
    [alice_page] = outbox(db, staff_id=alice.id)

    answer = sms.post(status_params(alice_page.twilio_sid, "failed", ALICE, error_code="30003"), path="/sms/status")

    assert answer.status == 204
    row = get_row(db, alice_page.id)
    assert row.status == "failed" and row.error_code == "30003"
    esc = the_escalation(db)
    assert "Alice" in esc.page_problem and "30003" in esc.page_problem
    [failover] = outbox(db, staff_id=carol.id)
    assert failover.status == "pending"

    dispatcher.tick(t0 + seconds(1))

    assert len(twilio.to(CAROL)) == 1
    assert get_row(db, failover.id).status == "sent"


def test_unsigned_status_callback_is_refused(db, sms, dispatcher, twilio):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    dispatcher.tick(utcnow())
    [row] = outbox(db, kind="page")
    params = status_params(row.twilio_sid, "failed", ALICE, error_code="30003")

    assert sms.post(params, path="/sms/status", sign=False).status == 403
    assert SMS(sms.client, token="wrong-token").post(params, path="/sms/status").status == 403

    assert get_row(db, row.id).status == "sent"
    assert len(outbox(db)) == 1


# --- crash recovery and local development ----------------------------------------------------

def test_page_left_sending_by_a_dead_worker_is_sent_after_its_lease_expires(db, sms, settings, content, twilio):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    dead = Dispatcher(db, settings, content, name="dead-worker")
    t0 = utcnow()
    [(oid, recovered)] = dead.claim(t0)  # claimed, then the process died before sending
    assert recovered is False
    row = get_row(db, oid)
    assert row.status == "sending" and aware(row.lease_until) == t0 + LEASE

    alive = Dispatcher(db, settings, content, name="live-worker")
    assert alive.tick(t0 + seconds(59)) == 0
    assert twilio.posts == [] and get_row(db, oid).status == "sending"

    assert alive.tick(t0 + seconds(61)) == 1

    [post] = twilio.posts
    assert post["To"] == ALICE
    row = get_row(db, oid)
    assert row.status == "sent" and row.twilio_sid == post["_sid"]
    assert len(twilio.lists) == 1  # it asked Twilio first, found nothing, then sent


def test_a_page_twilio_accepted_before_its_worker_died_is_not_sent_twice(db, sms, settings, content, twilio):
    staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    dead = Dispatcher(db, settings, content, name="dead-worker")
    t0 = utcnow()
    [(oid, _)] = dead.claim(t0)
    row = get_row(db, oid)
    accepted_sid = dead.sender.send(row.to_address, row.body)  # Twilio accepted it; the worker died here

    alive = Dispatcher(db, settings, content, name="live-worker")
    alive.tick(t0 + seconds(61))

    assert len(twilio.to(ALICE)) == 1  # one SMS to Alice's phone, not two
    row = get_row(db, oid)
    assert row.status == "sent" and row.twilio_sid == accepted_sid


def test_development_without_twilio_keeps_texts_in_the_local_outbox(tmp_path):
    settings = Settings(dev=True, secret_key="dev", instance_dir=tmp_path / "dev", replies_dir=DEFAULT_REPLIES_DIR)
    app = create_app(settings)
    ext = app.extensions["helpline"]
    db = ext.db
    db.create_all()
    try:
        alice = staff(db, "Alice", ALICE)
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.add(responses.POST, re.compile(r"https://api\.twilio\.com/.*"), status=201,
                     json={"sid": "SM" + "f" * 32, "status": "queued"})
            sms = SMS(app.test_client())
            reply = sms.post(sms.params(EMERGENCY), sign=False)  # dev mode accepts unsigned webhooks
            assert reply.status == 200 and "911" in reply.text
            d = Dispatcher(db, settings, ext.helpline.bot.content)
            assert isinstance(d.sender, LocalSender)

            assert d.tick(utcnow()) == 1
            esc = the_escalation(db)
            assert actions.claim(db, esc.id, alice)
            actions.reply(db, esc.id, alice, "Alice here, are you safe?")
            assert d.tick(utcnow()) == 1

            assert len(rsps.calls) == 0
        rows = outbox(db)
        assert [r.kind for r in rows] == ["page", "reply"]
        assert all(r.status == "sent" and r.local and r.twilio_sid is None for r in rows)
        with db.session() as s:
            assert [r.id for r in actions.local_outbox(s)] == [r.id for r in reversed(rows)]
    finally:
        db.engine.dispose()


def test_production_settings_send_through_twilio(settings, content, db):
    assert isinstance(Dispatcher(db, settings, content).sender, TwilioSender)
    unconfigured = Settings(instance_dir=settings.instance_dir)
    assert Dispatcher(db, unconfigured, content).sender is None


# --- health ----------------------------------------------------------------------------------

def test_healthz_reports_the_backlog_age_while_twilio_is_failing(app, client, db, sms, dispatcher, twilio):
    make_healthy(app, phone=ALICE)
    sms.send(EMERGENCY)
    twilio.fail(ALICE, status=500, code=20500, message="Internal Server Error", times=5)
    t0 = utcnow()
    dispatcher.tick(t0)
    [row] = outbox(db, kind="page")
    assert row.status == "pending"

    checks = client.get("/healthz").get_json()["checks"]
    assert isinstance(checks["oldest_unsent_age_s"], (int, float)) and checks["oldest_unsent_age_s"] >= 0

    # Two minutes pass with the page still unsent (moved back in the database, not slept).
    with db.session() as s:
        s.execute(update(Outbox).where(Outbox.id == row.id).values(created_at=utcnow() - seconds(120)))
    health = client.get("/healthz").get_json()

    assert health["status"] == "degraded"
    assert health["checks"]["oldest_unsent_age_s"] >= 120
    assert "outbound texts are backing up" in health["checks"]["problems"]

    twilio.script[ALICE].clear()  # Twilio recovers
    dispatcher.tick(aware(get_row(db, row.id).next_attempt_at))
    checks = client.get("/healthz").get_json()["checks"]
    assert checks["oldest_unsent_age_s"] == 0
    assert "outbound texts are backing up" not in checks["problems"]


def test_healthz_says_dispatcher_not_running_without_a_recent_heartbeat(app, client, db, dispatcher):
    staff(db, "Alice", ALICE)

    checks = client.get("/healthz").get_json()["checks"]
    assert checks["dispatcher_heartbeat_age_s"] is None
    assert "dispatcher not running" in checks["problems"]

    dispatcher.tick(utcnow())
    checks = client.get("/healthz").get_json()["checks"]
    assert "dispatcher not running" not in checks["problems"]

    dispatcher.beat(utcnow() - seconds(120))  # its last beat was two minutes ago
    checks = client.get("/healthz").get_json()["checks"]
    assert "dispatcher not running" in checks["problems"]


@pytest.mark.sqlite_only
def test_held_crisis_replies_are_found_through_the_open_escalations_index(db, dispatcher):
    """Each dispatcher tick looks for held crisis replies among open escalations. Stated as the partial
    index ``uq_escalations_one_open`` states it (``models.is_open``), SQLite reads that index; with the
    statuses bound as parameters it read every escalation ever stored, on every tick."""
    from sqlalchemy import event
    seen = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "held_at" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        dispatcher.release_held(utcnow())
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert len(seen) == 1
    with db.engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + seen[0][0], seen[0][1])]
    assert any("USING INDEX uq_escalations_one_open" in step for step in plan), plan
