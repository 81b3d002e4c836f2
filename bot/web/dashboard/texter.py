"""The test texter: staff text the bot as a fake number on the 'test' channel (never paged, never texted)."""

from __future__ import annotations

from uuid import uuid4

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import select

from bot.core.engine import Inbound
from bot.core.states import Channel
from bot.staff import actions
from bot.store.models import Contact, Escalation
from bot.web.dashboard import bp
from bot.web.dashboard.common import contact_messages, delivery, ext
from bot.web.dashboard.forms import DEFAULT_TEST_NUMBER, TexterNumberForm, TrainingTextForm, first_error


@bp.route("/test-texter", methods=["GET", "POST"])
def test_texter():
    """Training: text the bot as a fake number on the 'test' channel (escalations are never paged)."""
    if request.method == "POST":
        return _send()
    form = TexterNumberForm()
    if form.validate_on_submit():
        session["test_number"] = form.number.data
    elif form.is_submitted():
        flash(first_error(form), "error")
        session["test_number"] = DEFAULT_TEST_NUMBER
    number = session.get("test_number") or DEFAULT_TEST_NUMBER
    with ext().db.session() as s:
        c = s.scalar(select(Contact).where(Contact.address == f"test:{number}"))
        messages = contact_messages(s, c.id) if c else []
        rows = delivery(s, messages)
        escalations = list(s.scalars(select(Escalation).where(Escalation.contact_id == c.id)
                                     .order_by(Escalation.id.desc()))) if c else []
    return render_template("dashboard/test_texter.html", number=number, contact=c, messages=messages,
                           delivery=rows, escalations=escalations, last_id=messages[-1].id if messages else 0)


def _send():
    """One message from the fake number through the helpline, like a real text."""
    form = TrainingTextForm()
    if not form.validate_on_submit():
        flash(first_error(form), "error")
        if form.number.errors:
            session["test_number"] = DEFAULT_TEST_NUMBER
        return redirect(url_for("dashboard.test_texter"))
    number = session["test_number"] = form.number.data
    outcome = ext().helpline.handle(Inbound(sender=f"test:{number}", body=form.body.data, channel=Channel.TEST,
                                            message_id=f"test-{uuid4().hex}"))
    with ext().db.session() as s:
        actions.audit(s, current_user, "test_text", outcome.escalation_id, "training message sent")
    if outcome.reply is None:
        flash("The bot sent no reply (a human has this conversation, or the sender opted out).", "info")
    return redirect(url_for("dashboard.test_texter", number=number))
