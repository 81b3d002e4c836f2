"""Flask app factory: settings, storage, the helpline service, security headers and the blueprints."""

from __future__ import annotations

import gc
import logging
import secrets
from datetime import timedelta
from typing import Any, Mapping

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from twilio.request_validator import RequestValidator
from werkzeug.middleware.proxy_fix import ProxyFix

from bot import logs
from bot.config import Settings
from bot.core.engine import get_bot
from bot.service import STORE_SECONDS, Helpline
from bot.store.db import SESSION_SECONDS, Database
from bot.store.limits import Limiter
from bot.store.spool import Spool
from bot.web.forms import HelplineRequest
from bot.web.ids import BoundedIntConverter
from bot.web.security import current_csp, set_security_headers

logger = logging.getLogger(__name__)

INSECURE_BANNER = (
    "DEVELOPMENT MODE WITHOUT TWILIO_AUTH_TOKEN: /sms accepts UNSIGNED requests. "
    "Never expose this server to the internet; set TWILIO_AUTH_TOKEN for real use."
)


# Paths on a texter's safety path (and the health check monitors poll): their database work is bounded
# by STORE_SECONDS, so every answer leaves within 5 s however the database fails. Other pages get
# PAGE_DB_SECONDS.
SAFETY_PATHS = ("/sms", "/chat/api/", "/healthz")
PAGE_DB_SECONDS = 5.0


