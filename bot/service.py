"""Handle one inbound message end to end: dedupe, decide, store, escalate, reply.

The order is what keeps a texter safe: the decision is computed from the pure core, storage
is one transaction (inbound message + escalation + reply), and if storage fails the texter
still gets the crisis reply (or, for routine texts, a short "call us"), logged loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.core.engine import Bot, Decision, Inbound, State
from bot.core.states import (OPEN_STATUSES, Author, DecisionKind, Direction, EscalationStatus, Tier, channel_spec,
                             rank)
from bot.store.db import Database
from bot.store.limits import Limit, Limiter
from bot.store.spool import Spool
from bot.staff.paging import enqueue_round
from bot.store.models import Contact, Escalation, Message, mask, utcnow

logger = logging.getLogger(__name__)

RECENT_LIMIT = 3
ATTEMPTS = 3
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
    """The sender's last few texts since ``since`` that did not escalate on their own, oldest first.

    They are read together with a new text ("i just took" + "30 of them"); the walk back stops at a
    text that escalated, whose verdict already stands.
    """
    rows = s.scalars(select(Message).where(
        Message.contact_id == contact_id, Message.direction == Direction.IN, Message.created_at >= since)
        .order_by(Message.id.desc()).limit(limit)).all()
    recent = []
    for row in rows:
        if row.severity is not None:
            break
        if row.body:
            recent.append(row.body)
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
        """
        if self.db is None:
            return self._without_storage(msg, reason="no database configured")
        if self.spool is not None and self.spool.pending():
            # Older texts first: a crisis sent during an outage must exist before the next text.
            self.replay_spool()
        for attempt in range(ATTEMPTS):
            try:
                return self._handle_stored(msg, limits=limits)
            except IntegrityError:
                # A concurrent delivery of the same MessageSid, or a race creating the contact or
                # the open escalation: the next attempt sees the winner's rows.
                logger.info("write race on attempt %d for %s; retrying", attempt + 1, mask(msg.sender))
            except Exception:  # noqa: BLE001 - storage failure must not silence the reply
                logger.exception("storage failed for a message from %s", mask(msg.sender))
                return self._without_storage(msg, reason="storage error")
        return self._without_storage(msg, reason="storage kept conflicting")

    def replay_spool(self) -> int:
        """Store messages that arrived while the database was down; returns how many."""
        try:
            entries = self.spool.take()
        except OSError:
            logger.exception("could not read the spool")
            return 0
        stored = 0
        for i, (msg, received_at) in enumerate(entries):
            try:
                self._handle_stored(msg, replayed_at=received_at)
                stored += 1
            except IntegrityError:
                stored += 1  # already stored through a Twilio retry
            except Exception:  # noqa: BLE001
                logger.exception("spool replay stopped; %d entries go back", len(entries) - i)
                self.spool.give_back(entries[i:])
                return stored
        self.spool.done()
        if stored:
            logger.warning("replayed %d message(s) stored late after a database outage", stored)
        return stored

    def _without_storage(self, msg: Inbound, reason: str) -> Outcome:
        if self.spool is not None and self.db is not None:
            self.spool.append(msg, utcnow().isoformat())
        decision = self.bot.decide(msg, State())
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
        return Outcome(reply, decision, stored=False)

    def _handle_stored(self, msg: Inbound, replayed_at: str | None = None,
                       limits: Sequence[tuple[Limit, str]] = ()) -> Outcome:
        with self.db.write_lock, self.db.session() as s:
            if msg.message_id:
                seen = s.scalar(select(Message).where(Message.sid == msg.message_id))
                if seen is not None:
                    return self._replay(s, seen)
            now = datetime.fromisoformat(replayed_at) if replayed_at else utcnow()
            contact = s.scalar(select(Contact).where(Contact.address == msg.sender))
            if contact is None:
                contact = Contact(address=msg.sender, channel=msg.channel)
                s.add(contact)
                s.flush()
            escalation = s.scalar(select(Escalation).where(
                Escalation.contact_id == contact.id, Escalation.status.in_(OPEN_STATUSES)))
            state = State(language=contact.language, opted_out=contact.opted_out,
                          escalated=escalation is not None and escalation.silences_bot,
                          recent=recent_texts(s, contact.id, now - self.context),
                          claimed=escalation is not None and escalation.status == EscalationStatus.CLAIMED)
            decision = self.bot.decide(msg, state)
            verdict = decision.triage
            if limits and not verdict.pages and self._over(s, limits, now):
                # The caller's flood limit. Never a crisis: those go through whatever the counters say.
                logger.warning("%s over its limit: refused", contact.masked)
                return Outcome(None, decision, stored=False, refused=True)
            if decision.reply and replayed_at is None:
                decision = self._reply_limit(s, contact, decision, now)
            contact.last_seen_at = now
            if decision.remember_language:
                contact.language = decision.remember_language
            if decision.opt_out is True:
                contact.opted_out, contact.opted_out_at = True, now
            elif decision.opt_out is False:
                contact.opted_out, contact.opted_out_at = False, None
            inbound = Message(contact_id=contact.id, direction=Direction.IN, sid=msg.message_id, body=msg.body,
                              media_count=msg.media_count, kind=decision.kind, severity=verdict.severity,
                              crisis_kind=verdict.kind, rule=verdict.rule, topic=decision.topic,
                              language=decision.language, created_at=now)
            s.add(inbound)
            s.flush()
            if verdict.escalate:
                escalation = self._escalate(s, contact, escalation, inbound, decision, msg, now)
                inbound.escalation_id = escalation.id
                if decision.held_reply and replayed_at is None:  # a replayed text got its crisis reply then
                    self._hold(escalation, decision, now)
                logger.warning("escalation %d: %s %s rule=%s", escalation.id, verdict.severity,
                               contact.masked, verdict.rule)
            elif escalation is not None:
                # A human owns this conversation: keep the transcript together.
                inbound.escalation_id = escalation.id
                escalation.message_count += 1
                escalation.updated_at = now
            if decision.reply and replayed_at is None:  # a replayed text was answered when it came
                s.add(Message(contact_id=contact.id, direction=Direction.OUT, body=decision.reply, kind=Author.BOT,
                              reply_to_id=inbound.id, escalation_id=inbound.escalation_id,
                              language=decision.language, created_at=now))
            logger.info("inbound %s from %s: %s%s", msg.message_id or "-", contact.masked, decision.kind,
                        f" ({verdict.severity})" if verdict.severity else "")
            return Outcome(decision.reply, decision, stored=True,
                           escalation_id=escalation.id if escalation is not None else None)

    def _over(self, s: Session, limits: Sequence[tuple[Limit, str]], now: datetime) -> bool:
        """Count this text against each of the caller's limits; True when any is exceeded."""
        over = False
        for limit, subject in limits:
            over = self.limiter.hit(s, limit, subject, now) or over
        return over

    def _reply_limit(self, s: Session, contact: Contact, decision: Decision, now: datetime) -> Decision:
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

    def _escalate(self, s: Session, contact: Contact, escalation: Escalation | None, inbound: Message,
                  decision: Decision, msg: Inbound, now: datetime) -> Escalation:
        verdict = decision.triage
        if escalation is None:
            escalation = Escalation(contact_id=contact.id, status=EscalationStatus.OPEN, severity=verdict.severity,
                                    kind=verdict.kind, rule=verdict.rule, rules=",".join(verdict.rules),
                                    channel=msg.channel, opted_out=contact.opted_out,
                                    about_other=verdict.about_other,
                                    first_message_id=inbound.id, created_at=now, updated_at=now)
            s.add(escalation)
            s.flush()
            self._page_if_needed(s, escalation, now)
            return escalation
        escalation.message_count += 1
        escalation.updated_at = now
        escalation.opted_out = escalation.opted_out or contact.opted_out
        if rank(verdict.severity) > rank(escalation.severity):
            escalation.severity, escalation.rule, escalation.kind = verdict.severity, verdict.rule, verdict.kind
        escalation.about_other = escalation.about_other or verdict.about_other
        known = [r for r in escalation.rules.split(",") if r]
        escalation.rules = ",".join([*known, *(r for r in verdict.rules if r not in known)])
        self._page_if_needed(s, escalation, now)
        return escalation

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

    def _replay(self, s: Session, seen: Message) -> Outcome:
        """A Twilio retry: answer exactly as the first time, change nothing."""
        reply = s.scalar(select(Message.body).where(Message.reply_to_id == seen.id))
        logger.info("duplicate delivery %s ignored", seen.sid)
        return Outcome(reply, None, stored=True, duplicate=True, escalation_id=seen.escalation_id)
