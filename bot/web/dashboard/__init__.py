"""The staff dashboard at /dashboard: login, the live queue, escalations, search, audit, test texter.

Everything a texter wrote is rendered through Jinja autoescaping and the pages are served with a
strict Content-Security-Policy (no inline script or style at all), so a body such as
``<script>...</script>`` is shown as text and can never run. Every page needs a logged-in staff
member and every form carries a CSRF token. All changes go through ``bot.staff.actions``, which
writes the audit entry in the same transaction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from uuid import uuid4

from flask import (Blueprint, Flask, abort, current_app, flash, jsonify, redirect, render_template, request,
                   session, url_for)
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core.engine import Inbound
from bot.core.states import Channel, EscalationStatus, OutboxKind, UNSENT_STATUSES, channel_spec
from bot.staff import actions
from bot.staff.accounts import authenticate
from bot.store.models import Contact, Escalation, Message, Outbox, Staff, aware, mask, utcnow
from bot.web.health import system_checks

logger = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")
login_manager = LoginManager()
csrf = CSRFProtect()

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PUBLIC_ENDPOINTS = {"dashboard.login", "dashboard.static"}
TEST_NUMBER = re.compile(r"^\+?[0-9]{7,15}$")
DEFAULT_TEST_NUMBER = "+15550001234"
OUTCOME_LABELS = {
    "reached_safe": "Reached, safe", "referred_911": "Referred to 911", "referred_988": "Referred to 988",
    "intake_booked": "Intake booked", "no_response": "No response", "not_a_crisis": "Not a crisis",
    "other": "Other",
}


def init_app(app: Flask) -> None:
    """Attach Flask-Login and CSRF protection; the caller registers ``bp`` and exempts webhooks."""
    login_manager.init_app(app)
    login_manager.login_view = "dashboard.login"
    login_manager.login_message = "Please log in to see the dashboard."
    login_manager.login_message_category = "info"
    csrf.init_app(app)


def _ext():
    return current_app.extensions["helpline"]


@login_manager.user_loader
def load_staff(staff_id: str) -> Staff | None:
    """The logged-in staff member, or None when the account was removed or deactivated."""
    try:
        sid = int(staff_id)
    except (TypeError, ValueError):
        return None
    with _ext().db.session() as s:
        staff = s.get(Staff, sid)
        return staff if staff is not None and staff.active else None


@login_manager.unauthorized_handler
def unauthorized():
    """Pages redirect to the login form; the live-update requests get a 401 the script understands."""
    if _wants_json():
        return jsonify(error="login required"), 401
    nxt = request.full_path if request.method == "GET" else None
    flash(login_manager.login_message, "info")
    return redirect(url_for("dashboard.login", next=_safe_next(nxt)))


def _wants_json() -> bool:
    return request.headers.get("X-Requested-With") == "fetch" or request.path.endswith("/poll")


def _safe_next(target: str | None) -> str | None:
    """Only same-site dashboard paths: never an open redirect to another host."""
    if not target:
        return None
    target = target.rstrip("?")
    if target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@bp.before_request
def require_login():
    """Every dashboard page except the login form and static files needs a logged-in staff member."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.after_request
def security_headers(resp):
    """A strict CSP and friends on every dashboard response; pages are never cached."""
    for name, value in SECURITY_HEADERS.items():
        resp.headers[name] = value
    if request.endpoint != "dashboard.static":
        # Transcripts must not sit in shared or browser caches; polling must reach the app.
        resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.errorhandler(CSRFError)
def csrf_failed(err: CSRFError):
    """A stale or missing form token: say so plainly instead of a bare 400."""
    logger.info("CSRF check failed on %s: %s", request.path, err.description)
    if _wants_json():
        return jsonify(error="csrf", reason=err.description), 400
    return render_template("dashboard/error.html", title="Form expired",
                           message="This form was stale or incomplete (security token missing or expired). "
                                   "Go back, reload the page and try again."), 400


@bp.app_template_filter("age")
def age_filter(dt: datetime | None) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d' since a UTC timestamp."""
    if dt is None:
        return ""
    secs = max(0, int((utcnow() - aware(dt)).total_seconds()))
    if secs < 60:
        return f"{secs} s"
    mins = secs // 60
    if mins < 60:
        return f"{mins} min"
    hours, mins = divmod(mins, 60)
    if hours < 24:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


@bp.app_template_filter("iso")
def iso_filter(dt: datetime | None) -> str:
    """ISO 8601 in UTC for <time datetime=...> (the script shows it in the browser's time zone)."""
    return aware(dt).isoformat() if dt is not None else ""


