"""Retention: erase message bodies and texters' numbers past the retention period.

Substance-use records are among the most protected health data (42 CFR Part 2), so nothing a
texter wrote is kept forever. A purge blanks message bodies and outbound texts older than the
cutoff, clears staff notes on escalations closed before it and internal notes written before it and web-chat call-back numbers, drops
old web-chat sessions, and replaces the phone number of a contact with no newer messages by an
anonymous placeholder. What survives: the anonymised
escalation metrics (severity, rule, channel, times, outcome, pages) and the whole audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select, update

from bot.store.db import Database
from bot.store.limits import purge_counters
from bot.store.models import ChatSession, Contact, Escalation, Message, Note, Outbox, StaffSession, utcnow

PURGED = "[purged]"
_DURATION = re.compile(r"^(\d+)\s*([dhw]?)$")


def parse_age(text: str) -> timedelta:
    """'90d', '12w', '48h' or a bare number of days."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ValueError(f"expected a duration like 90d, 12w or 48h, got {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "d"
    return {"d": timedelta(days=n), "w": timedelta(weeks=n), "h": timedelta(hours=n)}[unit]


@dataclass(frozen=True)
class PurgeReport:
    """What one purge changed."""

    cutoff: datetime
    messages: int
    outbox: int
    notes: int
    contacts: int


def purge(db: Database, older_than: timedelta, now: datetime | None = None) -> PurgeReport:
    """Erase personal content older than ``older_than``; safe to run repeatedly."""
    cutoff = (now or utcnow()) - older_than
    with db.session() as s:
        messages = s.execute(update(Message).where(Message.created_at < cutoff, Message.body.is_not(None),
                                                   Message.body != PURGED).values(body=PURGED)).rowcount
        outbox = s.execute(update(Outbox).where(Outbox.created_at < cutoff, Outbox.body != PURGED)
                           .values(body=PURGED)).rowcount
        notes = s.execute(update(Escalation).where(Escalation.resolved_at < cutoff, Escalation.note.is_not(None))
                          .values(note=None)).rowcount
        notes += s.execute(update(Note).where(Note.created_at < cutoff, Note.body != PURGED)
                           .values(body=PURGED)).rowcount
        # A call-back number left in web chat is a full phone number: gone with the rest.
        s.execute(update(Escalation).where(Escalation.created_at < cutoff, Escalation.callback_number.is_not(None))
                  .values(callback_number=None))
        s.execute(delete(ChatSession).where(ChatSession.created_at < cutoff))
        s.execute(delete(StaffSession).where(StaffSession.expires_at < cutoff))  # long over either way
        purge_counters(s)
        newer = exists().where(Message.contact_id == Contact.id, Message.created_at >= cutoff)
        stale = s.scalars(select(Contact).where(~newer, ~Contact.address.like("purged:%"),
                                                Contact.last_seen_at < cutoff)).all()
        for contact in stale:
            contact.address = f"purged:{contact.id}"
        return PurgeReport(cutoff, messages, outbox, notes, len(stale))


def oldest_body(db: Database) -> datetime | None:
    """When the oldest unpurged message was received (for monitoring retention)."""
    with db.session() as s:
        return s.scalar(select(func.min(Message.created_at)).where(Message.body != PURGED))
