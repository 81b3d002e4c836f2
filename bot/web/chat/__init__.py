"""Web chat: the embeddable widget, its JSON API under /chat/api, and a demo clinic page.

The adapter is thin, like ``bot/web/sms.py``: each visitor message becomes an
``Inbound(channel="web")`` for ``Helpline.handle``, so crisis triage, the crisis reply,
escalation, paging and bot silence while staff have the conversation are exactly the SMS ones.
What is particular to the web lives here:

- **Anonymous bearer tokens.** ``POST /chat/api/start`` hands out ``secrets.token_urlsafe(32)``;
  only its SHA-256 is stored (``chat_sessions``), it expires after ``HELPLINE_CHAT_TOKEN_HOURS``,
  and no cookie is ever set, so the API needs no CSRF token and cross-site requests carry nothing.
- **CORS only for the clinic's own sites** (``HELPLINE_CHAT_ORIGINS``); the widget script itself
  is a static file any page may load.
- **Rate limits in the database** (they hold across processes and hosts), per conversation and per
  address. A message over a limit is triaged before it is refused: anything that escalates is
  never limited, and the refusal itself names the clinic number, 911 and 988.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from uuid import uuid4

from flask import Blueprint, abort, current_app, jsonify, render_template, request, send_from_directory
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from bot.core.engine import Inbound
from bot.core.states import OPEN_STATUSES, Author, Channel, Direction
from bot.staff.actions import audit
from bot.store.limits import Limit
from bot.store.models import ChatSession, Contact, Escalation, Message, aware, mask, utcnow

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
bp = Blueprint("chat", __name__, url_prefix="/chat", template_folder="templates",
               static_folder="static", static_url_path="/static")

MAX_TEXT = 1600  # characters in one message (Twilio's SMS maximum, so both channels read alike)
MAX_BODY = 32 * 1024  # bytes in one API request: 1,600 escaped emoji still fit
POLL_MS = 2500
# Messages per conversation, messages per address, new chats per address (bot.store.limits).
CONVERSATION_LIMIT = Limit("chat_conversation", 12, timedelta(minutes=5))
ADDRESS_LIMIT = Limit("chat_address", 60, timedelta(minutes=10))
START_LIMIT = Limit("chat_start", 10, timedelta(hours=1))
MAX_TOKEN = 128

DEMO_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

# Text the API itself writes (the bot's replies come from replies/ as for SMS).
STRINGS = {
    "en": {
        "greeting": "Hi, I'm the {clinic} automated assistant. Ask me about diazepam (Valium) dependency, "
                    "withdrawal, detox, costs or hours. If you are in danger, call 911, or call or text 988 "
                    "(24/7). Staff read every crisis message and can join this chat. You can also call us "
                    "at {phone}.",
        "limited": "You are sending messages faster than we can answer. Please wait a few minutes, or call "
                   "us at {phone}. If you are in danger, call 911 now, or call or text 988 (24/7).",
        "start_limited": "Too many new chats from this connection. Please call us at {phone}. If you are in "
                         "danger, call 911 now, or call or text 988 (24/7).",
        "reply_limited": "You have reached the limit of automated replies for now. Please call us at {phone}. "
                         "If you are in danger, call 911, or call or text 988 (24/7).",
        "optout": "Automated replies are off. Send START to turn them back on, or call us at {phone}. "
                  "If you are in danger, call 911, or call or text 988.",
        "too_long": "That message is too long (at most 1,600 characters). Please send it in parts.",
        "expired": "This chat has ended. Start a new chat, or call us at {phone}.",
        "bad_phone": "Please enter a phone number like (562) 555-0123 or +1 562 555 0123.",
        "no_escalation": "A call back is offered once staff have been alerted. Call us at {phone}, or 911 "
                         "in an emergency.",
        "callback_saved": "Thank you. Staff will call you at the number ending {last4}. If you are in danger, "
                          "call 911 now.",
    },
    "es": {
        "greeting": "Hola, soy el asistente automático de {clinic}. Pregúntame sobre la dependencia del "
                    "diazepam (Valium), la abstinencia, la desintoxicación, costos u horarios. Si corres "
                    "peligro, llama al 911, o llama al 988 y marca 2. El personal lee cada mensaje de crisis "
                    "y puede unirse a este chat. También puedes llamarnos al {phone}.",
        "limited": "Estás enviando mensajes más rápido de lo que podemos responder. Espera unos minutos o "
                   "llámanos al {phone}. Si corres peligro, llama al 911 ahora, o llama al 988 y marca 2.",
        "start_limited": "Demasiados chats nuevos desde esta conexión. Llámanos al {phone}. Si corres "
                         "peligro, llama al 911 ahora, o llama al 988 y marca 2.",
        "reply_limited": "Llegaste al límite de respuestas automáticas por ahora. Llámanos al {phone}. Si "
                         "corres peligro, llama al 911, o llama al 988 y marca 2.",
        "optout": "Las respuestas automáticas están apagadas. Envía START para activarlas, o llámanos al "
                  "{phone}. Si corres peligro, llama al 911 o al 988.",
        "too_long": "Ese mensaje es demasiado largo (máximo 1.600 caracteres). Envíalo en partes.",
        "expired": "Este chat terminó. Empieza un chat nuevo, o llámanos al {phone}.",
        "bad_phone": "Escribe un número como (562) 555-0123 o +1 562 555 0123.",
        "no_escalation": "Ofrecemos una llamada cuando el personal ha sido alertado. Llámanos al {phone}, o "
                         "al 911 en una emergencia.",
        "callback_saved": "Gracias. El personal te llamará al número que termina en {last4}. Si corres "
                          "peligro, llama al 911 ahora.",
    },
}

_PHONE_CHARS = re.compile(r"\+?[\d\s().-]+")


def normalize_phone(raw: object) -> str | None:
    """E.164 from what a visitor typed: '+' and 8-15 digits, or a US 10-digit number (made +1...)."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    text = raw.strip()
    if not _PHONE_CHARS.fullmatch(text):
        return None
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        return "+" + digits if 8 <= len(digits) <= 15 and digits[0] != "0" else None
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) == 10 and digits[0] in "23456789":
        return "+1" + digits
    return None


