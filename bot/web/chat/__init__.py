"""Web chat: the embeddable widget, its JSON API under /chat/api, and a demo clinic page.

The adapter is thin, like ``bot/web/sms.py``: each visitor message becomes an
``Inbound(channel="web")`` for ``Helpline.handle``, so crisis triage, the crisis reply,
escalation, paging and bot silence while staff have the conversation are exactly the SMS ones.
What is particular to the web lives in small modules that register on ``bp`` when imported:

- ``api``: start, send, poll, call-back number; rate limits in the database (per conversation and
  per address; a message that escalates is never limited, and a refusal names the clinic, 911, 988).
- ``sessions``: anonymous bearer tokens. Only a token's SHA-256 is stored, it expires after
  ``HELPLINE_CHAT_TOKEN_HOURS`` and no cookie is ever set, so the API needs no CSRF token.
- ``cors``: CORS only for the clinic's own sites (``HELPLINE_CHAT_ORIGINS``), body size, JSON errors.
- ``pages``: the widget script (a static file any page may load) and the demo page.
- ``strings``: the words the API itself writes.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("chat", __name__, url_prefix="/chat", template_folder="templates",
               static_folder="static", static_url_path="/static")

from bot.web.chat import api, cors, pages  # noqa: E402,F401  (routes and hooks)
from bot.web.chat.api import ADDRESS_LIMIT, CONVERSATION_LIMIT, START_LIMIT  # noqa: E402,F401
from bot.web.chat.sessions import token_hash  # noqa: E402,F401
from bot.phones import callback_number as normalize_phone  # noqa: E402,F401
