"""The queue, and the poll every dashboard page makes for live updates.

The poll is cheap when nothing changed: the whole state has a version (sent as an ETag), and a
poll that names the version it already has gets ``304 Not Modified`` with no body, so the page
touches nothing. When something changed, each card has its own version and only the cards the
page does not already have are sent; the script replaces just those. Cards carry no CSRF token
(the script adds the page's own token when a Claim form is submitted), so an unchanged card
renders to the same bytes and the same version every time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from flask import jsonify, make_response, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core.states import EscalationStatus, OutboxKind, UNSENT_STATUSES, rank
from bot.staff import actions
from bot.store.models import AuditLog, Outbox, Staff, aware
from bot.web.dashboard import bp
from bot.web.dashboard.common import ext
from bot.web.dashboard.problems import problems

SECTIONS = ("unclaimed", "claimed", "training")


@dataclass
class QueueState:
    """What the queue shows one staff member right now."""

    sections: dict[str, list[actions.QueueItem]]
    queued_pages: dict[int, int]
    unclaimed: int
    unclaimed_training: int
    banner: dict | None  # the most severe unclaimed escalation, for the banner on every page
    mine: list[dict] = field(default_factory=list)  # alerts for the viewer's own conversations

    @property
    def items(self) -> list[actions.QueueItem]:
        return [i for name in SECTIONS for i in self.sections[name]]


def _urgency(item: actions.QueueItem) -> tuple:
    """Most severe first, then oldest."""
    return (-rank(item.severity), aware(item.created_at), item.id)


def queue_state(s: Session, me: Staff | None = None) -> QueueState:
    """Unclaimed real escalations by severity then age, then claimed ones, then training apart."""
    items = actions.queue(s)
    sections: dict[str, list[actions.QueueItem]] = {name: [] for name in SECTIONS}
    for item in sorted(items, key=_urgency):
        if item.training:
            sections["training"].append(item)
        elif item.status == EscalationStatus.OPEN:
            sections["unclaimed"].append(item)
        else:
            sections["claimed"].append(item)
    sections["training"].sort(key=lambda i: (i.status != EscalationStatus.OPEN, *_urgency(i)))
    queued = {}
    if items:
        # Pages written but not yet sent: "0 sent" alone would look like nobody is being woken.
        queued = dict(s.execute(select(Outbox.escalation_id, func.count(Outbox.id))
                                .where(Outbox.kind == OutboxKind.PAGE, Outbox.status.in_(UNSENT_STATUSES),
                                       Outbox.escalation_id.in_([i.id for i in items]))
                                .group_by(Outbox.escalation_id)).all())
    open_training = [i for i in sections["training"] if i.status == EscalationStatus.OPEN]
    top = (sections["unclaimed"] or open_training or [None])[0]
    banner = None
    if top is not None:
        banner = {"id": top.id, "severity": top.severity, "kind": top.kind, "training": top.training,
                  "channel": top.channel, "url": url_for("dashboard.escalation", escalation_id=top.id),
                  "since": aware(top.created_at).isoformat()}
    state = QueueState(sections, queued, len(sections["unclaimed"]) + len(open_training), len(open_training), banner)
    if me is not None:
        state.mine = _mine(s, me, items)
    return state


def _mine(s: Session, me: Staff, items: list[actions.QueueItem]) -> list[dict]:
    """The viewer's own conversations that need them now: a crisis text awaiting their reply, or one
    a colleague just transferred to them."""
    window = ext().settings.claimed_crisis_seconds
    owned = [i for i in items if i.status == EscalationStatus.CLAIMED and i.claimed_by_id == me.id]
    out = []
    last_change = {}
    if owned:
        rows = s.execute(select(AuditLog.escalation_id, AuditLog.action, AuditLog.staff_id, AuditLog.id)
                         .where(AuditLog.escalation_id.in_([i.id for i in owned]),
                                AuditLog.action.in_(("claim", "transfer"))).order_by(AuditLog.id)).all()
        for esc_id, action, staff_id, _ in rows:
            last_change[esc_id] = (action, staff_id)
    names = {}
    givers = {sid for action, sid in last_change.values() if action == "transfer" and sid != me.id}
    if givers:
        names = dict(s.execute(select(Staff.id, Staff.name).where(Staff.id.in_(givers))).all())
    for i in owned:
        url = url_for("dashboard.escalation", escalation_id=i.id)
        if i.held_at is not None:
            held = aware(i.held_at)
            out.append({"id": i.id, "alert": "crisis", "severity": i.severity, "url": url,
                        "since": held.isoformat(), "window_s": window})
        action, giver = last_change.get(i.id, (None, None))
        if action == "transfer" and giver != me.id:
            out.append({"id": i.id, "alert": "transferred", "severity": i.severity, "url": url,
                        "by": names.get(giver, "a colleague")})
    return out


def _digest(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def card_html(item: actions.QueueItem, state: QueueState, with_token: bool = False) -> str:
    return render_template("dashboard/_card.html", i=item, queued_pages=state.queued_pages,
                           me=current_user, with_token=with_token)


@bp.get("/")
def queue():
    """The queue in three sections; the script keeps it live."""
    with ext().db.session() as s:
        state = queue_state(s, current_user)
    cards = {i.id: card_html(i, state, with_token=True) for i in state.items}
    versions = {i.id: _digest(card_html(i, state)) for i in state.items}
    return render_template("dashboard/queue.html", state=state, cards=cards, versions=versions)


@bp.get("/queue/poll")
def queue_poll():
    """The live-update endpoint every dashboard page polls (``fragment=1`` on the queue page).

    ``have`` lists the cards the page shows as ``id.version``; only other cards' HTML is sent.
    """
    with ext().db.session() as s:
        state = queue_state(s, current_user)
    items = state.items
    problems_html = render_template("dashboard/_problems.html", problems=problems())
    fragment = bool(request.args.get("fragment"))
    cards = {i.id: card_html(i, state) for i in items} if fragment else {}
    card_versions = {i: _digest(html) for i, html in cards.items()}
    data = {
        "ids": [i.id for i in items],
        "open": [{"id": i.id, "severity": i.severity, "kind": i.kind, "training": i.training,
                  "channel": i.channel, "url": url_for("dashboard.escalation", escalation_id=i.id)}
                 for i in items if i.status == EscalationStatus.OPEN],
        "unclaimed": state.unclaimed,
        "unclaimed_training": state.unclaimed_training,
        "banner": state.banner,
        "mine": state.mine,
        "problems_html": problems_html,
    }
    if fragment:
        data["sections"] = {name: [i.id for i in state.sections[name]] for name in SECTIONS}
        data["counts"] = {name: len(state.sections[name]) for name in SECTIONS}
    version = _digest([data, card_versions])
    etag = f'"{version}"'
    if etag in request.headers.get("If-None-Match", ""):
        resp = make_response("", 304)
        resp.headers["ETag"] = etag
        return resp
    if fragment:
        have = {}
        for part in (request.args.get("have") or "").split(","):
            key, _, v = part.partition(".")
            if key.isdigit():
                have[int(key)] = v
        data["cards"] = {str(i): ({"v": v} if have.get(i) == v else {"v": v, "html": cards[i]})
                         for i, v in card_versions.items()}
    data["v"] = version
    resp = jsonify(data)
    resp.headers["ETag"] = etag
    return resp
