"""Reading the record: one texter's conversation, search, the audit log and the local outbox."""

from __future__ import annotations

from flask import abort, flash, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

from bot.core.states import Direction
from bot.staff import actions
from bot.store.models import Contact, Escalation
from bot.web.dashboard import bp
from bot.web.dashboard.common import contact_messages, delivery, ext, parse_id
from bot.web.dashboard.forms import AuditFilterForm, SearchForm, first_error


@bp.get("/contacts/<int:contact_id>")
def contact(contact_id: int):
    """One texter's conversation (reached from search), with their escalations."""
    with ext().db.session() as s:
        c = s.get(Contact, contact_id)
        if c is None:
            abort(404)
        messages = contact_messages(s, contact_id)
        history = list(s.scalars(select(Escalation).where(Escalation.contact_id == contact_id)
                                 .order_by(Escalation.id.desc())))
        rows = delivery(s, messages)
        actions.audit(s, current_user, "view_contact", None, f"contact {contact_id}")
    return render_template("dashboard/contact.html", contact=c, messages=messages, history=history,
                           delivery=rows, last_id=messages[-1].id if messages else 0)


@bp.get("/contacts/<int:contact_id>/poll")
def contact_poll(contact_id: int):
    """New transcript rows for a contact (contact page and test texter)."""
    after = parse_id(request.args.get("after"))
    with ext().db.session() as s:
        c = s.get(Contact, contact_id)
        if c is None:
            abort(404)
        new = contact_messages(s, contact_id, after=after)
        html = render_template("dashboard/_messages.html", messages=new, delivery=delivery(s, new), esc=None,
                               channel=c.channel)
    return jsonify(last_id=max([after, *(m.id for m in new)]), html=html,
                   new_inbound=sum(1 for m in new if m.direction == Direction.IN), state="")


@bp.get("/search")
def search():
    """Conversations by the last four digits of the number and/or a date (UTC)."""
    form = SearchForm()
    error, results = None, None
    if form.validate_on_submit():
        with ext().db.session() as s:
            rows = actions.search(s, last4=form.last4.data or None, day=form.day)
            latest = {}
            if rows:
                for esc in s.scalars(select(Escalation).where(Escalation.contact_id.in_([c.id for c, _, _ in rows]))
                                     .order_by(Escalation.id)):
                    latest[esc.contact_id] = esc
            results = [{"contact": c, "count": n, "last": last, "escalation": latest.get(c.id)}
                       for c, n, last in rows]
    elif form.is_submitted():
        error = first_error(form)
    return render_template("dashboard/search.html", last4=form.last4.data or "", day=form.date.data or "",
                           error=error, results=results)


@bp.get("/audit")
def audit_log():
    """Who viewed, claimed, replied to, resolved and handed back what."""
    form = AuditFilterForm()
    esc_id = None
    if form.validate_on_submit():
        esc_id = form.escalation.data
    elif form.is_submitted():
        flash(first_error(form), "error")
    with ext().db.session() as s:
        rows = [(e.at, e.staff.name if e.staff else "system", e.action, e.escalation_id, e.detail)
                for e in actions.audit_entries(s, esc_id, limit=500)]
    return render_template("dashboard/audit.html", rows=rows, escalation_id=esc_id)


@bp.get("/outbox")
def outbox():
    """The local development outbox: what would have been texted when Twilio is not configured."""
    settings = ext().settings
    with ext().db.session() as s:
        rows = actions.local_outbox(s, limit=200)
    return render_template("dashboard/outbox.html", rows=rows, can_send=settings.can_send_sms, dev=settings.dev)
