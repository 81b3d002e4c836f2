"""POST /sms end to end: signed Twilio webhooks through the real app and a real SQLite file."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import xml.etree.ElementTree as ET
from urllib.parse import quote_plus

import pytest
from sqlalchemy import func, select, text

from bot.core.sms import fits
from bot.store.models import Contact, Escalation, Message
from bot.web import create_app
from conftest import SMS, TEXTER, TOKEN, make_healthy

PHONE = "(562) 573-1504"
CLINIC = "Solace Hills Detox"
PUBLIC = "https://helpline.example.org"
OVERDOSE = "my brother took all his pills and won't wake up"
ROUTINE = "what are your hours"
OPT_OUT_WORDS = ["STOP", "stopall", "Unsubscribe", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]


# --- helpers --------------------------------------------------------------------------------

def sid(name: str) -> str:
    """A MessageSid in Twilio's shape (SM + 32 hex digits), named for the test that uses it."""
    return "SM" + hashlib.md5(name.encode()).hexdigest()


def message(app, key: str, language: str = "en") -> str:
    """A fixed reply from the app's own content (replies/messages.*.toml)."""
    return app.extensions["helpline"].helpline.bot.content.message(key, language)


def contact(db, address: str = TEXTER) -> Contact | None:
    with db.session() as s:
        return s.scalar(select(Contact).where(Contact.address == address))


def inbound(db, sid: str) -> list[Message]:
    with db.session() as s:
        return list(s.scalars(select(Message).where(Message.sid == sid, Message.direction == "in")))


def replies_to(db, message_id: int) -> list[Message]:
    with db.session() as s:
        return list(s.scalars(select(Message).where(Message.reply_to_id == message_id)))


def escalations(db, address: str = TEXTER) -> list[Escalation]:
    with db.session() as s:
        return list(s.scalars(select(Escalation).join(Contact, Escalation.contact_id == Contact.id)
                              .where(Contact.address == address)))


def count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def nothing_stored(db) -> bool:
    return count(db, Contact) == 0 and count(db, Message) == 0 and count(db, Escalation) == 0


@pytest.fixture
def make_app(settings):
    """Build extra apps from changed settings; their engines are disposed afterwards."""
    built = []

    def make(schema: bool = True, **changes):
        app = create_app(dataclasses.replace(settings, **changes))
        app.config["TESTING"] = True
        if schema:
            app.extensions["helpline"].db.create_all()
        built.append(app)
        return app

    yield make
    for app in built:
        app.extensions["helpline"].db.engine.dispose()


# --- signatures -----------------------------------------------------------------------------

def test_a_correctly_signed_text_gets_twiml_back(sms):
    reply = sms.send(ROUTINE)
    assert reply.status == 200
    assert reply.content_type.startswith("text/xml")
    assert ET.fromstring(reply.raw).tag == "Response"
    assert reply.text and PHONE in reply.text


def test_twiml_is_written_as_twilios_own_builder_writes_it(bot):
    """``twiml()`` writes its XML itself; it must match ``MessagingResponse`` character for character, for
    the bot's messages and topic answers, and for markup, quotes and line breaks."""
    from twilio.twiml.messaging_response import MessagingResponse

    from bot.web.twilio_adapter import twiml

    replies = [None, "", "a & b <c> d > e \"f\" 'g' é ñ 🙂\nline two\r\n\tend", "]]> &amp; &#x41;"]
    replies += [text for messages in bot.content.messages.values() for text in messages.values()]
    replies += [topic.reply for topics in bot.content.topics.values() for topic in topics]
    assert len(replies) > 50
    for reply in replies:
        expected = MessagingResponse()
        if reply:
            expected.message(reply)
        assert twiml(reply)[0] == str(expected)


