"""Anonymous bearer-token sessions: a token is shown once; only its SHA-256 is stored.

A token is ``<conversation id>.<expiry>.<random>.<HMAC>``, keyed by the app's secret. Normally
it is looked up by its hash like any session; when the database cannot be asked, the HMAC alone
says which conversation it belongs to (and that it has not expired), so a visitor mid-chat still
gets the crisis reply and their message is spooled for that conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from flask import current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store.models import ChatSession, aware, utcnow
from bot.web.chat.strings import say

MAX_TOKEN = 128


def token_hash(token: str) -> str:
    """What is stored for a bearer token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _mac(body: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return hmac.new(key, b"chat-token:" + body.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def new_token(public_id: str, expires: datetime) -> str:
    """A bearer token for a conversation: random, and signed so it can be checked without the database."""
    body = f"{public_id}.{int(expires.timestamp())}.{secrets.token_urlsafe(24)}"
    return f"{body}.{_mac(body)}"


def bearer_token() -> str | None:
    """The request's bearer token, if it has one of a sane length."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN or not token.isascii():
        return None
    return token


def offline_address(token: str | None) -> str | None:
    """The conversation's contact address from the token's signature alone (None: forged, old-style, expired)."""
    if not token:
        return None
    body, _, mac = token.rpartition(".")
    public_id, _, rest = body.partition(".")
    expiry = rest.partition(".")[0]
    if not (public_id.isdigit() and len(public_id) == 16 and expiry.isdigit()):
        return None
    if not hmac.compare_digest(_mac(body), mac) or int(expiry) <= utcnow().timestamp():
        return None
    return f"web:{public_id}"


def current_session(s: Session) -> ChatSession | None:
    """The chat session for the request's bearer token, or None (missing, unknown, forged, expired)."""
    token = bearer_token()
    if token is None:
        return None
    chat = s.scalar(select(ChatSession).where(ChatSession.token_hash == token_hash(token)))
    if chat is None or aware(chat.expires_at) <= utcnow():
        return None
    return chat


def ip_hash() -> str:
    """A keyed hash of the client address: enough to count requests, useless to look anyone up."""
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return hmac.new(key, (request.remote_addr or "?").encode("utf-8"), hashlib.sha256).hexdigest()


def error(status: int, code: str, message: str, **headers):
    """A JSON error the widget shows: ``{error, message}``."""
    resp = jsonify(error=code, message=message)
    resp.status_code = status
    resp.headers.update(headers)
    return resp


def unauthorized(lang: str | None = None):
    """401 for a missing, forged or expired token: the widget starts a new chat."""
    return error(401, "unauthorized", say("expired", lang), **{"WWW-Authenticate": 'Bearer realm="chat"'})
