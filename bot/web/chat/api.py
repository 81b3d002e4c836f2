"""The JSON API the widget calls: start a chat, send a message, poll, leave a call-back number."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from uuid import uuid4

from flask import abort, current_app, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core.engine import Inbound
from bot.core.states import Author, Channel, DecisionKind, Direction, EscalationStatus
from bot.phones import callback_number
from bot.staff import actions
from bot.store.limits import Limit
from bot.store.models import ChatSession, Contact, Escalation, Message, aware, is_open, mask, utcnow
from bot.web.chat import bp
from bot.web.ids import parse_id
from bot.store.db import is_outage
from bot.store.text import storable
from bot.web.chat.sessions import (bearer_token, current_session, error, ip_hash, new_token, offline_address,
                                   token_hash, unauthorized)
from bot.web.chat.strings import content, language, say, widget_strings

logger = logging.getLogger(__name__)

MAX_TEXT = 1600  # characters in one message (Twilio's SMS maximum, so both channels read alike)
POLL_MS = 2500
# Messages per conversation, messages per address, new chats per address (bot.store.limits).
CONVERSATION_LIMIT = Limit("chat_conversation", 12, timedelta(minutes=5))
ADDRESS_LIMIT = Limit("chat_address", 60, timedelta(minutes=10))
START_LIMIT = Limit("chat_start", 10, timedelta(hours=1))


def _ext():
    return current_app.extensions["helpline"]


def _iso(dt: datetime | None) -> str | None:
    return aware(dt).isoformat() if dt is not None else None


def _json_body() -> dict:
    """The request's JSON object; only JSON is accepted (so a cross-site form post needs a preflight)."""
    if not request.is_json:
        abort(415)
    data = request.get_json(silent=True)
    if data is None and request.content_length:
        abort(400)
    if data is not None and not isinstance(data, dict):
        abort(400)
    return data or {}


def _open_escalation(s: Session, contact_id: int) -> Escalation | None:
    return s.scalar(select(Escalation).where(Escalation.contact_id == contact_id,
                                             is_open(Escalation.status)))


def _message_json(m: Message) -> dict:
    if m.direction == Direction.IN:
        kind = "visitor"
    else:
        kind = m.kind if m.kind in (Author.STAFF, Author.FOLLOWUP) else Author.BOT
    return {"id": m.id, "kind": kind, "text": m.body or "", "created_at": _iso(m.created_at)}


def _messages(s: Session, contact_id: int, after: int, inbound: bool = False, limit: int = 200) -> list[dict]:
    """The conversation after a message id, oldest first; the visitor's own texts only on request."""
    q = select(Message).where(Message.contact_id == contact_id, Message.id > after)
    if not inbound:
        q = q.where(Message.direction == Direction.OUT)
    return [_message_json(m) for m in s.scalars(q.order_by(Message.id).limit(limit))]


def _conversation_state(s: Session, contact_id: int) -> dict:
    esc = _open_escalation(s, contact_id)
    staff = s.scalar(select(func.count(Message.id)).where(
        Message.contact_id == contact_id, Message.direction == Direction.OUT, Message.kind == Author.STAFF))
    # A claim is a staff member joining: the widget says so then, not only at their first message.
    claimed = esc is not None and esc.status == EscalationStatus.CLAIMED
    return {"escalated": esc is not None, "staff_joined": bool(staff) or claimed}


def _after() -> int:
    """The ``after`` message id (query string or JSON body); missing is 0, malformed or too big a 400."""
    if "after" in request.args:
        return parse_id(request.args["after"])
    body = request.get_json(silent=True)
    return parse_id(body.get("after") if isinstance(body, dict) else None)


def _limits(address: str, ip: str, escalated: bool) -> list[tuple[Limit, str]]:
    """The flood limits a visitor message counts against (the helpline never refuses a crisis).

    A conversation a human is handling has no per-conversation limit: someone talking to staff
    may type in bursts. The per-address limit still applies to everything. Subjects need no
    database (the conversation's address, the client's keyed address), so the limits are counted
    in the spool while the database is down.
    """
    limits = [(ADDRESS_LIMIT, ip)]
    if not escalated:
        limits.append((CONVERSATION_LIMIT, f"chat:{address}"))
    return limits


@bp.get("/api/strings")
def strings():
    """The widget's words in one language (``?lang=es``), from replies/: it asks before drawing anything."""
    lang = language(request.args.get("lang")) or "en"
    c = content()
    return jsonify(lang=lang, clinic={"name": c.clinic_name, "phone": c.clinic_phone},
                   max_length=MAX_TEXT, strings=widget_strings(lang))


def _unavailable(lang: str | None):
    """503 while the database is down, in words: call or text the clinic; 911 and 988 in danger."""
    text = _ext().helpline.bot.content.message("trouble", lang or "en")
    return error(503, "unavailable", text, **{"Retry-After": "30"})


