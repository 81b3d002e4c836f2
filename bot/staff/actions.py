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
from bot.store.models import AuditLog, Contact, Escalation, Message, Note, Outbox, Staff, is_open, mask, utcnow

SEVERITY_ORDER = case({t.value: i for i, t in enumerate(TIERS)}, value=Escalation.severity, else_=len(TIERS))
OUTCOMES = ("reached_safe", "referred_911", "referred_988", "intake_booked", "no_response", "not_a_crisis", "other")
MAX_REPLY = 1600
MAX_NOTE = 4000
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
    kind: str | None = None
    language: str | None = None
    claimed_by_id: int | None = None
    held_at: datetime | None = None  # a crisis text in the claimed conversation awaits a staff reply
    preview: str = ""  # the start of the texter's latest text

    @property
    def training(self) -> bool:
        """A staff-training conversation (test texter, simulator): never paged."""
        return channel_spec(self.channel).training


def audit(s: Session, staff: Staff | None, action: str, escalation_id: int | None = None, detail: str | None = None) -> None:
    """Append an audit entry (never contains message bodies)."""
    s.add(AuditLog(staff_id=staff.id if staff else None, action=action, escalation_id=escalation_id,
                   detail=detail, at=utcnow()))


PREVIEW_CHARS = 90


def preview(body: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The start of a text on one line, cut at a word: enough to tell two cards apart."""
    text = " ".join((body or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + "…"


def queue(s: Session, statuses=OPEN_STATUSES) -> list[QueueItem]:
    """Escalations in these statuses, most severe and oldest first."""
    rows = s.execute(select(Escalation, Contact, Staff).join(Contact, Escalation.contact_id == Contact.id)
                     .outerjoin(Staff, Escalation.claimed_by_id == Staff.id)
                     .where(Escalation.status.in_(statuses))
                     .order_by(SEVERITY_ORDER, Escalation.created_at, Escalation.id)).all()
    latest: dict[int, str] = {}
    if rows:
        last_in = (select(func.max(Message.id)).where(Message.direction == Direction.IN,
                                                      Message.escalation_id.in_([e.id for e, _, _ in rows]))
                   .group_by(Message.escalation_id))
        latest = dict(s.execute(select(Message.escalation_id, Message.body).where(Message.id.in_(last_in))).all())
    return [QueueItem(e.id, e.severity, e.status, e.rule, mask(c.address), e.channel, e.created_at,
                      st.name if st else None, e.pages_sent, e.page_problem, e.opted_out, e.message_count,
                      kind=e.kind, language=c.language, claimed_by_id=e.claimed_by_id, held_at=e.held_at,
                      preview=preview(latest.get(e.id)))
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
            s.execute(update(Escalation).where(Escalation.id == escalation_id, Escalation.first_claimed_at.is_(None))
                      .values(first_claimed_at=now))
            # Nobody else needs waking for this one.
            s.execute(update(Outbox).where(Outbox.escalation_id == escalation_id, Outbox.kind == OutboxKind.PAGE,
                                           Outbox.status == OutboxStatus.PENDING)
                      .values(status=OutboxStatus.CANCELLED))
            audit(s, staff, "claim", escalation_id)
        return won


def _owned(s: Session, escalation_id: int, staff: Staff, owner_ack: int | None = None) -> Escalation:
    """The escalation, if this staff member may act on it: claimed by them, or by someone else when an
    admin has acknowledged that owner (``owner_ack`` is the owner's id, read off the page they saw)."""
    esc = s.get(Escalation, escalation_id)
    if esc is None:
        raise ActionError("no such escalation")
    if esc.status == EscalationStatus.OPEN:
        raise ActionError(f"escalation is {esc.status}; claim it first")
    if esc.status not in OPEN_STATUSES:
        raise ActionError(f"escalation is {esc.status.replace('_', ' ')}")
    if esc.claimed_by_id != staff.id:
        owner = s.get(Staff, esc.claimed_by_id) if esc.claimed_by_id else None
        name = owner.name if owner else "someone else"
        if not staff.is_admin:
            raise ActionError(f"claimed by {name}")
        if owner_ack != esc.claimed_by_id:
            raise ActionError(f"claimed by {name}: tick the box to confirm you are acting on their claim")
    return esc


def _for_owner(esc: Escalation, staff: Staff, detail: str | None = None) -> str | None:
    """The audit detail of an action, saying so when an admin acted on someone else's claim."""
    note = f"admin acting on the claim of staff {esc.claimed_by_id}" if esc.claimed_by_id != staff.id else None
    return "; ".join(d for d in (detail, note) if d) or None


def reply(db: Database, escalation_id: int, staff: Staff, body: str, owner_ack: int | None = None) -> Message:
    """Text the texter from the clinic number; stored in the transcript and queued for sending.

    A staff reply answers any crisis text the bot held back, so the held reply is dropped."""
    body = (body or "").strip()
    if not body:
        raise ActionError("a reply needs text")
    if len(body) > MAX_REPLY:
        raise ActionError(f"a reply can be at most {MAX_REPLY} characters")
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, owner_ack)
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
        esc.first_reply_at = esc.first_reply_at or now
        esc.held_at, esc.held_reply = None, None
        audit(s, staff, "reply", esc.id, _for_owner(esc, staff, "not sent: texter opted out" if contact.opted_out else None))
        return msg


def resolve(db: Database, escalation_id: int, staff: Staff, outcome: str, note: str = "",
            owner_ack: int | None = None) -> None:
    """Close a claimed escalation with an outcome and a note (whoever closes it has dealt with it)."""
    if outcome not in OUTCOMES:
        raise ActionError(f"outcome must be one of {', '.join(OUTCOMES)}")
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, owner_ack)
        now = utcnow()
        detail = _for_owner(esc, staff, outcome)
        esc.status, esc.outcome, esc.note = EscalationStatus.RESOLVED, outcome, (note or "").strip()[:4000] or None
        esc.resolved_by_id, esc.resolved_at, esc.updated_at = staff.id, now, now
        esc.held_at, esc.held_reply = None, None
        audit(s, staff, "resolve", esc.id, detail)


