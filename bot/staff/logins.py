"""Failed dashboard logins: slow a guesser down without locking the real user out.

Counted in the database (``bot.store.limits``), so the limits hold across processes and hosts:

- **per account and address**: 5 failures in 15 minutes lock that account *from that address*
  only; a stranger guessing cannot lock the real user out elsewhere;
- **per address**: 20 failures in 15 minutes lock the address (one guesser, many accounts);
- **per account, from new devices**: after 10 failures in 15 minutes from browsers that have
  never logged in to the account, such browsers get one try per 10 seconds for it, whatever
  their address. Guessing from many addresses becomes slow, while a browser that has logged in
  before (it carries a signed device cookie) is never slowed.

``helpline staff unlock EMAIL`` clears an account's counters. Every failure, refusal and unlock
is in the audit log (without the email typed: a mistyped password is often someone's email).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.staff.accounts import find
from bot.store.limits import Limit, Limiter
from bot.store.models import AuditLog, utcnow

WINDOW = timedelta(minutes=15)
FAILED_PER_ACCOUNT_ADDRESS = Limit("login_account_address", 5, WINDOW)
FAILED_PER_ADDRESS = Limit("login_address", 20, WINDOW)
FAILED_PER_ACCOUNT = Limit("login_account", 10, WINDOW)
NEW_DEVICE_PACE = Limit("login_new_device", 1, timedelta(seconds=10))

LOCKED = "locked"  # this account from this address, or this address: wait out the window
SLOWED = "slowed"  # this account from new devices: one try per 10 seconds


def _audit(s: Session, action: str, email: str | None, detail: str | None = None) -> None:
    staff = find(s, email) if email else None
    s.add(AuditLog(staff_id=staff.id if staff else None, action=action, detail=detail, at=utcnow()))


def gate(s: Session, limiter: Limiter, email: str, ip: str, trusted: bool, now: datetime | None = None) -> str | None:
    """Whether this attempt may check a password: None, or why not (``LOCKED``, ``SLOWED``)."""
    if limiter.over(s, FAILED_PER_ACCOUNT_ADDRESS, (email, ip), now) or limiter.over(s, FAILED_PER_ADDRESS, ip, now):
        return LOCKED
    if not trusted and limiter.over(s, FAILED_PER_ACCOUNT, email, now) and limiter.hit(s, NEW_DEVICE_PACE, email, now):
        return SLOWED
    return None


def refused(s: Session, email: str, why: str) -> None:
    """Audit a refused attempt (the account's, when the email is one)."""
    _audit(s, "login_refused", email, {LOCKED: "too many failures from this address",
                                       SLOWED: "account under guessing: new devices slowed"}[why])


def failed(s: Session, limiter: Limiter, email: str, ip: str, trusted: bool, now: datetime | None = None) -> None:
    """Count a wrong password against the account+address, the address and (new devices) the account."""
    limiter.hit(s, FAILED_PER_ACCOUNT_ADDRESS, (email, ip), now)
    limiter.hit(s, FAILED_PER_ADDRESS, ip, now)
    if not trusted:
        limiter.hit(s, FAILED_PER_ACCOUNT, email, now)
    s.add(AuditLog(staff_id=None, action="login_failed", at=utcnow()))


def unlock(s: Session, limiter: Limiter, email: str, address: str | None = None) -> int:
    """An admin's unlock: forget the account's failures from every address (and one address's); audited."""
    email = email.strip().lower()
    cleared = (limiter.clear(s, FAILED_PER_ACCOUNT, email) + limiter.clear(s, NEW_DEVICE_PACE, email)
               + limiter.clear_first(s, FAILED_PER_ACCOUNT_ADDRESS, email))
    if address:
        cleared += limiter.clear(s, FAILED_PER_ADDRESS, address)
    _audit(s, "login_unlocked", email, "by an admin" + (" (and one address)" if address else ""))
    return cleared
