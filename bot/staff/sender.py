"""Sending one SMS: through Twilio's REST API, or into the local development outbox."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.store.models import mask_numbers

logger = logging.getLogger(__name__)

# Twilio errors that will never succeed on retry: unsubscribed, invalid or non-mobile numbers.
PERMANENT = {"21610", "21211", "21214", "21408", "21612", "21614", "21606", "21660", "30003", "30005", "30006"}


@dataclass
class SendError(Exception):
    """A failed send; ``permanent`` means retrying is pointless."""

    code: str | None
    message: str
    permanent: bool


class TwilioSender:
    """Sends with the twilio SDK; ``api_url`` points it at a fake server in tests and staging."""

    local = False

    def __init__(self, account_sid: str, auth_token: str, from_number: str, api_url: str | None = None,
                 status_callback: str | None = None, timeout: float = 10.0):
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if api_url:
            self.client.api.base_url = api_url.rstrip("/")
        self.from_number = from_number
        self.status_callback = status_callback

    def send(self, to: str, body: str) -> str:
        """Send and return Twilio's message SID, or raise SendError."""
        from twilio.base.exceptions import TwilioRestException

        sender = self.from_number
        if to.startswith("whatsapp:") and not sender.startswith("whatsapp:"):
            sender = "whatsapp:" + sender
        kwargs = {"to": to, "from_": sender, "body": body}
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        try:
            return self.client.messages.create(**kwargs).sid
        except TwilioRestException as exc:
            code = str(exc.code) if exc.code else None
            permanent = code in PERMANENT or (exc.status in (400, 404) and code not in (None, "20429"))
            raise SendError(code, mask_numbers(f"Twilio {exc.status}: {exc.msg}"), permanent) from None
        except Exception as exc:  # noqa: BLE001 - network trouble is always worth a retry
            raise SendError(None, f"{type(exc).__name__}", permanent=False) from None

    def find_sent(self, to: str, body: str, since) -> str | None:
        """The SID of a message Twilio already accepted with this recipient and body, if any.

        Used after a crash between "send" and "record": a status check instead of a blind resend.
        Any trouble asking returns None, and the caller sends again (at least once beats never).
        """
        sender = self.from_number
        if to.startswith("whatsapp:") and not sender.startswith("whatsapp:"):
            sender = "whatsapp:" + sender
        try:
            for msg in self.client.messages.list(to=to, from_=sender, date_sent_after=since, limit=50):
                if (msg.body or "") == body:
                    return msg.sid
        except Exception:  # noqa: BLE001
            logger.warning("could not ask Twilio whether a recovered text was already sent; sending again")
        return None


class LocalSender:
    """Development without Twilio credentials: texts stay in the outbox, shown on the dashboard."""

    local = True

    def send(self, to: str, body: str) -> str:
        """Pretend to send; the outbox row is the record."""
        return ""
