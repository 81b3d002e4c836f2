"""The Twilio Messaging webhook: POST /sms (SMS and WhatsApp)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, request

from bot.staff.status import record_status
from bot.web.twilio_adapter import inbound_from_form, twilio_signed, twiml

logger = logging.getLogger(__name__)

bp = Blueprint("sms", __name__)


@bp.post("/sms")
@twilio_signed
def inbound_sms():
    """Answer one inbound text with TwiML; the reply goes back on the channel it came from."""
    helpline = current_app.extensions["helpline"].helpline
    msg = inbound_from_form(request.form)
    outcome = helpline.handle(msg)
    return twiml(outcome.reply)


@bp.post("/sms/status")
@twilio_signed
def status_callback():
    """Twilio's outbound status callback: record delivered/failed; a failed page fails over."""
    ext = current_app.extensions["helpline"]
    record_status(ext.db, ext.dispatcher_for_callbacks(), request.form.get("MessageSid", ""),
                  request.form.get("MessageStatus", ""), request.form.get("ErrorCode"))
    return "", 204
