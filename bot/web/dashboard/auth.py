"""Who may see the dashboard: the login manager, login and logout, CSRF failures, the page CSP.

A login opens a server-side session (``bot.staff.sessions``): the cookie carries its token and a
request is logged in only while that row is live, so logout and password changes end it for
every copy of the cookie. Failed logins are limited by ``bot.staff.logins``; a browser that has
logged in to an account carries a signed device cookie and is never slowed for that account.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from flask import current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot.staff import actions, logins
from bot.staff import sessions as staff_sessions
from bot.staff.accounts import authenticate
from bot.store.models import Staff
from bot.web.dashboard import bp, login_manager
from bot.web.dashboard.common import ext
from bot.web.dashboard.forms import ActionForm, LoginForm
from bot.web.security import PAGE_CSP, use_csp

logger = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"dashboard.login", "dashboard.static"}
SESSION_TOKEN = "staff_session"
DEVICE_COOKIE = "helpline_device"
DEVICE_LIFETIME = timedelta(days=90)
REFUSED = {
    logins.LOCKED: "Too many failed attempts. Wait 15 minutes, or ask an admin.",
    logins.SLOWED: ("Too many failed logins for this account from new devices. Wait 10 seconds and try again, "
                    "log in from a device you have used before, or ask an admin to unlock it."),
}


@login_manager.user_loader
def load_staff(staff_id: str) -> Staff | None:
    """The logged-in staff member: an active account whose server-side session is live, else None."""
    try:
        sid = int(staff_id)
    except (TypeError, ValueError):
        return None
    token = session.get(SESSION_TOKEN)
    if not token:
        return None
    with ext().db.session() as s:
        return staff_sessions.staff_for(s, sid, token)


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
    use_csp(PAGE_CSP)  # CSRF is checked before the blueprint's hook chose the page policy
    if wants_json():
        return jsonify(error="csrf", reason=err.description), 400
    return render_template("dashboard/error.html", title="Form expired",
                           message="This form was stale or incomplete (security token missing or expired). "
                                   "Go back, reload the page and try again."), 400


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Email and password; a new server-side session on success (see ``bot.staff.logins`` for the limits)."""
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
    trusted = _trusted_device(email)
    limiter = ext().helpline.limiter
    staff = token = None
    with ext().db.session() as s:
        refusal = logins.gate(s, limiter, email, ip, trusted)
        if refusal:
            logins.refused(s, email, refusal)
        else:
            staff = authenticate(s, email, form.password.data)
            if staff is not None:
                actions.audit(s, staff, "login")
                token = staff_sessions.open_session(s, staff)
            else:
                logins.failed(s, limiter, email, ip, trusted)
    if refusal:
        logger.warning("dashboard login refused: %s", refusal)
        flash(REFUSED[refusal], "error")
        return render_template("dashboard/login.html", email=email, next=nxt), 429
    if staff is None:
        logger.info("dashboard login failed")
        flash("Wrong email or password.", "error")
        return render_template("dashboard/login.html", email=email, next=nxt), 401
    session.clear()  # a fresh session: no fixation across the login boundary
    login_user(staff)
    session[SESSION_TOKEN] = token
    session.permanent = True
    logger.info("staff %d logged in to the dashboard", staff.id)
    resp = redirect(nxt or url_for("dashboard.queue"))
    _remember_device(resp, email)
    return resp


@bp.post("/logout")
def logout():
    """End the session, on the server too: a copy of the cookie no longer works."""
    if ActionForm().validate_on_submit():
        with ext().db.session() as s:
            staff_sessions.revoke(s, session.get(SESSION_TOKEN))
            actions.audit(s, current_user, "logout")
        logout_user()
        session.clear()
        flash("Logged out.", "info")
    return redirect(url_for("dashboard.login"))


# --- device cookies: a browser that has logged in to an account is never slowed for it ---------------

def _device_tag(email: str) -> str:
    return hashlib.sha256(b"device:" + email.encode("utf-8")).hexdigest()[:16]


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="helpline-device")


def _device_tags() -> list[str]:
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return []
    try:
        tags = _devices().loads(raw, max_age=int(DEVICE_LIFETIME.total_seconds()))
    except BadSignature:
        return []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _trusted_device(email: str) -> bool:
    """Whether this browser has logged in to this account before (a signed cookie says so)."""
    return _device_tag(email) in _device_tags()


def _remember_device(resp, email: str) -> None:
    tags = [_device_tag(email), *(t for t in _device_tags() if t != _device_tag(email))][:5]
    resp.set_cookie(DEVICE_COOKIE, _devices().dumps(tags), max_age=int(DEVICE_LIFETIME.total_seconds()),
                    path="/dashboard", httponly=True, samesite="Lax",
                    secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
