"""The staff dashboard through Flask's test client, a real SQLite file and CSRF switched on."""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from bot.staff.accounts import add_staff
from bot.staff.dispatcher import Dispatcher
from bot.store.models import AuditLog, Contact, Escalation, Message, Outbox, Staff
from bot.web import create_app
from conftest import SMS, TEXTER, make_healthy

PASSWORD = "correct horse battery"
CRISIS = "I took 30 valium"
ROUTINE = "what are your hours"
TOKEN_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PAGES = ["/dashboard/", "/dashboard/escalations/1", "/dashboard/search", "/dashboard/audit",
         "/dashboard/outbox", "/dashboard/test-texter", "/dashboard/contacts/1"]


class Staffer:
    """One logged-in staff member with their own browser (test client), like flaskr's AuthActions."""

    def __init__(self, app, email: str):
        self.client = app.test_client()
        self.email = email

    def token(self, path: str = "/dashboard/login") -> str:
        """The CSRF token the page carries in its <meta> tag."""
        match = TOKEN_RE.search(self.client.get(path).get_data(as_text=True))
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, password: str = PASSWORD, **extra):
        return self.client.post("/dashboard/login", data={"email": self.email, "password": password,
                                                          "csrf_token": self.token(), **extra})

    def post(self, path: str, data: dict | None = None, follow: bool = True):
        data = {"csrf_token": self.token("/dashboard/"), **(data or {})}
        return self.client.post(path, data=data, follow_redirects=follow)

    def get(self, path: str):
        return self.client.get(path)

    def page(self, path: str) -> str:
        resp = self.client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        return resp.get_data(as_text=True)


@pytest.fixture
def app(settings):
    """The app with CSRF protection on, as in production."""
    app = create_app(settings)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=True)
    app.extensions["helpline"].db.create_all()
    yield app
    app.extensions["helpline"].db.engine.dispose()


@pytest.fixture
def team(db):
    """Ann (on call) and Bob (off call)."""
    with db.session() as s:
        add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", PASSWORD, on_call=True)
        add_staff(s, "Bob Baker", "bob@clinic.test", "+15555550902", PASSWORD)


@pytest.fixture
def ann(app, team) -> Staffer:
    staffer = Staffer(app, "ann@clinic.test")
    assert staffer.login().status_code == 302
    return staffer


@pytest.fixture
def bob(app, team) -> Staffer:
    staffer = Staffer(app, "bob@clinic.test")
    assert staffer.login().status_code == 302
    return staffer


def escalation(db, address: str = TEXTER) -> Escalation:
    with db.session() as s:
        return s.scalars(select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
                         .where(Contact.address == address).order_by(Escalation.id.desc())).first()


def flashes(html: str) -> list[str]:
    return [m.strip() for m in re.findall(r'<li class="flash flash-\w+">(.*?)</li>', html, re.S)]


# --- login -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_every_dashboard_page_redirects_to_login_when_logged_out(client, path):
    resp = client.get(path)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/dashboard/login?next=")


def test_live_update_endpoints_answer_401_when_logged_out(client):
    resp = client.get("/dashboard/queue/poll")
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "login required"}


def test_a_wrong_password_is_rejected(app, team):
    staffer = Staffer(app, "ann@clinic.test")
    resp = staffer.login(password="wrong password!")
    assert resp.status_code == 401
    assert "Wrong email or password." in resp.get_data(as_text=True)
    assert staffer.get("/dashboard/").status_code == 302


def test_an_unknown_email_is_rejected_the_same_way(app, team):
    resp = Staffer(app, "nobody@clinic.test").login()
    assert resp.status_code == 401
    assert "Wrong email or password." in resp.get_data(as_text=True)


def test_login_with_email_and_password_opens_the_queue(app, team):
    staffer = Staffer(app, "ANN@clinic.test ")
    resp = staffer.login()
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard/"
    html = staffer.page("/dashboard/")
    assert "Escalation queue" in html and "Ann Alvarez" in html


def test_login_returns_to_the_page_asked_for_but_never_off_site(app, team):
    assert Staffer(app, "ann@clinic.test").login(next="/dashboard/audit").headers["Location"] == "/dashboard/audit"
    for evil in ("https://evil.example/", "//evil.example/dashboard", "/\\evil.example"):
        assert Staffer(app, "ann@clinic.test").login(next=evil).headers["Location"] == "/dashboard/"


