"""What staff do to an escalation: claim, reply, resolve, hand back; and what they may read.

Every action writes an audit entry in the same transaction. Claims are a compare-and-set
(``UPDATE ... WHERE status = 'open'``) so exactly one of two simultaneous clicks wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from bot.core.states import (OPEN_STATUSES, TIERS, Author, Direction, EscalationStatus, OutboxKind, OutboxStatus,
                             channel_spec)
from bot.store.db import Database
from bot.store.models import AuditLog, Contact, Escalation, Message, Outbox, Staff, mask, utcnow

SEVERITY_ORDER = case({t.value: i for i, t in enumerate(TIERS)}, value=Escalation.severity, else_=len(TIERS))
OUTCOMES = ("reached_safe", "referred_911", "referred_988", "intake_booked", "no_response", "not_a_crisis", "other")
MAX_REPLY = 1600
_ONE_DAY = timedelta(days=1)


class ActionError(ValueError):
    """A staff action that cannot be carried out (already claimed, closed, empty reply...)."""


@dataclass(frozen=True)
class QueueItem:
    """One row of the open-escalation queue."""

    id: int
    severity: str
    status: str
    rule: str
    masked: str
    channel: str
    created_at: datetime
    claimed_by: str | None
    pages_sent: int
    page_problem: str | None
    opted_out: bool
    message_count: int

    @property
    def training(self) -> bool:
        """A staff-training conversation (test texter, simulator): never paged."""
        return channel_spec(self.channel).training


def audit(s: Session, staff: Staff | None, action: str, escalation_id: int | None = None, detail: str | None = None) -> None:
    """Append an audit entry (never contains message bodies)."""
    s.add(AuditLog(staff_id=staff.id if staff else None, action=action, escalation_id=escalation_id,
                   detail=detail, at=utcnow()))


def queue(s: Session, statuses=OPEN_STATUSES) -> list[QueueItem]:
    """Escalations in these statuses, most severe and oldest first."""
    rows = s.execute(select(Escalation, Contact, Staff).join(Contact, Escalation.contact_id == Contact.id)
                     .outerjoin(Staff, Escalation.claimed_by_id == Staff.id)
                     .where(Escalation.status.in_(statuses))
                     .order_by(SEVERITY_ORDER, Escalation.created_at, Escalation.id)).all()
    return [QueueItem(e.id, e.severity, e.status, e.rule, mask(c.address), e.channel, e.created_at,
                      st.name if st else None, e.pages_sent, e.page_problem, e.opted_out, e.message_count)
            for e, c, st in rows]


def transcript(s: Session, escalation: Escalation, limit: int = 200) -> list[Message]:
    """The contact's conversation, oldest first (the whole thread, not only escalated texts)."""
    rows = s.scalars(select(Message).where(Message.contact_id == escalation.contact_id)
                     .order_by(Message.id.desc()).limit(limit)).all()
    return list(reversed(rows))


def claim(db: Database, escalation_id: int, staff: Staff) -> bool:
    """Claim an open escalation; False when someone else already has it."""
    with db.session() as s:
        now = utcnow()
        won = s.execute(update(Escalation).where(Escalation.id == escalation_id,
                                                 Escalation.status == EscalationStatus.OPEN)
                        .values(status=EscalationStatus.CLAIMED, claimed_by_id=staff.id, claimed_at=now, updated_at=now)).rowcount == 1
        if won:
            # Nobody else needs waking for this one.
            s.execute(update(Outbox).where(Outbox.escalation_id == escalation_id, Outbox.kind == OutboxKind.PAGE,
                                           Outbox.status == OutboxStatus.PENDING)
                      .values(status=OutboxStatus.CANCELLED))
            audit(s, staff, "claim", escalation_id)
        return won


def _owned(s: Session, escalation_id: int, staff: Staff, allow_open: bool = False) -> Escalation:
    esc = s.get(Escalation, escalation_id)
    if esc is None:
        raise ActionError("no such escalation")
    if esc.status == EscalationStatus.CLAIMED and esc.claimed_by_id != staff.id and not staff.is_admin:
        raise ActionError("claimed by someone else")
    if esc.status == EscalationStatus.OPEN and not allow_open:
        raise ActionError(f"escalation is {esc.status}; claim it first")
    if esc.status not in OPEN_STATUSES:
        raise ActionError(f"escalation is {esc.status}")
    return esc


