"""The numbers page: the same report as ``helpline report``, with inline SVG charts and a CSV export.

Charts are plain SVG drawn here (no script, no CDN, colours from the stylesheet through classes),
each next to a table with the same numbers for screen readers and for copying.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Response, render_template, request
from flask_login import current_user
from markupsafe import Markup, escape

from bot.staff import actions
from bot.staff.report import build, csv_rows
from bot.web.dashboard import bp
from bot.web.dashboard.common import ext

WINDOWS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


def _window() -> str:
    choice = request.args.get("since", "7d")
    return choice if choice in WINDOWS else "7d"


def bar_chart(title: str, data: dict, chart_id: str, css: str = "bar", width: int = 640, height: int = 180) -> Markup:
    """A vertical bar chart as inline SVG, labelled for screen readers (the table beside it has the numbers)."""
    items = list(data.items())
    top = max([v for _, v in items] + [1])
    n = max(len(items), 1)
    pad_left, pad_bottom, pad_top = 30, 34, 14
    inner_w, inner_h = width - pad_left - 6, height - pad_bottom - pad_top
    slot = inner_w / n
    bar_w = max(2.0, slot * 0.7)
    label_every = max(1, -(-n // 12))
    parts = [f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="{chart_id}-title" preserveAspectRatio="xMidYMid meet">',
             f'<title id="{chart_id}-title">{escape(title)}</title>',
             f'<line class="axis" x1="{pad_left}" y1="{pad_top + inner_h}" x2="{width - 6}" y2="{pad_top + inner_h}"/>',
             f'<text class="tick" x="{pad_left - 4}" y="{pad_top + 4}" text-anchor="end">{top}</text>',
             f'<text class="tick" x="{pad_left - 4}" y="{pad_top + inner_h}" text-anchor="end">0</text>']
    for i, (label, value) in enumerate(items):
        h = inner_h * (value / top)
        x = pad_left + i * slot + (slot - bar_w) / 2
        y = pad_top + inner_h - h
        parts.append(f'<rect class="{css} {css}-{escape(str(label))}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}"><title>{escape(str(label))}: {value}</title></rect>')
        if i % label_every == 0:
            short = str(label)[5:] if len(str(label)) == 10 and str(label)[4] == "-" else str(label)
            parts.append(f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{height - 18}" text-anchor="middle">'
                         f'{escape(short.replace("_", " "))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _report(action: str) -> tuple[str, dict]:
    """The window asked for and its numbers; looking at them is audited as ``action``."""
    since = _window()
    with ext().db.session() as s:
        report = build(s, WINDOWS[since])
        actions.audit(s, current_user, action, None, f"since {since}")
    return since, report


@bp.get("/metrics")
def metrics():
    """Volumes, escalations, response times, outcomes and the questions the bot could not answer."""
    since, report = _report("view_metrics")
    charts = {
        "texts": bar_chart(f"Texts per day, last {since}", report["texts_by_day"], "chart-texts", width=960,
                           height=200),
        "tiers": bar_chart("Escalations by tier", report["escalations_by_tier"], "chart-tiers", css="tier",
                           width=360),
        "kinds": bar_chart("Escalations by kind", report["escalations_by_kind"], "chart-kinds", css="kind",
                           width=480),
    }
    return render_template("dashboard/metrics.html", report=report, since=since, windows=list(WINDOWS),
                           charts=charts)


@bp.get("/metrics.csv")
def metrics_csv():
    """The same numbers as metric,key,value rows."""
    since, report = _report("export_metrics")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("metric", "key", "value"))
    writer.writerows(csv_rows(report))
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="helpline-numbers-{since}.csv"'})
