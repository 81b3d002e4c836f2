"""The API's HTTP edges: CORS for the clinic's own sites, request size, no caching, JSON errors."""

from __future__ import annotations

from flask import abort, current_app, request
from werkzeug.exceptions import HTTPException

from bot.web.chat import bp
from bot.web.chat.sessions import error
from bot.web.chat.strings import say

MAX_BODY = 32 * 1024  # bytes in one API request: 1,600 escaped emoji still fit


def allowed_origin(origin: str | None) -> bool:
    """Whether a page on this origin may call the API (``HELPLINE_CHAT_ORIGINS``)."""
    if not origin:
        return False
    allowed = {o.lower() for o in current_app.extensions["helpline"].settings.chat_origins}
    return origin.lower().rstrip("/") in allowed


def is_api() -> bool:
    """Whether this request is for the JSON API (not the widget or the demo page)."""
    return request.path.startswith("/chat/api/")


@bp.before_request
def limit_body():
    """API requests are small JSON objects: refuse big bodies before reading them."""
    if is_api():
        request.max_content_length = MAX_BODY
        if request.content_length is not None and request.content_length > MAX_BODY:
            abort(413)


@bp.after_request
def api_headers(resp):
    """CORS for the configured clinic sites only (origin echoed, no credentials); nothing cached."""
    if is_api():
        resp.headers["Cache-Control"] = "no-store"
        resp.vary.add("Origin")
        origin = request.headers.get("Origin")
        if allowed_origin(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            if request.method == "OPTIONS":
                resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
                resp.headers["Access-Control-Max-Age"] = "600"
    return resp


@bp.errorhandler(HTTPException)
def api_error(err: HTTPException):
    """JSON errors for the widget; a message too long says so in words."""
    if not is_api():
        return err
    if err.code == 413:
        return error(413, "too_large", say("too_long", None))
    return error(err.code or 500, err.name.lower().replace(" ", "_"), err.description or err.name)