def token_hash(token: str) -> str:
    """What is stored for a bearer token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _ext():
    return current_app.extensions["helpline"]


def _say(key: str, language: str | None, **extra) -> str:
    content = _ext().helpline.bot.content
    text = STRINGS.get(language or "en", STRINGS["en"])[key]
    return text.format(clinic=content.clinic_name, phone=content.clinic_phone, **extra)


def _ip_hash() -> str:
    """A keyed hash of the client address: enough to count requests, useless to look anyone up."""
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return hmac.new(key, (request.remote_addr or "?").encode("utf-8"), hashlib.sha256).hexdigest()


def _lang(value: object) -> str | None:
    return value if value in ("en", "es") else None


def _iso(dt: datetime | None) -> str | None:
    return aware(dt).isoformat() if dt is not None else None


def _error(status: int, error: str, message: str, **headers):
    resp = jsonify(error=error, message=message)
    resp.status_code = status
    resp.headers.update(headers)
    return resp


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


def _session(s: Session) -> ChatSession | None:
    """The chat session for the request's bearer token, or None (missing, unknown, forged, expired)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
        return None
    chat = s.scalar(select(ChatSession).where(ChatSession.token_hash == token_hash(token)))
    if chat is None or aware(chat.expires_at) <= utcnow():
        return None
    return chat


def _unauthorized(language: str | None = None):
    return _error(401, "unauthorized", _say("expired", language), **{"WWW-Authenticate": 'Bearer realm="chat"'})


