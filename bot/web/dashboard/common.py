"""Reads the dashboard's views share: the app's helpline, escalations, staff names, transcripts."""

from __future__ import annotations

from flask import abort, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core.states import Direction
from bot.store.models import Escalation, Message, Outbox, Staff
from bot.web import ids


def ext():
    """The app's ``Extension`` (settings, database, helpline)."""
    return current_app.extensions["helpline"]


def get_escalation(s: Session, escalation_id: int) -> Escalation:
    """The escalation, or a 404."""
    esc = s.get(Escalation, escalation_id)
    if esc is None:
        abort(404)
    return esc


def staff_names(s: Session, ids) -> dict[int, str]:
    """Staff names by id, for the ids that are not None."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(s.execute(select(Staff.id, Staff.name).where(Staff.id.in_(ids))).all())


def delivery(s: Session, messages: list[Message]) -> dict[int, dict]:
    """For outbound rows: who wrote a staff reply and how its SMS is doing (from the outbox)."""
    ids = [m.id for m in messages if m.direction == Direction.OUT]
    if not ids:
        return {}
    rows = s.execute(select(Outbox.message_id, Outbox.status, Outbox.error_message, Staff.name)
                     .outerjoin(Staff, Outbox.staff_id == Staff.id)
                     .where(Outbox.message_id.in_(ids))).all()
    return {mid: {"status": status, "error": err, "author": name} for mid, status, err, name in rows}


def contact_messages(s: Session, contact_id: int, after: int = 0, limit: int = 200) -> list[Message]:
    """A contact's conversation, oldest first (for contacts reached from search, with no escalation)."""
    q = select(Message).where(Message.contact_id == contact_id)
    if after:
        return list(s.scalars(q.where(Message.id > after).order_by(Message.id).limit(limit)))
    return list(reversed(s.scalars(q.order_by(Message.id.desc()).limit(limit)).all()))


def parse_id(value: str | None) -> int:
    """A non-negative id from a poll's ``after`` parameter (0 when missing; malformed or too big: 400)."""
    return ids.parse_id(value)