def test_a_deactivated_staff_member_is_logged_out(app, db, ann):
    from bot.staff.accounts import remove_staff
    with db.session() as s:
        remove_staff(s, "ann@clinic.test")
    assert ann.get("/dashboard/").status_code == 302


def test_logout_ends_the_session(ann):
    resp = ann.post("/dashboard/logout")
    assert "Logged out." in resp.get_data(as_text=True)
    assert ann.get("/dashboard/").status_code == 302


def test_the_session_cookie_is_httponly_and_samesite_lax(app, team):
    cookie = Staffer(app, "ann@clinic.test").login().headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain-http development would lose the session otherwise


def test_the_session_cookie_is_secure_behind_an_https_public_url(settings):
    app = create_app(dataclasses.replace(settings, public_url="https://helpline.example.org"))
    app.extensions["helpline"].db.create_all()
    try:
        with app.extensions["helpline"].db.session() as s:
            add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", PASSWORD)
        cookie = Staffer(app, "ann@clinic.test").login().headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        app.extensions["helpline"].db.engine.dispose()


# --- CSRF and headers ---------------------------------------------------------------------------

def test_a_post_without_the_csrf_token_is_rejected(app, db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    resp = ann.client.post(f"/dashboard/escalations/{esc.id}/claim")
    assert resp.status_code == 400
    assert "Form expired" in resp.get_data(as_text=True)
    resp = ann.client.post(f"/dashboard/escalations/{esc.id}/claim", data={"csrf_token": "forged"})
    assert resp.status_code == 400
    assert escalation(db).status == "open"


def test_a_fetch_request_may_send_the_csrf_token_in_a_header(app, db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    resp = ann.client.post(f"/dashboard/escalations/{esc.id}/claim", headers={"X-CSRFToken": ann.token("/dashboard/")})
    assert resp.status_code == 302
    assert escalation(db).status == "claimed"


def test_the_login_form_needs_the_csrf_token_too(app, team):
    resp = app.test_client().post("/dashboard/login", data={"email": "ann@clinic.test", "password": PASSWORD})
    assert resp.status_code == 400


def test_twilio_webhooks_and_healthz_are_not_subject_to_csrf(app, sms):
    assert sms.send(ROUTINE).status == 200
    assert sms.post({"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}, path="/sms/status").status == 204
    assert app.test_client().get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/login", "/dashboard/escalations/1", "/dashboard/queue/poll"])
def test_dashboard_responses_carry_a_strict_csp_and_security_headers(sms, ann, path):
    sms.send(CRISIS)
    resp = ann.get(path)
    assert resp.status_code in (200, 302)
    csp = resp.headers["Content-Security-Policy"]
    for part in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                 "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert part in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"


def test_dashboard_pages_have_no_inline_script_or_style(db, sms, ann):
    sms.send(CRISIS)
    sms.send("STOP", sender="+15555550177")
    sms.send(CRISIS, sender="+15555550177")
    ann.post(f"/dashboard/escalations/{escalation(db).id}/claim")
    for path in PAGES + ["/dashboard/search?last4=0100", "/dashboard/login"]:
        html = ann.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\ssrc=)", html), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I), path


def test_healthz_output_is_unchanged_by_the_dashboard(app, client):
    make_healthy(app)
    body = client.get("/healthz").get_json()
    assert set(body) == {"status", "insecure_dev_mode", "checks"}
    assert body["status"] == "ok" and body["checks"]["problems"] == []


# --- queue ----------------------------------------------------------------------------------

def test_pages_poll_as_often_as_the_setting_says(app, ann, settings):
    from bot.config import Settings
    assert 'data-poll-ms="2500"' in ann.page("/dashboard/")  # the default, 2.5 s
    app.extensions["helpline"].settings = dataclasses.replace(settings, dashboard_poll_seconds=0.75)
    assert 'data-poll-ms="750"' in ann.page("/dashboard/")
    assert Settings.from_env({"HELPLINE_DASHBOARD_POLL_SECONDS": "10"}).dashboard_poll_seconds == 10.0


def test_the_queue_shows_a_crisis_with_severity_rule_and_masked_number(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    html = ann.page("/dashboard/")
    assert f'data-escalation-id="{esc.id}"' in html
    assert esc.severity.upper() in html and esc.rule in html
    assert "***-0100" in html
    assert TEXTER not in html and "5555550100" not in html
    assert "Claim" in html and "SMS" in html


@pytest.mark.storage
def test_the_queue_puts_the_most_severe_and_oldest_first(db, sms, ann):
    sms.send("help", sender="+15555550111")          # review
    sms.send(CRISIS, sender="+15555550122")          # emergency, newer
    html = ann.page("/dashboard/")
    ids = [int(i) for i in re.findall(r'data-escalation-id="(\d+)"', html)]
    assert ids == [escalation(db, "+15555550122").id, escalation(db, "+15555550111").id]


def test_the_queue_poll_reports_new_escalations_for_the_live_update(db, sms, ann):
    first = ann.get("/dashboard/queue/poll?fragment=1").get_json()
    assert first["ids"] == [] and first["open"] == []
    sms.send(CRISIS)
    esc = escalation(db)
    data = ann.get("/dashboard/queue/poll?fragment=1").get_json()
    assert data["ids"] == [esc.id] and data["unclaimed"] == 1
    assert data["open"][0] == {"id": esc.id, "severity": esc.severity, "kind": esc.kind, "training": False,
                               "channel": "sms", "url": f"/dashboard/escalations/{esc.id}"}
    assert data["sections"] == {"unclaimed": [esc.id], "claimed": [], "training": []}
    assert "***-0100" in data["cards"][str(esc.id)]["html"]
    assert "cards" not in ann.get("/dashboard/queue/poll").get_json()


def test_an_opted_out_texter_is_flagged_call_dont_text(db, sms, ann):
    sms.send("STOP")
    sms.send(CRISIS)
    assert escalation(db).opted_out
    assert "OPTED OUT: CALL, DON'T TEXT" in ann.page("/dashboard/")


def test_a_paging_problem_is_shown_loudly(db, app, sms):
    with db.session() as s:
        add_staff(s, "Bob Baker", "bob@clinic.test", "+15555550902", PASSWORD)  # nobody on call
    bob = Staffer(app, "bob@clinic.test")
    bob.login()
    sms.send(CRISIS)
    html = bob.page("/dashboard/")
    assert "PAGING PROBLEM: NO STAFF ON CALL" in html
    assert "NO STAFF ON CALL: new crises page every active staff member" in html  # the banner


def test_a_banner_says_when_sms_sending_is_not_configured(settings):
    app = create_app(dataclasses.replace(settings, twilio_account_sid=None))
    app.extensions["helpline"].db.create_all()
    try:
        with app.extensions["helpline"].db.session() as s:
            add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", PASSWORD, on_call=True)
        ann = Staffer(app, "ann@clinic.test")
        ann.login()
        assert "SMS SENDING IS NOT CONFIGURED" in ann.page("/dashboard/")
    finally:
        app.extensions["helpline"].db.engine.dispose()


def test_no_banner_when_staff_are_on_call_and_twilio_is_configured(app, ann):
    make_healthy(app)
    html = ann.page("/dashboard/")
    assert "banner-danger" not in html


# --- escalation page: claim, reply, resolve, hand back ------------------------------------------

@pytest.mark.storage
def test_claim_by_ann_wins_and_bob_is_told_it_is_already_claimed(db, sms, ann, bob):
    sms.send(CRISIS)
    esc = escalation(db)
    assert "You claimed escalation" in " ".join(flashes(ann.post(f"/dashboard/escalations/{esc.id}/claim").get_data(as_text=True)))
    html = bob.post(f"/dashboard/escalations/{esc.id}/claim").get_data(as_text=True)
    assert "Already claimed by Ann Alvarez." in flashes(html)
    assert "Claimed by <strong>Ann Alvarez</strong>" in html
    after = escalation(db)
    assert after.status == "claimed" and after.claimed_by_id is not None
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "claim")) == 1


@pytest.mark.storage
def test_simultaneous_claims_from_two_browsers_have_exactly_one_winner(db, sms, ann, bob):
    sms.send(CRISIS)
    esc = escalation(db)
    tokens = {who: who.token("/dashboard/") for who in (ann, bob)}
    barrier = threading.Barrier(2)
    pages: dict[str, str] = {}

    def claim(who: Staffer, name: str):
        barrier.wait()
        resp = who.client.post(f"/dashboard/escalations/{esc.id}/claim", data={"csrf_token": tokens[who]},
                               follow_redirects=True)
        pages[name] = resp.get_data(as_text=True)

    threads = [threading.Thread(target=claim, args=(ann, "ann")), threading.Thread(target=claim, args=(bob, "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [name for name, html in pages.items() if any("You claimed" in f for f in flashes(html))]
    lost = [name for name, html in pages.items() if any(f.startswith("Already claimed by") for f in flashes(html))]
    assert len(won) == 1 and len(lost) == 1
    with db.session() as s:
        rows = s.scalars(select(Escalation).where(Escalation.status == "claimed")).all()
        assert len(rows) == 1
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "claim")) == 1


def test_claiming_a_missing_escalation_is_a_404(ann):
    assert ann.post("/dashboard/escalations/999/claim", follow=False).status_code == 404


@pytest.mark.storage
def test_a_reply_is_stored_in_the_transcript_and_queued_as_an_sms(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "This is Ann at Solace Hills. Are you safe?"}).get_data(as_text=True)
    assert "Reply queued for sending." in flashes(html)
    with db.session() as s:
        msg = s.scalar(select(Message).where(Message.kind == "staff"))
        assert msg.direction == "out" and msg.body == "This is Ann at Solace Hills. Are you safe?"
        row = s.scalar(select(Outbox).where(Outbox.kind == "reply"))
        assert row.to_address == TEXTER and row.message_id == msg.id and row.status == "pending"
    assert "This is Ann at Solace Hills. Are you safe?" in html
    assert "Staff: Ann Alvarez" in html and "SMS waiting to send" in html


def test_a_reply_before_claiming_is_refused(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    html = ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "hello"}).get_data(as_text=True)
    assert any("claim it first" in f for f in flashes(html))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "reply")) == 0