def test_the_signature_is_computed_over_the_form_as_twilio_computes_it(sms):
    """``signature_matches`` computes Twilio's signature itself (one join, one-shot HMAC): it must be the one
    Twilio's validator computes over the same form, repeated and multi-valued fields included (a mismatch
    would fall back to the slower ``validate`` and go unnoticed)."""
    import random

    from twilio.request_validator import RequestValidator
    from werkzeug.datastructures import MultiDict

    from bot.web.twilio_adapter import compute_signature

    validator = RequestValidator(TOKEN)
    url = "https://example.org/sms?x=1"
    forms = [MultiDict(list(sms.params(ROUTINE).items()) + [("MediaUrl0", "https://b"), ("MediaUrl0", "https://a"),
                                                           ("MediaUrl0", "https://b")]),
             MultiDict(sms.params("¿dónde están? 💬 &=+%")), MultiDict()]
    rng = random.Random(3)
    for _ in range(200):
        forms.append(MultiDict([(rng.choice("ABab_"), "".join(rng.choice("xyZ é&=") for _ in range(rng.randint(0, 4))))
                                for _ in range(rng.randint(0, 8))]))
    for form in forms:
        assert compute_signature(validator.token, url, form) == validator.compute_signature(url, form)


def test_form_bodies_are_parsed_as_werkzeug_parses_them(sms, app):
    """The app's request class parses urlencoded bodies itself (``bot.web.forms``): the pairs must be the ones
    ``parse_qsl`` gives werkzeug (blank values kept, '+' and %-escapes decoded, bad UTF-8 kept quoted), and the
    form a view reads must be werkzeug's own."""
    import random
    from urllib.parse import parse_qsl, urlencode

    import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" error handler
    from flask import Request, request
    from werkzeug.test import EnvironBuilder

    from bot.web.forms import parse_urlencoded

    bodies = [urlencode(sms.params(ROUTINE)), urlencode(sms.params("¿dónde están? 💬 &=+%")), "", "&", "&&a",
              "a", "a=", "=b", "a==b", "a=1&a=2&b", "x+y=1+2", "%zz=%e9%80&%C3%A9=%2B+%26", "a%00=%ff%fe;b=c"]
    rng = random.Random(5)
    for _ in range(300):
        bodies.append("".join(rng.choice("ab=&+%2BC3e9 é") for _ in range(rng.randint(0, 16))))

    def environ(body: str | bytes) -> dict:
        return EnvironBuilder(method="POST", data=body if isinstance(body, bytes) else body.encode(),
                              content_type="application/x-www-form-urlencoded").get_environ()

    for raw in (b"a=\xff", b"\xc3=1&b=2"):  # not UTF-8: werkzeug's silent parser gives an empty form
        with app.request_context(environ(raw)):
            assert list(request.form.items(multi=True)) == list(Request(environ(raw)).form.items(multi=True)) == []

    for body in bodies:
        assert parse_urlencoded(body) == parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote"), body
        with app.request_context(environ(body)):
            assert list(request.form.items(multi=True)) == list(Request(environ(body)).form.items(multi=True))


def test_a_request_without_a_signature_is_refused_and_nothing_is_stored(sms, db):
    reply = sms.post(sms.params(OVERDOSE), sign=False)
    assert reply.status == 403
    assert nothing_stored(db)


def test_a_request_with_a_wrong_signature_is_refused_and_nothing_is_stored(sms, db):
    reply = sms.post(sms.params(OVERDOSE), sign=False, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})
    assert reply.status == 403
    assert nothing_stored(db)


def test_a_request_signed_with_another_token_is_refused(client, db):
    forger = SMS(client, token="someone-elses-token")
    assert forger.send(OVERDOSE).status == 403
    assert nothing_stored(db)


def test_a_body_changed_after_signing_is_refused(sms, db):
    params = sms.params(ROUTINE)
    signature = sms.signature(params, "http://localhost/sms")
    tampered = {**params, "Body": "I took 30 valium"}
    reply = sms.post(tampered, sign=False, headers={"X-Twilio-Signature": signature})
    assert reply.status == 403
    assert nothing_stored(db)


def test_a_signature_over_the_url_with_its_default_port_is_accepted_as_twilio_accepts_it(sms):
    """Twilio may sign https://host:443/... for https://host/...; the port variant is still checked."""
    assert sms.post(sms.params(ROUTINE), signed_url="http://localhost:80/sms").status == 200
    assert sms.post(sms.params(ROUTINE), signed_url="http://localhost:8080/sms").status == 403


