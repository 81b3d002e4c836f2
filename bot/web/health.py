"""GET /healthz: is the database reachable, is anything waiting in the outage spool, is the webhook insecure?"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import func, select, text

from bot.core.states import UNSENT_STATUSES
from bot.store.models import Heartbeat, Outbox, Staff, aware, utcnow

HEARTBEAT_STALE = 30  # seconds

bp = Blueprint("health", __name__)


def dead_letter_problem(n: int, crises: int = 0) -> str:
    """The problem line for spool entries that could not be stored (shared with ``helpline check``)."""
    among = f", {crises} of them escalating" if crises else ""
    return (f"{n} message(s) received during an outage could not be stored{among}: "
            "see 'helpline spool list' and 'helpline spool retry'")


def system_checks(ext) -> tuple[dict, bool]:
    """The readiness checks and whether the service is degraded (shared by /healthz and the dashboard)."""
    checks = {"database": "ok", "signature_validation": "on" if ext.validator else "OFF"}
    try:
        with ext.db.session() as s:  # a database skipped after a slow failure is reported without waiting on it
            s.execute(text("SELECT 1"))
        missing = ext.db.missing_tables()
        if missing:
            checks["database"] = "schema missing: run 'helpline db upgrade'"
        with ext.db.session() as s:
            now = utcnow()
            beat = aware(s.scalar(select(func.max(Heartbeat.beat_at))))
            checks["dispatcher_heartbeat_age_s"] = round((now - beat).total_seconds(), 1) if beat else None
            oldest = aware(s.scalar(select(func.min(Outbox.created_at)).where(Outbox.status.in_(UNSENT_STATUSES))))
            checks["oldest_unsent_age_s"] = round((now - oldest).total_seconds(), 1) if oldest else 0
            checks["staff_on_call"] = s.scalar(select(func.count(Staff.id)).where(
                Staff.active.is_(True), Staff.on_call.is_(True)))
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["sms_sending"] = ("twilio" if ext.settings.can_send_sms else
                             "local outbox (development)" if ext.settings.dev else "NOT CONFIGURED")
    problems = []
    if checks.get("staff_on_call") == 0:
        problems.append("no staff on call")
    if checks["sms_sending"] == "NOT CONFIGURED":
        problems.append("no Twilio credentials: pages cannot be sent")
    age = checks.get("dispatcher_heartbeat_age_s")
    if checks["database"] == "ok" and (age is None or age > HEARTBEAT_STALE):
        problems.append("dispatcher not running")
    if (checks.get("oldest_unsent_age_s") or 0) > 60:
        problems.append("outbound texts are backing up")
    spool = ext.helpline.spool
    if spool is not None:
        try:
            held = spool.counts()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"the outage spool cannot be read ({type(exc).__name__}): messages may be lost")
        else:
            checks["spool_pending"], checks["spool_dead"] = held.pending, held.dead
            if held.pending:
                checks["spool"] = "messages stored late are waiting for the database"
                checks["spool_oldest_age_s"] = round((utcnow() - held.oldest_pending).total_seconds(), 1)
            if held.dead:
                problems.append(dead_letter_problem(held.dead, held.dead_crises))
    checks["problems"] = problems
    degraded = checks["database"] != "ok" or ext.validator is None or "spool" in checks or bool(problems)
    return checks, degraded


@bp.get("/healthz")
def healthz():
    """Report readiness; 200 even when degraded, because crisis replies still go out."""
    ext = current_app.extensions["helpline"]
    checks, degraded = system_checks(ext)
    return jsonify(status="degraded" if degraded else "ok", insecure_dev_mode=ext.insecure, checks=checks)