def test_a_reply_to_an_opted_out_texter_is_stored_but_not_texted(db, sms, ann):
    sms.send("STOP")
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Please call us"}).get_data(as_text=True)
    assert any("NOT texted" in f for f in flashes(html))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "reply")) == 0


def test_resolve_closes_the_escalation_with_an_outcome(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.post(f"/dashboard/escalations/{esc.id}/resolve", {"outcome": "referred_911", "note": "called 911 with her"}).get_data(as_text=True)
    assert f"Escalation #{esc.id} resolved." in flashes(html)
    after = escalation(db)
    assert after.status == "resolved" and after.outcome == "referred_911" and after.note == "called 911 with her"
    assert f'data-escalation-id="{esc.id}"' not in ann.page("/dashboard/")


def test_resolve_needs_a_known_outcome(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    html = ann.post(f"/dashboard/escalations/{esc.id}/resolve", {"outcome": "whatever"}).get_data(as_text=True)
    assert any(f.startswith("Not resolved: outcome must be one of") for f in flashes(html))
    assert escalation(db).status == "open"


def test_after_hand_back_the_bot_answers_routine_texts_again(db, sms, ann):
    sms.send(CRISIS)
    assert sms.send(ROUTINE).text is None  # a human has it: the bot stays quiet
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.post(f"/dashboard/escalations/{esc.id}/hand-back").get_data(as_text=True)
    assert f"Escalation #{esc.id} handed back to the bot." in flashes(html)
    assert escalation(db).status == "handed_back"
    reply = sms.send(ROUTINE).text
    assert reply and "(562) 573-1504" in reply


def test_the_transcript_distinguishes_texter_bot_and_staff(db, sms, ann):
    sms.send(ROUTINE)
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Ann here"})
    html = ann.page(f"/dashboard/escalations/{esc.id}")
    roles = re.findall(r'<li class="msg msg-(\w+)', html)
    assert roles == ["texter", "bot", "texter", "bot", "staff"]
    assert "escalated here" in html and esc.rule in html and "***-0100" in html
    assert TEXTER not in html


def test_a_script_from_a_texter_is_shown_escaped(db, sms, ann):
    sms.send(CRISIS)
    sms.send("<script>alert(1)</script>")
    esc = escalation(db)
    for html in (ann.page(f"/dashboard/escalations/{esc.id}"),
                 ann.get(f"/dashboard/escalations/{esc.id}/poll?after=0").get_json()["html"],
                 ann.page(f"/dashboard/contacts/{esc.contact_id}")):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert(1)" not in html


def test_the_transcript_poll_returns_only_new_texts(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    html = ann.page(f"/dashboard/escalations/{esc.id}")
    last = int(re.search(r'data-last-id="(\d+)"', html).group(1))
    assert ann.get(f"/dashboard/escalations/{esc.id}/poll?after={last}").get_json()["html"].strip() == ""
    sms.send("i am scared")
    data = ann.get(f"/dashboard/escalations/{esc.id}/poll?after={last}").get_json()
    assert "i am scared" in data["html"] and data["new_inbound"] == 1 and data["last_id"] > last
    assert data["state"] == "open:" and "OPEN" in data["status_html"]


# --- audit, search, outbox, test texter ---------------------------------------------------------

@pytest.mark.storage
def test_the_audit_log_lists_view_claim_reply_and_resolve(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.page(f"/dashboard/escalations/{esc.id}")
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Ann here"})
    ann.post(f"/dashboard/escalations/{esc.id}/resolve", {"outcome": "reached_safe"})
    html = ann.page("/dashboard/audit")
    for action in ("view", "claim", "reply", "resolve"):
        assert f'<tr class="audit-{action}">' in html, action
    assert "Ann Alvarez" in html and "Ann here" not in html  # who and what, never the words
    only = ann.page(f"/dashboard/audit?escalation={esc.id}")
    assert "audit-login" not in only and 'audit-claim' in only


@pytest.mark.storage
def test_search_by_the_last_four_digits_finds_the_conversation(db, sms, ann):
    sms.send(ROUTINE)
    sms.send(ROUTINE, sender="+15555550777")
    html = ann.page("/dashboard/search?last4=0100")
    assert "***-0100" in html and "***-0777" not in html and "1 conversation" in html
    link = re.search(r'href="(/dashboard/contacts/\d+)"', html).group(1)
    assert "what are your hours" in ann.page(link)
    assert "0 conversations" in ann.page("/dashboard/search?last4=9999")


@pytest.mark.storage
def test_search_by_date_finds_todays_conversations(sms, ann):
    from bot.store.models import utcnow
    sms.send(ROUTINE)
    assert "***-0100" in ann.page(f"/dashboard/search?date={utcnow().date().isoformat()}")
    assert "0 conversations" in ann.page("/dashboard/search?date=2001-01-01")
    assert "Use a date like" in ann.page("/dashboard/search?date=yesterday")


def test_opening_a_conversation_from_search_is_audited(db, sms, ann):
    sms.send(ROUTINE)
    with db.session() as s:
        cid = s.scalar(select(Contact.id))
    ann.page(f"/dashboard/contacts/{cid}")
    with db.session() as s:
        assert s.scalar(select(AuditLog.detail).where(AuditLog.action == "view_contact")) == f"contact {cid}"


def test_the_test_texter_gets_bot_replies_and_makes_unpaged_training_escalations(app, db, ann):
    make_healthy(app)  # someone is on call, so a real crisis would page
    html = ann.post("/dashboard/test-texter", {"number": "+15550001234", "body": ROUTINE}).get_data(as_text=True)
    roles = re.findall(r'<li class="msg msg-(\w+)', html)
    assert roles == ["texter", "bot"] and "(562) 573-1504" in html
    html = ann.post("/dashboard/test-texter", {"number": "+15550001234", "body": CRISIS}).get_data(as_text=True)
    esc = escalation(db, "test:+15550001234")
    with db.session() as s:
        crisis_reply = s.scalar(select(Message.body).where(Message.reply_to_id == esc.first_message_id))
    assert "988" in crisis_reply and str(escape(crisis_reply)) in html
    assert esc.channel == "test" and esc.status == "open"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "page")) == 0
    queue = ann.page("/dashboard/")
    assert "TRAINING" in queue and "***-1234" in queue and "nobody is paged" in queue


def test_the_test_texter_refuses_a_malformed_number(ann):
    html = ann.post("/dashboard/test-texter", {"number": "+1 555 <b>", "body": ROUTINE}).get_data(as_text=True)
    assert "A test number is 7 to 15 digits" in html


def test_the_local_outbox_shows_what_would_have_been_texted(settings):
    app = create_app(dataclasses.replace(settings, twilio_account_sid=None, dev=True))
    ext = app.extensions["helpline"]
    ext.db.create_all()
    try:
        with ext.db.session() as s:
            add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", PASSWORD, on_call=True)
        SMS(app.test_client()).send(CRISIS)
        assert Dispatcher(ext.db, ext.settings, ext.helpline.bot.content).tick() == 1
        ann = Staffer(app, "ann@clinic.test")
        ann.login()
        html = ann.page("/dashboard/outbox")
        assert "Twilio is not configured" in html and "***-0901" in html
        assert "Solace Hills helpline: EMERGENCY" in html and "+15555550901" not in html
        assert "SMS SENDING IS NOT CONFIGURED" in html
    finally:
        ext.db.engine.dispose()


@pytest.mark.storage
def test_releasing_a_claim_returns_it_to_the_queue_and_lets_others_claim(db, sms, ann, bob):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    assert "not released" in bob.post(f"/dashboard/escalations/{esc.id}/release").get_data(as_text=True).lower()
    ann.post(f"/dashboard/escalations/{esc.id}/release")
    released = escalation(db)
    assert released.status == "open" and released.claimed_by_id is None
    bob.post(f"/dashboard/escalations/{esc.id}/claim")
    with db.session() as s:
        claimer = s.get(Escalation, esc.id).claimed_by_id
        assert s.scalar(select(Staff.name).where(Staff.id == claimer)) == "Bob Baker"
        assert "release" in {a.action for a in s.scalars(select(AuditLog))}


@pytest.mark.storage
def test_repeated_failed_logins_are_refused_for_a_while(app, team):
    staffer = Staffer(app, "ann@clinic.test")
    for _ in range(5):
        assert staffer.login(password="wrong password!").status_code == 401
    assert staffer.login().status_code == 429  # even the right password waits
    other = Staffer(app, "bob@clinic.test")
    assert other.login().status_code == 302  # another account from the same address still works


def test_the_test_texter_stores_a_number_typed_in_other_digits_as_ascii_e164(db, ann):
    ann.post("/dashboard/test-texter", {"number": "+١٥٥٥٠٠٠٩٨٧٦", "body": ROUTINE})
    with db.session() as s:
        assert s.scalar(select(Contact.address).where(Contact.channel == "test")) == "test:+15550009876"
    assert "(test:+15550009876)" in ann.page("/dashboard/test-texter")


def test_an_empty_test_text_is_refused_by_the_form(db, ann):
    html = ann.post("/dashboard/test-texter", {"number": "+15550001234", "body": "   "}).get_data(as_text=True)
    assert "Type a message to send." in flashes(html)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 0


def test_a_login_without_a_password_is_refused_by_the_form_and_not_counted(app, db, team):
    staffer = Staffer(app, "ann@clinic.test")
    resp = staffer.client.post("/dashboard/login", data={"email": "ann@clinic.test", "password": "",
                                                         "csrf_token": staffer.token()})
    assert resp.status_code == 400 and "Enter your email and password." in resp.get_data(as_text=True)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "login_failed")) == 0


