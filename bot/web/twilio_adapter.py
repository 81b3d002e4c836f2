"""Twilio at the edge: signature checks, form -> Inbound, Decision -> TwiML."""

from __future__ import annotations

import logging
from functools import wraps

from flask import abort, current_app, request
from twilio.twiml.messaging_response import MessagingResponse

from bot.core.engine import Inbound
from bot.core.states import Channel

logger = logging.getLogger(__name__)

TWIML = "text/xml; charset=utf-8"


def signed_url() -> str:
    """The URL Twilio signed: the configured public base URL, else the (proxy-fixed) request URL."""
    ext = current_app.extensions["helpline"]
    base = ext.settings.public_url
    if not base:
        return request.url
    url = base.rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    return url


def twilio_signed(view):
    """Reject requests whose X-Twilio-Signature does not match; never skipped when a token is set."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        ext = current_app.extensions["helpline"]
        if ext.validator is None:
            if ext.insecure:
                logger.warning("unsigned webhook accepted: development mode without TWILIO_AUTH_TOKEN")
                return view(*args, **kwargs)
            logger.error("webhook refused: TWILIO_AUTH_TOKEN is not configured")
            abort(403)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not ext.validator.validate(signed_url(), request.form, signature):
            logger.warning("webhook refused: bad or missing X-Twilio-Signature for %s", request.path)
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def inbound_from_form(form) -> Inbound:
    """Adapt Twilio's Messaging webhook form to the core's channel-neutral message."""
    sender = (form.get("From") or "").strip() or "unknown"
    try:
        media = max(0, int(form.get("NumMedia") or 0))
    except ValueError:
        media = 0
    return Inbound(
        sender=sender,
        body=form.get("Body") or "",
        channel=Channel.WHATSAPP if sender.startswith("whatsapp:") else Channel.SMS,
        message_id=(form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or None),
        media_count=media,
    )


def twiml(reply: str | None) -> tuple[str, int, dict]:
    """A TwiML response with one <Message>, or an empty one (Twilio then sends nothing)."""
    resp = MessagingResponse()
    if reply:
        resp.message(reply)
    return str(resp), 200, {"Content-Type": TWIML}
