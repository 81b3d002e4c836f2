"""SQLAlchemy 2.x models: contacts, messages (both directions) and escalations."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

OPEN_STATUSES = ("open", "claimed")


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp is stored in UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base for all tables."""


class Contact(Base):
    """A texter, keyed by channel address (``+15551234567`` or ``whatsapp:+1...``)."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16), default="sms")
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
    direction: Mapped[str] = mapped_column(String(8))  # "in" or "out"
    sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    body: Mapped[str | None] = mapped_column(Text)
    media_count: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str | None] = mapped_column(String(16))  # decision kind for inbound, sender for outbound
    severity: Mapped[str | None] = mapped_column(String(16))
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
              sqlite_where=text("status IN ('open', 'claimed')"),
              postgresql_where=text("status IN ('open', 'claimed')")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    severity: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(64))
    rules: Mapped[str] = mapped_column(Text, default="")  # every rule that fired, comma-separated
    channel: Mapped[str] = mapped_column(String(16), default="sms")
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)  # call, don't text
    about_other: Mapped[bool] = mapped_column(Boolean, default=False)
    message_count: Mapped[int] = mapped_column(Integer, default=1)
    first_message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    contact: Mapped[Contact] = relationship()

    @property
    def silences_bot(self) -> bool:
        """A human handles it: any claimed escalation, or an open one that pages staff.

        An open review-tier escalation (a bare HELP, a vague "can't do this") is read the same
        day; until someone claims it the bot keeps answering questions rather than go quiet.
        """
        return self.status == "claimed" or self.severity in ("emergency", "urgent")


def mask(address: str | None) -> str:
    """Keep only the last four digits: '+15555550100' -> '***-0100'."""
    digits = "".join(ch for ch in (address or "") if ch.isdigit())
    return f"***-{digits[-4:]}" if len(digits) >= 4 else "***"