class Extension:
    """What the blueprints need, kept on ``app.extensions['helpline']``."""

    def __init__(self, settings: Settings, db: Database, helpline: Helpline):
        self.settings = settings
        self.db = db
        self.helpline = helpline
        token = settings.twilio_auth_token
        self.validator = RequestValidator(token) if token else None

    def dispatcher_for_callbacks(self):
        """A dispatcher (never started) whose failure handling status callbacks reuse."""
        from bot.staff.dispatcher import Dispatcher
        return Dispatcher(self.db, self.settings, self.helpline.bot.content, sender=False)

    @property
    def insecure(self) -> bool:
        """True when webhooks are accepted unsigned (explicit development mode only)."""
        return self.validator is None and self.settings.dev


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions (the dashboard's), where a request without cookies (every Twilio
    webhook) starts its empty session without building a signing serializer and parsing cookies first."""

    def open_session(self, app, request):
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)


class InsecureConfiguration(RuntimeError):
    """Start-up refused: the configuration must not serve real texters."""


class UnmigratedDatabase(RuntimeError):
    """Start-up refused: the schema is missing or older than this code."""


def _require_migrated(db: Database) -> None:
    from sqlalchemy.exc import OperationalError

    from bot.store import migrate
    try:
        behind = migrate.pending(db)
    except OperationalError:
        logger.critical("database unreachable at start: starting degraded (crisis replies still go out)")
        return
    if behind:
        raise UnmigratedDatabase(f"database schema is not at {migrate.head()}: run 'helpline db upgrade' first")


def settle_for_serving() -> None:
    """Once a serving process has built its app (``app.py``, ``helpline serve``): move everything alive into
    the collector's permanent generation (``gc.freeze``).

    The content, the crisis and topic models and the word list are a few hundred thousand objects kept for
    the process's life; the garbage collector's full collections walked all of them each time (in one
    process, about 40 us a text on average, in pauses of tens of milliseconds). Frozen, they are never
    walked and never collected; what requests allocate afterwards is collected as before. Not for tests,
    which build many apps in one process and would keep every one of them."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, overrides: Mapping[str, Any] | None = None,
               refuse_insecure: bool = False, background: bool = False) -> Flask:
    """Build the Flask app; tests pass their own Settings.

    ``refuse_insecure`` is set by the production entry points (``app.py`` for gunicorn and
    ``helpline serve``): outside explicit development mode they will not start with a missing
    SECRET_KEY or TWILIO_AUTH_TOKEN, a plain-HTTP public URL or debug on; and never on a
    reachable database whose schema is not migrated. An unreachable database does not stop
    start-up: crisis replies must go out even then. ``background`` (the same entry points) starts
    this process's spool replayer, which stores messages from an outage once the database answers.
    """
    settings = settings or Settings.from_env()
    logs.setup()
    problems = settings.insecure()
    if refuse_insecure and problems and not settings.dev:
        for problem in problems:
            logger.critical("refusing to start: %s", problem)
        raise InsecureConfiguration("refusing to start: " + "; ".join(problems) +
                                    " (fix these, or set HELPLINE_DEV=1 for local development)")
    app = Flask(__name__, instance_path=str(settings.instance_dir))
    app.request_class = HelplineRequest
    app.session_interface = CookieSessions()
    app.url_map.converters["int"] = BoundedIntConverter  # an id past a column's range is a 404, not a 500
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        MAX_CONTENT_LENGTH=256 * 1024,
        # Dashboard session cookie: no script access, not sent on cross-site posts, HTTPS-only when public.
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings.public_url and settings.public_url.lower().startswith("https")),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # The cookie is written only when the session changes. Refreshed on every response, the queue's
        # polls sent back the cookie they were sent, so a poll finishing after a page had shown a message
        # put that message back in the cookie. The login's own lifetime is the server's (12 h from login).
        SESSION_REFRESH_EACH_REQUEST=False,
        # A queue page left open all shift must still claim: the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        # Referrer-Policy: no-referrer means browsers send no Referer, which Flask-WTF's HTTPS
        # referrer check would reject; the per-session token and SameSite=Lax carry the protection.
        WTF_CSRF_SSL_STRICT=False,
    )
    if overrides:
        app.config.update(overrides)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    db = Database(settings.sqlalchemy_url, session_seconds=SESSION_SECONDS)
    if refuse_insecure:
        _require_migrated(db)
    bot = get_bot(str(settings.replies_dir))
    spool = Spool(settings.spool_path)
    limiter = Limiter(app.config["SECRET_KEY"])
    ext = Extension(settings, db, Helpline(bot, db, settings.context_minutes, spool, settings.public_url,
                                             settings.reply_limit_per_hour, limiter))
    app.extensions["helpline"] = ext
    if background:
        ext.helpline.start_replayer()

    @app.before_request
    def bound_database_work():
        """Texters' requests get little time for the database (then the core answers); pages get more."""
        # The request and g themselves, not their proxies (see bot.web.twilio_adapter.twilio_signed).
        safety = request._get_current_object().path.startswith(SAFETY_PATHS)
        g.db_deadline = db.push_deadline(STORE_SECONDS if safety else PAGE_DB_SECONDS)

    @app.teardown_request
    def unbound_database_work(_exc):
        app_globals = g._get_current_object()
        if "db_deadline" in app_globals:
            db.pop_deadline(app_globals.pop("db_deadline"))
    if ext.validator is None:
        if settings.dev:
            logger.warning(INSECURE_BANNER)
        else:
            logger.error("TWILIO_AUTH_TOKEN is not set: /sms will refuse every request (403). "
                         "Set it, or set HELPLINE_DEV=1 for local development.")

    from bot.web import chat, dashboard
    from bot.web.health import bp as health_bp
    from bot.web.sms import bp as sms_bp

    hsts = bool(settings.public_url and settings.public_url.lower().startswith("https"))

    @app.after_request
    def security_headers(resp):
        """Every response: the request's CSP (the strictest unless a page chose its own), and friends."""
        return set_security_headers(resp, current_csp(), hsts=hsts)

    app.register_blueprint(sms_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(chat.bp)
    dashboard.init_app(app)
    # Twilio signs its webhooks; it cannot send a CSRF token.
    dashboard.csrf.exempt(sms_bp)
    dashboard.csrf.exempt(health_bp)
    # The chat API authenticates with bearer tokens and sets no cookies: nothing for CSRF to protect.
    dashboard.csrf.exempt(chat.bp)
    return app
