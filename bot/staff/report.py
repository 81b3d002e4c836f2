"""The numbers a clinic director reads: volumes, escalations, response times, outcomes, gaps.

One function, :func:`build`, makes a plain dict that ``helpline report --json``, the dashboard's
metrics page and its CSV export all show. Its keys are stable (documented in the README) and only
ever added to. Training channels (test texter, simulator) are left out of every number.

Times are in seconds: ``median`` is the middle value (the mean of the two middle ones for an even
count); ``p90`` is the nearest-rank 90th percentile (the smallest value at least 90% of the
values are at or below). Both are ``null`` when there is nothing to measure.

``unmatched`` lists what texters asked that the bot could not answer (it sent its menu), folded to
lower case without accents, digits replaced by ``#`` and spaces collapsed, so the same question
written twice counts twice and no number (phone, street, dose) survives. Only staff see it.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core.normalize import strip_accents
from bot.core.states import (TIERS, CrisisKind, DecisionKind, Direction, EscalationStatus, PAGING_TIERS,
                             channels_where)
from bot.staff.actions import OUTCOMES
from bot.store.models import Contact, Escalation, Message, aware, utcnow
from bot.store.retention import PURGED

VERSION = 1
TOP_TOPICS = 10
TOP_UNMATCHED = 25
UNMATCHED_CHARS = 160
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_EDGE = re.compile(r"^[^\w#]+|[^\w#]+$")


def normalise_question(text: str | None) -> str:
    """'What are your HOURS on Sunday??' -> 'what are your hours on sunday'; digits become '#'."""
    folded = strip_accents(text or "").lower()
    folded = _DIGITS.sub("#", folded)
    folded = _EDGE.sub("", _SPACE.sub(" ", folded))
    return folded[:UNMATCHED_CHARS]


def median_p90(values: list[float]) -> dict:
    """``{"median", "p90"}`` in seconds rounded to 0.1, or nulls when there is no value."""
    if not values:
        return {"median": None, "p90": None}
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 1), "p90": round(p90, 1)}


def _since_seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (aware(end) - aware(start)).total_seconds())


def build(s: Session, since: timedelta = timedelta(days=7), now: datetime | None = None) -> dict:
    """Every number for the window ``[now - since, now)``."""
    until = now or utcnow()
    start = until - since
    real = channels_where(training=False)

    texts = s.execute(select(Message.created_at, Contact.channel, Message.language, Message.kind, Message.body,
                             Message.topic)
                      .join(Contact, Message.contact_id == Contact.id)
                      .where(Message.direction == Direction.IN, Contact.channel.in_(real),
                             Message.created_at >= start, Message.created_at < until)).all()
    by_day: dict[str, int] = {}
    day = start.date()
    while day <= (until - timedelta(microseconds=1)).date():
        by_day[day.isoformat()] = 0
        day += timedelta(days=1)
    by_channel: Counter = Counter()
    by_language: Counter = Counter()
    topics: Counter = Counter()
    unmatched: Counter = Counter()
    for created, channel, language, kind, body, topic in texts:
        key = aware(created).date().isoformat()
        by_day[key] = by_day.get(key, 0) + 1
        by_channel[channel] += 1
        by_language[language or "unknown"] += 1
        if topic:
            topics[topic] += 1
        if kind == DecisionKind.MENU and body and body != PURGED:
            question = normalise_question(body)
            if question:
                unmatched[question] += 1

    escalations = s.scalars(select(Escalation).where(Escalation.channel.in_(real), Escalation.created_at >= start,
                                                     Escalation.created_at < until)).all()
    by_tier = {t.value: 0 for t in TIERS}
    by_kind = {k.value: 0 for k in CrisisKind}
    outcomes = {o: 0 for o in OUTCOMES}
    statuses = {st.value: 0 for st in EscalationStatus}
    to_claim, to_reply, pages = [], [], []
    followups = 0
    for e in escalations:
        by_tier[e.severity] = by_tier.get(e.severity, 0) + 1
        if e.kind:
            by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
        statuses[e.status] = statuses.get(e.status, 0) + 1
        if e.outcome:
            outcomes[e.outcome] = outcomes.get(e.outcome, 0) + 1
        claim = _since_seconds(e.created_at, e.first_claimed_at)
        if claim is not None:
            to_claim.append(claim)
        first_reply = _since_seconds(e.created_at, e.first_reply_at)
        if first_reply is not None:
            to_reply.append(first_reply)
        if e.severity in PAGING_TIERS:
            pages.append(e.pages_sent or 0)
        if e.followup_sent_at is not None:
            followups += 1

    return {
        "version": VERSION,
        "since": start.isoformat(),
        "until": until.isoformat(),
        "texts": len(texts),
        "texts_by_day": by_day,
        "texts_by_channel": dict(sorted(by_channel.items())),
        "texts_by_language": dict(sorted(by_language.items())),
        "escalations": len(escalations),
        "escalations_by_tier": by_tier,
        "escalations_by_kind": by_kind,
        "escalations_by_status": statuses,
        "time_to_claim_s": median_p90(to_claim),
        "time_to_first_reply_s": median_p90(to_reply),
        "pages": sum(pages),
        "pages_per_escalation": ({"mean": round(sum(pages) / len(pages), 2), "max": max(pages)}
                                 if pages else {"mean": None, "max": None}),
        "followups": followups,
        "outcomes": outcomes,
        "top_topics": [{"topic": t, "count": n} for t, n in sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))
                       [:TOP_TOPICS]],
        "unmatched": [{"text": q, "count": n} for q, n in sorted(unmatched.items(), key=lambda kv: (-kv[1], kv[0]))
                      [:TOP_UNMATCHED]],
    }


def csv_rows(report: dict) -> list[tuple[str, str, str]]:
    """The report as (metric, key, value) rows, for a spreadsheet."""
    rows: list[tuple[str, str, str]] = []

    def value(v) -> str:
        return "" if v is None else str(v)

    for metric, v in report.items():
        if isinstance(v, dict):
            for key, inner in v.items():
                rows.append((metric, str(key), value(inner)))
        elif isinstance(v, list):
            for item in v:
                label = item.get("text", item.get("topic", ""))
                rows.append((metric, str(label), value(item.get("count"))))
        else:
            rows.append((metric, "", value(v)))
    return rows


def text_lines(report: dict, clinic: str) -> list[str]:
    """A short human-readable summary for the terminal (``clinic``: the clinic's short name)."""
    def secs(d: dict) -> str:
        if d["median"] is None:
            return "no data"
        return f"median {d['median']:.0f} s, p90 {d['p90']:.0f} s"

    lines = [f"{clinic} helpline, {report['since'][:16]} to {report['until'][:16]} UTC",
             f"texts: {report['texts']}  (" + ", ".join(f"{k} {v}" for k, v in report["texts_by_channel"].items()) + ")",
             f"escalations: {report['escalations']}  (" +
             ", ".join(f"{k} {v}" for k, v in report["escalations_by_tier"].items()) + ")",
             f"time to claim: {secs(report['time_to_claim_s'])}",
             f"time to first staff reply: {secs(report['time_to_first_reply_s'])}",
             f"pages: {report['pages']}; texter follow-ups: {report['followups']}",
             "outcomes: " + (", ".join(f"{k} {v}" for k, v in report["outcomes"].items() if v) or "none")]
    if report["unmatched"]:
        lines.append("questions the bot could not answer:")
        lines += [f"  {u['count']:>4}  {u['text']}" for u in report["unmatched"]]
    return lines
