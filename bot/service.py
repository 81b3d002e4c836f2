"""Handle one inbound message end to end: dedupe, decide, store, escalate, reply.

The order is what keeps a texter safe: the decision is computed from the pure core, storage
is one transaction (inbound message + escalation + reply), and if storage fails the texter
still gets the crisis reply (or, for routine texts, a short "call us"), logged loudly.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from bot.core.engine import Bot, Decision, Inbound, State
from bot.core.states import (Author, DecisionKind, Direction, EscalationStatus, OutboxStatus, Tier, channel_spec,
                             pages, rank, silences_bot)
from bot.store.db import Database, DeadlineExceeded, StaleConnection, StorageUnavailable, is_outage
from bot.store.limits import Limit, Limiter
from bot.store.spool import DEAD_AFTER, Entry, Spool
from bot.staff.paging import enqueue_round, page_recipients, page_recipients_and_id, page_rows, page_text
from bot.store import writes
from bot.store.models import Escalation, Message, mask, mask_numbers, utcnow

logger = logging.getLogger(__name__)

RECENT_LIMIT = 3
ATTEMPTS = 3
# Seconds of database work one message may take before it is answered from the core and spooled:
# with a 2 s connect timeout on top, every answer leaves within 5 s (Twilio waits 15).
STORE_SECONDS = 2.5
REPLAY_IN_REQUEST = 1.0  # seconds a request spends storing its own sender's spooled texts first
REPLAY_INTERVAL = 2.0  # seconds between background replays while the spool holds anything
# The reply limit never silences these: crisis replies, compliance words and the language switch.
NEVER_LIMITED = frozenset({DecisionKind.CRISIS, DecisionKind.HELP, DecisionKind.OPTOUT, DecisionKind.OPTIN,
                           DecisionKind.LANGUAGE})


@dataclass(frozen=True)
class Outcome:
    """What happened to one inbound message."""

    reply: str | None
    decision: Decision | None
    stored: bool
    duplicate: bool = False
    escalation_id: int | None = None
    refused: bool = False  # over a caller's limit (web chat): not stored, not answered by the bot


def recent_texts(s: Session, contact_id: int, since: datetime, limit: int = RECENT_LIMIT) -> tuple[str, ...]:
    """The sender's last few texts since ``since`` that did not page on their own, oldest first.

    They are read together with a new text ("i just took" + "30 of them"); the walk back stops at a
    text that paged, whose verdict already stands. A text held for review still joins: the next one
    may finish the crisis it began ("i just took", read the same day, then "30 of them").
    """
    rows = writes.run(s.connection(), writes.RECENT, {"contact_id": contact_id, "direction": Direction.IN,
                                                      "since": since, "limit": limit}, every=True)
    recent = []
    for severity, body in rows:
        if severity is not None and pages(severity):
            break
        if body:
            recent.append(body)
    return tuple(reversed(recent))


class Helpline:
    """The bot plus its storage; channel adapters (webhook, chat, simulator) call :meth:`handle`."""

    def __init__(self, bot: Bot, db: Database | None, context_minutes: int = 15, spool: Spool | None = None,
                 public_url: str | None = None, reply_limit_per_hour: int = 10, limiter: Limiter | None = None):
        self.bot = bot
        self.db = db
        self.context = timedelta(minutes=context_minutes)
        self.spool = spool
        self.public_url = public_url
        self.reply_limit = Limit("reply", reply_limit_per_hour, timedelta(hours=1))
        self.reply_notice = Limit("reply_notice", 1, timedelta(hours=1))
        self.limiter = limiter or Limiter(b"helpline")

    def handle(self, msg: Inbound, limits: Sequence[tuple[Limit, str]] = ()) -> Outcome:
        """Process one inbound message exactly once and return the reply to send.

        ``limits`` are the caller's own limits as (limit, subject) pairs (web chat: per conversation,
        per address). A text over one of them is refused, unless it pages staff: a crisis is never
        refused.

        Database work is bounded by ``STORE_SECONDS`` (``Database.deadline``); past it, or when
        storage fails, the reply comes from the core and the message goes to the spool.
        """
        if self.db is None:
            return self._without_storage(msg, reason="no database configured", limits=limits)
        with self.db.deadline(STORE_SECONDS):
            if self.spool is not None and self.spool.pending():
                # Older texts first. This sender's own are waited for (a crisis sent during an outage must
                # exist before the next text); others only if no other replayer is at them already.
                mine = self.spool.pending(msg.sender)
                self.replay_spool(budget=REPLAY_IN_REQUEST, wait=REPLAY_IN_REQUEST if mine else 0.0)
            for attempt in range(ATTEMPTS):
                try:
                    return self._handle_stored(msg, limits=limits)
                except IntegrityError:
                    # A concurrent delivery of the same MessageSid, or a race creating the contact or
                    # the open escalation: the next attempt sees the winner's rows.
                    logger.info("write race on attempt %d for %s; retrying", attempt + 1, mask(msg.sender))
                except StaleConnection:
                    logger.warning("a pooled database connection had died; retrying on a new one")
                except Exception as exc:  # noqa: BLE001 - storage failure must not silence the reply
                    if isinstance(exc, (StorageUnavailable, DeadlineExceeded)):
                        logger.error("storage skipped for a message from %s: %s", mask(msg.sender), exc)
                    else:
                        logger.exception("storage failed for a message from %s", mask(msg.sender))
                    return self._without_storage(msg, reason=f"storage error: {type(exc).__name__}", limits=limits)
        return self._without_storage(msg, reason="storage kept conflicting", limits=limits)

    def replay_spool(self, budget: float = 10.0, wait: float = 0.0) -> int:
        """Store spooled messages, oldest first and one at a time; returns how many were stored.

        Only one replayer runs at a time (a lease in the spool; ``wait`` seconds for it). An entry
        is deleted only after the database has stored it. The database failing again pauses the
        replay with the entry kept; an entry that fails for its own sake (a value the database
        refuses) is tried ``DEAD_AFTER`` times, then set aside as a dead letter and the replay
        moves on, so it can never block the entries behind it.
        """
        spool = self.spool
        if spool is None or self.db is None:
            return 0
        holder = f"{os.getpid()}:{threading.get_ident()}"
        try:
            if not spool.lease(holder, wait=wait):
                return 0
        except sqlite3.Error:
            logger.exception("could not read the spool")
            return 0
        stored = 0
        try:
            end = time.monotonic() + budget
            after = 0
            while time.monotonic() < end:
                entry = spool.next_pending(after)
                if entry is None:
                    break
                after = entry.id
                spool.lease(holder)  # renew
                try:
                    with self.db.deadline(STORE_SECONDS):
                        self._store_replayed(entry)
                except Exception as exc:  # noqa: BLE001
                    if is_outage(exc):
                        logger.warning("spool replay paused: the database is still failing (%s)", type(exc).__name__)
                        break
                    severity = self.bot.decide(entry.msg, State()).triage.severity
                    if spool.failed(entry.id, _describe(exc), severity):
                        logger.critical("spool entry %d (%s%s) could not be stored after %d tries: moved to the "
                                        "dead letters; see 'helpline spool list'", entry.id, mask(entry.msg.sender),
                                        f", {severity.upper()}" if severity else "", DEAD_AFTER)
                    else:
                        logger.error("spool entry %d could not be stored (%s); will try again", entry.id,
                                     type(exc).__name__)
                    continue
                spool.delete(entry.id)
                stored += 1
        except sqlite3.Error:
            logger.exception("could not read the spool")
        finally:
            try:
                spool.release(holder)
            except sqlite3.Error:
                logger.exception("could not release the spool lease")
        if stored:
            logger.warning("replayed %d message(s) stored late after a database outage", stored)
        return stored

    def _store_replayed(self, entry: Entry) -> Outcome:
        limits = [(Limit(name, maximum, timedelta(seconds=window)), subject)
                  for name, maximum, window, subject in entry.limits]
        for attempt in range(ATTEMPTS):
            try:
                return self._handle_stored(entry.msg, replayed_at=entry.received_at.isoformat(), limits=limits)
            except (IntegrityError, StaleConnection):
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def start_replayer(self, interval: float = REPLAY_INTERVAL) -> threading.Event:
        """Replay the spool from a background thread every ``interval`` seconds while it holds anything.

        The web entry points start one per process, so a spool drains after an outage even when
        no new text arrives. Returns the event that stops it.
        """
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval):
                try:
                    if self.spool is not None and self.spool.pending():
                        self.replay_spool()
                except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                    logger.exception("background spool replay failed")

        threading.Thread(target=run, name="spool-replayer", daemon=True).start()
        return stop

    def _without_storage(self, msg: Inbound, reason: str, limits: Sequence[tuple[Limit, str]] = ()) -> Outcome:
        """The safety path: answer from the core alone, and journal the message for replay.

        Flood limits still hold, counted in the spool: the caller's limits (never for a text that
        pages staff) and the reply limit per sender (never for crisis, HELP or STOP replies).
        """
        decision = self.bot.decide(msg, State())
        now = utcnow()
        spool = self.spool if self.db is not None else None
        if spool is not None:
            if not msg.message_id:
                msg = replace(msg, message_id=f"SPOOL{uuid4().hex}")
            try:
                if limits and not decision.triage.pages and self._over_in_spool(limits, now):
                    logger.warning("%s over its limit during an outage: refused", mask(msg.sender))
                    return Outcome(None, decision, stored=False, refused=True)
            except sqlite3.Error:
                logger.exception("could not count limits in the spool")
            spool.append(msg, now, [(limit.name, limit.max, limit.window.total_seconds(), subject)
                                    for limit, subject in limits])
        if decision.triage.escalate:
            logger.critical(
                "ESCALATION NOT STORED (%s): %s %s via rule %s; crisis reply sent, staff must check /healthz",
                reason, decision.triage.severity.upper(), mask(msg.sender), decision.triage.rule)
        else:
            logger.error("message from %s not stored (%s)", mask(msg.sender), reason)
        if decision.kind in (DecisionKind.CRISIS, DecisionKind.HELP, DecisionKind.OPTOUT):
            reply = decision.reply
        else:
            reply = self.bot.content.message("trouble", decision.language)
        if reply and decision.kind not in NEVER_LIMITED and spool is not None and \
                not channel_spec(msg.channel).training:
            try:
                if self._over_in_spool([(self.reply_limit, msg.sender)], now):
                    logger.warning("reply limit reached for %s during an outage: no reply", mask(msg.sender))
                    reply = None
            except sqlite3.Error:
                logger.exception("could not count the reply limit in the spool")
        return Outcome(reply, decision, stored=False)

    def _over_in_spool(self, limits: Sequence[tuple[Limit, str]], now: datetime) -> bool:
        """Count one event against each limit in the spool's own counters; True when any is exceeded."""
        over = False
        for limit, subject in limits:
            if limit.max > 0:
                over = self.spool.hit(limit.name, self.limiter.key(subject), limit.window, now) > limit.max or over
        return over

    def _handle_stored(self, msg: Inbound, replayed_at: str | None = None,
                       limits: Sequence[tuple[Limit, str]] = ()) -> Outcome:
        """Read what the sender's state needs, decide, then write everything in one short write phase.

        Threads of one process queue on its SQLite writer mutex before they take a connection (so a
        held database lock ties up one pooled connection per process, not the pool). The reads and
        the decision come before the first write, so they keep no other process waiting: on SQLite
        the transaction begins at the first write (pysqlite), and the cross-process writer lock is
        taken for the write phase only. The writes are Core statements where the ORM gave nothing (run
        straight on the DBAPI cursor, ``writes.run``), and commit before that lock is released. A
        sender's row or an open escalation created meanwhile by another process makes an insert fail on
        a unique key: ``handle`` retries.
        """
        with self.db.write_lock, self.db.unit(autocommit_reads=True) as s:
            try:
                found = writes.run(s.connection(), writes.LOOKUP, {"sid": msg.message_id, "address": msg.sender})
            except DBAPIError as exc:
                if exc.connection_invalidated:  # not pinged at checkout (db.PING_IDLE); nothing written yet
                    raise StaleConnection() from exc
                raise
            if found.seen_id is not None:
                return self._replay(s, msg.message_id, found.seen_id, found.seen_escalation_id)
            now = datetime.fromisoformat(replayed_at) if replayed_at else utcnow()
            contact = None if found.contact_id is None else _Texter(
                found.contact_id, msg.sender, found.channel, found.language, bool(found.opted_out))
            escalation = None if found.escalation_id is None else _Open(
                found.escalation_id, found.escalation_status, found.escalation_severity)
            state = State(language=contact and contact.language, opted_out=bool(contact and contact.opted_out),
                          escalated=escalation is not None and silences_bot(escalation.status, escalation.severity),
                          recent=recent_texts(s, contact.id, now - self.context) if contact else (),
                          claimed=escalation is not None and escalation.status == EscalationStatus.CLAIMED)
            decision = self.bot.decide(msg, state)
            verdict = decision.triage
            counted = bool(limits) and not verdict.pages  # a replayed text counts, but is never refused
            fused = self._fits_one_statement(contact, escalation, decision, counted, msg.channel)
            # Who a new escalation pages is read here too, before the write phase; on PostgreSQL with the new
            # escalation's id, so that one statement writes it all.
            opening = verdict.escalate and escalation is None
            pages = opening and Tier(verdict.severity).pages and channel_spec(msg.channel).pages_staff
            paged, new_id = ([], None), None
            if fused and opening:
                if pages:
                    paged, new_id = page_recipients_and_id(s)
                else:
                    new_id = writes.run(s.connection(), writes.DRAW_ESCALATION_ID, {}).escalation_id
            elif pages:
                paged = page_recipients(s)
            with self.db.writing(s, single=fused and self._one_statement(contact, escalation, decision)):
                conn = s.connection()  # Core statements on the session's own transaction
                seen = _seen_values(decision, now)
                if fused:
                    return self._store_fused(s, msg, contact, escalation, decision, seen, now, replayed_at,
                                             page_at=utcnow() if replayed_at else now, paged=paged, new_id=new_id)
                refusable = counted and replayed_at is None
                touched = contact is None and not refusable  # a new sender's row is written whole at once
                if contact is None:
                    row = {"address": msg.sender, "channel": msg.channel, "created_at": now, "last_seen_at": now,
                           **(seen if touched else {})}
                    contact = _Texter(writes.run(conn, writes.NEW_CONTACT, row)[0], msg.sender, msg.channel,
                                      row.get("language"), row.get("opted_out", False))
                if counted and self._over(s, limits, now) and refusable:
                    # The caller's flood limit. Never a crisis: those go through whatever the counters say.
                    logger.warning("%s over its limit: refused", contact.masked)
                    return Outcome(None, decision, stored=False, refused=True)
                decision = self._count_reply(s, contact, decision, now, replayed_at)
                if not touched:
                    writes.run(conn, writes.TOUCH, {"contact_id": contact.id, **seen})
                    contact = replace(contact, language=seen.get("language", contact.language),
                                      opted_out=seen.get("opted_out", contact.opted_out))
                # A text joins the escalation a human already has (its transcript stays together); one
                # that escalates on its own gets its escalation's id once that exists.
                joined = escalation.id if escalation is not None else None
                inbound_id = writes.run(conn, writes.NEW_MESSAGE, dict(
                    contact_id=contact.id, direction=Direction.IN, sid=msg.message_id, body=msg.body,
                    media_count=msg.media_count, kind=decision.kind, severity=verdict.severity,
                    crisis_kind=verdict.kind, rule=verdict.rule, topic=decision.topic, language=decision.language,
                    escalation_id=joined, created_at=now))[0]
                if verdict.escalate:
                    # A replayed crisis pages now, not when it came (the page says how long ago it came).
                    escalation = self._escalate(s, contact, escalation, inbound_id, decision, msg, now,
                                                page_at=utcnow() if replayed_at else now, paged=paged)
                    if joined is None:
                        writes.run(conn, writes.JOIN_ESCALATION,
                                  {"message_id": inbound_id, "escalation_id": escalation.id})
                        joined = escalation.id
                    if decision.held_reply and replayed_at is None:  # a replayed text got its crisis reply then
                        self._hold(escalation, decision, now)
                    _log_escalated(escalation, verdict, contact)
                    decision = _alerted(escalation, decision)
                elif escalation is not None:
                    writes.run(conn, writes.COUNT_IN, {"escalation_id": escalation.id, "now": now})
                if decision.reply and replayed_at is None:  # a replayed text was answered when it came
                    writes.run(conn, writes.NEW_REPLY, dict(
                        contact_id=contact.id, direction=Direction.OUT, body=decision.reply, kind=Author.BOT,
                        reply_to_id=inbound_id, escalation_id=joined, language=decision.language, created_at=now))
                _log_stored(msg, contact, decision)
                return Outcome(decision.reply, decision, stored=True,
                               escalation_id=escalation.id if escalation is not None else None)

    def _fits_one_statement(self, contact: "_Texter | None", escalation: "_Open | None", decision: Decision,
                            counted: bool, channel: str) -> bool:
        """Whether this text's writes can be fused into one or two PostgreSQL statements (``_store_fused``).

        So they can when it updates no open escalation with its own verdict (that may re-page or hold
        a reply), counts against none of the caller's limits (those may refuse it before anything is
        stored), and, for a new sender, when no reply limit needs the sender's id before the reply.
        """
        if not self.db.postgres or (decision.triage.escalate and escalation is not None) or counted:
            return False
        return contact is not None or not self._limits_reply(decision, channel)

    def _one_statement(self, contact: "_Texter | None", escalation: "_Open | None", decision: Decision) -> bool:
        """Whether ``_store_fused`` writes this text with one statement and nothing else: no open escalation
        to count it in, and no reply-limit counter (a new sender's has none on that path)."""
        return escalation is None and (contact is None or not self._limits_reply(decision, contact.channel))

    def _limits_reply(self, decision: Decision, channel: str) -> bool:
        """Whether this reply counts against the per-sender reply limit."""
        return (bool(decision.reply) and self.reply_limit.max > 0 and decision.kind not in NEVER_LIMITED
                and not channel_spec(channel).training)

    def _count_reply(self, s: Session, contact: "_Texter", decision: Decision, now: datetime,
                     replayed_at: str | None) -> Decision:
        """The reply limit: applied to a text answered now, counted for one answered during an outage."""
        if decision.reply and replayed_at is None:
            return self._reply_limit(s, contact, decision, now)
        if decision.reply and self._limits_reply(decision, contact.channel):
            self.limiter.hit(s, self.reply_limit, f"contact:{contact.id}", now)  # answered during the outage
        return decision

    def _store_fused(self, s: Session, msg: Inbound, contact: "_Texter | None", escalation: "_Open | None",
                     decision: Decision, seen: dict, now: datetime, replayed_at: str | None, page_at: datetime,
                     paged: tuple[list, str | None], new_id: int | None) -> Outcome:
        """PostgreSQL: ONE statement (data-modifying CTEs) writes the sender's row (new, or touched), the
        inbound message and the reply (``writes.routine_statement``); for a text that opens an escalation,
        the escalation and its first round of pages too (``writes.opening_statement``), its id ``new_id``
        drawn in the read phase with the page recipients (``page_recipients_and_id``).

        One statement is one transaction, so it runs in autocommit unless a reply-limit counter or an open
        escalation's count is written beside it: a routine text costs two round trips (the lookup, this),
        a new crisis that pages three (the recipients and its id too) where it took six. The same unique
        keys guard it: a concurrent delivery of the MessageSid, another process creating the sender's row
        or the sender's open escalation fails the statement with an ``IntegrityError`` and ``handle``
        retries (an id drawn for it stays unused).
        """
        if contact is not None:
            decision = self._count_reply(s, contact, decision, now, replayed_at)
        verdict = decision.triage
        joined = escalation.id if escalation is not None else new_id  # the escalation it joins, or opens
        texter = _Texter(contact.id if contact else None, msg.sender, contact.channel if contact else msg.channel,
                         seen.get("language", contact and contact.language),
                         seen.get("opted_out", bool(contact and contact.opted_out)))
        people: list = []
        if new_id is not None:
            opened, columns, people = self._new_escalation(texter, None, decision, msg, now, page_at, paged)
            opened.id = columns["id"] = new_id
            for taken in ("contact_id", "first_message_id"):  # from the inbound row, in the statement
                columns.pop(taken, None)
            decision = _alerted(opened, decision)
        reply = decision.reply if replayed_at is None else None  # a replayed text was answered when it came
        params = {f"m_{k}": v for k, v in dict(
            direction=Direction.IN, sid=msg.message_id, body=msg.body, media_count=msg.media_count,
            kind=decision.kind, severity=verdict.severity, crisis_kind=verdict.kind, rule=verdict.rule,
            topic=decision.topic, language=decision.language, escalation_id=joined, created_at=now).items()}
        if contact is None:
            params.update({f"c_{k}": v for k, v in {
                "address": msg.sender, "channel": msg.channel, "created_at": now, "language": None,
                "opted_out": False, "opted_out_at": None, **seen}.items()})
        else:
            params.update({f"c_{k}": v for k, v in seen.items()}, c_id=contact.id, m_contact_id=contact.id)
        if reply:
            params.update(_reply_params(reply, decision, joined, now))
        touched = tuple(sorted(seen)) if contact else ()
        if new_id is None:
            statement = writes.routine_statement(contact is None, touched, bool(reply))
        else:
            params.update({f"e_{k}": v for k, v in columns.items()})
            if people:
                body = self._page_body(opened, texter, page_at)
                for n, page in enumerate(page_rows(new_id, people, body, 0, page_at)):
                    params.update({f"p{n}_{k}": v for k, v in page.items()}, **{
                        f"p{n}_status": OutboxStatus.PENDING, f"p{n}_attempts": 0, f"p{n}_local": False})
            statement = writes.opening_statement(contact is None, touched, tuple(columns), len(people), bool(reply))
        row = writes.run(s.connection(), statement, params)
        texter = replace(texter, id=row[0])
        if new_id is not None:
            opened.contact_id, opened.first_message_id = row[0], row[1]
            self._log_opened(opened, people, verdict)
            _log_escalated(opened, verdict, texter)
        elif escalation is not None:
            writes.run(s.connection(), writes.COUNT_IN, {"escalation_id": escalation.id, "now": now})
        _log_stored(msg, texter, decision)
        return Outcome(decision.reply, decision, stored=True, escalation_id=joined)

    def _over(self, s: Session, limits: Sequence[tuple[Limit, str]], now: datetime) -> bool:
        """Count this text against each of the caller's limits; True when any is exceeded."""
        over = False
        for limit, subject in limits:
            over = self.limiter.hit(s, limit, subject, now) or over
        return over

    def _reply_limit(self, s: Session, contact: "_Texter", decision: Decision, now: datetime) -> Decision:
        """At most ``reply_limit`` bot replies per number per hour (SMS pumping, loops with other bots).

        Crisis replies, compliance words (HELP, STOP, START) and the language switch are never
        limited; training channels are exempt. Past the limit the texter is told once, then the
        bot stays silent for the rest of the hour (texts are still stored and triaged).
        """
        if decision.kind in NEVER_LIMITED or channel_spec(contact.channel).training:
            return decision
        subject = f"contact:{contact.id}"
        if not self.limiter.hit(s, self.reply_limit, subject, now):
            return decision
        if not self.limiter.hit(s, self.reply_notice, subject, now):
            logger.warning("reply limit reached for %s: told once, then stored without an answer", contact.masked)
            return replace(decision, kind=DecisionKind.LIMITED,
                           reply=self.bot.content.message("reply_limited", decision.language))
        return replace(decision, kind=DecisionKind.LIMITED, reply=None)

    def _escalate(self, s: Session, contact: "_Texter", known: "_Open | None", inbound_id: int,
                  decision: Decision, msg: Inbound, now: datetime, page_at: datetime | None = None,
                  paged: tuple[list, str | None] = ([], None)) -> Escalation:
        verdict = decision.triage
        if known is None:
            return self._open_escalation(s, contact, inbound_id, decision, msg, now, page_at or now, paged)
        # Read whole, and only now, under the write lock (PostgreSQL: the row's lock; SQLite: the writer lock,
        # held): another process may have raised it, added rules or paged since the read phase, and what is
        # written back here must build on that (else rules are lost and a round is paged twice).
        escalation = s.get(Escalation, known.id, with_for_update=True, populate_existing=True)
        writes.run(s.connection(), writes.COUNT_IN, {"escalation_id": escalation.id, "now": now})
        escalation.opted_out = escalation.opted_out or contact.opted_out
        if rank(verdict.severity) > rank(escalation.severity):
            escalation.severity, escalation.rule, escalation.kind = verdict.severity, verdict.rule, verdict.kind
        escalation.about_other = escalation.about_other or verdict.about_other
        known = [r for r in escalation.rules.split(",") if r]
        escalation.rules = ",".join([*known, *(r for r in verdict.rules if r not in known)])
        self._page_if_needed(s, escalation, page_at or now)
        return escalation

    def _open_escalation(self, s: Session, contact: "_Texter", inbound_id: int, decision: Decision, msg: Inbound,
                         now: datetime, page_at: datetime, paged: tuple[list, str | None]) -> Escalation:
        """A new escalation and its first round of pages: one INSERT each (Core), paging fields set at once.

        ``paged``: ``page_recipients`` read before the write phase (empty when this one pages nobody).

        Returns the escalation as a transient object (not in the session) for the caller's logging and reply.
        """
        escalation, columns, people = self._new_escalation(contact, inbound_id, decision, msg, now, page_at, paged)
        conn = s.connection()
        escalation.id = writes.run(conn, writes.NEW_ESCALATION, columns)[0]
        if people:
            body = self._page_body(escalation, contact, page_at)
            for page in page_rows(escalation.id, people, body, 0, page_at):
                writes.run(conn, writes.NEW_PAGE, page)
        self._log_opened(escalation, people, decision.triage)
        return escalation

    def _new_escalation(self, contact: "_Texter", inbound_id: int, decision: Decision, msg: Inbound, now: datetime,
                        page_at: datetime, paged: tuple[list, str | None]) -> tuple[Escalation, dict, list]:
        """A new escalation's row with its paging fields: as a transient object (no id yet) for the page text,
        the reply and the log, and as its set columns by name (its INSERT's parameters); and who its first
        round pages."""
        verdict = decision.triage
        columns = dict(contact_id=contact.id, status=EscalationStatus.OPEN, severity=verdict.severity, kind=verdict.kind,
                       rule=verdict.rule, rules=",".join(verdict.rules), channel=msg.channel, opted_out=contact.opted_out,
                       about_other=verdict.about_other, message_count=1, first_message_id=inbound_id, created_at=now,
                       updated_at=now, page_round=0, pages_sent=0)
        people = []
        if not channel_spec(msg.channel).pages_staff:
            columns["page_problem"] = "training conversation: nobody is paged"
        elif Tier(verdict.severity).pages:
            people, columns["page_problem"] = paged
            if people:
                columns["first_paged_at"] = columns["last_paged_at"] = page_at
        columns = {k: v for k, v in columns.items() if v is not None}  # an unset column takes its default
        return _NewEscalation(columns), columns, people

    def _page_body(self, escalation: Escalation, contact: "_Texter", page_at: datetime) -> str:
        """The text of a new escalation's first round of pages."""
        return page_text(escalation, self.public_url, self.bot.content.clinic_short_name, page_at,
                         address=contact.address)

    @staticmethod
    def _log_opened(escalation: Escalation, people: list, verdict) -> None:
        if people:
            logger.warning("escalation %d: %d page(s) queued", escalation.id, len(people))
        elif Tier(verdict.severity).pages and escalation.spec.pages_staff:
            logger.critical("escalation %d cannot be paged: no active staff", escalation.id)

    def _hold(self, escalation: Escalation, decision: Decision, now: datetime) -> None:
        """A crisis text in a claimed conversation: the owner's dashboard alerts at once; the dispatcher
        sends the held crisis reply and pages the owner again if no staff reply follows in time."""
        escalation.held_at = escalation.held_at or now  # the clock runs from the first unanswered one
        escalation.held_reply = decision.held_reply
        logger.warning("escalation %d: crisis text while claimed; bot silent, owner alerted", escalation.id)

    def _page_if_needed(self, s: Session, escalation: Escalation, now: datetime) -> None:
        """Queue the first round of pages in this same transaction (a review that turns urgent too)."""
        if not escalation.spec.pages_staff:
            escalation.page_problem = "training conversation: nobody is paged"
            return
        if (Tier(escalation.severity).pages and escalation.status == EscalationStatus.OPEN
                and escalation.last_paged_at is None and escalation.page_round == 0):
            n = enqueue_round(s, escalation, self.public_url, self.bot.content.clinic_short_name, now=now)
            logger.warning("escalation %d: %d page(s) queued", escalation.id, n)

    def _replay(self, s: Session, sid: str, seen_id: int, escalation_id: int | None) -> Outcome:
        """A Twilio retry: answer exactly as the first time, change nothing."""
        reply = s.scalar(select(Message.body).where(Message.reply_to_id == seen_id))
        logger.info("duplicate delivery %s ignored", sid)
        return Outcome(reply, None, stored=True, duplicate=True, escalation_id=escalation_id)


