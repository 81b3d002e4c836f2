"""SQLAlchemy 2.x models: contacts, messages (both directions), escalations, staff and web chats."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import (Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        literal_column)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.core.states import OPEN_STATUSES, Channel, EscalationStatus, OutboxStatus, channel_spec, silences_bot


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp is stored in UTC."""
    return datetime.now(timezone.utc)


def is_open(status):
    """``status IN ('open', 'claimed')``, the statuses written as literals in the order of the partial index
    ``uq_escalations_one_open`` (whose predicate this is). SQLite uses a partial index only for a query that
    states the index's own terms: with bound parameters, or in another order, finding a sender's open
    escalation read every escalation ever stored, once for each text."""
    return status.in_([literal_column(f"'{s}'") for s in OPEN_STATUSES])


class Base(DeclarativeBase):
    """Declarative base for all tables."""


class Contact(Base):
    """A texter, keyed by channel address (``+15551234567`` or ``whatsapp:+1...``)."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16), default=Channel.SMS)
    language: Mapped[str | None] = mapped_column(String(2))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    messages: Mapped[list["Message"]] = relationship(back_populates="contact")

    @property
    def masked(self) -> str:
        """The address as staff and logs may see it: ``***-0100``."""
        return mask(self.address)


class Message(Base):
    """One text in either direction; inbound texts carry Twilio's MessageSid for dedupe."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_contact_created", "contact_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    direction: Mapped[str] = mapped_column(String(8))  # Direction
    sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    body: Mapped[str | None] = mapped_column(Text)
    media_count: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str | None] = mapped_column(String(16))  # DecisionKind for inbound, Author for outbound
    severity: Mapped[str | None] = mapped_column(String(16))
    crisis_kind: Mapped[str | None] = mapped_column(String(16))  # CrisisKind when it escalated
    rule: Mapped[str | None] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(2))
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    escalation_id: Mapped[int | None] = mapped_column(ForeignKey("escalations.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="messages")


class Escalation(Base):
    """A conversation handed to humans; at most one open (or claimed) per contact."""

    __tablename__ = "escalations"
    __table_args__ = (
        Index("uq_escalations_one_open", "contact_id", unique=True,
              sqlite_where=is_open(literal_column("status")), postgresql_where=is_open(literal_column("status"))),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    status: Mapped[str] = mapped_column(String(16), default=EscalationStatus.OPEN)
    severity: Mapped[str] = mapped_column(String(16))  # Tier
    kind: Mapped[str | None] = mapped_column(String(16))  # CrisisKind of the most severe text
    rule: Mapped[str] = mapped_column(String(64))
    rules: Mapped[str] = mapped_column(Text, default="")  # every rule that fired, comma-separated
    channel: Mapped[str] = mapped_column(String(16), default=Channel.SMS)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)  # call, don't text
    about_other: Mapped[bool] = mapped_column(Boolean, default=False)
    message_count: Mapped[int] = mapped_column(Integer, default=1)
    first_message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Staff side: who owns it, how it ended, and how paging went.
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    outcome: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    pages_sent: Mapped[int] = mapped_column(Integer, default=0)
    page_round: Mapped[int] = mapped_column(Integer, default=0)
    first_paged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_paged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    followup_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    page_problem: Mapped[str | None] = mapped_column(Text)
    # A number a web chat visitor left for staff to call (E.164); shown only on the escalation page.
    callback_number: Mapped[str | None] = mapped_column(String(20))
    # A crisis text that arrived while staff had the conversation: the bot stayed silent and the owner
    # was alerted. If no staff reply follows within HELPLINE_CLAIMED_CRISIS_SECONDS, the dispatcher
    # sends ``held_reply`` (the crisis reply the bot would have sent) and pages the owner again.
    held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    held_reply: Mapped[str | None] = mapped_column(Text)
    # For the numbers: kept when a claim is released or transferred (claimed_at is the current owner's).
    first_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_reply_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    contact: Mapped[Contact] = relationship()
    claimed_by: Mapped["Staff | None"] = relationship(foreign_keys=[claimed_by_id])

    @property
    def silences_bot(self) -> bool:
        """A human handles it (:func:`bot.core.states.silences_bot`)."""
        return silences_bot(self.status, self.severity)

    @property
    def spec(self):
        """What this escalation's channel can do (text back, page, training)."""
        return channel_spec(self.channel)


class Note(Base):
    """An internal note on an escalation: staff-only, never sent to the texter; purged with message bodies."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    staff: Mapped["Staff | None"] = relationship()


class ChatSession(Base):
    """An anonymous web chat: only the SHA-256 of its bearer token is stored, never the token."""

    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_ip_created", "ip_hash", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ip_hash: Mapped[str | None] = mapped_column(String(64))  # keyed hash of the address, for rate limits

    contact: Mapped[Contact] = relationship()


class Staff(Base):
    """A staff member who can log in to the dashboard and be paged."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    phone: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    on_call: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    # The four members Flask-Login expects, without importing Flask into storage.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class StaffSession(Base):
    """One dashboard login. The session cookie carries a random token and only its SHA-256 is kept
    here, so logout, a password change or removal ends the session on the server: a copy of the
    cookie saved earlier no longer works."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outbox(Base):
    """An outbound SMS (staff page, texter follow-up, staff reply) waiting for the dispatcher.

    Rows are written in the same transaction as what caused them and claimed by a
    compare-and-set on ``status``, so a page survives a crash and is sent by one process.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # OutboxKind
    to_address: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    escalation_id: Mapped[int | None] = mapped_column(ForeignKey("escalations.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))  # recipient of a page, author of a reply
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))  # transcript row of a reply
    page_round: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    twilio_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    local: Mapped[bool] = mapped_column(Boolean, default=False)  # kept in the local dev outbox
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    staff: Mapped["Staff | None"] = relationship()


class AuditLog(Base):
    """Who viewed, claimed, replied to, resolved or handed back what, and when. Never purged."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    action: Mapped[str] = mapped_column(String(32))
    escalation_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)

    staff: Mapped["Staff | None"] = relationship()


class RateCounter(Base):
    """One fixed window of one limit for one key: the single counter behind every limit.

    ``key`` is a keyed hash (never a number, email or address in the clear); rows older than a
    day are deleted by ``helpline purge``.
    """

    __tablename__ = "rate_counters"

    limit: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)  # window number since the epoch
    count: Mapped[int] = mapped_column(Integer, default=0)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Heartbeat(Base):
    """The dispatcher's last sign of life, per process name."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def mask(address: str | None) -> str:
    """Keep only the last four digits: '+15555550100' -> '***-0100'."""
    digits = "".join(ch for ch in (address or "") if ch.isdigit())
    return f"***-{digits[-4:]}" if len(digits) >= 4 else "***"


_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def mask_numbers(text: str | None) -> str | None:
    """Mask every phone number inside free text (Twilio error messages quote the 'To' number)."""
    return _PHONE.sub(lambda m: mask(m.group(0)), text) if text else text