def reply(db: Database, escalation_id: int, staff: Staff, body: str) -> Message:
    """Text the texter from the clinic number; stored in the transcript and queued for sending."""
    body = (body or "").strip()
    if not body:
        raise ActionError("a reply needs text")
    if len(body) > MAX_REPLY:
        raise ActionError(f"a reply can be at most {MAX_REPLY} characters")
    with db.session() as s:
        esc = _owned(s, escalation_id, staff)
        contact = s.get(Contact, esc.contact_id)
        now = utcnow()
        msg = Message(contact_id=contact.id, direction=Direction.OUT, body=body, kind=Author.STAFF, escalation_id=esc.id,
                      created_at=now)
        s.add(msg)
        s.flush()
        if channel_spec(esc.channel).texts_back and not contact.opted_out:
            s.add(Outbox(kind=OutboxKind.REPLY, to_address=contact.address, body=body, escalation_id=esc.id,
                         staff_id=staff.id, message_id=msg.id, next_attempt_at=now, created_at=now))
        esc.updated_at = now
        audit(s, staff, "reply", esc.id, "not sent: texter opted out" if contact.opted_out else None)
        return msg


def resolve(db: Database, escalation_id: int, staff: Staff, outcome: str, note: str = "") -> None:
    """Close an escalation with an outcome and a note."""
    if outcome not in OUTCOMES:
        raise ActionError(f"outcome must be one of {', '.join(OUTCOMES)}")
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, allow_open=True)
        now = utcnow()
        esc.status, esc.outcome, esc.note = EscalationStatus.RESOLVED, outcome, (note or "").strip()[:4000] or None
        esc.resolved_by_id, esc.resolved_at, esc.updated_at = staff.id, now, now
        audit(s, staff, "resolve", esc.id, outcome)


def hand_back(db: Database, escalation_id: int, staff: Staff) -> None:
    """Give the conversation back to the bot (the escalation closes as handed back)."""
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, allow_open=True)
        now = utcnow()
        esc.status, esc.resolved_by_id, esc.resolved_at, esc.updated_at = EscalationStatus.HANDED_BACK, staff.id, now, now
        audit(s, staff, "hand_back", esc.id)


def release(db: Database, escalation_id: int, staff: Staff) -> None:
    """Put a claimed escalation back in the queue (the owner must leave); re-paging resumes."""
    with db.session() as s:
        esc = _owned(s, escalation_id, staff)
        if esc.status != EscalationStatus.CLAIMED:
            raise ActionError("only a claimed escalation can be released")
        now = utcnow()
        esc.status, esc.claimed_by_id, esc.claimed_at, esc.updated_at = EscalationStatus.OPEN, None, None, now
        audit(s, staff, "release", esc.id)


def record_view(db: Database, escalation_id: int, staff: Staff) -> None:
    """Audit that a staff member opened an escalation."""
    with db.session() as s:
        audit(s, staff, "view", escalation_id)


def search(s: Session, last4: str | None = None, day: datetime | None = None, limit: int = 100) -> list[tuple[Contact, int, datetime]]:
    """Conversations by the last digits of the number and/or a date: (contact, messages, last seen)."""
    q = (select(Contact, func.count(Message.id), func.max(Message.created_at))
         .join(Message, Message.contact_id == Contact.id).group_by(Contact.id)
         .order_by(func.max(Message.created_at).desc()).limit(limit))
    if last4:
        digits = "".join(ch for ch in last4 if ch.isdigit())[-4:]
        if digits:
            q = q.where(Contact.address.like(f"%{digits}"))
    if day is not None:
        start = day.replace(hour=0, minute=0, second=0, microsecond=0)
        q = q.where(Message.created_at >= start, Message.created_at < start + _ONE_DAY)
    return [(c, n, last) for c, n, last in s.execute(q).all()]


def audit_entries(s: Session, escalation_id: int | None = None, limit: int = 200) -> list[AuditLog]:
    """Newest audit entries, optionally for one escalation."""
    q = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if escalation_id is not None:
        q = q.where(AuditLog.escalation_id == escalation_id)
    return list(s.scalars(q))


def local_outbox(s: Session, limit: int = 50) -> list[Outbox]:
    """Texts kept in the development outbox instead of Twilio."""
    return list(s.scalars(select(Outbox).where(Outbox.local.is_(True)).order_by(Outbox.id.desc()).limit(limit)))

