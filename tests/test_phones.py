"""Phone numbers through libphonenumber: stored as ASCII E.164 whatever digits were typed, or refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.phones import callback_number, staff_phone, texter_number
from bot.staff.accounts import AccountError, add_staff
from bot.store.models import Staff

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("digits", [ARABIC_INDIC, FULLWIDTH])
def test_non_ascii_digits_become_ascii_e164(digits):
    assert callback_number("(562) 555-0123".translate(digits)) == "+15625550123"
    assert staff_phone("+15555550901".translate(digits)) == "+15555550901"
    assert texter_number("+15550001234".translate(digits)) == "+15550001234"
    for stored in (callback_number("(562) 555-0123".translate(digits)), staff_phone("+15555550901".translate(digits))):
        assert stored.isascii()


@pytest.mark.parametrize("raw", ["1-800-FLOWERS", "+1 562 555 0123 x4", "+1 562 555 0123 ext. 4", "٥٥٥", "+" + "1" * 40])
def test_letters_extensions_and_nonsense_are_refused(raw):
    assert callback_number(raw) is None and texter_number(raw) is None and staff_phone(raw) is None


def test_a_callback_number_must_be_a_real_number_but_a_training_number_only_a_possible_one():
    assert callback_number("+1 555 000 1234") is None  # 555 is not a US area code
    assert texter_number("+1 555 000 1234") == "+15550001234"


def test_a_staff_phone_typed_in_arabic_indic_digits_is_stored_in_ascii(db):
    with db.session() as s:
        add_staff(s, "Dana Ruiz", "dana@clinic.test", "+١٥٦٢٥٥٥٠١١١", "correct horse battery")
    with db.session() as s:
        assert s.scalar(select(Staff.phone)) == "+15625550111"


def test_a_staff_phone_not_typed_in_e164_is_refused(db):
    with db.session() as s, pytest.raises(AccountError, match="E.164"):
        add_staff(s, "Dana Ruiz", "dana@clinic.test", "(562) 555-0111", "correct horse battery")


def test_the_chat_stores_a_callback_number_typed_in_arabic_indic_digits_in_ascii(client, db):
    from bot.store.models import Escalation
    token = client.post("/chat/api/start", json={}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    client.post("/chat/api/messages", json={"text": "I took 30 valium and I'm shaking"}, headers=auth)
    resp = client.post("/chat/api/callback", json={"phone": "(٥٦٢) ٥٥٥-٠١٢٣"}, headers=auth)
    assert resp.status_code == 200
    with db.session() as s:
        assert s.scalar(select(Escalation.callback_number)) == "+15625550123"
