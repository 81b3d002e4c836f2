"""Web chat through Flask's test client, on SQLite and PostgreSQL: the API, limits, CORS, the widget."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.staff import actions
from bot.staff.accounts import add_staff
from bot.staff.dispatcher import Dispatcher
from bot.store.models import AuditLog, ChatSession, Contact, Escalation, Message, Outbox, utcnow
from bot.web import chat, create_app

ORIGIN = "https://www.solacehillsdetox.example"
ROUTINE = "what are the withdrawal symptoms"
CRISIS = "I took 30 valium and I'm shaking"
CLINIC_PHONE = "(562) 573-1504"


@pytest.fixture
def app(settings):
    """The app with one clinic site allowed to call the chat API."""
    app = create_app(dataclasses.replace(settings, chat_origins=(ORIGIN,)))
    app.config["TESTING"] = True
    app.extensions["helpline"].db.create_all()
    yield app
    app.extensions["helpline"].db.engine.dispose()


class Visitor:
    """One website visitor with the widget open: their token and what they have seen."""

    def __init__(self, client, ip: str = "203.0.113.7", lang: str | None = None):
        self.client = client
        self.ip = ip
        resp = self.client.post("/chat/api/start", json={"lang": lang} if lang else {},
                                environ_base={"REMOTE_ADDR": ip})
        assert resp.status_code == 201, resp.get_json()
        self.started = resp.get_json()
        self.token = self.started["token"]

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def say(self, text: str, **kwargs):
        return self.client.post("/chat/api/messages", json={"text": text, **kwargs}, headers=self.auth,
                                environ_base={"REMOTE_ADDR": self.ip})

    def poll(self, after: int = 0, **params):
        return self.client.get("/chat/api/messages", query_string={"after": after, **params}, headers=self.auth,
                               environ_base={"REMOTE_ADDR": self.ip})

    def callback(self, phone):
        return self.client.post("/chat/api/callback", json={"phone": phone}, headers=self.auth,
                                environ_base={"REMOTE_ADDR": self.ip})


@pytest.fixture
def visitor(client) -> Visitor:
    return Visitor(client)


@pytest.fixture
def on_call(db):
    with db.session() as s:
        return add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", "correct horse battery", on_call=True)


def web_escalation(db) -> Escalation:
    with db.session() as s:
        return s.scalar(select(Escalation).where(Escalation.channel == "web"))


# --- starting a chat -------------------------------------------------------------------------------------

@pytest.mark.storage
def test_start_gives_an_unguessable_token_stored_only_as_its_hash(client, db):
    resp = client.post("/chat/api/start", json={})
    assert resp.status_code == 201 and "Set-Cookie" not in resp.headers
    data = resp.get_json()
    assert len(data["token"]) >= 43 and data["conversation"] and data["expires_at"]
    greeting = data["messages"][0]["text"]
    assert "automated assistant" in greeting and "911" in greeting and "988" in greeting and CLINIC_PHONE in greeting
    with db.session() as s:
        chat_session = s.scalar(select(ChatSession))
        contact = s.get(Contact, chat_session.contact_id)
        assert chat_session.token_hash == hashlib.sha256(data["token"].encode()).hexdigest()
        assert data["token"] not in chat_session.token_hash
        assert contact.address == f"web:{data['conversation']}" and contact.channel == "web"
        assert chat_session.ip_hash and "127.0.0.1" not in chat_session.ip_hash
        hours = (chat_session.expires_at - chat_session.created_at).total_seconds() / 3600
        assert round(hours) == 24


def test_a_spanish_widget_gets_a_spanish_greeting(client):
    data = Visitor(client, lang="es").started
    assert "asistente automático" in data["messages"][0]["text"]


def test_start_needs_json_so_other_sites_cannot_post_a_plain_form(client):
    assert client.post("/chat/api/start", data="x=1", content_type="application/x-www-form-urlencoded").status_code == 415


# --- the conversation ----------------------------------------------------------------------------------

def test_a_routine_question_gets_the_guide_answer(visitor):
    resp = visitor.say(ROUTINE)
    assert resp.status_code == 200
    data = resp.get_json()
    assert "withdrawal" in data["reply"].lower() and CLINIC_PHONE in data["reply"]
    assert [m["kind"] for m in data["messages"]] == ["bot"] and data["messages"][0]["text"] == data["reply"]
    assert data["escalated"] is False and data["staff_joined"] is False


def test_a_crisis_from_web_chat_gets_the_crisis_reply_escalates_and_pages(visitor, db, on_call):
    data = visitor.say(CRISIS).get_json()
    assert "911" in data["reply"] and "988" in data["reply"] and "automated assistant" in data["reply"]
    assert data["escalated"] is True
    esc = web_escalation(db)
    assert esc is not None and esc.severity == "emergency" and esc.status == "open"
    with db.session() as s:
        pages = s.scalars(select(Outbox).where(Outbox.kind == "page", Outbox.escalation_id == esc.id)).all()
        assert [p.to_address for p in pages] == ["+15555550901"]
        assert "I took 30" not in pages[0].body  # pages never carry the message


def test_the_bot_is_silent_on_routine_texts_while_staff_handle_it(visitor, on_call):
    visitor.say(CRISIS)
    data = visitor.say(ROUTINE).get_json()
    assert data["reply"] is None and data["escalated"] is True


def test_a_staff_reply_reaches_the_widget_by_polling(visitor, db, on_call):
    first = visitor.say(CRISIS).get_json()
    last_id = max(m["id"] for m in first["messages"])
    esc = web_escalation(db)
    assert visitor.poll(after=last_id).get_json()["staff_joined"] is False
    assert actions.claim(db, esc.id, on_call)
    assert visitor.poll(after=last_id).get_json()["staff_joined"] is True  # at the claim, before a word
    actions.reply(db, esc.id, on_call, "This is Ann at Solace Hills. Are you somewhere safe?")
    data = visitor.poll(after=last_id).get_json()
    assert [(m["kind"], m["text"]) for m in data["messages"]] == [
        ("staff", "This is Ann at Solace Hills. Are you somewhere safe?")]
    assert data["staff_joined"] is True
    assert visitor.poll(after=data["messages"][-1]["id"]).get_json()["messages"] == []
    with db.session() as s:  # nothing to text: the widget is the delivery
        assert s.scalar(select(Outbox).where(Outbox.kind == "reply")) is None


def test_polling_leaves_out_the_visitors_own_texts_unless_restoring_history(visitor):
    visitor.say(ROUTINE)
    assert [m["kind"] for m in visitor.poll().get_json()["messages"]] == ["bot"]
    history = visitor.poll(history="1").get_json()["messages"]
    assert [(m["kind"], m["text"]) for m in history][0] == ("visitor", ROUTINE)


def test_an_unclaimed_web_escalation_gets_the_follow_up_in_the_transcript_without_an_sms(visitor, db, app, on_call):
    visitor.say(CRISIS)
    esc = web_escalation(db)
    ext = app.extensions["helpline"]
    dispatcher = Dispatcher(db, ext.settings, ext.helpline.bot.content, sender=False)
    dispatcher.schedule(utcnow() + timedelta(minutes=11))
    followups = [m for m in visitor.poll().get_json()["messages"] if m["kind"] == "followup"]
    assert len(followups) == 1 and "911" in followups[0]["text"]
    with db.session() as s:
        assert s.get(Escalation, esc.id).followup_sent_at is not None
        assert s.scalar(select(Outbox).where(Outbox.kind == "followup")) is None


def test_stop_in_web_chat_says_how_to_turn_replies_back_on(visitor):
    data = visitor.say("STOP").get_json()
    assert data["reply"] is None and "START" in data["notice"] and CLINIC_PHONE in data["notice"]


# --- limits -------------------------------------------------------------------------------------------------

def test_a_message_over_1600_characters_is_refused_with_413(visitor):
    resp = visitor.say("a" * 1601)
    assert resp.status_code == 413 and "1,600" in resp.get_json()["message"]
    assert visitor.say("a" * 1600).status_code == 200


def test_an_oversized_request_body_is_refused_before_it_is_read(visitor, client):
    resp = client.post("/chat/api/messages", data="{" + " " * 40_000 + "}", content_type="application/json",
                       headers=visitor.auth)
    assert resp.status_code == 413


@pytest.mark.storage
def test_too_many_messages_in_one_conversation_get_429_but_a_crisis_still_gets_through(visitor, db, on_call):
    limit = chat.CONVERSATION_LIMIT.max
    for i in range(limit):
        assert visitor.say(f"what are your hours {i}").status_code == 200
    limited = visitor.say("what are your hours")
    assert limited.status_code == 429
    message = limited.get_json()["message"]
    assert CLINIC_PHONE in message and "911" in message and "988" in message
    crisis = visitor.say(CRISIS)
    assert crisis.status_code == 200
    assert "911" in crisis.get_json()["reply"] and "988" in crisis.get_json()["reply"]
    assert web_escalation(db).severity == "emergency"


@pytest.mark.storage
def test_a_crisis_split_across_texts_is_not_refused_by_the_limit(visitor, db):
    limit = chat.CONVERSATION_LIMIT.max
    for i in range(limit - 1):
        visitor.say(f"question {i}")
    first = visitor.say("i just took")  # the limit's last message
    resp = visitor.say("30 of them")
    assert first.status_code == 200 and resp.status_code == 200
    # The crisis reply comes with whichever text made it a crisis (the model may read "i just took" alone).
    replies = [r.get_json()["reply"] or "" for r in (first, resp)]
    assert any("911" in r for r in replies)
    assert web_escalation(db).severity == "emergency"


@pytest.mark.storage
def test_too_many_messages_from_one_address_get_429_but_a_crisis_still_gets_through(client, db):
    limit = chat.ADDRESS_LIMIT.max
    per_chat = chat.CONVERSATION_LIMIT.max
    fresh, *busy = [Visitor(client, ip="198.51.100.9") for _ in range(-(-limit // per_chat) + 1)]
    for i in range(limit):  # earlier traffic from this address, in its other conversations
        assert busy[i // per_chat].say(f"q{i}").status_code == 200
    resp = fresh.say(ROUTINE)  # this conversation is quiet: the address is what is limited
    assert resp.status_code == 429 and "988" in resp.get_json()["message"]
    assert Visitor(client, ip="192.0.2.44").say(ROUTINE).status_code == 200  # another address is unaffected
    crisis = fresh.say(CRISIS)
    assert crisis.status_code == 200 and "911" in crisis.get_json()["reply"]


@pytest.mark.storage
def test_too_many_new_chats_from_one_address_get_429(client):
    limit = chat.START_LIMIT.max
    for _ in range(limit):
        Visitor(client, ip="198.51.100.20")
    resp = client.post("/chat/api/start", json={}, environ_base={"REMOTE_ADDR": "198.51.100.20"})
    assert resp.status_code == 429 and CLINIC_PHONE in resp.get_json()["message"]
    assert "Retry-After" in resp.headers
    Visitor(client, ip="198.51.100.21")


# --- tokens ---------------------------------------------------------------------------------------------------

@pytest.mark.storage
def test_an_expired_token_is_refused_with_401(visitor, db):
    with db.session() as s:
        s.execute(update(ChatSession).values(expires_at=utcnow() - timedelta(minutes=1)))
    resp = visitor.say(ROUTINE)
    assert resp.status_code == 401 and "Bearer" in resp.headers["WWW-Authenticate"]
    assert visitor.poll().status_code == 401


@pytest.mark.parametrize("header", ["Bearer " + "A" * 43, "Bearer ", "Basic dXNlcjpwYXNz", "", "Bearer " + "x" * 5000])
def test_a_forged_or_missing_token_is_refused_with_401(client, visitor, header):
    headers = {"Authorization": header} if header else {}
    assert client.post("/chat/api/messages", json={"text": ROUTINE}, headers=headers).status_code == 401
    assert client.get("/chat/api/messages", headers=headers).status_code == 401
    assert client.post("/chat/api/callback", json={"phone": "+15625550123"}, headers=headers).status_code == 401


# --- call-back number --------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,e164", [
    ("+1 (562) 555-0123", "+15625550123"), ("562-555-0123", "+15625550123"), ("(562) 555 0123", "+15625550123"),
    ("1 562 555 0123", "+15625550123"), ("+52 55 1234 5678", "+525512345678"), ("+4930123456", "+4930123456"),
])
def test_phone_numbers_are_normalised_to_e164(raw, e164):
    assert chat.normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["", "555-0123", "+1234567", "+1234567890123456", "162-555-0123", "call me",
                                 "+1 562 555 0123 ext 4", None, 5625550123, "+0 562 555 0123"])
def test_bad_phone_numbers_are_refused(raw):
    assert chat.normalize_phone(raw) is None


def test_a_callback_number_without_an_escalation_is_refused_with_409(visitor, db):
    visitor.say(ROUTINE)
    resp = visitor.callback("(562) 555-0123")
    assert resp.status_code == 409
    with db.session() as s:
        assert s.scalar(select(func.count(Escalation.id))) == 0


@pytest.mark.storage
def test_a_callback_number_is_validated_and_stored_only_on_the_open_escalation(visitor, db, app):
    visitor.say(CRISIS)
    bad = visitor.callback("555")
    assert bad.status_code == 400
    resp = visitor.callback("(562) 555-0123")
    assert resp.status_code == 200 and "0123" in resp.get_json()["message"]
    assert "5625550123" not in resp.get_json()["message"]
    esc = web_escalation(db)
    assert esc.callback_number == "+15625550123"
    with db.session() as s:
        assert not s.scalar(select(func.count(Message.id)).where(Message.body.like("%555-0123%")))
        assert not s.scalar(select(func.count(Contact.id)).where(Contact.address.like("%5625550123%")))
        entry = s.scalar(select(AuditLog).where(AuditLog.action == "callback_number"))
        assert entry.escalation_id == esc.id and "0123" not in (entry.detail or "")


def test_staff_see_the_callback_number_and_web_chat_on_the_dashboard(visitor, db, app):
    from test_dashboard import Staffer
    with db.session() as s:
        add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", "correct horse battery", on_call=True)
    visitor.say(CRISIS)
    visitor.callback("562 555 0123")
    ann = Staffer(app, "ann@clinic.test")
    assert ann.login().status_code == 302
    esc = web_escalation(db)
    page = ann.page(f"/dashboard/escalations/{esc.id}")
    assert re.search(r"Call back: .*\+15625550123", page)
    assert "web chat" in page
    queue = ann.page("/dashboard/")
    assert "web chat" in queue and "+15625550123" not in queue and "5625550123" not in queue


# --- CORS -------------------------------------------------------------------------------------------------------

def test_an_allowed_origin_gets_cors_headers_and_others_do_not(client, visitor):
    ok = client.get("/chat/api/messages", headers={**visitor.auth, "Origin": ORIGIN})
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in ok.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in ok.headers
    other = client.get("/chat/api/messages", headers={**visitor.auth, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers and "Origin" in other.headers["Vary"]


def test_a_preflight_from_an_allowed_origin_allows_json_and_the_bearer_token(client):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    resp = client.options("/chat/api/messages", headers=preflight)
    assert resp.status_code in (200, 204)
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    denied = client.options("/chat/api/messages", headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_with_no_origins_configured_the_api_is_same_origin_only(settings):
    app = create_app(settings)
    app.extensions["helpline"].db.create_all()
    try:
        resp = app.test_client().options("/chat/api/start", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in resp.headers
    finally:
        app.extensions["helpline"].db.engine.dispose()


def test_chat_api_sets_no_cookies_and_is_never_cached(client, visitor):
    for resp in (visitor.say(ROUTINE), visitor.poll()):
        assert "Set-Cookie" not in resp.headers and resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


# --- the widget and the demo page --------------------------------------------------------------------------

def test_the_widget_script_is_small_javascript_any_site_may_load(client):
    resp = client.get("/chat/widget.js", headers={"Origin": "https://anywhere.example"})
    assert resp.status_code == 200
    assert resp.mimetype in ("text/javascript", "application/javascript")
    assert len(resp.data) < 30 * 1024
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    source = resp.get_data(as_text=True)
    assert "attachShadow" in source and "innerHTML" not in source and "eval(" not in source
    assert 'role: "dialog"' in source and '"aria-modal": "false"' in source and '"aria-live": "polite"' in source
    assert not re.search(r"\.on(click|keydown|submit)\s*=", source)  # listeners only, no handler attributes


def test_the_demo_page_carries_the_widget_tag_and_a_strict_csp(client):
    resp = client.get("/chat/demo")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert re.search(r'<script src="/chat/widget\.js" data-clinic="solace-hills"', html)
    assert "<style" not in html and not re.search(r"<script>|<script [^>]*>[^<]+</script>", html)
    assert not re.search(r"\son[a-z]+=", html)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert client.get("/chat/static/demo.css").status_code == 200
