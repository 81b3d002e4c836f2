"""The dispatcher: sends queued SMS, re-pages unclaimed escalations, follows up with texters.

Runs in a thread under ``helpline serve`` and as ``helpline worker`` processes. Several may
run at once against one database: every row is claimed with a compare-and-set UPDATE
(``WHERE status = 'pending'``), and a claim is a lease, so a row whose sender crashed mid-send
is picked up again after the lease expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from bot.config import Settings
from bot.core.content import Content
from bot.core.states import (PAGING_TIERS, Author, Direction, EscalationStatus, OutboxKind, OutboxStatus,
                             channel_spec, channels_where)
from bot.staff import paging
from bot.staff.sender import LocalSender, SendError, TwilioSender
from bot.store.db import Database
from bot.store.models import Contact, Escalation, Heartbeat, Message, Outbox, Staff, aware, is_open, utcnow

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 10
BATCH = 20


def backoff(attempts: int) -> timedelta:
    """2, 4, 8 ... seconds, at most a minute."""
    return timedelta(seconds=min(60, 2 ** attempts))


def make_sender(settings: Settings):
    """Twilio when configured; the local outbox in development; None when neither."""
    if settings.can_send_sms:
        callback = f"{settings.public_url.rstrip('/')}/sms/status" if settings.public_url else None
        return TwilioSender(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_phone_number,
                            api_url=settings.twilio_api_url, status_callback=callback)
    if settings.dev:
        return LocalSender()
    return None


class Dispatcher:
    """One dispatcher loop; safe to run in several processes."""

    def __init__(self, db: Database, settings: Settings, content: Content, sender=None, name: str | None = None):
        self.db = db
        self.settings = settings
        self.content = content
        # sender=False: a dispatcher used only for its failure handling (status callbacks).
        self.sender = make_sender(settings) if sender is None else (sender or None)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        if self.sender is None and sender is None:
            logger.error("no Twilio credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_PHONE_NUMBER): "
                         "pages and replies stay queued and /healthz reports them")

    # -- one pass ------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> int:
        """Heartbeat, schedule re-pages and follow-ups, send what is due; returns texts sent."""
        now = now or utcnow()
        self.beat(now)
        self.schedule(now)
        self.release_held(now)
        return self.send_due(now)

    def beat(self, now: datetime) -> None:
        """Record that this dispatcher is alive."""
        with self.db.session() as s:
            hb = s.get(Heartbeat, self.name)
            if hb is None:
                s.add(Heartbeat(name=self.name, beat_at=now))
            else:
                hb.beat_at = now

    def schedule(self, now: datetime) -> None:
        """Queue re-pages for unclaimed escalations and the one texter follow-up."""
        repage = timedelta(seconds=self.settings.repage_seconds)
        followup = timedelta(seconds=self.settings.followup_seconds)
        with self.db.session() as s:
            # Only escalations with something due: one query, however many are open.
            ids = s.scalars(select(Escalation.id).where(
                Escalation.status == EscalationStatus.OPEN, Escalation.severity.in_(PAGING_TIERS),
                Escalation.channel.in_(channels_where(pages_staff=True)),
                or_(func.coalesce(Escalation.last_paged_at, Escalation.created_at) <= now - repage,
                    (Escalation.followup_sent_at.is_(None)) & (Escalation.first_paged_at <= now - followup)),
            )).all()
        for esc_id in ids:
            with self.db.session() as s:
                esc = s.get(Escalation, esc_id)
                if esc is None or esc.status != EscalationStatus.OPEN:
                    continue
                last = aware(esc.last_paged_at) or aware(esc.created_at)
                if now - last >= repage:
                    # Compare-and-set on page_round so two dispatchers cannot both re-page.
                    won = s.execute(update(Escalation).where(
                        Escalation.id == esc.id, Escalation.page_round == esc.page_round,
                        Escalation.status == EscalationStatus.OPEN).values(page_round=esc.page_round + 1)).rowcount
                    if won:
                        s.refresh(esc)
                        n = paging.enqueue_round(s, esc, self.settings.public_url, self.content.clinic_short_name,
                                                 widen=True, now=now)
                        logger.warning("escalation %d unclaimed: re-page round %d to %d staff", esc.id, esc.page_round, n)
                # The texter was told staff are alerted when the first page went out: count from then.
                first_page = aware(esc.first_paged_at)
                if esc.followup_sent_at is None and first_page is not None and now - first_page >= followup:
                    won = s.execute(update(Escalation).where(
                        Escalation.id == esc.id, Escalation.followup_sent_at.is_(None)).values(
                        followup_sent_at=now)).rowcount
                    if won:
                        self._queue_followup(s, esc, now)

    def release_held(self, now: datetime) -> int:
        """A crisis text in a claimed conversation that no staff reply answered in time: the texter
        gets the crisis reply the bot held back, and the owner is paged again. Returns how many."""
        window = timedelta(seconds=self.settings.claimed_crisis_seconds)
        with self.db.session() as s:
            due = s.execute(select(Escalation.id, Escalation.held_at).where(
                Escalation.held_at.is_not(None), Escalation.held_at <= now - window,
                is_open(Escalation.status))).all()
        released = 0
        for esc_id, held_at in due:
            with self.db.session() as s:
                # Compare-and-set on held_at: one dispatcher sends it, and a staff reply meanwhile wins.
                won = s.execute(update(Escalation).where(Escalation.id == esc_id, Escalation.held_at == held_at)
                                .values(held_at=None)).rowcount
                if not won:
                    continue
                esc = s.get(Escalation, esc_id)
                body, esc.held_reply = esc.held_reply, None
                self._send_to_texter(s, esc, body, now, Author.BOT, "held crisis reply")
                if esc.status == EscalationStatus.CLAIMED and esc.spec.pages_staff and esc.claimed_by_id:
                    owner = s.get(Staff, esc.claimed_by_id)
                    minutes = max(1, round(self.settings.claimed_crisis_seconds / 60))
                    paging.enqueue_owner_page(s, esc, owner, self.settings.public_url, self.content.clinic_short_name,
                                              f"CRISIS TEXT, no staff reply in {minutes} min, in your claimed", now)
                logger.warning("escalation %d: no staff reply to a crisis text in time: crisis reply sent, "
                               "owner paged again", esc_id)
                released += 1
        return released

    def _send_to_texter(self, s, esc: Escalation, body: str, now: datetime, author: Author, what: str) -> None:
        """Store an automated message in the transcript and queue it where the channel texts back.

        A crisis reply is attempted even for an opted-out texter, as on the webhook."""
        contact = s.get(Contact, esc.contact_id)
        msg = Message(contact_id=contact.id, direction=Direction.OUT, body=body, kind=author,
                      escalation_id=esc.id, language=contact.language, created_at=now)
        s.add(msg)
        s.flush()
        if not esc.spec.texts_back:
            logger.warning("escalation %d: %s added to the %s transcript", esc.id, what, esc.spec.label)
            return
        s.add(Outbox(kind=OutboxKind.FOLLOWUP, to_address=contact.address, body=body, escalation_id=esc.id,
                     message_id=msg.id, next_attempt_at=now, created_at=now))

    def _queue_followup(self, s, esc: Escalation, now: datetime) -> None:
        contact = s.get(Contact, esc.contact_id)
        spec = channel_spec(esc.channel)
        if contact.opted_out or not spec.shows_followup:
            logger.warning("escalation %d: no texter follow-up (%s)", esc.id,
                           "opted out" if contact.opted_out else esc.channel)
            return
        body = self.content.message("followup", contact.language or "en")
        msg = Message(contact_id=contact.id, direction=Direction.OUT, body=body, kind=Author.FOLLOWUP,
                      escalation_id=esc.id, language=contact.language, created_at=now)
        s.add(msg)
        s.flush()
        if not spec.texts_back:
            # The chat widget polls the transcript: the message is delivered by being stored.
            logger.warning("escalation %d unclaimed: follow-up added to the web chat", esc.id)
            return
        s.add(Outbox(kind=OutboxKind.FOLLOWUP, to_address=contact.address, body=body, escalation_id=esc.id,
                     message_id=msg.id, next_attempt_at=now, created_at=now))
        logger.warning("escalation %d unclaimed: follow-up queued for %s", esc.id, contact.masked)

    # -- sending -------------------------------------------------------------------------
    def claim(self, now: datetime) -> list[tuple[int, bool]]:
        """Claim due rows for this process: (id, recovered), recovered meaning its last sender died."""
        with self.db.session() as s:
            candidates = s.execute(select(Outbox.id, Outbox.status).where(or_(
                (Outbox.status == OutboxStatus.PENDING) & (Outbox.next_attempt_at <= now),
                (Outbox.status == OutboxStatus.SENDING) & (Outbox.lease_until < now),
            )).order_by(Outbox.id).limit(BATCH)).all()
        mine = []
        for oid, status in candidates:
            due = ((Outbox.status == OutboxStatus.PENDING) & (Outbox.next_attempt_at <= now)
                   if status == OutboxStatus.PENDING
                   else (Outbox.status == OutboxStatus.SENDING) & (Outbox.lease_until < now))
            with self.db.session() as s:
                won = s.execute(update(Outbox).where(Outbox.id == oid, due)
                                .values(status=OutboxStatus.SENDING, lease_until=now + LEASE)).rowcount
            if won:
                mine.append((oid, status == OutboxStatus.SENDING))
        return mine

    def send_due(self, now: datetime | None = None) -> int:
        """Send every due row this process claims."""
        if self.sender is None:
            return 0
        now = now or utcnow()
        sent = 0
        for oid, recovered in self.claim(now):
            sent += self._send_one(oid, now, recovered)
        return sent

    def _send_one(self, oid: int, now: datetime, recovered: bool = False) -> int:
        with self.db.session() as s:
            row = s.get(Outbox, oid)
            esc = s.get(Escalation, row.escalation_id) if row.escalation_id else None
            to_owner = esc is not None and esc.status == EscalationStatus.CLAIMED and row.staff_id == esc.claimed_by_id
            if row.kind == OutboxKind.PAGE and esc is not None and esc.status != EscalationStatus.OPEN and not to_owner:
                row.status = OutboxStatus.CANCELLED  # claimed or closed meanwhile: nobody else needs waking
                return 0
            to, body, created = row.to_address, row.body, aware(row.created_at)
        try:
            sid = None
            if recovered and hasattr(self.sender, "find_sent"):
                # Its last sender died mid-send: Twilio may have accepted it already.
                sid = self.sender.find_sent(to, body, created)
                if sid:
                    logger.warning("outbox %d was already accepted by Twilio before a crash; not resending", oid)
            if not sid:
                sid = self.sender.send(to, body)
        except SendError as err:
            self._failed(oid, err, now)
            return 0
        with self.db.session() as s:
            row = s.get(Outbox, oid)
            row.status, row.twilio_sid, row.sent_at = OutboxStatus.SENT, sid or None, now
            row.local = self.sender.local
            row.attempts += 1
            if row.kind == OutboxKind.PAGE and row.escalation_id:
                esc = s.get(Escalation, row.escalation_id)
                esc.pages_sent += 1
        logger.info("outbox %d (%s) sent%s", oid, row.kind, " to the local outbox" if self.sender.local else "")
        return 1

    def _failed(self, oid: int, err: SendError, now: datetime) -> None:
        with self.db.session() as s:
            row = s.get(Outbox, oid)
            row.attempts += 1
            row.error_code, row.error_message = err.code, err.message
            if err.permanent or row.attempts >= MAX_ATTEMPTS:
                row.status = OutboxStatus.FAILED
                logger.error("outbox %d (%s) failed for good: %s %s", oid, row.kind, err.code, err.message)
                self.on_permanent_failure(s, row)
            else:
                row.status = OutboxStatus.PENDING
                row.next_attempt_at = now + backoff(row.attempts)
                logger.warning("outbox %d (%s) failed, retry %d: %s", oid, row.kind, row.attempts, err.message)

    def on_permanent_failure(self, s, row: Outbox) -> None:
        """Show the failure on the escalation and, for a page, try the next person."""
        if row.escalation_id is None:
            return
        esc = s.get(Escalation, row.escalation_id)
        if row.kind == OutboxKind.PAGE:
            who = row.staff.name if row.staff else "staff"
            esc.page_problem = f"page to {who} failed ({row.error_code or 'error'})"
            if esc.status == EscalationStatus.OPEN and not paging.enqueue_failover(
                    s, esc, row, self.settings.public_url, self.content.clinic_short_name):
                esc.page_problem += "; nobody else to page"
        elif row.error_code == "21610":
            contact = s.get(Contact, esc.contact_id)
            contact.opted_out = True
            esc.opted_out = True
            esc.page_problem = "texter has opted out of SMS (21610): call instead"

    # -- loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried."""
        logger.info("dispatcher %s running", self.name)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the loop must outlive a database blip
                logger.exception("dispatcher tick failed")
            stop.wait(interval)


def start_in_thread(db: Database, settings: Settings, content: Content) -> tuple[threading.Thread, threading.Event]:
    """Run a dispatcher beside the web server (``helpline serve``)."""
    stop = threading.Event()
    dispatcher = Dispatcher(db, settings, content)
    thread = threading.Thread(target=dispatcher.run, args=(stop,), name="dispatcher", daemon=True)
    thread.start()
    return thread, stop