def test_a_signature_header_that_is_not_ascii_is_refused_not_an_error(sms, db):
    reply = sms.post(sms.params(OVERDOSE), sign=False, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl\xe9"})
    assert reply.status == 403
    assert nothing_stored(db)


# --- behind a proxy -------------------------------------------------------------------------

def test_with_a_public_url_the_signature_is_checked_against_that_url(make_app):
    sms = SMS(make_app(public_url=PUBLIC).test_client())
    assert sms.post(sms.params(ROUTINE), signed_url=PUBLIC + "/sms").status == 200
    assert sms.post(sms.params(ROUTINE), signed_url="http://localhost/sms").status == 403


def test_with_a_public_url_the_query_string_is_part_of_the_signed_url(make_app):
    sms = SMS(make_app(public_url=PUBLIC).test_client())
    assert sms.post(sms.params(ROUTINE), signed_url=PUBLIC + "/sms?x=1", path="/sms?x=1").status == 200
    assert sms.post(sms.params(ROUTINE), signed_url=PUBLIC + "/sms", path="/sms?x=1").status == 403


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "helpline.example.org"}


def test_forwarded_headers_from_a_trusted_proxy_rebuild_the_signed_url(make_app):
    sms = SMS(make_app(trusted_proxies=1).test_client())
    assert sms.post(sms.params(ROUTINE), signed_url=PUBLIC + "/sms", headers=FORWARDED).status == 200


def test_forwarded_headers_are_ignored_when_no_proxy_is_trusted(make_app):
    sms = SMS(make_app(trusted_proxies=0).test_client())
    assert sms.post(sms.params(ROUTINE), signed_url=PUBLIC + "/sms", headers=FORWARDED).status == 403


# --- no auth token --------------------------------------------------------------------------

def test_without_a_token_outside_dev_mode_every_request_is_refused(make_app):
    app = make_app(twilio_auth_token=None, dev=False)
    sms = SMS(app.test_client())
    assert sms.post(sms.params(ROUTINE), sign=False).status == 403
    assert sms.send(ROUTINE).status == 403
    assert nothing_stored(app.extensions["helpline"].db)


def test_without_a_token_in_dev_mode_unsigned_requests_are_accepted_loudly(make_app, caplog):
    app = make_app(twilio_auth_token=None, dev=True)
    sms = SMS(app.test_client())
    with caplog.at_level(logging.WARNING):
        reply = sms.post(sms.params(ROUTINE), sign=False)
    assert reply.status == 200 and PHONE in reply.text
    assert any(r.levelno == logging.WARNING and "unsigned" in r.getMessage() for r in caplog.records)


def test_dev_mode_never_skips_the_signature_check_when_a_token_is_set(make_app):
    app = make_app(dev=True)
    sms = SMS(app.test_client())
    assert sms.post(sms.params(ROUTINE), sign=False).status == 403
    assert sms.send(ROUTINE).status == 200


def test_healthz_reports_insecure_dev_mode_as_degraded(make_app):
    health = make_app(twilio_auth_token=None, dev=True).test_client().get("/healthz").get_json()
    assert health["insecure_dev_mode"] is True
    assert health["status"] == "degraded"


def test_healthz_is_ok_normally(app, client):
    make_healthy(app)
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.is_json
    health = resp.get_json()
    assert health["status"] == "ok"
    assert health["insecure_dev_mode"] is False


# --- Twilio retries -------------------------------------------------------------------------

@pytest.mark.storage
def test_a_retried_message_sid_is_answered_the_same_and_stored_once(sms, db):
    first = sms.send(OVERDOSE, sid=sid("retry"))
    second = sms.send(OVERDOSE, sid=sid("retry"))
    assert first.status == second.status == 200
    assert first.text and second.text == first.text
    rows = inbound(db, sid("retry"))
    assert len(rows) == 1
    assert len(escalations(db)) == 1
    assert len(replies_to(db, rows[0].id)) == 1
    assert escalations(db)[0].message_count == 1


# --- crisis ---------------------------------------------------------------------------------

def test_a_third_person_overdose_gets_the_crisis_reply(sms):
    reply = sms.send(OVERDOSE)
    for needle in ("911", "988", PHONE, "automated"):
        assert needle in reply.text


# --- the crisis reply fits the kind and says only what is true ----------------------------------------

ALERTED, LATER = "Our staff have been alerted", "A person will read this as soon as possible"


