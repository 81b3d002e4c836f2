"""Who may see the dashboard: the login manager, login and logout, CSRF failures, the page CSP."""

from __future__ import annotations

import logging

from flask import flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from bot.staff import actions
from bot.staff.accounts import authenticate
from bot.store.models import Staff
from bot.web.dashboard import bp, login_manager
from bot.web.dashboard.common import ext
from bot.web.dashboard.forms import ActionForm, LoginForm
from bot.web.security import PAGE_CSP, use_csp

logger = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"dashboard.login", "dashboard.static"}


@login_manager.user_loader
def load_staff(staff_id: str) -> Staff | None:
    """The logged-in staff member, or None when the account was removed or deactivated."""
    try:
        sid = int(staff_id)
    except (TypeError, ValueError):
        return None
    with ext().db.session() as s:
        staff = s.get(Staff, sid)
        return staff if staff is not None and staff.active else None


def wants_json() -> bool:
    """The live-update requests of dashboard.js (they want JSON, never a redirect)."""
    return request.headers.get("X-Requested-With") == "fetch" or request.path.endswith("/poll")


def safe_next(target: str | None) -> str | None:
    """Only same-site dashboard paths: never an open redirect to another host."""
    if not target:
        return None
    target = target.rstrip("?")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7f for ch in target):
        return None  # CR/LF would split the Location header; spaces and controls never belong in a path
    if target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@login_manager.unauthorized_handler
def unauthorized():
    """Pages redirect to the login form; the live-update requests get a 401 the script understands."""
    if wants_json():
        return jsonify(error="login required"), 401
    nxt = request.full_path if request.method == "GET" else None
    flash(login_manager.login_message, "info")
    return redirect(url_for("dashboard.login", next=safe_next(nxt)))


@bp.before_request
def require_login():
    """Every dashboard response gets the page CSP; every page but login and static files needs a login."""
    use_csp(PAGE_CSP)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.after_request
def no_store(resp):
    """Pages are never cached: transcripts must not sit in shared or browser caches; polling must reach the app."""
    if request.endpoint != "dashboard.static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.errorhandler(CSRFError)
def csrf_failed(err: CSRFError):
    """A stale or missing form token: say so plainly instead of a bare 400."""
    logger.info("CSRF check failed on %s: %s", request.path, err.description)
    if wants_json():
        return jsonify(error="csrf", reason=err.description), 400
    return render_template("dashboard/error.html", title="Form expired",
                           message="This form was stale or incomplete (security token missing or expired). "
                                   "Go back, reload the page and try again."), 400


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Email and password; a new session on success."""
    form = LoginForm()
    nxt = safe_next(form.next.data or request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(nxt or url_for("dashboard.queue"))
    if not form.validate_on_submit():
        if form.is_submitted():
            flash("Enter your email and password.", "error")
            return render_template("dashboard/login.html", email=form.email.data or "", next=nxt), 400
        return render_template("dashboard/login.html", email="", next=nxt)
    email, ip = form.email.data, request.remote_addr or "?"
    with ext().db.session() as s:
        if actions.too_many_failed_logins(s, ext().helpline.limiter, email, ip):
            logger.warning("dashboard login refused: too many failed attempts")
            flash("Too many failed attempts. Wait 15 minutes, or ask an admin.", "error")
            return render_template("dashboard/login.html", email=email, next=nxt), 429
        staff = authenticate(s, email, form.password.data)
        if staff is not None:
            actions.audit(s, staff, "login")
        else:
            actions.failed_login(s, ext().helpline.limiter, email, ip)
    if staff is None:
        logger.info("dashboard login failed")
        flash("Wrong email or password.", "error")
        return render_template("dashboard/login.html", email=email, next=nxt), 401
    session.clear()  # a fresh session: no fixation across the login boundary
    login_user(staff)
    session.permanent = True
    logger.info("staff %d logged in to the dashboard", staff.id)
    return redirect(nxt or url_for("dashboard.queue"))


@bp.post("/logout")
def logout():
    """End the session."""
    if ActionForm().validate_on_submit():
        with ext().db.session() as s:
            actions.audit(s, current_user, "logout")
        logout_user()
        session.clear()
        flash("Logged out.", "info")
    return redirect(url_for("dashboard.login"))
