"""Template filters and the globals every dashboard template may use."""

from __future__ import annotations

from datetime import datetime

from bot.core.states import channel_spec
from bot.store.models import aware, mask, utcnow
from bot.web.dashboard import bp
from bot.web.dashboard.common import ext
from bot.web.dashboard.problems import problems

OUTCOME_LABELS = {
    "reached_safe": "Reached, safe", "referred_911": "Referred to 911", "referred_988": "Referred to 988",
    "intake_booked": "Intake booked", "no_response": "No response", "not_a_crisis": "Not a crisis",
    "other": "Other",
}


@bp.app_template_filter("age")
def age_filter(dt: datetime | None) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d' since a UTC timestamp."""
    if dt is None:
        return ""
    secs = max(0, int((utcnow() - aware(dt)).total_seconds()))
    if secs < 60:
        return f"{secs} s"
    mins = secs // 60
    if mins < 60:
        return f"{mins} min"
    hours, mins = divmod(mins, 60)
    if hours < 24:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


@bp.app_template_filter("duration")
def duration_filter(seconds: float | None) -> str:
    """'45 s', '3 min 20 s', '1 h 5 min' for a number of seconds."""
    if seconds is None:
        return ""
    secs = int(round(seconds))
    if secs < 60:
        return f"{secs} s"
    mins, rest = divmod(secs, 60)
    if mins < 60:
        return f"{mins} min {rest} s" if rest else f"{mins} min"
    hours, mins = divmod(mins, 60)
    return f"{hours} h {mins} min" if mins else f"{hours} h"


@bp.app_template_filter("iso")
def iso_filter(dt: datetime | None) -> str:
    """ISO 8601 in UTC for <time datetime=...> (the script shows it in the browser's time zone)."""
    return aware(dt).isoformat() if dt is not None else ""


@bp.app_template_filter("channel_label")
def channel_label_filter(channel: str | None) -> str:
    """How staff read a channel name: 'web' is 'web chat'."""
    return channel_spec(channel).label if channel else ""


KIND_LABELS = {
    "suicide": "suicide", "self_harm": "self-harm", "overdose": "overdose", "medical": "medical",
    "violence": "violence", "distress": "distress",
}


@bp.app_template_filter("kind_label")
def kind_label_filter(kind: str | None) -> str:
    """How staff read a crisis kind: 'self_harm' is 'self-harm'."""
    return KIND_LABELS.get(kind or "", (kind or "").replace("_", " "))


@bp.app_template_filter("channel_spec")
def channel_spec_filter(channel: str | None):
    """What a stored channel can do (texts back, training...)."""
    return channel_spec(channel)


DELIVERY_WORDS = {"pending": "waiting to send", "sending": "sending", "sent": "sent", "delivered": "delivered",
                  "undelivered": "NOT delivered", "failed": "FAILED", "cancelled": "cancelled"}


def delivery_text(info: dict, channel: str | None) -> str:
    """'SMS delivered', 'WhatsApp waiting to send', 'SMS FAILED: ...' for an outbound row."""
    word = DELIVERY_WORDS.get(info["status"], info["status"])
    label = channel_spec(channel).label if channel and channel_spec(channel).texts_back else "SMS"
    return f"{label} {word}" + (f": {info['error']}" if info.get("error") else "")


@bp.app_template_filter("utc")
def utc_filter(dt: datetime | None) -> str:
    """A readable UTC timestamp (the fallback when scripts are off)."""
    return aware(dt).strftime("%Y-%m-%d %H:%M UTC") if dt is not None else ""


@bp.app_context_processor
def dashboard_globals():
    """What every dashboard template may use."""
    content = ext().helpline.bot.content
    return {"outcome_labels": OUTCOME_LABELS, "mask": mask, "dashboard_problems": problems,
            "clinic_short_name": content.clinic_short_name, "delivery_text": delivery_text,
            "poll_ms": max(250, round(ext().settings.dashboard_poll_seconds * 1000))}
