"""Dashboard sessions kept on the server: a login opens one, logout and password changes end them.

The session cookie (signed by Flask) carries a random token; the database keeps only its
SHA-256, the staff member and when it expires or was revoked. A request is logged in only while
that row is live, so a cookie copied before logout, before a password change or before the
account was removed no longer works.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.store.models import Staff, StaffSession, aware, utcnow

LIFETIME = timedelta(hours=12)  # as PERMANENT_SESSION_LIFETIME


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(s: Session, staff: Staff, now: datetime | None = None) -> str:
    """Start a session for ``staff``; returns the token for the cookie (shown once, stored hashed)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    s.add(StaffSession(token_hash=_hash(token), staff_id=staff.id, created_at=now, expires_at=now + LIFETIME))
    return token


def staff_for(s: Session, staff_id: int, token: str | None, now: datetime | None = None) -> Staff | None:
    """The active staff member whose live session this token is, or None."""
    if not token or not isinstance(token, str) or len(token) > 128:
        return None
    row = s.execute(select(Staff, StaffSession).join(StaffSession, StaffSession.staff_id == Staff.id)
                    .where(StaffSession.token_hash == _hash(token), Staff.id == staff_id)).first()
    if row is None:
        return None
    staff, live = row
    if not staff.active or live.revoked_at is not None or aware(live.expires_at) <= (now or utcnow()):
        return None
    return staff


def revoke(s: Session, token: str | None, now: datetime | None = None) -> bool:
    """End one session (logout)."""
    if not token:
        return False
    return s.execute(update(StaffSession).where(StaffSession.token_hash == _hash(token),
                                                StaffSession.revoked_at.is_(None))
                     .values(revoked_at=now or utcnow())).rowcount == 1


def revoke_all(s: Session, staff_id: int, now: datetime | None = None) -> int:
    """End every live session of one staff member (password change, removal, a lost laptop)."""
    now = now or utcnow()
    return s.execute(update(StaffSession).where(StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None),
                                                StaffSession.expires_at > now)
                     .values(revoked_at=now)).rowcount