def hand_back(db: Database, escalation_id: int, staff: Staff, owner_ack: int | None = None) -> None:
    """Give a claimed conversation back to the bot (the escalation closes as handed back)."""
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, owner_ack)
        now = utcnow()
        detail = _for_owner(esc, staff)
        esc.status, esc.resolved_by_id, esc.resolved_at, esc.updated_at = EscalationStatus.HANDED_BACK, staff.id, now, now
        esc.held_at, esc.held_reply = None, None
        audit(s, staff, "hand_back", esc.id, detail)


def release(db: Database, escalation_id: int, staff: Staff, owner_ack: int | None = None) -> None:
    """Put a claimed escalation back in the queue (the owner must leave); re-paging resumes.

    A crisis reply the bot is holding stays due: nobody has answered that text yet."""
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, owner_ack)
        now = utcnow()
        detail = _for_owner(esc, staff)
        esc.status, esc.claimed_by_id, esc.claimed_at, esc.updated_at = EscalationStatus.OPEN, None, None, now
        audit(s, staff, "release", esc.id, detail)


def transfer(db: Database, escalation_id: int, staff: Staff, to_staff_id: int, public_url: str | None,
             owner_ack: int | None = None, *, clinic: str) -> Staff:
    """Hand a claimed conversation to a named colleague, who is paged; returns the colleague.

    ``clinic``: the clinic's short name for the page (``Content.clinic_short_name``).
    """
    from bot.staff.paging import enqueue_owner_page
    with db.session() as s:
        esc = _owned(s, escalation_id, staff, owner_ack)
        to = s.get(Staff, to_staff_id)
        if to is None or not to.active:
            raise ActionError("choose an active colleague")
        if to.id == esc.claimed_by_id:
            raise ActionError(f"{to.name} already has it")
        now = utcnow()
        detail = _for_owner(esc, staff, f"to {to.name}")
        esc.claimed_by_id, esc.claimed_at, esc.updated_at = to.id, now, now
        if esc.spec.pages_staff:
            enqueue_owner_page(s, esc, to, public_url, clinic, f"{staff.name} transferred", now)
        audit(s, staff, "transfer", esc.id, detail)
        s.flush()
        s.expunge(to)
        return to


def add_note(db: Database, escalation_id: int, staff: Staff, body: str) -> Note:
    """An internal note on an escalation: staff-only, never sent; audited (its number, not its words)."""
    body = (body or "").strip()
    if not body:
        raise ActionError("a note needs text")
    if len(body) > MAX_NOTE:
        raise ActionError(f"a note can be at most {MAX_NOTE} characters")
    with db.session() as s:
        esc = s.get(Escalation, escalation_id)
        if esc is None:
            raise ActionError("no such escalation")
        note = Note(escalation_id=esc.id, staff_id=staff.id, body=body, created_at=utcnow())
        s.add(note)
        s.flush()
        audit(s, staff, "note", esc.id, f"note {note.id}, {len(body)} characters")
        s.expunge(note)
        return note


def notes(s: Session, escalation_id: int) -> list[tuple[Note, str]]:
    """An escalation's internal notes, oldest first, with the author's name."""
    rows = s.execute(select(Note, Staff.name).outerjoin(Staff, Note.staff_id == Staff.id)
                     .where(Note.escalation_id == escalation_id).order_by(Note.id)).all()
    return [(n, name or "staff") for n, name in rows]


def set_on_call(db: Database, actor: Staff, staff_id: int, on: bool) -> Staff:
    """Put a colleague (admins) or oneself (anyone) on or off call; audited."""
    if staff_id != actor.id and not actor.is_admin:
        raise ActionError("only an admin can change someone else's on-call status")
    with db.session() as s:
        person = s.get(Staff, staff_id)
        if person is None or not person.active:
            raise ActionError("no such active staff member")
        person.on_call = on
        audit(s, actor, "on_call", None, f"{person.name} {'on' if on else 'off'} call")
        s.flush()
        s.expunge(person)
        return person


def leave_callback_number(db: Database, contact_id: int, phone: str) -> int | None:
    """A web visitor's call-back number, kept only on their open escalation; its id, or None without one.

    Audited without the number (staff read it on the escalation page).
    """
    with db.session() as s:
        esc = s.scalar(select(Escalation).where(Escalation.contact_id == contact_id,
                                                is_open(Escalation.status)))
        if esc is None:
            return None
        esc.callback_number = phone
        esc.updated_at = utcnow()
        audit(s, None, "callback_number", esc.id, "left by the web chat visitor")
        return esc.id


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

