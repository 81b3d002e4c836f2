"""A claimed conversation is the staff member's: the bot sends nothing, the owner is alerted, and a
crisis text nobody answers within the window gets the crisis reply and pages the owner again.

Real SQLite and PostgreSQL; Twilio's REST API mocked with ``responses`` (the fixtures of
test_paging); time moves by passing ``now=`` into the dispatcher.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.core.engine import Inbound, State
from bot.core.states import Channel, DecisionKind
from bot.staff import actions
from bot.store.models import Escalation, Message, Outbox, aware
from conftest import TEXTER
from test_paging import (ALICE, BOB, EMERGENCY, ROUTINE, content, dispatcher, get_escalation, outbox,  # noqa: F401
                         seconds, staff, the_escalation, twilio)

SECOND_CRISIS = "he is breathing but still wont wake up, ambulance coming"


def test_the_core_sends_nothing_while_claimed_but_keeps_the_verdict_and_the_held_crisis_reply(bot):
    free = bot.decide(Inbound("+15555550100", SECOND_CRISIS), State(escalated=True))
    held = bot.decide(Inbound("+15555550100", SECOND_CRISIS), State(escalated=True, claimed=True))
    assert free.kind == DecisionKind.CRISIS and free.reply
    assert held.kind == DecisionKind.SILENT and held.reply is None
    assert held.triage == free.triage and held.triage.pages
    # Sent only after the owner was paged again, so it may truly say staff were alerted.
    assert held.held_reply == free.alerted_reply and "staff have been alerted" in held.held_reply
    for word in ("HELP", "ESPANOL", "what are your hours"):
        d = bot.decide(Inbound("+15555550100", word), State(escalated=True, claimed=True))
        assert d.reply is None and d.held_reply is None, word
    stop = bot.decide(Inbound("+15555550100", "STOP"), State(escalated=True, claimed=True))
    assert stop.opt_out is True and stop.reply is None
    assert bot.decide(Inbound("+1", "ESPANOL"), State(claimed=True)).remember_language == "es"


def claimed_by_alice(db, sms):
    alice = staff(db, "Alice", ALICE)
    sms.send(EMERGENCY)
    esc = the_escalation(db)
    assert actions.claim(db, esc.id, alice)
    return alice, esc


def test_a_crisis_text_in_a_claimed_conversation_gets_no_automated_reply_and_is_held(db, sms):
    _, esc = claimed_by_alice(db, sms)
    reply = sms.send(SECOND_CRISIS)
    assert reply.status == 200 and reply.text is None and "<Message" not in reply.raw
    after = get_escalation(db, esc.id)
    assert after.held_at is not None and "911" in after.held_reply
    with db.session() as s:
        inbound = s.scalars(select(Message).where(Message.direction == "in").order_by(Message.id.desc())).first()
        assert (inbound.kind, inbound.severity, inbound.escalation_id) == ("silent", "emergency", esc.id)
        assert s.scalar(select(Message).where(Message.direction == "out", Message.id > inbound.id)) is None
        # Nobody else is paged for it: the owner is alerted on the dashboard first.
        assert s.scalar(select(Outbox).where(Outbox.kind == "page", Outbox.created_at >= inbound.created_at)) is None


def test_unanswered_for_the_window_the_texter_gets_the_crisis_reply_and_the_owner_is_paged(db, sms, dispatcher, twilio):
    alice, esc = claimed_by_alice(db, sms)
    staff(db, "Bob", BOB)
    dispatcher.tick()
    sms.send(SECOND_CRISIS)
    held = get_escalation(db, esc.id)
    held_at = aware(held.held_at)
    before = len(twilio.posts)
    dispatcher.tick(now=held_at + seconds(119))
    assert len(twilio.posts) == before and get_escalation(db, esc.id).held_at is not None
    dispatcher.tick(now=held_at + seconds(121))
    to_texter = twilio.to(TEXTER)
    assert len(to_texter) == 1 and to_texter[0]["Body"] == held.held_reply
    pages = twilio.to(ALICE)
    assert pages[-1]["Body"].startswith("Solace Hills helpline: CRISIS TEXT, no staff reply in 2 min")
    assert SECOND_CRISIS not in pages[-1]["Body"] and f"#{esc.id}" in pages[-1]["Body"]
    assert not [p for p in twilio.to(BOB) if "CRISIS TEXT" in p["Body"]]  # only the owner
    after = get_escalation(db, esc.id)
    assert after.held_at is None and after.held_reply is None and after.status == "claimed"
    with db.session() as s:
        bot_msg = s.scalars(select(Message).where(Message.direction == "out").order_by(Message.id.desc())).first()
        assert bot_msg.kind == "bot" and bot_msg.body == held.held_reply and bot_msg.escalation_id == esc.id
    dispatcher.tick(now=held_at + seconds(400))
    assert len(twilio.to(TEXTER)) == 1  # once


def test_a_staff_reply_within_the_window_answers_it_and_nothing_automated_follows(db, sms, dispatcher, twilio):
    alice, esc = claimed_by_alice(db, sms)
    sms.send(SECOND_CRISIS)
    held_at = aware(get_escalation(db, esc.id).held_at)
    actions.reply(db, esc.id, alice, "Alice here. Stay with him; is the ambulance there yet?")
    dispatcher.tick(now=held_at + seconds(300))
    bodies = [p["Body"] for p in twilio.to(TEXTER)]
    assert bodies == ["Alice here. Stay with him; is the ambulance there yet?"]
    assert not [p for p in twilio.to(ALICE) if "CRISIS TEXT" in p["Body"]]


def test_a_web_chat_claimed_conversation_gets_the_held_reply_in_the_chat_not_by_sms(app, db, dispatcher, twilio):
    alice = staff(db, "Alice", ALICE)
    helpline = app.extensions["helpline"].helpline
    helpline.handle(Inbound("web:abc", EMERGENCY, channel=Channel.WEB, message_id="w1"))
    esc = the_escalation(db)
    actions.claim(db, esc.id, alice)
    outcome = helpline.handle(Inbound("web:abc", SECOND_CRISIS, channel=Channel.WEB, message_id="w2"))
    assert outcome.reply is None
    held_at = aware(get_escalation(db, esc.id).held_at)
    dispatcher.tick(now=held_at + seconds(121))
    assert not [p for p in twilio.posts if p["To"] == "web:abc"]
    with db.session() as s:
        last = s.scalars(select(Message).where(Message.direction == "out").order_by(Message.id.desc())).first()
        assert last.kind == "bot" and "911" in last.body
    assert [p["To"] for p in twilio.posts if "CRISIS TEXT" in p["Body"]] == [ALICE]


def test_release_keeps_the_held_reply_due_and_resolve_drops_it(db, sms, dispatcher, twilio):
    alice, esc = claimed_by_alice(db, sms)
    sms.send(SECOND_CRISIS)
    actions.release(db, esc.id, alice)
    assert get_escalation(db, esc.id).held_at is not None
    actions.claim(db, esc.id, alice)
    actions.resolve(db, esc.id, alice, "referred_911")
    assert get_escalation(db, esc.id).held_at is None


def test_first_claim_and_first_reply_times_survive_release_and_transfer(db, sms):
    alice, esc = claimed_by_alice(db, sms)
    bob = staff(db, "Bob", BOB)
    first = aware(get_escalation(db, esc.id).first_claimed_at)
    assert first is not None
    actions.release(db, esc.id, alice)
    actions.claim(db, esc.id, bob)
    actions.reply(db, esc.id, bob, "Bob here")
    actions.transfer(db, esc.id, bob, alice.id, None, clinic="Solace Hills")
    after = get_escalation(db, esc.id)
    assert aware(after.first_claimed_at) == first and after.first_reply_at is not None
    assert after.claimed_by_id == alice.id


def test_a_crisis_text_replayed_from_the_outage_spool_is_not_held_again(app, db, sms):
    # During the outage the texter already got the crisis reply (the bot could not know of the claim).
    from bot.store.models import utcnow
    _, esc = claimed_by_alice(db, sms)
    helpline = app.extensions["helpline"].helpline
    helpline.spool.append(Inbound(TEXTER, SECOND_CRISIS, message_id="SMspooled"), utcnow())
    assert helpline.replay_spool() == 1
    after = get_escalation(db, esc.id)
    assert after.held_at is None and after.message_count == 2