def _open_escalation(s: Session, contact_id: int) -> Escalation | None:
    return s.scalar(select(Escalation).where(Escalation.contact_id == contact_id,
                                             Escalation.status.in_(OPEN_STATUSES)))


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
    return {"escalated": esc is not None, "staff_joined": bool(staff)}


def _after() -> int:
    try:
        return max(0, int(request.args.get("after") or (request.get_json(silent=True) or {}).get("after") or 0))
    except (TypeError, ValueError, AttributeError):
        return 0


def _limits(s: Session, chat: ChatSession, ip: str) -> list[tuple[Limit, str]]:
    """The flood limits a visitor message counts against (the helpline never refuses a crisis).

    A conversation a human is handling has no per-conversation limit: someone talking to staff
    may type in bursts. The per-address limit still applies to everything.
    """
    limits = [(ADDRESS_LIMIT, ip)]
    if _open_escalation(s, chat.contact_id) is None:
        limits.append((CONVERSATION_LIMIT, f"chat:{chat.contact_id}"))
    return limits


# --- CORS, headers, errors ----------------------------------------------------------------------------

def _allowed_origin(origin: str | None) -> bool:
    if not origin:
        return False
    allowed = {o.lower() for o in _ext().settings.chat_origins}
    return origin.lower().rstrip("/") in allowed


def _is_api() -> bool:
    return request.path.startswith("/chat/api/")


@bp.before_request
def limit_body():
    """API requests are small JSON objects: refuse big bodies before reading them."""
    if _is_api():
        request.max_content_length = MAX_BODY
        if request.content_length is not None and request.content_length > MAX_BODY:
            abort(413)


@bp.after_request
def api_headers(resp):
    """CORS for the configured clinic sites only (origin echoed, no credentials); nothing cached."""
    if _is_api():
        resp.headers["Cache-Control"] = "no-store"
        resp.vary.add("Origin")
        origin = request.headers.get("Origin")
        if _allowed_origin(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            if request.method == "OPTIONS":
                resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
                resp.headers["Access-Control-Max-Age"] = "600"
    return resp


@bp.errorhandler(HTTPException)
def api_error(err: HTTPException):
    """JSON errors for the widget; a message too long says so in words."""
    if not _is_api():
        return err
    if err.code == 413:
        return _error(413, "too_large", _say("too_long", None))
    return _error(err.code or 500, err.name.lower().replace(" ", "_"), err.description or err.name)


# --- the widget and the demo page -----------------------------------------------------------------

@bp.get("/widget.js")
def widget():
    """The widget script: static, for any site's <script> tag."""
    resp = send_from_directory(STATIC, "widget.js", mimetype="text/javascript", max_age=300)
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    resp.headers["Access-Control-Allow-Origin"] = "*"  # no credentials; lets a page use SRI with crossorigin
    return resp


@bp.get("/demo")
def demo():
    """A sample clinic page with the widget on it (http://127.0.0.1:5000/chat/demo under make run)."""
    resp = current_app.make_response(render_template("chat/demo.html"))
    resp.headers["Content-Security-Policy"] = DEMO_CSP
    return resp


# --- the API -----------------------------------------------------------------------------------------------

@bp.post("/api/start")
def start():
    """A new anonymous conversation: its bearer token (shown once) and the greeting."""
    data = _json_body()
    language = _lang(data.get("lang"))
    ext = _ext()
    ip = _ip_hash()
    now = utcnow()
    with ext.db.session() as s:
        refused = ext.helpline.limiter.hit(s, START_LIMIT, ip, now)
    if refused:
        logger.warning("web chat: new-chat limit reached for one address")
        return _error(429, "rate_limited", _say("start_limited", language),
                      **{"Retry-After": str(int(START_LIMIT.window.total_seconds()))})
    with ext.db.session() as s:
        while True:
            public_id = f"{secrets.randbelow(10 ** 16):016d}"
            if s.scalar(select(Contact.id).where(Contact.address == f"web:{public_id}")) is None:
                break
        contact = Contact(address=f"web:{public_id}", channel=Channel.WEB, language=language, created_at=now,
                          last_seen_at=now)
        s.add(contact)
        s.flush()
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=ext.settings.chat_token_hours)
        s.add(ChatSession(token_hash=token_hash(token), contact_id=contact.id, created_at=now,
                          expires_at=expires, ip_hash=ip))
        masked = contact.masked
    logger.info("web chat started: %s", masked)
    greeting = {"id": 0, "kind": "bot", "text": _say("greeting", language), "created_at": _iso(now)}
    return jsonify(token=token, conversation=public_id, expires_at=_iso(expires), poll_ms=POLL_MS,
                   max_length=MAX_TEXT, messages=[greeting]), 201


