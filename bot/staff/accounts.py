"""Staff accounts: add, list, on-call, remove, and password checks (werkzeug scrypt hashes)."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bot.phones import staff_phone
from bot.store.models import Staff

PASSWORD_METHOD = "scrypt"  # werkzeug's; the test suite swaps in a fast one (tests/conftest.py)


class AccountError(ValueError):
    """A staff account request that cannot be carried out."""


def add_staff(s: Session, name: str, email: str, phone: str, password: str,
              admin: bool = False, on_call: bool = False) -> Staff:
    """Create a staff member; the password is stored only as a hash, the phone as ASCII E.164."""
    email = email.strip().lower()
    e164 = staff_phone(phone)
    if e164 is None:
        raise AccountError("phone must be in E.164 form, e.g. +15551234567")
    if len(password) < 10:
        raise AccountError("password must be at least 10 characters")
    if s.scalar(select(Staff).where(Staff.email == email)):
        raise AccountError(f"{email} already exists")
    staff = Staff(name=name.strip(), email=email, phone=e164, is_admin=admin, on_call=on_call,
                  password_hash=generate_password_hash(password, method=PASSWORD_METHOD))
    s.add(staff)
    s.flush()
    return staff


def find(s: Session, email: str) -> Staff | None:
    """The active or inactive staff member with this email."""
    return s.scalar(select(Staff).where(Staff.email == email.strip().lower()))


_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash of nothing anyone knows, made like every real one (same method, same cost)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = generate_password_hash(secrets.token_hex(16))
    return _dummy_hash


def authenticate(s: Session, email: str, password: str) -> Staff | None:
    """The active staff member for these credentials, or None.

    An unknown or removed email still costs one password check against a dummy hash, so the time a
    login takes does not tell anyone which emails are staff.
    """
    staff = find(s, email)
    if staff is None or not staff.active:
        check_password_hash(_dummy(), password)
        return None
    if not check_password_hash(staff.password_hash, password):
        return None
    return staff


def change_password(s: Session, email: str, password: str) -> tuple[Staff, int]:
    """Set a new password and end every session of the account; returns (staff, sessions ended)."""
    from bot.staff.sessions import revoke_all
    staff = find(s, email)
    if staff is None or not staff.active:
        raise AccountError(f"no active staff member {email}")
    if len(password) < 10:
        raise AccountError("password must be at least 10 characters")
    staff.password_hash = generate_password_hash(password)
    return staff, revoke_all(s, staff.id)


def set_on_call(s: Session, email: str, on: bool) -> Staff:
    """Put a staff member on or off call."""
    staff = find(s, email)
    if staff is None or not staff.active:
        raise AccountError(f"no active staff member {email}")
    staff.on_call = on
    return staff


def remove_staff(s: Session, email: str) -> Staff:
    """Deactivate (history and audit entries keep pointing at the row)."""
    staff = find(s, email)
    if staff is None or not staff.active:
        raise AccountError(f"no active staff member {email}")
    staff.active = False
    staff.on_call = False
    from bot.staff.sessions import revoke_all
    revoke_all(s, staff.id)
    return staff


def list_staff(s: Session) -> list[Staff]:
    """Active staff, on-call first."""
    return list(s.scalars(select(Staff).where(Staff.active.is_(True)).order_by(Staff.on_call.desc(), Staff.name)))