@pytest.mark.parametrize("text, first, must", [
    ("my brother took all his pills and wont wake up", "911", "1-800-222-1222"),  # overdose: 911, Poison Control
    ("i want to kill myself", "988", "911"),  # suicide: 988 first, 911 if in danger
    ("he is hitting me right now and locked the door", "911", "1-800-799-7233"),  # violence: DV hotline
    ("my son is having a seizure right now", "911", "side"),  # medical, not the suicide template
])
def test_the_crisis_reply_fits_the_kind(sms, app, text, first, must):
    make_healthy(app)
    reply = sms.send(text).text
    assert first in reply and must in reply and PHONE in reply
    numbers = [n for n in ("911", "988") if n in reply]
    assert numbers and reply.index(first) == min(reply.index(n) for n in numbers)


def test_an_overdose_with_suicidal_words_is_an_emergency_that_leads_with_911(sms, app, db):
    make_healthy(app)
    reply = sms.send("ya no quiero vivir, me tomé 20 valium").text
    assert reply.index("911") < reply.index("Toxicología")
    [esc] = escalations(db)
    assert (esc.severity, esc.kind) == ("emergency", "overdose")


def test_staff_have_been_alerted_only_when_a_page_was_queued(sms, app, db):
    """Nobody can be paged (no staff at all): the reply promises a person, not a page."""
    reply = sms.send(OVERDOSE).text
    assert LATER in reply and ALERTED not in reply
    [esc] = escalations(db)
    assert esc.page_problem and "NO ACTIVE STAFF" in esc.page_problem


def test_with_staff_on_call_the_reply_says_they_were_alerted(sms, app):
    make_healthy(app)
    reply = sms.send(OVERDOSE).text
    assert ALERTED in reply and LATER not in reply


def test_a_training_text_never_claims_staff_were_alerted(app, db):
    from bot.core.engine import Inbound
    make_healthy(app)
    outcome = app.extensions["helpline"].helpline.handle(Inbound("test:+15550001234", OVERDOSE, channel="test"))
    assert LATER in outcome.reply and ALERTED not in outcome.reply


@pytest.mark.storage
def test_an_overdose_opens_an_emergency_escalation_linked_to_the_message(sms, db):
    sms.send(OVERDOSE, sid=sid("crisis"))
    [esc] = escalations(db)
    [msg] = inbound(db, sid("crisis"))
    assert esc.severity == "emergency" and esc.status == "open"
    assert esc.rule.startswith(("overdose.", "medical."))
    assert esc.first_message_id == msg.id
    assert msg.escalation_id == esc.id
    [out] = replies_to(db, msg.id)
    assert out.direction == "out" and out.escalation_id == esc.id and "911" in out.body


@pytest.mark.storage
def test_routine_texts_after_an_escalation_get_no_reply_and_join_the_transcript(sms, db):
    sms.send(OVERDOSE)
    reply = sms.send(ROUTINE, sid=sid("after"))
    assert reply.status == 200 and reply.text is None
    assert ET.fromstring(reply.raw).tag == "Response" and len(ET.fromstring(reply.raw)) == 0
    [esc] = escalations(db)
    [msg] = inbound(db, sid("after"))
    assert esc.message_count == 2
    assert msg.escalation_id == esc.id
    assert replies_to(db, msg.id) == []


@pytest.mark.storage
def test_a_second_crisis_text_still_gets_the_crisis_reply_and_raises_the_severity(sms, db):
    first = sms.send("i want to kill myself")
    assert "988" in first.text
    assert escalations(db)[0].severity == "urgent"
    second = sms.send("I took 30 valium")
    assert "911" in second.text and "automated" in second.text
    [esc] = escalations(db)
    assert esc.severity == "emergency"
    assert esc.message_count == 2


def test_a_relapse_is_escalated_for_review_and_mentions_988(sms, db):
    reply = sms.send("I relapsed")
    assert "988" in reply.text
    [esc] = escalations(db)
    assert esc.severity == "review"


# --- the guide ------------------------------------------------------------------------------

def test_a_misspelled_withdrawal_question_gets_the_withdrawal_answer(sms):
    reply = sms.send("what are the withdrawel symptoms")
    assert "suddenly" in reply.text and "doctor" in reply.text and PHONE in reply.text
    assert fits(reply.text, "en")