@bp.post("/api/messages")
def send():
    """One visitor message through the helpline; answers with the reply and anything new since ``after``."""
    data = _json_body()
    text = data.get("text")
    after = _after()
    ext = _ext()
    now = utcnow()
    with ext.db.session() as s:
        chat = _session(s)
        if chat is None:
            return _unauthorized()
        contact = s.get(Contact, chat.contact_id)
        contact_id, address, language = contact.id, contact.address, contact.language
        if not isinstance(text, str) or not text.strip():
            return _error(400, "empty", "Type a message to send.")
        if len(text) > MAX_TEXT:
            return _error(413, "too_large", _say("too_long", language))
        limits = _limits(s, chat, _ip_hash())
    outcome = ext.helpline.handle(Inbound(sender=address, body=text, channel=Channel.WEB,
                                          message_id=f"WEB{uuid4().hex}"), limits=limits)
    if outcome.refused:
        logger.warning("web chat: message limit reached for %s", mask(address))
        return _error(429, "rate_limited", _say("limited", language), **{"Retry-After": "60"})
    with ext.db.session() as s:
        messages = _messages(s, contact_id, after)
        state = _conversation_state(s, contact_id)
        language = s.scalar(select(Contact.language).where(Contact.id == contact_id)) or language
    if outcome.reply and not outcome.stored:
        # The database failed: the reply (the crisis reply, or "call us") still reaches the visitor.
        messages.append({"id": None, "kind": "bot", "text": outcome.reply, "created_at": _iso(now)})
    kind = outcome.decision.kind if outcome.decision else None
    notice = None
    if kind == "limited":
        notice = _say("reply_limited", language)
    elif kind == "optout":
        notice = _say("optout", language)
    return jsonify(reply=outcome.reply, messages=messages, notice=notice, **state)


@bp.get("/api/messages")
def poll():
    """What the staff, the bot or the follow-up wrote since ``after`` (``history=1`` adds the visitor's)."""
    after = _after()
    with _ext().db.session() as s:
        chat = _session(s)
        if chat is None:
            return _unauthorized()
        messages = _messages(s, chat.contact_id, after, inbound=request.args.get("history") == "1")
        state = _conversation_state(s, chat.contact_id)
    return jsonify(messages=messages, poll_ms=POLL_MS, **state)


@bp.post("/api/callback")
def callback():
    """A number for staff to call, kept only on the conversation's open escalation (409 without one)."""
    data = _json_body()
    with _ext().db.session() as s:
        chat = _session(s)
        if chat is None:
            return _unauthorized()
        contact = s.get(Contact, chat.contact_id)
        language = contact.language
        phone = normalize_phone(data.get("phone"))
        if phone is None:
            return _error(400, "invalid_phone", _say("bad_phone", language))
        esc = _open_escalation(s, contact.id)
        if esc is None:
            return _error(409, "no_escalation", _say("no_escalation", language))
        esc.callback_number = phone
        esc.updated_at = utcnow()
        audit(s, None, "callback_number", esc.id, "left by the web chat visitor")
        esc_id = esc.id
    logger.warning("escalation %d: web chat visitor left a call-back number %s", esc_id, mask(phone))
    return jsonify(ok=True, message=_say("callback_saved", language, last4=phone[-4:]))