_ESCALATION_UNSET = {column.key: None for column in Escalation.__table__.columns}


class _NewEscalation:
    """A new escalation's row as its INSERT sets it, read by the page text, the reply and the log: a plain
    object, where an ORM ``Escalation`` built for them (never added to a session) cost an instrumented
    instance's state and an attribute event per column for each new crisis."""

    def __init__(self, columns: dict):
        self.__dict__.update(_ESCALATION_UNSET)
        self.__dict__.update(columns)

    spec = Escalation.spec  # channel_spec(self.channel), as the ORM row has it


@dataclass(frozen=True)
class _Open:
    """The sender's open escalation as the lookup read it: enough to decide and to count a text in.
    A text that escalates again reads the whole row under the write lock (``Helpline._escalate``)."""

    id: int
    status: str
    severity: str


@dataclass(frozen=True)
class _Texter:
    """The sender's row as one text needs it (read once; the write phase updates it with Core)."""

    id: int
    address: str
    channel: str
    language: str | None
    opted_out: bool

    @property
    def masked(self) -> str:
        return mask(self.address)


def _alerted(escalation: Escalation, decision: Decision) -> Decision:
    """The reply that says staff were alerted, when a page is queued in this transaction (only then true)."""
    if decision.reply and decision.alerted_reply and escalation.first_paged_at is not None:
        return replace(decision, reply=decision.alerted_reply)
    return decision