@bp.post("/api/start")
def start():
    """A new anonymous conversation: its bearer token (shown once) and the greeting.

    With the database down no conversation can be opened: 503, saying to call or text the clinic.
    """
    data = _json_body()
    lang = language(data.get("lang"))
    ext = _ext()
    ip = ip_hash()
    now = utcnow()
    try:
        with ext.db.session() as s:
            refused = ext.helpline.limiter.hit(s, START_LIMIT, ip, now)
        if refused:
            logger.warning("web chat: new-chat limit reached for one address")
            return error(429, "rate_limited", say("start_limited", lang),
                         **{"Retry-After": str(int(START_LIMIT.window.total_seconds()))})
        with ext.db.session() as s:
            while True:
                public_id = f"{secrets.randbelow(10 ** 16):016d}"
                if s.scalar(select(Contact.id).where(Contact.address == f"web:{public_id}")) is None:
                    break
            contact = Contact(address=f"web:{public_id}", channel=Channel.WEB, language=lang, created_at=now,
                              last_seen_at=now)
            s.add(contact)
            s.flush()
            expires = now + timedelta(hours=ext.settings.chat_token_hours)
            token = new_token(public_id, expires)
            s.add(ChatSession(token_hash=token_hash(token), contact_id=contact.id, created_at=now,
                              expires_at=expires, ip_hash=ip))
            masked = contact.masked
    except Exception as exc:
        if not is_outage(exc):
            raise
        logger.error("web chat not started: database unavailable (%s)", type(exc).__name__)
        return _unavailable(lang)
    logger.info("web chat started: %s", masked)
    greeting = {"id": 0, "kind": "bot", "text": say("greeting", lang), "created_at": _iso(now)}
    return jsonify(token=token, conversation=public_id, expires_at=_iso(expires), poll_ms=POLL_MS,
                   max_length=MAX_TEXT, messages=[greeting]), 201


@bp.post("/api/messages")
def send():
    """One visitor message through the helpline; answers with the reply and anything new since ``after``.

    With the database down, the token's signature names the conversation: the visitor gets the
    core's reply (the crisis reply, or "call us") and the message is spooled for that conversation.
    """
    data = _json_body()
    text = data.get("text")
    after = _after()
    ext = _ext()
    now = utcnow()
    contact_id, lang, escalated = None, None, False
    try:
        with ext.db.session() as s:
            chat = current_session(s)
            if chat is None:
                return unauthorized()
            contact = s.get(Contact, chat.contact_id)
            contact_id, address, lang = contact.id, contact.address, contact.language
            escalated = _open_escalation(s, contact_id) is not None
    except Exception as exc:
        if not is_outage(exc):
            raise
        address = offline_address(bearer_token())
        if address is None:
            return _unavailable(lang)
    if not isinstance(text, str) or not text.strip():
        return error(400, "empty", say("empty", lang))
    if len(text) > MAX_TEXT:
        return error(413, "too_large", say("too_long", lang))
    outcome = ext.helpline.handle(Inbound(sender=address, body=storable(text), channel=Channel.WEB,
                                          message_id=f"WEB{uuid4().hex}"),
                                  limits=_limits(address, ip_hash(), escalated))
    if outcome.refused:
        logger.warning("web chat: message limit reached for %s", mask(address))
        return error(429, "rate_limited", say("limited", lang), **{"Retry-After": "60"})
    messages, state = [], {"escalated": bool(outcome.decision and outcome.decision.triage.escalate) or escalated,
                           "staff_joined": False}
    if outcome.stored and contact_id is not None:
        try:
            with ext.db.session() as s:
                messages = _messages(s, contact_id, after)
                state = _conversation_state(s, contact_id)
                lang = s.scalar(select(Contact.language).where(Contact.id == contact_id)) or lang
        except Exception as exc:
            if not is_outage(exc):
                raise
    if outcome.reply and not outcome.stored:
        # The database failed: the reply (the crisis reply, or "call us") still reaches the visitor.
        messages.append({"id": None, "kind": "bot", "text": outcome.reply, "created_at": _iso(now)})
    kind = outcome.decision.kind if outcome.decision else None
    notice = None
    if kind == DecisionKind.LIMITED:
        notice = say("reply_limited", lang)
    elif kind == DecisionKind.OPTOUT:
        notice = say("optout", lang)
    return jsonify(reply=outcome.reply, messages=messages, notice=notice, **state)


@bp.get("/api/messages")
def poll():
    """What the staff, the bot or the follow-up wrote since ``after`` (``history=1`` adds the visitor's)."""
    after = _after()
    try:
        with _ext().db.session() as s:
            chat = current_session(s)
            if chat is None:
                return unauthorized()
            messages = _messages(s, chat.contact_id, after, inbound=request.args.get("history") == "1")
            state = _conversation_state(s, chat.contact_id)
    except Exception as exc:
        if not is_outage(exc):
            raise
        return _unavailable(None)
    return jsonify(messages=messages, poll_ms=POLL_MS, **state)


@bp.post("/api/callback")
def callback():
    """A number for staff to call, kept only on the conversation's open escalation (409 without one)."""
    data = _json_body()
    db = _ext().db
    try:
        with db.session() as s:
            chat = current_session(s)
            if chat is None:
                return unauthorized()
            contact_id = chat.contact_id
            lang = s.scalar(select(Contact.language).where(Contact.id == contact_id))
        phone = callback_number(data.get("phone"))
        if phone is None:
            return error(400, "invalid_phone", say("bad_phone", lang))
        esc_id = actions.leave_callback_number(db, contact_id, phone)
    except Exception as exc:
        if not is_outage(exc):
            raise
        return _unavailable(None)
    if esc_id is None:
        return error(409, "no_escalation", say("no_escalation", lang))
    logger.warning("escalation %d: web chat visitor left a call-back number %s", esc_id, mask(phone))
    return jsonify(ok=True, message=say("callback_saved", lang, last4=phone[-4:]))
