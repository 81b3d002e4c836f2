"""The Core statements of the helpline's write path (bot.service): one lookup before a text is decided,
then the inserts and updates that store it, and on PostgreSQL the fused statements that write a routine
text, or open an escalation, in one round trip each (data-modifying CTEs).

Built once at import (or once per shape, cached), so SQLAlchemy compiles each only once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from sqlalchemy import bindparam, func, literal_column, select

from bot.core.states import OPEN_STATUSES
from bot.store.models import Contact, Escalation, Message, Outbox

MESSAGES = Message.__table__
CONTACTS = Contact.__table__
ESCALATIONS = Escalation.__table__
OUTBOX = Outbox.__table__
_seen = MESSAGES.alias("seen")
_open = ESCALATIONS.alias("open_escalation")
# One round trip for everything a text needs before it is decided: a stored copy (a retry), the
# sender, and the sender's open escalation. The one-row SELECT keeps a row when neither exists.
LOOKUP = (select(_seen.c.id.label("seen_id"), _seen.c.escalation_id.label("seen_escalation_id"),
                 CONTACTS.c.id.label("contact_id"), CONTACTS.c.channel, CONTACTS.c.language,
                 CONTACTS.c.opted_out, _open.c.id.label("escalation_id"))
          .select_from(select(literal_column("1").label("one")).subquery("one")
                       .outerjoin(_seen, _seen.c.sid == bindparam("sid"))
                       .outerjoin(CONTACTS, CONTACTS.c.address == bindparam("address"))
                       .outerjoin(_open, (_open.c.contact_id == CONTACTS.c.id)
                                  & _open.c.status.in_([str(x) for x in OPEN_STATUSES]))))
NEW_CONTACT = CONTACTS.insert().returning(CONTACTS.c.id)  # columns: the parameters given
NEW_MESSAGE = MESSAGES.insert().returning(MESSAGES.c.id)
JOIN_ESCALATION = MESSAGES.update().where(MESSAGES.c.id == bindparam("message_id"))
NEW_ESCALATION = ESCALATIONS.insert().returning(ESCALATIONS.c.id)
TOUCH = CONTACTS.update().where(CONTACTS.c.id == bindparam("contact_id"))  # SET: the parameters given


_NEW_CONTACT_COLUMNS = ("address", "channel", "created_at", "last_seen_at", "language", "opted_out", "opted_out_at")
_INBOUND_COLUMNS = ("direction", "sid", "body", "media_count", "kind", "severity", "crisis_kind", "rule", "topic",
                    "language", "escalation_id", "created_at")
_REPLY_COLUMNS = ("direction", "body", "kind", "escalation_id", "language", "media_count", "created_at")


def _params(table, prefix: str, names: Sequence[str]) -> dict:
    """Typed bind parameters ``prefix + name`` for ``names`` (every column with a default is named, so
    SQLAlchemy adds no default parameters of its own, whose names would clash between two inserts)."""
    return {name: bindparam(prefix + name, type_=table.c[name].type) for name in names}


@lru_cache(maxsize=None)
def routine_statement(new_contact: bool, touched: tuple[str, ...], reply: bool, escalation_id: bool = False):
    """One PostgreSQL statement for a routine text: the sender's row, the inbound message, the reply.

    ``new_contact``: insert the sender (``c_*`` parameters) and take its id from the insert; else
    update the ``touched`` columns of sender ``c_id`` (the inbound row names ``m_contact_id``, so a
    sender that vanished meanwhile fails the foreign key, as the separate statements did). ``reply``:
    also the bot's reply (``r_*``), pointing at the inbound row. Returns (contact id, inbound id), and
    with ``escalation_id`` a third column: a new escalation's id drawn from its sequence.
    Data-modifying CTEs all run, referenced or not, in the one statement's transaction.
    """
    extra = []
    values = _params(MESSAGES, "m_", _INBOUND_COLUMNS)
    if new_contact:
        sender = (CONTACTS.insert().values(_params(CONTACTS, "c_", _NEW_CONTACT_COLUMNS))
                  .returning(CONTACTS.c.id).cte("sender"))
        inbound = MESSAGES.insert().from_select(["contact_id", *values], select(sender.c.id, *values.values()))
    else:
        extra.append(CONTACTS.update().where(CONTACTS.c.id == bindparam("c_id"))
                     .values(_params(CONTACTS, "c_", touched)).returning(CONTACTS.c.id).cte("sender"))
        inbound = MESSAGES.insert().values(contact_id=bindparam("m_contact_id", type_=MESSAGES.c.contact_id.type),
                                            **values)
    inbound = inbound.returning(MESSAGES.c.id, MESSAGES.c.contact_id).cte("inbound")
    if reply:
        out = _params(MESSAGES, "r_", _REPLY_COLUMNS)
        extra.append(MESSAGES.insert().from_select(["contact_id", "reply_to_id", *out],
                                                    select(inbound.c.contact_id, inbound.c.id, *out.values()))
                     .returning(MESSAGES.c.id).cte("reply"))
    columns = [inbound.c.contact_id, inbound.c.id]
    if escalation_id:
        columns.append(func.nextval(func.pg_get_serial_sequence(ESCALATIONS.name, ESCALATIONS.c.id.name)))
    return select(*columns).add_cte(*extra)


_PAGE_COLUMNS = ("kind", "to_address", "body", "escalation_id", "staff_id", "page_round", "next_attempt_at",
                 "created_at", "status", "attempts", "local")


@lru_cache(maxsize=None)
def opening_statement(columns: tuple[str, ...], page_count: int, reply: bool):
    """One PostgreSQL statement for a new escalation: its row (``e_*``: ``columns``, the id among them), its
    ``page_count`` page rows (``p0_*``, ``p1_*``...), the inbound row ``j_message_id`` joined to it, and with
    ``reply`` the bot's reply (``r_*``, ``r_contact_id``, ``r_reply_to_id``)."""
    escalation = ESCALATIONS.insert().values(_params(ESCALATIONS, "e_", columns)).returning(ESCALATIONS.c.id)
    escalation = escalation.cte("escalation")
    extra = [MESSAGES.update().where(MESSAGES.c.id == bindparam("j_message_id"))
             .values(escalation_id=bindparam("j_escalation_id", type_=MESSAGES.c.escalation_id.type))
             .returning(MESSAGES.c.id).cte("joined")]
    for n in range(page_count):  # one single-row INSERT each: a multi-row VALUES would not be in SQLAlchemy's cache
        extra.append(OUTBOX.insert().values(_params(OUTBOX, f"p{n}_", _PAGE_COLUMNS))
                     .returning(OUTBOX.c.id).cte(f"page{n}"))
    if reply:
        out = _params(MESSAGES, "r_", ("contact_id", "reply_to_id", *_REPLY_COLUMNS))
        extra.append(MESSAGES.insert().values(out).returning(MESSAGES.c.id).cte("reply"))
    return select(escalation.c.id).add_cte(*extra)
