"""One database-backed counter for every limit in the app: replies, web chat, logins.

A limit is "at most N events per window". Each event increments a row keyed by (limit, keyed
hash of the subject, window number) with one atomic ``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING``, so concurrent requests in any number of processes or hosts cannot overshoot: the
database serialises the increments and each caller sees its own count. The previous window
still counts, weighted by how much of it overlaps the sliding window that ends now, so a burst
straddling a window boundary is not let through twice.

Subjects (a phone number, an email, a client address) are stored only as an HMAC keyed by the
app's secret, and ``helpline purge`` deletes counters older than a day.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.store import writes
from bot.store.models import RateCounter, utcnow

KEEP = timedelta(days=1)
Subject = str | tuple[str, ...]  # what a limit counts: a number, an address, or (account, address)


def _increment(insert):
    """Count one event in its window (a new row, or one more) and return the count with the previous
    window's (NULL when there is none), read in the same statement. Built once per dialect: built for
    each event, with the previous window read by a second statement, it cost a webhook text 17% of its
    time with the reply limit on."""
    counter = RateCounter.__table__
    previous = counter.alias("previous")
    return (insert(counter)
            .values(limit=bindparam("c_limit"), key=bindparam("c_key"), window=bindparam("c_window"), count=1,
                    ends_at=bindparam("c_ends_at"))
            .on_conflict_do_update(index_elements=[counter.c.limit, counter.c.key, counter.c.window],
                                   set_={"count": counter.c.count + 1})
            .returning(counter.c.count,
                       select(previous.c.count).where(previous.c.limit == bindparam("c_limit"),
                                                      previous.c.key == bindparam("c_key"),
                                                      previous.c.window == bindparam("c_window") - 1)
                       .scalar_subquery()))


_INCREMENT = {"postgresql": _increment(postgresql.insert), "sqlite": _increment(sqlite.insert)}


@dataclass(frozen=True)
class Limit:
    """At most ``max`` events per ``window`` for one subject; ``max <= 0`` means no limit."""

    name: str
    max: int
    window: timedelta

    def number(self, now: datetime) -> tuple[int, float]:
        """The window ``now`` falls in, and how far into it (0..1)."""
        seconds = self.window.total_seconds()
        position = now.timestamp() / seconds
        n = int(position)
        return n, position - n


class Limiter:
    """Counts events per (limit, subject) in the database; subjects are HMAC'd with ``secret``."""

    def __init__(self, secret: str | bytes):
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret

    def key(self, subject: Subject) -> str:
        """What is stored for a subject: a keyed hash, useless to look anyone up.

        A pair (an account and an address, say) is two half-length hashes side by side, so every
        counter of the first part can be cleared at once (an admin unlocking an account).
        """
        if isinstance(subject, tuple):
            return "".join(self._digest(part)[:64 // len(subject)] for part in subject)
        return self._digest(subject)

    def _digest(self, part: str) -> str:
        return hmac.new(self._secret, part.encode("utf-8"), hashlib.sha256).hexdigest()

    def hit(self, s: Session, limit: Limit, subject: Subject, now: datetime | None = None) -> bool:
        """Count one event; True when it is over the limit (the event is counted either way)."""
        if limit.max <= 0:
            return False
        now = now or utcnow()
        window, into = limit.number(now)
        ends = datetime.fromtimestamp((window + 1) * limit.window.total_seconds(), tz=timezone.utc)
        conn = s.connection()
        statement = _INCREMENT.get(conn.dialect.name)
        if statement is None:
            raise RuntimeError(f"rate limits need SQLite or PostgreSQL, not {conn.dialect.name}")
        count, previous = writes.run(conn, statement, {"c_limit": limit.name, "c_key": self.key(subject),
                                                       "c_window": window, "c_ends_at": ends})
        return _weighted(count, previous or 0, into) > limit.max

    def over(self, s: Session, limit: Limit, subject: Subject, now: datetime | None = None) -> bool:
        """Whether one more event would be over the limit, without counting anything."""
        if limit.max <= 0:
            return False
        now = now or utcnow()
        window, into = limit.number(now)
        key = self.key(subject)
        count = s.scalar(select(RateCounter.count).where(
            RateCounter.limit == limit.name, RateCounter.key == key, RateCounter.window == window)) or 0
        previous = s.scalar(select(RateCounter.count).where(
            RateCounter.limit == limit.name, RateCounter.key == key, RateCounter.window == window - 1)) or 0
        return _weighted(count + 1, previous, into) > limit.max

    def clear(self, s: Session, limit: Limit, subject: Subject) -> int:
        """Forget every window of one subject (an admin unlocking a login, say)."""
        return s.execute(delete(RateCounter).where(RateCounter.limit == limit.name,
                                                   RateCounter.key == self.key(subject))).rowcount

    def clear_first(self, s: Session, limit: Limit, first: str, parts: int = 2) -> int:
        """Forget every window of every pair subject whose first part is ``first`` (any address)."""
        prefix = self._digest(first)[:64 // parts]
        return s.execute(delete(RateCounter).where(RateCounter.limit == limit.name,
                                                   RateCounter.key.startswith(prefix, autoescape=True))).rowcount



def _weighted(count: int, previous: int, into: float) -> float:
    """The sliding-window estimate: this window's count plus the part of the previous window's that the
    sliding window still covers (``into``: how far into this window we are, 0 to 1)."""
    return count + previous * (1.0 - into)


def purge_counters(s: Session, now: datetime | None = None) -> int:
    """Delete counters whose windows ended more than a day ago."""
    cutoff = (now or utcnow()) - KEEP
    return s.execute(delete(RateCounter).where(RateCounter.ends_at < cutoff)).rowcount
