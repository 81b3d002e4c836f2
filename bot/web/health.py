"""GET /healthz: is the database reachable, and is the webhook running insecurely?"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Report readiness; 200 even when degraded, because crisis replies still go out."""
    ext = current_app.extensions["helpline"]
    checks = {"database": "ok", "signature_validation": "on" if ext.validator else "OFF"}
    try:
        with ext.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        missing = ext.db.missing_tables()
        if missing:
            checks["database"] = "schema missing: run 'helpline db upgrade'"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {type(exc).__name__}"
    spool = ext.helpline.spool
    if spool is not None and spool.pending():
        checks["spool"] = "messages stored late are waiting for the database"
    degraded = checks["database"] != "ok" or ext.validator is None or "spool" in checks
    return jsonify(status="degraded" if degraded else "ok", insecure_dev_mode=ext.insecure, checks=checks)
