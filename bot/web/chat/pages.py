"""The widget script any site may load, and the demo clinic page that carries it."""

from __future__ import annotations

from pathlib import Path

from flask import render_template, send_from_directory

from bot.phones import callback_number
from bot.web.chat import bp
from bot.web.chat.strings import content
from bot.web.security import DEMO_CSP, use_csp

STATIC = Path(__file__).parent / "static"


@bp.get("/widget.js")
def widget():
    """The widget script: static, for any site's <script> tag."""
    resp = send_from_directory(STATIC, "widget.js", mimetype="text/javascript", max_age=300)
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    resp.headers["Access-Control-Allow-Origin"] = "*"  # no credentials; lets a page use SRI with crossorigin
    return resp


@bp.get("/demo")
def demo():
    """A sample clinic page with the widget on it (http://127.0.0.1:5000/chat/demo under make run)."""
    use_csp(DEMO_CSP)
    c = content()
    return render_template("chat/demo.html", clinic=c.clinic_name, short_name=c.clinic_short_name, city=c.clinic_city,
                           phone=c.clinic_phone, tel=callback_number(c.clinic_phone) or c.clinic_phone,
                           safety=c.chat_text("demo", "safety", "en"))
