"""The queue: open and claimed escalations, and the poll every dashboard page makes for live updates."""

from __future__ import annotations

from flask import jsonify, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core.states import EscalationStatus, OutboxKind, UNSENT_STATUSES
from bot.staff import actions
from bot.store.models import Outbox
from bot.web.dashboard import bp
from bot.web.dashboard.common import ext
from bot.web.dashboard.problems import problems


def queue_context(s: Session) -> dict:
    """The queue's rows, how many are unclaimed, and pages queued but not yet sent per escalation."""
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


@bp.get("/")
def queue():
    """Open and claimed escalations, most severe and oldest first; the script keeps it live."""
    with ext().db.session() as s:
        ctx = queue_context(s)
    return render_template("dashboard/queue.html", **ctx)


@bp.get("/queue/poll")
def queue_poll():
    """The live-update endpoint every dashboard page polls: open ids, banners, optionally the queue HTML."""
    with ext().db.session() as s:
        ctx = queue_context(s)
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
