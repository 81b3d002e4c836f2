"""The banner: what staff must know right now, from the same checks as /healthz."""

from __future__ import annotations

from dataclasses import dataclass

from flask import url_for

from bot.web.dashboard.common import ext
from bot.web.health import system_checks

@dataclass(frozen=True)
class Problem:
    """A banner line: what is wrong and how loud to say it."""

    level: str  # danger or warn
    text: str
    link: str | None = None
    link_text: str = "See the local outbox."


def problems() -> list[Problem]:
    """What staff must know right now, from the same checks as /healthz."""
    checks, _ = system_checks(ext())
    out: list[Problem] = []
    if checks["database"] != "ok":
        out.append(Problem("danger", f"DATABASE PROBLEM: {checks['database']}. New texts may not appear here."))
    for p in checks.get("problems", []):
        if p == "no staff on call":
            out.append(Problem("danger", "NO STAFF ON CALL: new crises page every active staff member. "
                                         "Someone must go on call.", url_for("dashboard.on_call"),
                               "Open the on-call panel."))
        elif p.startswith("no Twilio credentials"):
            out.append(Problem("danger", "SMS SENDING IS NOT CONFIGURED: pages and replies cannot be sent. "
                                         "Watch this screen and phone texters instead."))
        elif "could not be stored" in p:
            out.append(Problem("danger", f"MESSAGES NOT STORED: {p}. Read them there: one may be a crisis."))
        elif p == "dispatcher not running":
            out.append(Problem("danger", "DISPATCHER NOT RUNNING: pages, re-pages and replies are not going out."))
        else:
            out.append(Problem("danger", p.upper()))
    if checks["sms_sending"] == "local outbox (development)":
        out.append(Problem("danger", "SMS SENDING IS NOT CONFIGURED: development mode, texts go to the local "
                                     "outbox only and nobody's phone is paged.", url_for("dashboard.outbox")))
    if ext().validator is None:
        out.append(Problem("warn", "Webhook signature validation is OFF (development mode)."))
    if "spool" in checks:
        out.append(Problem("warn", "Messages received during a database outage are waiting to be stored."))
    return out
