"""One escalation: the transcript and its live poll; claim, reply, notes, transfer, resolve, hand back, release.

After an action the browser lands on a fragment naming what the action produced (the reply box
after a claim, the new message after a reply, the new note after a note, the message line after
anything else) and the script moves keyboard focus there.
"""

from __future__ import annotations

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core.canned import load_canned_cached
from bot.core.content import LANGUAGES
from bot.core.states import Direction, EscalationStatus
from bot.staff import actions
from bot.store.models import Contact, Escalation, Message, Staff
from bot.store.retention import PURGED
from bot.web.dashboard import bp
from bot.web.dashboard.common import delivery, ext, get_escalation, parse_id, staff_names
from bot.web.dashboard.filters import delivery_text
from bot.web.dashboard.forms import (ActionForm, NoteForm, OwnedActionForm, ReplyForm, ResolveForm, TransferForm,
                                     first_error)

STALE_FORM = "the form was stale; reload the page and try again"


def _state(esc: Escalation) -> str:
    # A call-back number left meanwhile also asks staff to reload (it is shown at the top of the page).
    return f"{esc.status}:{esc.claimed_by_id or ''}" + (":callback" if esc.callback_number else "")


def canned_replies() -> dict:
    """Saved replies by language (empty when the content files are broken: check-content says why)."""
    try:
        return load_canned_cached(str(ext().settings.replies_dir))
    except Exception:  # noqa: BLE001 - a content mistake must not take the escalation page down
        return {lang: () for lang in LANGUAGES}


def _context(s: Session, esc: Escalation) -> dict:
    messages = actions.transcript(s, esc)
    names = staff_names(s, [esc.claimed_by_id, esc.resolved_by_id])
    contact = s.get(Contact, esc.contact_id)
    mine = esc.status == EscalationStatus.CLAIMED and esc.claimed_by_id == current_user.id
    others = esc.status == EscalationStatus.CLAIMED and not mine and current_user.is_admin
    return {
        "esc": esc, "contact": contact, "messages": messages, "delivery": delivery(s, messages),
        "channel": esc.channel,
        "claimed_by": names.get(esc.claimed_by_id), "resolved_by": names.get(esc.resolved_by_id),
        "rules": [r for r in (esc.rules or esc.rule).split(",") if r],
        "mine": mine, "admin_on_other": others, "can_act": mine or others,
        "notes": actions.notes(s, esc.id),
        "last_id": messages[-1].id if messages else 0, "state": _state(esc),
        "claimed_crisis_seconds": ext().settings.claimed_crisis_seconds,
    }


def _why(s, esc: Escalation) -> dict | None:
    """How triage read the escalation's first text (rules, the model's words); None once purged."""
    body = s.scalar(select(Message.body).where(Message.id == esc.first_message_id)) if esc.first_message_id else None
    if not body or body == PURGED:
        return None
    return ext().helpline.bot.explain(body)


@bp.get("/escalations/<int:escalation_id>")
def escalation(escalation_id: int):
    """The whole conversation, who has it, and what staff can do now."""
    db = ext().db
    with db.session() as s:
        ctx = _context(s, get_escalation(s, escalation_id))
        ctx["audit"] = [(e.at, e.staff.name if e.staff else "system", e.action, e.detail)
                        for e in actions.audit_entries(s, escalation_id, limit=50)]
        ctx["colleagues"] = list(s.scalars(select(Staff).where(Staff.active.is_(True)).order_by(Staff.name)))
        ctx["other_escalations"] = s.scalar(select(func.count(Escalation.id)).where(
            Escalation.contact_id == ctx["esc"].contact_id, Escalation.id != escalation_id)) or 0
        ctx["why"] = _why(s, ctx["esc"])
    canned = canned_replies()
    language = ctx["contact"].language or "en"
    chosen = next((r for r in canned.get(language, ()) if r.id == request.args.get("canned")), None)
    actions.record_view(db, escalation_id, current_user)
    return render_template("dashboard/escalation.html", outcomes=actions.OUTCOMES, max_reply=actions.MAX_REPLY,
                           canned=canned, language=language,
                           draft=chosen.for_staff(current_user.name) if chosen else "", **ctx)


@bp.get("/escalations/<int:escalation_id>/poll")
def escalation_poll(escalation_id: int):
    """New transcript rows after ``after``, delivery of every outbound text, the status and notes panels."""
    after = parse_id(request.args.get("after"))
    with ext().db.session() as s:
        ctx = _context(s, get_escalation(s, escalation_id))
        new = [m for m in ctx["messages"] if m.id > after]
        return jsonify(
            state=ctx["state"], last_id=max([after, *(m.id for m in new)]),
            html=render_template("dashboard/_messages.html", messages=new, delivery=ctx["delivery"],
                                 esc=ctx["esc"], channel=ctx["channel"]),
            new_inbound=sum(1 for m in new if m.direction == Direction.IN),
            delivery={str(mid): {"status": info["status"], "text": delivery_text(info, ctx["channel"])}
                      for mid, info in ctx["delivery"].items()},
            status_html=render_template("dashboard/_status.html", **ctx),
            notes_html=render_template("dashboard/_notes.html", notes=ctx["notes"]),
        )


