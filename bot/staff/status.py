"""Twilio status callbacks for outbound texts: delivered, undelivered, failed."""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.core.states import OutboxStatus
from bot.store.db import Database
from bot.store.models import Outbox, utcnow

logger = logging.getLogger(__name__)

FINAL_FAILURES = (OutboxStatus.FAILED, OutboxStatus.UNDELIVERED)
KNOWN = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "accepted", "scheduled", "canceled")


def record_status(db: Database, dispatcher, sid: str, status: str, error_code: str | None) -> bool:
    """Apply one callback; a failed page triggers the same failover as a failed send."""
    status = (status or "").lower()
    if not sid or status not in KNOWN:
        return False
    with db.session() as s:
        row = s.scalar(select(Outbox).where(Outbox.twilio_sid == sid))
        if row is None:
            return False
        if status == "delivered" or status == "read":
            row.status, row.delivered_at = OutboxStatus.DELIVERED, utcnow()
        elif status in FINAL_FAILURES and row.status != status:
            row.status, row.error_code = status, error_code or row.error_code
            row.error_message = f"status callback: {status}"
            logger.error("outbox %d (%s) %s (%s)", row.id, row.kind, status, error_code)
            dispatcher.on_permanent_failure(s, row)
        return True
