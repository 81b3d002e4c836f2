"""Phone numbers read with Google's libphonenumber (the ``phonenumbers`` package), stored as E.164.

Whatever digits a person typed (ASCII, Arabic-Indic, full-width...), what is stored is ASCII
E.164 (``+15625550123``) or nothing: a number is never kept in the form it was typed.
"""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "US"  # the clinic is in Los Angeles: a number without a country code is a US number
MAX_TYPED = 40
_E164_TYPED = re.compile(r"\+\d+")  # \d: any script's digits, converted to ASCII below


def _parse(raw: object, region: str | None) -> phonenumbers.PhoneNumber | None:
    if not isinstance(raw, str) or len(raw) > MAX_TYPED:
        return None
    text = raw.strip()
    # Letters are refused outright: libphonenumber reads 1-800-FLOWERS and "ext 4" as numbers.
    if not text or any(ch.isalpha() for ch in text):
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return None if number.extension else number


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def callback_number(raw: object) -> str | None:
    """A number a web visitor typed for a call back: any usual format, a real (valid) number."""
    number = _parse(raw, DEFAULT_REGION)
    if number is None or not phonenumbers.is_valid_number(number):
        return None
    return _e164(number)


def staff_phone(raw: object) -> str | None:
    """A staff member's pager number: typed in E.164 (``+`` and digits), of a possible length for its country.

    Possible rather than valid: the fictional +1 555 numbers used in training and tests page the
    local outbox, and a real typo still fails loudly at Twilio and pages the next person.
    """
    if not isinstance(raw, str) or not _E164_TYPED.fullmatch(raw.strip()):
        return None
    number = _parse(raw, None)
    if number is None or not phonenumbers.is_possible_number(number):
        return None
    return _e164(number)


def texter_number(raw: object) -> str | None:
    """The fake number of the dashboard's test texter: any format, of a possible length."""
    number = _parse(raw, DEFAULT_REGION)
    if number is None or not phonenumbers.is_possible_number(number):
        return None
    return _e164(number)
