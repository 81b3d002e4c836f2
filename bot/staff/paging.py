"""Who gets paged for an escalation, and what the page says (never the texter's words).

An SMS to a staff phone is not a secure channel, so a page carries the severity, the masked
number, the age and a link: nothing the texter wrote.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import literal_column, null, select, union_all
from sqlalchemy.orm import Session

from bot.core.states import OutboxKind
from bot.store import writes
from bot.store.models import Escalation, Outbox, Staff, aware, mask, utcnow

logger = logging.getLogger(__name__)

NO_STAFF = "NO STAFF ON CALL: nobody was paged"


def page_text(escalation: Escalation, public_url: str | None, clinic: str, now: datetime | None = None,
              address: str | None = None) -> str:
    """The page body: who it is from (the clinic's short name), severity, masked number, age, link.

    ``address``: the texter's, when the caller has it (else it is read through ``escalation.contact``).
    """
    now = now or utcnow()
    minutes = max(0, int((now - aware(escalation.created_at)).total_seconds() // 60))
    base = (public_url or "").rstrip("/")
    link = f"{base}/dashboard/escalations/{escalation.id}" if base else f"/dashboard/escalations/{escalation.id}"
    again = " (re-page)" if escalation.page_round > 0 else ""
    return (f"{clinic} helpline{again}: {escalation.severity.upper()} #{escalation.id}, "
            f"texter {mask(address or escalation.contact.address)}, {minutes} min ago. Claim: {link}")


def owner_page_text(escalation: Escalation, public_url: str | None, clinic: str, reason: str) -> str:
    """A page to one named staff member about their own conversation (still no texter words).

    ``clinic`` is the clinic's short name, as in :func:`page_text`.
    """
    base = (public_url or "").rstrip("/")
    link = f"{base}/dashboard/escalations/{escalation.id}"
    return (f"{clinic} helpline: {reason} {escalation.severity.upper()} #{escalation.id}, "
            f"texter {mask(escalation.contact.address)}. Open: {link}")


def enqueue_owner_page(s: Session, escalation: Escalation, staff: Staff, public_url: str | None, clinic: str,
                       reason: str, now: datetime | None = None) -> None:
    """Page the staff member who has (or was just given) this escalation; never cancelled by the claim."""
    now = now or utcnow()
    s.add(Outbox(kind=OutboxKind.PAGE, to_address=staff.phone, body=owner_page_text(escalation, public_url, clinic, reason),
                 escalation_id=escalation.id, staff_id=staff.id, page_round=escalation.page_round,
                 next_attempt_at=now, created_at=now))


_ACTIVE = select(Staff.id, Staff.phone).where(Staff.active.is_(True)).order_by(Staff.id)
_ON_CALL = _ACTIVE.where(Staff.on_call.is_(True))


def recipients(s: Session, widen: bool, exclude: set[int] = frozenset()) -> list:
    """On-call staff first; a widened round pages every active staff member. Rows of (id, phone).

    A Core statement (``writes.run``, on the DBAPI cursor): read for every new crisis text before its write
    phase, through the ORM it was 5% of a webhook request."""
    return [row for row in writes.run(s.connection(), _ACTIVE if widen else _ON_CALL, {}, every=True)
            if row.id not in exclude]


# PostgreSQL, for a new escalation: its id drawn from the sequence (the first row; the page text names it)
# and the on-call staff (the other rows), in one round trip before the write phase, so that the text, the
# escalation, its pages and the reply are then one statement (bot.store.writes.opening_statement).
_ON_CALL_AND_NEW_ID = union_all(
    select(literal_column("0").label("o"), writes.NEXT_ESCALATION_ID.label("escalation_id"),
           null().label("id"), null().label("phone")),
    _ON_CALL.order_by(None).with_only_columns(literal_column("1"), null(), Staff.id, Staff.phone),
).order_by("o", "id")


def page_recipients(s: Session, widen: bool = False, people: list | None = None) -> tuple[list, str | None]:
    """Who one round pages, and the problem to show on the escalation when that is not who it should be.

    ``people``: the on-call staff read already (:func:`page_recipients_and_id`)."""
    people = recipients(s, widen) if people is None else people
    problem = None
    if not people and not widen:
        people = recipients(s, widen=True)  # nobody on call: better to wake anyone than no one
        problem = NO_STAFF + ("; paging all staff instead" if people else "")
    if not people:
        problem = "NO ACTIVE STAFF: nobody can be paged"
    return people, problem


def page_recipients_and_id(s: Session) -> tuple[tuple[list, str | None], int]:
    """PostgreSQL: :func:`page_recipients` for a new escalation, and the escalation's id drawn from its
    sequence, in one round trip (a second when nobody is on call)."""
    first, *rows = writes.run(s.connection(), _ON_CALL_AND_NEW_ID, {}, every=True)
    return page_recipients(s, people=rows), first.escalation_id


def page_rows(escalation_id: int, people: list, body: str, page_round: int, now: datetime) -> list[dict]:
    """The outbox rows of one round of pages (for a Core INSERT; :func:`enqueue_round` adds them as objects)."""
    return [dict(kind=OutboxKind.PAGE, to_address=person.phone, body=body, escalation_id=escalation_id,
                 staff_id=person.id, page_round=page_round, next_attempt_at=now, created_at=now)
            for person in people]


def enqueue_round(s: Session, escalation: Escalation, public_url: str | None, clinic: str, widen: bool = False,
                  now: datetime | None = None) -> int:
    """Queue one page per recipient in the caller's transaction; returns how many.

    ``clinic`` is the clinic's short name from replies/clinic.toml (``Content.clinic_short_name``).
    """
    now = now or utcnow()
    people, problem = page_recipients(s, widen)
    if problem:
        escalation.page_problem = problem
    if not people:
        logger.critical("escalation %d cannot be paged: no active staff", escalation.id)
        return 0
    body = page_text(escalation, public_url, clinic, now)
    for row in page_rows(escalation.id, people, body, escalation.page_round, now):
        s.add(Outbox(**row))
    escalation.last_paged_at = now
    if escalation.first_paged_at is None:
        escalation.first_paged_at = now
    return len(people)


def enqueue_failover(s: Session, escalation: Escalation, failed: Outbox, public_url: str | None, clinic: str) -> bool:
    """After a permanent failure, page the next person not yet paged for this escalation."""
    paged = set(s.scalars(select(Outbox.staff_id).where(Outbox.escalation_id == escalation.id,
                                                        Outbox.kind == OutboxKind.PAGE)))
    for widen in (False, True):
        for person in recipients(s, widen, exclude={p for p in paged if p is not None}):
            s.add(Outbox(kind=OutboxKind.PAGE, to_address=person.phone, body=page_text(escalation, public_url, clinic),
                         escalation_id=escalation.id, staff_id=person.id, page_round=escalation.page_round))
            return True
    return False