@pytest.mark.parametrize("body", [ROUTINE, "how much does detox cost", "I relapsed", "asdf qwerty", "HELP"])
def test_english_replies_fit_in_320_gsm7_characters(sms, body):
    reply = sms.send(body, sender="+15555550177")
    assert reply.text and fits(reply.text, "en") and len(reply.text) <= 320


def test_an_unmatched_text_gets_the_menu(sms, app):
    assert sms.send("asdf qwerty").text == message(app, "menu")


# --- WhatsApp -------------------------------------------------------------------------------

def test_whatsapp_texts_are_answered_in_twiml_and_remembered_as_whatsapp(sms, db):
    reply = sms.send(ROUTINE, sender="whatsapp:+15555550123")
    assert reply.status == 200 and PHONE in reply.text
    assert contact(db, "whatsapp:+15555550123").channel == "whatsapp"


# --- Spanish --------------------------------------------------------------------------------

def test_a_spanish_question_gets_a_spanish_reply_and_the_language_is_remembered(sms, db, app):
    first = sms.send("hola, cuáles son los síntomas?")
    assert "síntomas" in first.text and PHONE in first.text
    assert contact(db).language == "es"
    assert sms.send("ok?").text == message(app, "menu", "es")
    assert contact(db).language == "es"


def test_english_switches_a_spanish_texter_back_to_english(sms, db, app):
    sms.send("hola, cuáles son los síntomas?")
    assert sms.send("ENGLISH").text == message(app, "language_set", "en")
    assert contact(db).language == "en"
    assert sms.send("ok?").text == message(app, "menu", "en")


@pytest.mark.parametrize("word", ["ESPANOL", "Español"])
def test_espanol_switches_to_spanish(sms, db, app, word):
    assert sms.send(word).text == message(app, "language_set", "es")
    assert contact(db).language == "es"


def test_a_spanish_crisis_text_gets_the_spanish_crisis_reply(sms, db):
    reply = sms.send("me quiero morir")
    assert "AYUDA" in reply.text and "988" in reply.text and "automático" in reply.text
    assert len(escalations(db)) == 1


# --- opt-out, opt-in, help ------------------------------------------------------------------

@pytest.mark.parametrize("word", OPT_OUT_WORDS)
def test_an_opt_out_word_opts_out_silently_and_routine_texts_stay_silent(sms, db, word):
    reply = sms.send(word)
    assert reply.status == 200 and reply.text is None and len(ET.fromstring(reply.raw)) == 0
    assert contact(db).opted_out is True
    later = sms.send(ROUTINE)
    assert later.status == 200 and later.text is None


@pytest.mark.parametrize("word", ["START", "YES", "UNSTOP"])
def test_an_opt_in_word_brings_an_opted_out_texter_back(sms, db, app, word):
    sms.send("STOP")
    assert sms.send(word).text == message(app, "optin")
    assert contact(db).opted_out is False
    assert PHONE in sms.send(ROUTINE).text


def test_yes_from_a_texter_who_never_opted_out_is_an_ordinary_message(sms, db, app):
    reply = sms.send("yes")
    assert reply.text and reply.text != message(app, "optin") and PHONE in reply.text
    assert contact(db).opted_out is False


@pytest.mark.parametrize("word", ["HELP", "INFO", "AYUDA"])
def test_help_words_name_the_clinic_its_number_and_emergency_lines(sms, word):
    reply = sms.send(word)
    for needle in (CLINIC, PHONE, "911", "988"):
        assert needle in reply.text


def test_a_crisis_text_from_an_opted_out_number_still_gets_the_crisis_reply(sms, db):
    sms.send("STOP")
    reply = sms.send(OVERDOSE)
    assert "911" in reply.text
    [esc] = escalations(db)
    assert esc.opted_out is True


# --- bad input never 500s -------------------------------------------------------------------

def test_an_empty_body_gets_the_fallback(sms, app):
    reply = sms.send("")
    assert reply.status == 200 and reply.text == message(app, "fallback")


def test_a_form_without_a_body_gets_the_fallback(sms, app):
    reply = sms.send(None)
    assert reply.status == 200 and reply.text == message(app, "fallback")