def _log_escalated(escalation: Escalation, verdict, contact: "_Texter") -> None:
    logger.warning("escalation %d: %s %s %s rule=%s", escalation.id, verdict.severity, verdict.kind, contact.masked,
                   verdict.rule)


def _log_stored(msg: Inbound, contact: "_Texter", decision: Decision) -> None:
    severity = decision.triage.severity
    logger.info("inbound %s from %s: %s%s", msg.message_id or "-", contact.masked, decision.kind,
                f" ({severity})" if severity else "")


def _reply_params(reply: str, decision: Decision, escalation_id: int | None, now: datetime) -> dict:
    """The ``r_*`` parameters of the bot's reply row."""
    return {f"r_{k}": v for k, v in dict(direction=Direction.OUT, body=reply, kind=Author.BOT,
                                         escalation_id=escalation_id, language=decision.language, media_count=0,
                                         created_at=now).items()}


def _seen_values(decision: Decision, now: datetime) -> dict:
    """The sender's columns one text sets: seen now, and the language and opt-out it chose."""
    values: dict = {"last_seen_at": now}
    if decision.remember_language:
        values["language"] = decision.remember_language
    if decision.opt_out is not None:
        values["opted_out"], values["opted_out_at"] = decision.opt_out, now if decision.opt_out else None
    return values


def _describe(exc: BaseException) -> str:
    """Why an entry failed, for the dead-letter list: the error's first line, numbers masked, no SQL."""
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {mask_numbers(first)}"