@bp.app_template_filter("channel_label")
def channel_label_filter(channel: str | None) -> str:
    """How staff read a channel name: 'web' is 'web chat'."""
    return channel_spec(channel).label if channel else ""


@bp.app_template_filter("utc")
def utc_filter(dt: datetime | None) -> str:
    """A readable UTC timestamp (the fallback when scripts are off)."""
    return aware(dt).strftime("%Y-%m-%d %H:%M UTC") if dt is not None else ""


@bp.app_context_processor
def dashboard_globals():
    """What every dashboard template may use."""
    return {"outcome_labels": OUTCOME_LABELS, "mask": mask, "dashboard_problems": problems}


# --- views of the data --------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """A banner line: what is wrong and how loud to say it."""

    level: str  # danger or warn
    text: str
    link: str | None = None


def problems() -> list[Problem]:
    """What staff must know right now, from the same checks as /healthz."""
    ext = _ext()
    checks, _ = system_checks(ext)
    out: list[Problem] = []
    if checks["database"] != "ok":
        out.append(Problem("danger", f"DATABASE PROBLEM: {checks['database']}. New texts may not appear here."))
    for p in checks.get("problems", []):
        if p == "no staff on call":
            out.append(Problem("danger", "NO STAFF ON CALL: new crises page every active staff member. "
                                         "Someone must go on call (helpline staff on-call EMAIL)."))
        elif p.startswith("no Twilio credentials"):
            out.append(Problem("danger", "SMS SENDING IS NOT CONFIGURED: pages and replies cannot be sent. "
                                         "Watch this screen and phone texters instead."))
        elif p == "dispatcher not running":
            out.append(Problem("danger", "DISPATCHER NOT RUNNING: pages, re-pages and replies are not going out."))
        else:
            out.append(Problem("danger", p.upper()))
    if checks["sms_sending"] == "local outbox (development)":
        out.append(Problem("danger", "SMS SENDING IS NOT CONFIGURED: development mode, texts go to the local "
                                     "outbox only and nobody's phone is paged.", url_for("dashboard.outbox")))
    if ext.validator is None:
        out.append(Problem("warn", "Webhook signature validation is OFF (development mode)."))
    if "spool" in checks:
        out.append(Problem("warn", "Messages received during a database outage are waiting to be stored."))
    return out


def _queue_context(s: Session) -> dict:
    items = actions.queue(s)
    queued = {}
    if items:
        # Pages written but not yet sent: "0 sent" alone would look like nobody is being woken.
        queued = dict(s.execute(select(Outbox.escalation_id, func.count(Outbox.id))
                                .where(Outbox.kind == OutboxKind.PAGE, Outbox.status.in_(UNSENT_STATUSES),
                                       Outbox.escalation_id.in_([i.id for i in items]))
                                .group_by(Outbox.escalation_id)).all())
    unclaimed = sum(1 for i in items if i.status == EscalationStatus.OPEN)
    return {"items": items, "unclaimed": unclaimed, "queued_pages": queued}


def _get_escalation(s: Session, escalation_id: int) -> Escalation:
    esc = s.get(Escalation, escalation_id)
    if esc is None:
        abort(404)
    return esc