def _back(escalation_id: int, anchor: str = "flashes"):
    return redirect(url_for("dashboard.escalation", escalation_id=escalation_id, _anchor=anchor))


@bp.post("/escalations/<int:escalation_id>/claim")
def claim(escalation_id: int):
    """Exactly one of several simultaneous claims wins; the others are told who has it."""
    db = ext().db
    with db.session() as s:
        get_escalation(s, escalation_id)
    if not ActionForm().validate_on_submit():
        flash(f"Not claimed: {STALE_FORM}.", "error")
    elif actions.claim(db, escalation_id, current_user):
        flash(f"You claimed escalation #{escalation_id}. Others will not be paged again; "
              "the bot stays silent while you have it.", "success")
        return _back(escalation_id, "reply-body")
    else:
        with db.session() as s:
            esc = get_escalation(s, escalation_id)
            owner = staff_names(s, [esc.claimed_by_id]).get(esc.claimed_by_id)
            if esc.status == EscalationStatus.CLAIMED:
                who = "you" if esc.claimed_by_id == current_user.id else owner
                flash(f"Already claimed by {who}.", "error")
            else:
                flash(f"Cannot claim: escalation is {esc.status.replace('_', ' ')}.", "error")
    return _back(escalation_id)


@bp.post("/escalations/<int:escalation_id>/reply")
def reply(escalation_id: int):
    """Text the texter from the clinic number (stored in the transcript, queued for sending)."""
    db = ext().db
    form = ReplyForm()
    try:
        if not form.validate_on_submit():
            raise actions.ActionError(first_error(form))
        msg = actions.reply(db, escalation_id, current_user, form.body.data, owner_ack=form.owner_ack.data)
    except actions.ActionError as err:
        flash(f"Reply not sent: {err}.", "error")
        return _back(escalation_id)
    with db.session() as s:
        esc = get_escalation(s, escalation_id)
        contact = s.get(Contact, esc.contact_id)
        if contact.opted_out:
            flash("Reply saved to the transcript but NOT texted: this texter opted out. Call instead.", "error")
        elif not esc.spec.texts_back:
            flash(f"Reply saved to the transcript ({esc.spec.label} conversation: "
                  f"{'shown in the chat' if esc.channel == 'web' else 'nothing is texted'}).", "info")
        else:
            flash("Reply queued for sending.", "success")
    return _back(escalation_id, f"msg-{msg.id}")


@bp.post("/escalations/<int:escalation_id>/notes")
def add_note(escalation_id: int):
    """An internal note: staff-only, never sent to the texter."""
    form = NoteForm()
    try:
        if not form.validate_on_submit():
            raise actions.ActionError(first_error(form))
        note = actions.add_note(ext().db, escalation_id, current_user, form.body.data)
    except actions.ActionError as err:
        flash(f"Note not saved: {err}.", "error")
        return _back(escalation_id)
    flash("Internal note saved (staff only, never sent).", "success")
    return _back(escalation_id, f"note-{note.id}")


@bp.post("/escalations/<int:escalation_id>/transfer")
def transfer(escalation_id: int):
    """Give a claimed conversation to a named colleague, who is paged."""
    form = TransferForm()
    try:
        if not form.validate_on_submit():
            raise actions.ActionError(first_error(form))
        to = actions.transfer(ext().db, escalation_id, current_user, form.to.data, ext().settings.public_url,
                              owner_ack=form.owner_ack.data, clinic=ext().helpline.bot.content.clinic_short_name)
    except actions.ActionError as err:
        flash(f"Not transferred: {err}.", "error")
        return _back(escalation_id)
    flash(f"Escalation #{escalation_id} transferred to {to.name}; they have been paged.", "success")
    return _back(escalation_id)


def _close(escalation_id: int, form, action, failed: str, done: str, *args):
    """Run a queue-leaving action; on refusal stay on the escalation and say why."""
    try:
        if not form.validate_on_submit():
            raise actions.ActionError(first_error(form) if form.errors else STALE_FORM)
        action(ext().db, escalation_id, current_user, *args, owner_ack=form.owner_ack.data)
    except actions.ActionError as err:
        flash(f"{failed}: {err}.", "error")
        return _back(escalation_id)
    flash(done, "success")
    return redirect(url_for("dashboard.queue", _anchor="flashes"))


@bp.post("/escalations/<int:escalation_id>/resolve")
def resolve(escalation_id: int):
    """Close with an outcome and a note."""
    form = ResolveForm()
    return _close(escalation_id, form, actions.resolve, "Not resolved", f"Escalation #{escalation_id} resolved.",
                  form.outcome.data, form.note.data or "")


@bp.post("/escalations/<int:escalation_id>/hand-back")
def hand_back(escalation_id: int):
    """Give the conversation back to the bot."""
    return _close(escalation_id, OwnedActionForm(), actions.hand_back, "Not handed back",
                  f"Escalation #{escalation_id} handed back to the bot.")


@bp.post("/escalations/<int:escalation_id>/release")
def release(escalation_id: int):
    """Give a claimed escalation back to the queue so someone else can take it."""
    return _close(escalation_id, OwnedActionForm(), actions.release, "Not released",
                  f"Escalation #{escalation_id} is back in the queue; staff will be paged again if nobody claims it.")
