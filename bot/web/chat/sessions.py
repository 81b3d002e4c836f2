"""Anonymous bearer-token sessions: a token is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store.models import ChatSession, aware, utcnow
from bot.web.chat.strings import say

MAX_TOKEN = 128


def token_hash(token: str) -> str:
    """What is stored for a bearer token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def current_session(s: Session) -> ChatSession | None:
    """The chat session for the request's bearer token, or None (missing, unknown, forged, expired)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
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
