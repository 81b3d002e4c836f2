"""Twilio at the edge: signature checks, form -> Inbound, Decision -> TwiML."""

from __future__ import annotations

import base64
import hmac
import logging
import re
from functools import wraps
from xml.sax.saxutils import escape

from flask import Request, abort, current_app, request

from bot.core.engine import Inbound
from bot.core.states import Channel
from bot.store.text import storable

logger = logging.getLogger(__name__)

TWIML = "text/xml; charset=utf-8"


def signed_url(public_url: str | None, req: Request) -> str:
    """The URL Twilio signed: the configured public base URL, else the (proxy-fixed) request URL."""
    if not public_url:
        return req.url
    url = public_url.rstrip("/") + req.path
    if req.query_string:
        url += "?" + req.query_string.decode("latin-1")
    return url


def signature_matches(validator, url: str, form, signature: str) -> bool:
    """Twilio's check of X-Twilio-Signature, with one HMAC where it computes two.

    ``RequestValidator.validate`` always signs the URL twice, with and without its port (Twilio's
    signing is inconsistent about ports). The URL as configured is nearly always the one signed, so
    it is tried first with Twilio's own ``compute_signature``; any other signature goes to
    ``validate``, which accepts what it always accepted.
    """
    if signature.isascii() and hmac.compare_digest(compute_signature(validator.token, url, form), signature):
        return True
    return validator.validate(url, form, signature)


def compute_signature(token: bytes, url: str, form) -> str:
    """``RequestValidator.compute_signature(url, form)`` (HMAC-SHA1), the string it signs built with one join
    and signed with one-shot ``hmac.digest``: the URL, then each field name (sorted, once) with each of its
    distinct values, sorted. A test checks it against Twilio's on forms with repeated and multi-valued fields.
    ``form`` is a werkzeug ``MultiDict`` (``request.form``): its fields are read once, as (name, values) pairs, and
    a field sent once (all of Twilio's, but media) is not sorted."""
    signed = url + "".join([name + value for name, values in sorted(form.lists())
                            for value in (values if len(values) == 1 else sorted(set(values)))])
    return base64.b64encode(hmac.digest(token, signed.encode("utf-8"), "sha1")).decode("ascii")


def twilio_signed(view):
    """Reject requests whose X-Twilio-Signature does not match; never skipped when a token is set."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        # The app and request themselves, not their proxies: every attribute read through a proxy first fails
        # the proxy's own lookup (Python builds and drops an AttributeError) before it is forwarded.
        ext = current_app._get_current_object().extensions["helpline"]
        req = request._get_current_object()
        if ext.validator is None:
            if ext.insecure:
                logger.warning("unsigned webhook accepted: development mode without TWILIO_AUTH_TOKEN")
                return view(*args, **kwargs)
            logger.error("webhook refused: TWILIO_AUTH_TOKEN is not configured")
            abort(403)
        signature = req.headers.get("X-Twilio-Signature", "")
        if not signature or not signature_matches(ext.validator, signed_url(ext.settings.public_url, req), req.form,
                                                  signature):
            logger.warning("webhook refused: bad or missing X-Twilio-Signature for %s", req.path)
            abort(403)
        return view(*args, **kwargs)

    return wrapper


# What Twilio always sends with an inbound message, in the shapes Twilio uses. The signature covers
# sorted keys and values run together, so "MessageSid=SM...NumMedia0" without NumMedia signs like
# the real form: only exact shapes and required fields make a signed request mean one thing. (A
# missing Body is read as empty: a media-only text.)
REQUIRED = ("MessageSid", "AccountSid", "From", "To", "NumMedia")
MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
ADDRESS = re.compile(r"(?:whatsapp:)?\+[1-9][0-9]{1,14}")
NUM_MEDIA = re.compile(r"(?:[0-9]|10)")  # Twilio carries at most 10 media items


class MalformedWebhook(ValueError):
    """A webhook form that is not what Twilio sends (the reason never quotes a value)."""


def inbound_from_form(form, account_sid: str | None = None) -> Inbound:
    """Adapt Twilio's Messaging webhook form to the core's channel-neutral message.

    Raises :class:`MalformedWebhook` for a missing field or a value not in Twilio's format, and
    for another account's message when ``account_sid`` is configured. The body is made storable
    (no NUL or lone surrogate), so a database never refuses it.
    """
    missing = [name for name in REQUIRED if name not in form]
    if missing:
        raise MalformedWebhook(f"missing {', '.join(missing)}")
    for name, shape in (("MessageSid", MESSAGE_SID), ("AccountSid", ACCOUNT_SID), ("From", ADDRESS),
                        ("To", ADDRESS), ("NumMedia", NUM_MEDIA)):
        if not shape.fullmatch(form[name]):
            raise MalformedWebhook(f"{name} is not in Twilio's format")
    if account_sid and form["AccountSid"] != account_sid:
        raise MalformedWebhook("AccountSid is not this account's")
    sender = form["From"]
    return Inbound(
        sender=sender,
        body=storable(form.get("Body") or ""),
        channel=Channel.WHATSAPP if sender.startswith("whatsapp:") else Channel.SMS,
        message_id=form["MessageSid"],
        media_count=int(form["NumMedia"]),
    )


def valid_message_sid(value: str | None) -> bool:
    """Whether a status callback's MessageSid has Twilio's shape."""
    return bool(value) and MESSAGE_SID.fullmatch(value) is not None


def twiml(reply: str | None) -> tuple[str, int, dict]:
    """A TwiML response with one <Message>, or an empty one (Twilio then sends nothing).

    Written as Twilio's ``MessagingResponse`` writes it, character for character (a test compares them),
    without building and serialising an element tree for each text."""
    if not reply:
        return '<?xml version="1.0" encoding="UTF-8"?><Response />', 200, {"Content-Type": TWIML}
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(reply)}</Message></Response>', 200,
            {"Content-Type": TWIML})