def test_an_empty_reply_is_refused_by_the_form(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "  "}).get_data(as_text=True)
    assert "Reply not sent: a reply needs text." in flashes(html)
    html = ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "x" * 1601}).get_data(as_text=True)
    assert "Reply not sent: a reply can be at most 1600 characters." in flashes(html)


def test_a_malformed_audit_filter_is_said_and_ignored(sms, ann):
    html = ann.page("/dashboard/audit?escalation=abc")
    assert "Not a valid integer value." in flashes(html) and "audit-login" in html


def test_the_escalation_page_says_why_triage_escalated(db, sms, ann):
    """Staff see what `helpline triage --explain` shows: the rules that fired and the model's words."""
    sms.send("I took 30 valium")
    esc = escalation(db)
    html = ann.get(f"/dashboard/escalations/{esc.id}").get_data(as_text=True)
    assert "Why it escalated" in html and "overdose.took_count" in html
    assert "Needs a human" in html and "Toward a crisis" in html
    assert "floor rule" not in html


def test_the_escalation_page_names_a_floor_rule(db, sms, ann):
    """A rule of replies/crisis/floor.toml (the model never learned from it) is marked as one."""
    sms.send("my 2 year old ate some of my valium")
    html = ann.get(f"/dashboard/escalations/{escalation(db).id}").get_data(as_text=True)
    assert "overdose.child_swallowed" in html and "floor rule" in html
