"""The staff console through Flask's test client with CSRF on: the live queue's versions and
sections, the banner, the owner's alerts, saved replies, notes, transfer, the admin warning,
the on-call panel and the numbers page. Real SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from bot.staff.accounts import add_staff
from bot.store.models import AuditLog, Escalation, Message, Note, Outbox, Staff
from conftest import TEXTER
from test_dashboard import CRISIS, PASSWORD, Staffer, app, escalation, flashes  # noqa: F401 (fixture)

REVIEW = "help"
URGENT = "I want to kill myself"


@pytest.fixture
def team(db):
    """Ann (on call), Bob (off call) and Dana (admin, off call)."""
    with db.session() as s:
        add_staff(s, "Ann Alvarez", "ann@clinic.test", "+15555550901", PASSWORD, on_call=True)
        add_staff(s, "Bob Baker", "bob@clinic.test", "+15555550902", PASSWORD)
        add_staff(s, "Dana Ruiz", "dana@clinic.test", "+15555550903", PASSWORD, admin=True)


def staffer(app, email):
    who = Staffer(app, email)
    assert who.login().status_code == 302
    return who


@pytest.fixture
def ann(app, team):
    return staffer(app, "ann@clinic.test")


@pytest.fixture
def bob(app, team):
    return staffer(app, "bob@clinic.test")


@pytest.fixture
def dana(app, team):
    return staffer(app, "dana@clinic.test")


def staff_id(db, email):
    with db.session() as s:
        return s.scalar(select(Staff.id).where(Staff.email == email))


# --- the live queue -------------------------------------------------------------------------------

def test_an_unchanged_queue_answers_304_and_sends_only_cards_the_page_lacks(db, sms, ann):
    sms.send(CRISIS)
    first = ann.get("/dashboard/queue/poll?fragment=1")
    data, etag = first.get_json(), first.headers["ETag"]
    esc_id = str(escalation(db).id)
    card = data["cards"][esc_id]
    assert "csrf_token" not in card["html"]  # no per-render token: the same bytes every time
    again = ann.client.get("/dashboard/queue/poll?fragment=1", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    known = ann.get(f"/dashboard/queue/poll?fragment=1&have={esc_id}.{card['v']}").get_json()
    assert known["cards"][esc_id] == {"v": card["v"]}
    sms.send(REVIEW, sender="+15555550111")
    changed = ann.client.get(f"/dashboard/queue/poll?fragment=1&have={esc_id}.{card['v']}",
                             headers={"If-None-Match": etag})
    assert changed.status_code == 200
    cards = changed.get_json()["cards"]
    assert cards[esc_id] == {"v": card["v"]} and len(cards) == 2
    assert all("html" in c for k, c in cards.items() if k != esc_id)


def test_the_queue_orders_unclaimed_by_severity_then_age_then_claimed_then_training(db, sms, ann):
    sms.send(REVIEW, sender="+15555550111")                       # review, oldest
    sms.send(CRISIS, sender="+15555550122")                       # emergency
    sms.send(URGENT, sender="+15555550133")                       # urgent
    sms.send(CRISIS, sender="+15555550144")                       # emergency, newer: claimed below
    ann.post("/dashboard/test-texter", {"number": "+15550001234", "body": CRISIS})
    claimed = escalation(db, "+15555550144").id
    ann.post(f"/dashboard/escalations/{claimed}/claim")
    ids = {a: escalation(db, a).id for a in ("+15555550111", "+15555550122", "+15555550133")}
    training = escalation(db, "test:+15550001234").id
    data = ann.get("/dashboard/queue/poll?fragment=1").get_json()
    assert data["sections"] == {"unclaimed": [ids["+15555550122"], ids["+15555550133"], ids["+15555550111"]],
                                "claimed": [claimed], "training": [training]}
    assert data["banner"]["id"] == ids["+15555550122"] and data["banner"]["severity"] == "emergency"
    assert data["unclaimed"] == 4 and data["unclaimed_training"] == 1
    html = ann.page("/dashboard/")
    order = [int(i) for i in re.findall(r'data-escalation-id="(\d+)"', html)]
    assert order == [*data["sections"]["unclaimed"], claimed, training]
    assert "Claimed by <strong>you</strong>" in html


def test_cards_show_kind_language_and_a_preview_of_the_latest_text(db, sms, ann):
    sms.send("me tomé 30 pastillas y no puedo respirar")
    html = ann.page("/dashboard/")
    assert 'class="badge badge-lang"' in html and ">ES<" in html
    assert "me tomé 30 pastillas y no puedo respirar" in html
    esc = escalation(db)
    if esc.kind:
        assert f"kind-{esc.kind}" in html


def test_the_owner_is_alerted_in_the_poll_of_a_crisis_text_in_their_claimed_conversation(db, sms, ann, bob):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    assert ann.get("/dashboard/queue/poll").get_json()["mine"] == []
    assert sms.send("he is breathing but still wont wake up").text is None
    mine = ann.get("/dashboard/queue/poll").get_json()["mine"]
    assert [(m["id"], m["alert"], m["window_s"]) for m in mine] == [(esc.id, "crisis", 120)]
    assert bob.get("/dashboard/queue/poll").get_json()["mine"] == []
    assert "NEW CRISIS TEXT" in ann.page("/dashboard/")
    assert "Waiting for a staff reply" in ann.page(f"/dashboard/escalations/{esc.id}")
    ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Ann here, stay with him"})
    assert ann.get("/dashboard/queue/poll").get_json()["mine"] == []


# --- one escalation -------------------------------------------------------------------------------

def test_resolve_and_hand_back_need_a_claim_first(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    html = ann.page(f"/dashboard/escalations/{esc.id}")
    assert "Resolve with outcome" not in html and "Hand back to the bot" not in html
    html = ann.post(f"/dashboard/escalations/{esc.id}/resolve", {"outcome": "reached_safe"}).get_data(as_text=True)
    assert any("claim it first" in f for f in flashes(html))
    html = ann.post(f"/dashboard/escalations/{esc.id}/hand-back").get_data(as_text=True)
    assert any("claim it first" in f for f in flashes(html))
    assert escalation(db).status == "open"
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    assert "Resolve with outcome" in ann.page(f"/dashboard/escalations/{esc.id}")


def test_saved_replies_are_offered_in_the_texters_language_first_and_prefill_the_reply_box(db, sms, ann):
    sms.send("me tomé 30 pastillas")
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.page(f"/dashboard/escalations/{esc.id}")
    assert html.index("Spanish (texter's language)") < html.index('label="English"')
    assert 'data-text="Hola, soy Ann, consejero/a de Solace Hills Detox.' in html
    filled = ann.page(f"/dashboard/escalations/{esc.id}?canned=safe_now")
    box = re.search(r'<textarea id="reply-body"[^>]*>(.*?)</textarea>', filled, re.S).group(1)
    assert box.startswith("Quiero asegurarme de que estés bien.")


def test_an_internal_note_is_stored_shown_audited_without_its_words_and_never_sent(app, db, sms, ann, bob):
    sms.send(CRISIS)
    esc = escalation(db)
    html = bob.post(f"/dashboard/escalations/{esc.id}/notes", {"body": "Mother called the clinic line too."}).get_data(as_text=True)
    assert "Internal note saved (staff only, never sent)." in flashes(html)
    assert "Mother called the clinic line too." in ann.page(f"/dashboard/escalations/{esc.id}")
    with db.session() as s:
        note = s.scalar(select(Note))
        assert note.body == "Mother called the clinic line too." and note.escalation_id == esc.id
        entry = s.scalar(select(AuditLog).where(AuditLog.action == "note"))
        assert entry.detail == f"note {note.id}, 34 characters" and "Mother" not in (entry.detail or "")
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.body.like("%Mother%"))) == 0
        assert s.scalar(select(func.count()).select_from(Message).where(Message.body.like("%Mother%"))) == 0
    assert "Mother called" in ann.get(f"/dashboard/escalations/{esc.id}/poll?after=0").get_json()["notes_html"]
    assert "Note not saved: a note needs text." in flashes(
        bob.post(f"/dashboard/escalations/{esc.id}/notes", {"body": "  "}).get_data(as_text=True))


def test_transfer_hands_the_claim_to_a_named_colleague_who_is_paged_and_alerted(db, sms, ann, bob):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    bob_id = staff_id(db, "bob@clinic.test")
    html = ann.post(f"/dashboard/escalations/{esc.id}/transfer", {"to": bob_id}).get_data(as_text=True)
    assert f"Escalation #{esc.id} transferred to Bob Baker; they have been paged." in flashes(html)
    assert escalation(db).claimed_by_id == bob_id and escalation(db).status == "claimed"
    with db.session() as s:
        page = s.scalars(select(Outbox).where(Outbox.kind == "page", Outbox.staff_id == bob_id)).one()
        assert page.body.startswith("Solace Hills helpline: Ann Alvarez transferred EMERGENCY") and "wake" not in page.body
        assert s.scalar(select(AuditLog.detail).where(AuditLog.action == "transfer")) == "to Bob Baker"
    mine = bob.get("/dashboard/queue/poll").get_json()["mine"]
    assert mine == [{"id": esc.id, "alert": "transferred", "severity": "emergency", "by": "Ann Alvarez",
                     "url": f"/dashboard/escalations/{esc.id}"}]
    html = ann.post(f"/dashboard/escalations/{esc.id}/transfer", {"to": bob_id}).get_data(as_text=True)
    assert any(f.startswith("Not transferred: claimed by Bob Baker") for f in flashes(html))


def test_an_admin_is_warned_and_must_confirm_before_acting_on_a_colleagues_claim(db, sms, ann, dana):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    ann_id = staff_id(db, "ann@clinic.test")
    html = dana.page(f"/dashboard/escalations/{esc.id}")
    assert "Ann Alvarez has this conversation." in html
    assert f'name="owner_ack" value="{ann_id}" required' in html
    refused = dana.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Dana here"}).get_data(as_text=True)
    assert any("tick the box to confirm you are acting on their claim" in f for f in flashes(refused))
    stale = dana.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Dana here", "owner_ack": ann_id + 99})
    assert any("tick the box" in f for f in flashes(stale.get_data(as_text=True)))
    ok = dana.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Dana here", "owner_ack": ann_id})
    assert "Reply queued for sending." in flashes(ok.get_data(as_text=True))
    with db.session() as s:
        detail = s.scalar(select(AuditLog.detail).where(AuditLog.action == "reply"))
        assert detail == f"admin acting on the claim of staff {ann_id}"


def test_the_escalation_links_to_the_contacts_history_and_reports_delivery_live(db, sms, ann):
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/claim")
    html = ann.page(f"/dashboard/escalations/{esc.id}")
    assert f'href="/dashboard/contacts/{esc.contact_id}">Contact history' in html
    ann.post(f"/dashboard/escalations/{esc.id}/reply", {"body": "Ann here"})
    with db.session() as s:
        row = s.scalar(select(Outbox).where(Outbox.kind == "reply"))
        row.status = "delivered"
    data = ann.get(f"/dashboard/escalations/{esc.id}/poll?after=0").get_json()
    assert data["delivery"][str(row.message_id)] == {"status": "delivered", "text": "SMS delivered"}


# --- on call ----------------------------------------------------------------------------------------

def test_staff_switch_themselves_on_call_admins_switch_anyone_and_it_is_audited(db, ann, bob, dana):
    bob_id, ann_id = staff_id(db, "bob@clinic.test"), staff_id(db, "ann@clinic.test")
    html = bob.page("/dashboard/on-call")
    assert "On call now:</strong> Ann Alvarez" in html
    assert "Bob Baker is now ON call." not in html
    html = bob.post("/dashboard/on-call", {"staff": bob_id, "on": "on"}).get_data(as_text=True)
    assert "You are now ON call." in flashes(html)
    html = bob.post("/dashboard/on-call", {"staff": ann_id, "on": "off"}).get_data(as_text=True)
    assert any("only an admin" in f for f in flashes(html))
    dana.post("/dashboard/on-call", {"staff": ann_id, "on": "off"})
    dana.post("/dashboard/on-call", {"staff": bob_id, "on": "off"})
    html = dana.page("/dashboard/on-call")
    assert "NOBODY IS ON CALL" in html
    with db.session() as s:
        details = [d for (d,) in s.execute(select(AuditLog.detail).where(AuditLog.action == "on_call")
                                           .order_by(AuditLog.id))]
    assert details == ["Bob Baker on call", "Ann Alvarez off call", "Bob Baker off call"]
    assert "Open the on-call panel." in dana.page("/dashboard/")


# --- numbers ----------------------------------------------------------------------------------------

def test_the_numbers_page_has_charts_tables_and_the_unmatched_questions_and_a_csv(db, sms, ann):
    sms.send("whats your favorite movie 123 456 7890")
    sms.send("Whats your favorite MOVIE 5551234567!!")
    sms.send(CRISIS, sender="+15555550122")
    html = ann.page("/dashboard/metrics?since=7d")
    assert '<svg class="chart" id="chart-texts"' in html and "<title id=\"chart-texts-title\">" in html
    assert '<span class="stat-n" id="stat-texts">3</span>' in html
    assert "<td>2</td><td>whats your favorite movie # # #</td>" not in html  # two different digit runs
    assert "whats your favorite movie #" in html and "5551234567" not in html and "7890" not in html
    resp = ann.get("/dashboard/metrics.csv?since=7d")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).splitlines()
    assert lines[0] == "metric,key,value" and "texts,,3" in lines and "escalations_by_tier,emergency,1" in lines


def test_purge_blanks_internal_notes_past_retention(db, sms, ann):
    from datetime import timedelta

    from bot.store.retention import PURGED, purge
    from bot.store.models import utcnow
    sms.send(CRISIS)
    esc = escalation(db)
    ann.post(f"/dashboard/escalations/{esc.id}/notes", {"body": "Lives with her mother on Elm St."})
    assert purge(db, timedelta(days=90)).notes == 0
    report = purge(db, timedelta(days=90), now=utcnow() + timedelta(days=91))
    assert report.notes >= 1
    with db.session() as s:
        assert s.scalar(select(Note.body)) == PURGED


def test_the_stale_form_page_is_served_with_the_page_policy_so_its_stylesheet_loads(db, sms, ann):
    sms.send(CRISIS)
    resp = ann.client.post(f"/dashboard/escalations/{escalation(db).id}/claim", data={"csrf_token": "stale"})
    assert resp.status_code == 400 and "Form expired" in resp.get_data(as_text=True)
    assert "style-src 'self'" in resp.headers["Content-Security-Policy"]
