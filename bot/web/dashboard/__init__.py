"""The staff dashboard at /dashboard: login, the live queue, escalations, search, audit, test texter.

Everything a texter wrote is rendered through Jinja autoescaping and the pages are served with a
strict Content-Security-Policy (``bot.web.security.PAGE_CSP``: no inline script or style at all), so
a body such as ``<script>...</script>`` is shown as text and can never run. Every page needs a
logged-in staff member and every form is a FlaskForm carrying a CSRF token (``forms.py``). All
changes go through ``bot.staff.actions``, which writes the audit entry in the same transaction.

The views live in small modules that register on ``bp`` when imported (as in microblog):
``auth`` (login, logout, the login manager), ``queue``, ``escalations`` (one escalation and what
staff do to it), ``records`` (contacts, search, audit, outbox), ``texter`` (the test texter),
``oncall`` (the on-call panel), ``metrics`` (the numbers page and CSV), ``filters`` (template filters
and globals) and ``problems`` (the banner).
"""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")
login_manager = LoginManager()
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """Attach Flask-Login and CSRF protection; the caller registers ``bp`` and exempts webhooks."""
    login_manager.init_app(app)
    login_manager.login_view = "dashboard.login"
    login_manager.login_message = "Please log in to see the dashboard."
    login_manager.login_message_category = "info"
    csrf.init_app(app)


from bot.web.dashboard import auth, escalations, filters, metrics, oncall, queue, records, texter  # noqa: E402,F401  (routes)