def test_a_picture_without_words_gets_the_media_reply(sms, app, db):
    reply = sms.send("", sid=sid("media"), NumMedia=1, MediaUrl0="https://api.twilio.com/media/ME1",
                     MediaContentType0="image/jpeg")
    assert reply.status == 200 and reply.text == message(app, "media")
    assert inbound(db, sid("media"))[0].media_count == 1


def test_a_crisis_buried_in_a_10000_character_text_still_escalates(sms, db):
    filler = "I have a question about the program and the paperwork for my intake. "
    half = filler * (5000 // len(filler))
    body = (half + "I took 30 valium. " + half).ljust(10_000, "x")[:10_000]
    assert len(body) == 10_000 and "I took 30 valium" in body
    reply = sms.send(body)
    assert reply.status == 200 and "911" in reply.text
    assert escalations(db)[0].severity == "emergency"


def test_an_emoji_only_text_is_answered(sms):
    reply = sms.send("🙏🙏")
    assert reply.status == 200 and PHONE in reply.text


@pytest.mark.parametrize("body", [
    "<script>alert(1)</script>" * 20,
    '<?xml version="1.0"?><Response><Redirect>http://evil</Redirect></Response>',
])
def test_markup_in_a_text_cannot_inject_twiml(sms, body):
    reply = sms.send(body)
    assert reply.status == 200
    root = ET.fromstring(reply.raw)
    assert root.tag == "Response"
    assert len(root.findall(".//Response")) == 0
    assert root.find(".//Redirect") is None
    assert [child.tag for child in root] in (["Message"], [])


@pytest.mark.storage
def test_invalid_utf8_in_the_form_is_answered_not_a_500(sms, client, db):
    # Werkzeug 3 keeps undecodable percent-escapes as written; Twilio's signature covers the
    # form as the app reads it, so sign that.
    form = sms.params("%FF%FE%FA", sid=sid("bad"))
    decoded = dict(form)
    raw = "&".join(f"{k}={quote_plus(v, safe='%')}" for k, v in form.items()).encode()
    resp = client.post("/sms", data=raw,
                       content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": sms.signature(decoded, "http://localhost/sms")})
    assert resp.status_code == 200
    assert ET.fromstring(resp.get_data(as_text=True)).tag == "Response"
    assert len(inbound(db, sid("bad"))) == 1


# --- database down --------------------------------------------------------------------------

@pytest.mark.storage
def test_with_no_schema_crisis_texts_still_get_the_crisis_reply_and_are_replayed_later(make_app, caplog):
    app = make_app(schema=False)
    ext = app.extensions["helpline"]
    sms = SMS(app.test_client())
    spool = ext.helpline.spool

    with caplog.at_level(logging.INFO):
        crisis = sms.send(OVERDOSE, sid=sid("down1"))
    assert crisis.status == 200 and "911" in crisis.text
    assert LATER in crisis.text and ALERTED not in crisis.text  # nothing was stored, nobody was paged
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and "ESCALATION NOT STORED" in critical[0].getMessage()
    assert TEXTER not in caplog.text and OVERDOSE not in caplog.text
    assert spool.pending() and spool.counts().pending == 1

    routine = sms.send(ROUTINE, sid=sid("down2"))
    assert routine.text == message(app, "trouble") and PHONE in routine.text
    assert app.test_client().get("/healthz").get_json()["status"] == "degraded"

    ext.db.create_all()
    assert sms.send(ROUTINE, sender="+15555550199").status == 200
    [esc] = escalations(ext.db)
    assert esc.severity == "emergency"
    [first] = inbound(ext.db, sid("down1"))
    assert esc.first_message_id == first.id and first.body == OVERDOSE
    assert not spool.pending() and spool.counts().pending == 0
    make_healthy(app)
    assert app.test_client().get("/healthz").get_json()["status"] == "ok"


@pytest.mark.storage
def test_after_an_outage_the_next_text_from_a_spooled_crisis_texter_joins_the_escalation(make_app):
    app = make_app(schema=False)
    db = app.extensions["helpline"].db
    sms = SMS(app.test_client())
    assert "911" in sms.send("I took 30 valium").text
    db.create_all()
    reply = sms.send("hello? are you there", sid=sid("followup"))
    [esc] = escalations(db)
    [followup] = inbound(db, sid("followup"))
    assert followup.escalation_id == esc.id and esc.message_count == 2
    assert reply.text is None  # a human owns the conversation now, as for any open escalation


@pytest.mark.storage
@pytest.mark.sqlite_only  # the fault is injected with a SQLite trigger
@pytest.mark.parametrize("table", ["contacts", "messages"])
def test_a_failed_insert_never_logs_the_body_or_the_full_number(app, db, sms, caplog, table):
    # A trigger that cannot run makes the insert fail as a full disk or I/O error would.
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE TRIGGER fail_insert BEFORE INSERT ON {table} "
                          "BEGIN INSERT INTO no_such_table VALUES (1); END"))
    body = "is my insurance accepted for the program"
    with caplog.at_level(logging.INFO):
        reply = sms.send(body)
    assert reply.text == message(app, "trouble")
    assert TEXTER not in caplog.text
    assert body not in caplog.text