def _staff_names(s: Session, ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(s.execute(select(Staff.id, Staff.name).where(Staff.id.in_(ids))).all())


def _delivery(s: Session, messages: list[Message]) -> dict[int, dict]:
    """For outbound rows: who wrote a staff reply and how its SMS is doing (from the outbox)."""
    ids = [m.id for m in messages if m.direction == "out"]
    if not ids:
        return {}
    rows = s.execute(select(Outbox.message_id, Outbox.status, Outbox.error_message, Staff.name)
                     .outerjoin(Staff, Outbox.staff_id == Staff.id)
                     .where(Outbox.message_id.in_(ids))).all()
    return {mid: {"status": status, "error": err, "author": name} for mid, status, err, name in rows}


def _contact_messages(s: Session, contact_id: int, after: int = 0, limit: int = 200) -> list[Message]:
    """A contact's conversation, oldest first (for contacts reached from search, with no escalation)."""
    q = select(Message).where(Message.contact_id == contact_id)
    if after:
        return list(s.scalars(q.where(Message.id > after).order_by(Message.id).limit(limit)))
    return list(reversed(s.scalars(q.order_by(Message.id.desc()).limit(limit)).all()))


def _state(esc: Escalation) -> str:
    # A call-back number left meanwhile also asks staff to reload (it is shown at the top of the page).
    return f"{esc.status}:{esc.claimed_by_id or ''}" + (":callback" if esc.callback_number else "")


def _parse_id(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


# --- login ------------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    """Email and password; a new session on success."""
    nxt = _safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(nxt or url_for("dashboard.queue"))
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")
        ip = request.remote_addr or "?"
        with _ext().db.session() as s:
            if actions.too_many_failed_logins(s, _ext().helpline.limiter, email, ip):
                logger.warning("dashboard login refused: too many failed attempts")
                flash("Too many failed attempts. Wait 15 minutes, or ask an admin.", "error")
                return render_template("dashboard/login.html", email=email, next=nxt), 429
            staff = authenticate(s, email, password) if email and password else None
            if staff is not None:
                actions.audit(s, staff, "login")
            else:
                actions.failed_login(s, _ext().helpline.limiter, email, ip)
        if staff is None:
            logger.info("dashboard login failed")
            flash("Wrong email or password.", "error")
            return render_template("dashboard/login.html", email=email, next=nxt), 401
        session.clear()  # a fresh session: no fixation across the login boundary
        login_user(staff)
        session.permanent = True
        logger.info("staff %d logged in to the dashboard", staff.id)
        return redirect(nxt or url_for("dashboard.queue"))
    return render_template("dashboard/login.html", email="", next=nxt)


@bp.post("/logout")
def logout():
    """End the session."""
    with _ext().db.session() as s:
        actions.audit(s, current_user, "logout")
    logout_user()
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("dashboard.login"))


# --- queue -----------------------------------------------------------------------------------------

@bp.get("/")
def queue():
    """Open and claimed escalations, most severe and oldest first; the script keeps it live."""
    with _ext().db.session() as s:
        ctx = _queue_context(s)
    return render_template("dashboard/queue.html", **ctx)


@bp.get("/queue/poll")
def queue_poll():
    """The live-update endpoint every dashboard page polls: open ids, banners, optionally the queue HTML."""
    with _ext().db.session() as s:
        ctx = _queue_context(s)
    items = ctx["items"]
    data = {
        "ids": [i.id for i in items],
        "open": [{"id": i.id, "severity": i.severity, "training": i.training,
                  "url": url_for("dashboard.escalation", escalation_id=i.id)}
                 for i in items if i.status == EscalationStatus.OPEN],
        "unclaimed": ctx["unclaimed"],
        "problems_html": render_template("dashboard/_problems.html", problems=problems()),
    }
    if request.args.get("fragment"):
        data["html"] = render_template("dashboard/_queue.html", **ctx)
    return jsonify(data)


# --- one escalation ----------------------------------------------------------------------------

def _escalation_context(s: Session, esc: Escalation) -> dict:
    messages = actions.transcript(s, esc)
    names = _staff_names(s, [esc.claimed_by_id, esc.resolved_by_id])
    contact = s.get(Contact, esc.contact_id)
    return {
        "esc": esc, "contact": contact, "messages": messages, "delivery": _delivery(s, messages),
        "claimed_by": names.get(esc.claimed_by_id), "resolved_by": names.get(esc.resolved_by_id),
        "rules": [r for r in (esc.rules or esc.rule).split(",") if r],
        "mine": esc.status == EscalationStatus.CLAIMED and esc.claimed_by_id == current_user.id,
        "last_id": messages[-1].id if messages else 0, "state": _state(esc),
    }


@bp.get("/escalations/<int:escalation_id>")
def escalation(escalation_id: int):
    """The whole conversation, who has it, and the claim/reply/resolve/hand-back buttons."""
    ext = _ext()
    with ext.db.session() as s:
        ctx = _escalation_context(s, _get_escalation(s, escalation_id))
        ctx["audit"] = [(e.at, e.staff.name if e.staff else "system", e.action, e.detail)
                        for e in actions.audit_entries(s, escalation_id, limit=50)]
    actions.record_view(ext.db, escalation_id, current_user)
    return render_template("dashboard/escalation.html", outcomes=actions.OUTCOMES,
                           max_reply=actions.MAX_REPLY, **ctx)


@bp.get("/escalations/<int:escalation_id>/poll")
def escalation_poll(escalation_id: int):
    """New transcript rows after ``after`` and the current status panel."""
    after = _parse_id(request.args.get("after"))
    with _ext().db.session() as s:
        ctx = _escalation_context(s, _get_escalation(s, escalation_id))
        new = [m for m in ctx["messages"] if m.id > after]
        return jsonify(
            state=ctx["state"], last_id=max([after, *(m.id for m in new)]),
            html=render_template("dashboard/_messages.html", messages=new, delivery=ctx["delivery"],
                                 esc=ctx["esc"]),
            new_inbound=sum(1 for m in new if m.direction == "in"),
            status_html=render_template("dashboard/_status.html", **ctx),
        )


def _after_action(escalation_id: int):
    return redirect(url_for("dashboard.escalation", escalation_id=escalation_id))


@bp.post("/escalations/<int:escalation_id>/claim")
def claim(escalation_id: int):
    """Exactly one of several simultaneous claims wins; the others are told who has it."""
    ext = _ext()
    with ext.db.session() as s:
        _get_escalation(s, escalation_id)
    if actions.claim(ext.db, escalation_id, current_user):
        flash(f"You claimed escalation #{escalation_id}. Others will not be paged again.", "success")
    else:
        with ext.db.session() as s:
            esc = _get_escalation(s, escalation_id)
            owner = _staff_names(s, [esc.claimed_by_id]).get(esc.claimed_by_id)
            if esc.status == EscalationStatus.CLAIMED:
                who = "you" if esc.claimed_by_id == current_user.id else owner
                flash(f"Already claimed by {who}.", "error")
            else:
                flash(f"Cannot claim: escalation is {esc.status.replace('_', ' ')}.", "error")
    return _after_action(escalation_id)


@bp.post("/escalations/<int:escalation_id>/reply")
def reply(escalation_id: int):
    """Text the texter from the clinic number (stored in the transcript, queued for sending)."""
    ext = _ext()
    try:
        actions.reply(ext.db, escalation_id, current_user, request.form.get("body", ""))
    except actions.ActionError as err:
        flash(f"Reply not sent: {err}.", "error")
        return _after_action(escalation_id)
    with ext.db.session() as s:
        esc = _get_escalation(s, escalation_id)
        contact = s.get(Contact, esc.contact_id)
        if contact.opted_out:
            flash("Reply saved to the transcript but NOT texted: this texter opted out. Call instead.", "error")
        elif not esc.spec.texts_back:
            flash(f"Reply saved to the transcript ({esc.spec.label} conversation: "
                  "nothing is texted).", "info")
        else:
            flash("Reply queued for sending.", "success")
    return _after_action(escalation_id)


def _close(escalation_id: int, action, failed: str, done: str, *args):
    """Run a queue-leaving action; on refusal stay on the escalation and say why."""
    try:
        action(_ext().db, escalation_id, current_user, *args)
    except actions.ActionError as err:
        flash(f"{failed}: {err}.", "error")
        return _after_action(escalation_id)
    flash(done, "success")
    return redirect(url_for("dashboard.queue"))


@bp.post("/escalations/<int:escalation_id>/resolve")
def resolve(escalation_id: int):
    """Close with an outcome and a note."""
    return _close(escalation_id, actions.resolve, "Not resolved", f"Escalation #{escalation_id} resolved.",
                  request.form.get("outcome", ""), request.form.get("note", ""))


@bp.post("/escalations/<int:escalation_id>/hand-back")
def hand_back(escalation_id: int):
    """Give the conversation back to the bot."""
    return _close(escalation_id, actions.hand_back, "Not handed back",
                  f"Escalation #{escalation_id} handed back to the bot.")


@bp.post("/escalations/<int:escalation_id>/release")
def release(escalation_id: int):
    """Give a claimed escalation back to the queue so someone else can take it."""
    return _close(escalation_id, actions.release, "Not released",
                  f"Escalation #{escalation_id} is back in the queue; staff will be paged again if nobody claims it.")


# --- conversations, search, audit, outbox ---------------------------------------------------------

@bp.get("/contacts/<int:contact_id>")
def contact(contact_id: int):
    """One texter's conversation (reached from search), with their escalations."""
    ext = _ext()
    with ext.db.session() as s:
        c = s.get(Contact, contact_id)
        if c is None:
            abort(404)
        messages = _contact_messages(s, contact_id)
        history = list(s.scalars(select(Escalation).where(Escalation.contact_id == contact_id)
                                 .order_by(Escalation.id.desc())))
        delivery = _delivery(s, messages)
        actions.audit(s, current_user, "view_contact", None, f"contact {contact_id}")
    return render_template("dashboard/contact.html", contact=c, messages=messages, history=history,
                           delivery=delivery, last_id=messages[-1].id if messages else 0)


@bp.get("/contacts/<int:contact_id>/poll")
def contact_poll(contact_id: int):
    """New transcript rows for a contact (contact page and test texter)."""
    after = _parse_id(request.args.get("after"))
    with _ext().db.session() as s:
        if s.get(Contact, contact_id) is None:
            abort(404)
        new = _contact_messages(s, contact_id, after=after)
        html = render_template("dashboard/_messages.html", messages=new, delivery=_delivery(s, new), esc=None)
    return jsonify(last_id=max([after, *(m.id for m in new)]), html=html,
                   new_inbound=sum(1 for m in new if m.direction == "in"), state="")


@bp.get("/search")
def search():
    """Conversations by the last four digits of the number and/or a date (UTC)."""
    last4 = "".join(ch for ch in request.args.get("last4", "") if ch.isdigit())[-4:]
    raw_day = request.args.get("date", "").strip()
    day, error, results = None, None, None
    if raw_day:
        try:
            day = datetime.combine(date.fromisoformat(raw_day), datetime.min.time(), tzinfo=timezone.utc)
        except ValueError:
            error = "Use a date like 2025-01-31."
    if (last4 or day) and not error:
        with _ext().db.session() as s:
            rows = actions.search(s, last4=last4 or None, day=day)
            latest = {}
            if rows:
                for esc in s.scalars(select(Escalation).where(Escalation.contact_id.in_([c.id for c, _, _ in rows]))
                                     .order_by(Escalation.id)):
                    latest[esc.contact_id] = esc
            results = [{"contact": c, "count": n, "last": last, "escalation": latest.get(c.id)}
                       for c, n, last in rows]
    elif request.args and not error and not (last4 or day):
        error = "Enter the last 4 digits of the number, a date, or both."
    return render_template("dashboard/search.html", last4=last4, day=raw_day, error=error, results=results)


@bp.get("/audit")
def audit_log():
    """Who viewed, claimed, replied to, resolved and handed back what."""
    esc_id = _parse_id(request.args.get("escalation")) or None
    with _ext().db.session() as s:
        rows = [(e.at, e.staff.name if e.staff else "system", e.action, e.escalation_id, e.detail)
                for e in actions.audit_entries(s, esc_id, limit=500)]
    return render_template("dashboard/audit.html", rows=rows, escalation_id=esc_id)


@bp.get("/outbox")
def outbox():
    """The local development outbox: what would have been texted when Twilio is not configured."""
    ext = _ext()
    with ext.db.session() as s:
        rows = actions.local_outbox(s, limit=200)
    return render_template("dashboard/outbox.html", rows=rows, can_send=ext.settings.can_send_sms,
                           dev=ext.settings.dev)


# --- test texter ----------------------------------------------------------------------------------

@bp.route("/test-texter", methods=["GET", "POST"])
def test_texter():
    """Training: text the bot as a fake number on the 'test' channel (escalations are never paged)."""
    ext = _ext()
    number = (request.values.get("number") or session.get("test_number") or DEFAULT_TEST_NUMBER).strip()
    if not TEST_NUMBER.match(number):
        flash("A test number is 7 to 15 digits, optionally starting with +.", "error")
        number = DEFAULT_TEST_NUMBER
    session["test_number"] = number
    sender = f"test:{number}"
    if request.method == "POST":
        body = request.form.get("body", "")
        if not body.strip():
            flash("Type a message to send.", "error")
        else:
            outcome = ext.helpline.handle(Inbound(sender=sender, body=body[:2000], channel=Channel.TEST,
                                                  message_id=f"test-{uuid4().hex}"))
            with ext.db.session() as s:
                actions.audit(s, current_user, "test_text", outcome.escalation_id, "training message sent")
            if outcome.reply is None:
                flash("The bot sent no reply (a human has this conversation, or the sender opted out).", "info")
        return redirect(url_for("dashboard.test_texter", number=number))
    with ext.db.session() as s:
        c = s.scalar(select(Contact).where(Contact.address == sender))
        messages = _contact_messages(s, c.id) if c else []
        delivery = _delivery(s, messages)
        escalations = list(s.scalars(select(Escalation).where(Escalation.contact_id == c.id)
                                     .order_by(Escalation.id.desc()))) if c else []
    return render_template("dashboard/test_texter.html", number=number, contact=c, messages=messages,
                           delivery=delivery, escalations=escalations,
                           last_id=messages[-1].id if messages else 0)
