"""The Twilio Messaging webhook: POST /sms (SMS and WhatsApp)."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, request

from bot.staff.status import record_status
from bot.web.twilio_adapter import MalformedWebhook, inbound_from_form, twilio_signed, twiml, valid_message_sid

logger = logging.getLogger(__name__)

bp = Blueprint("sms", __name__)


@bp.post("/sms")
@twilio_signed
def inbound_sms():
    """Answer one inbound text with TwiML; the reply goes back on the channel it came from."""
    ext = current_app._get_current_object().extensions["helpline"]  # not through the proxies: see twilio_signed
    try:
        msg = inbound_from_form(request._get_current_object().form, ext.settings.twilio_account_sid)
    except MalformedWebhook as err:
        logger.warning("webhook refused: %s", err)
        abort(400)
    outcome = ext.helpline.handle(msg)
    return twiml(outcome.reply)


@bp.post("/sms/status")
@twilio_signed
def status_callback():
    """Twilio's outbound status callback: record delivered/failed; a failed page fails over."""
    ext = current_app.extensions["helpline"]
    if not valid_message_sid(request.form.get("MessageSid")):
        logger.warning("status callback refused: MessageSid is not in Twilio's format")
        abort(400)
    record_status(ext.db, ext.dispatcher_for_callbacks(), request.form.get("MessageSid", ""),
                  request.form.get("MessageStatus", ""), request.form.get("ErrorCode"))
    return "", 204