# --- logs -----------------------------------------------------------------------------------

def test_logs_never_carry_a_message_body_or_a_full_phone_number(sms, caplog):
    bodies = [ROUTINE, OVERDOSE, "what are the withdrawel symptoms"]
    with caplog.at_level(logging.INFO):
        sms.send(ROUTINE, sender="+15555550155")
        sms.send(OVERDOSE)
        sms.send("what are the withdrawel symptoms")
    assert caplog.records  # the exchange is logged at all
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            text = record.getMessage()
            assert TEXTER not in text and "+15555550155" not in text
            assert not any(body in text for body in bodies)
    assert TEXTER not in caplog.text


# --- concurrency ----------------------------------------------------------------------------

@pytest.mark.storage
@pytest.mark.parametrize("round_", range(3))
def test_two_simultaneous_deliveries_of_one_sid_store_one_message(app, db, round_):
    senders = [SMS(app.test_client()), SMS(app.test_client())]
    sender = f"+1555555{round_:04d}"
    params = senders[0].params(ROUTINE, sender=sender, sid=sid(f"race{round_}"))
    barrier = threading.Barrier(2)
    replies = [None, None]

    def deliver(i):
        barrier.wait()
        replies[i] = senders[i].post(params)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status for r in replies] == [200, 200]
    assert replies[0].text == replies[1].text and PHONE in replies[0].text
    assert len(inbound(db, sid(f"race{round_}"))) == 1


def test_an_open_review_escalation_does_not_silence_the_bot(sms, db):
    sms.send("HELP")
    reply = sms.send("what are your hours")
    assert reply.text and "(562) 573-1504" in reply.text
    with db.session() as s:
        [esc] = s.scalars(select(Escalation)).all()
        assert esc.severity == "review" and esc.message_count == 2


@pytest.mark.storage
def test_recent_texts_join_a_text_held_for_review_but_stop_at_one_that_paged(db):
    """A text read the same day ("i just took", review) may be finished by the next one ("30 of them");
    a text that already paged has its verdict, and nothing before it joins."""
    from datetime import timedelta

    from bot.service import recent_texts
    from bot.store.models import Contact, Message, utcnow
    start = utcnow() - timedelta(minutes=5)
    with db.session() as s:
        contact = Contact(address="+15555550177")
        s.add(contact)
        s.flush()
        for body, severity in [("before the page", None), ("i want to die", "urgent"), ("after the page", None),
                               ("i just took", "review"), ("a minute later", None)]:
            s.add(Message(contact_id=contact.id, direction="in", body=body, severity=severity))
            s.flush()
        assert recent_texts(s, contact.id, start) == ("after the page", "i just took", "a minute later")


def test_a_serving_process_freezes_what_it_built():
    """app.py and `helpline serve` call settle_for_serving once the app is built: what is alive then (content,
    models, word list) leaves the collector's generations, so full collections stop walking it."""
    import gc
    import weakref

    from bot.web import settle_for_serving

    class Node:
        pass

    gc.unfreeze()
    node = Node()
    node.itself = node  # a cycle only the collector frees
    gone = weakref.ref(node)
    del node
    try:
        settle_for_serving()
        assert gc.get_freeze_count() > 10_000  # this test process's modules and the app the fixtures built
        assert gone() is None  # garbage is collected first, not frozen with the rest
    finally:
        gc.unfreeze()
