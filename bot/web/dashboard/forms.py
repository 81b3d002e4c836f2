"""Every dashboard form as a FlaskForm: what each field accepts and what staff are told otherwise.

POST forms carry the session's CSRF token (the same one ``CSRFProtect`` checks app-wide, so a
fetch request may send it in the ``X-CSRFToken`` header instead). The GET forms (search, audit
filter, test texter number) change nothing, carry no token and count as submitted when the URL
has a query string.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from flask import request
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, NumberRange, Optional, ValidationError

from bot.phones import texter_number
from bot.staff.actions import MAX_NOTE, MAX_REPLY, OUTCOMES
from bot.web.ids import MAX_ID

DEFAULT_TEST_NUMBER = "+15550001234"
BAD_TEST_NUMBER = ("A test number is 7 to 15 digits, optionally starting with +, and must look like a phone "
                   f"number (e.g. {DEFAULT_TEST_NUMBER}).")
MAX_TEST_TEXT = 2000


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def first_error(form: FlaskForm) -> str:
    """The first validation message of a form, for a flash line."""
    for errors in form.errors.values():
        if errors:
            return errors[0]
    return "the form was incomplete"


class GetForm(FlaskForm):
    """A form read from the query string: no CSRF token (it changes nothing)."""

    class Meta:
        csrf = False

    def __init__(self, **kwargs):
        super().__init__(formdata=request.args, **kwargs)

    def is_submitted(self) -> bool:
        return bool(request.args)


# --- login -------------------------------------------------------------------------------------------

class LoginForm(FlaskForm):
    """Email and password (the email is compared case-insensitively)."""

    email = StringField("Email", filters=[_strip, lambda v: v.lower() if isinstance(v, str) else v],
                        validators=[DataRequired("Enter your email."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=1024)])
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button: logout, claim (only the CSRF token)."""


# --- one escalation -----------------------------------------------------------------------------------

class OwnedForm(FlaskForm):
    """An action on a claimed escalation. ``owner_ack`` is the owner's id, ticked by an admin who acts
    on a colleague's claim (and read off the page they saw, so a claim that changed hands meanwhile
    is refused)."""

    owner_ack = IntegerField("I am acting on their claim", validators=[Optional()])


class OwnedActionForm(OwnedForm):
    """Hand back, release: a button on a claimed escalation."""


class ReplyForm(OwnedForm):
    """A staff reply to the texter."""

    body = TextAreaField("Reply", filters=[_strip], validators=[
        DataRequired("a reply needs text"),
        Length(max=MAX_REPLY, message=f"a reply can be at most {MAX_REPLY} characters")])


class TransferForm(OwnedForm):
    """Hand a claimed conversation to a named colleague."""

    to = IntegerField("Colleague", validators=[DataRequired("choose a colleague")])


class NoteForm(FlaskForm):
    """An internal note: staff-only, never sent."""

    body = TextAreaField("Internal note", filters=[_strip], validators=[
        DataRequired("a note needs text"),
        Length(max=MAX_NOTE, message=f"a note can be at most {MAX_NOTE} characters")])


class OnCallForm(FlaskForm):
    """Put a staff member on or off call."""

    staff = IntegerField("Staff", validators=[DataRequired("choose a staff member")])
    on = StringField("On call", validators=[AnyOf(("on", "off"), message="on or off")])


class ResolveForm(OwnedForm):
    """Close an escalation with an outcome and an optional note."""

    outcome = StringField("Outcome", filters=[_strip], validators=[
        AnyOf(OUTCOMES, message=f"outcome must be one of {', '.join(OUTCOMES)}")])
    note = TextAreaField("Note", filters=[_strip], validators=[
        Optional(), Length(max=MAX_NOTE, message=f"a note can be at most {MAX_NOTE} characters")])


# --- search and audit (GET) -----------------------------------------------------------------------------

class SearchForm(GetForm):
    """Conversations by the last four digits of the number and/or a date (UTC)."""

    last4 = StringField("Last 4 digits",
                        filters=[lambda v: "".join(ch for ch in (v or "") if ch.isdigit())[-4:]])
    date = StringField("Date", filters=[_strip])

    def validate_date(self, field):
        if field.data:
            try:
                date.fromisoformat(field.data)
            except ValueError:
                raise ValidationError("Use a date like 2025-01-31.") from None

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        if not (self.last4.data or self.date.data):
            self.last4.errors.append("Enter the last 4 digits of the number, a date, or both.")
            return False
        return True

    @property
    def day(self) -> datetime | None:
        """The chosen day as midnight UTC."""
        if not self.date.data:
            return None
        return datetime.combine(date.fromisoformat(self.date.data), datetime.min.time(), tzinfo=timezone.utc)


class AuditFilterForm(GetForm):
    """The audit log, optionally for one escalation."""

    escalation = IntegerField("Escalation #", validators=[
        Optional(), NumberRange(min=1, max=MAX_ID, message="An escalation number is a whole number from 1.")])


# --- test texter ------------------------------------------------------------------------------------------

def _test_number(form, field):
    number = texter_number(field.data)
    if number is None:
        raise ValidationError(BAD_TEST_NUMBER)
    field.data = number  # ASCII E.164, whatever digits were typed


class TexterNumberForm(GetForm):
    """Choose the fake number the test texter texts from."""

    number = StringField("Number", filters=[_strip], validators=[DataRequired(BAD_TEST_NUMBER), _test_number])


class TrainingTextForm(FlaskForm):
    """One training message from the test texter."""

    number = HiddenField("Number", filters=[_strip], validators=[DataRequired(BAD_TEST_NUMBER), _test_number])
    body = TextAreaField("Message", validators=[
        DataRequired("Type a message to send."),
        Length(max=MAX_TEST_TEXT, message=f"A training message is at most {MAX_TEST_TEXT} characters.")])
