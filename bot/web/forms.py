"""Form bodies (every Twilio webhook is one): werkzeug's parse of a urlencoded body, done for less.

werkzeug's stream reads and limits the body as ever (``MAX_CONTENT_LENGTH``, a missing length); a body that
is not UTF-8 is an empty form, as werkzeug's silent parser makes it. Two steps are left out: the form parser
object werkzeug builds for every body (its limits read from the app's config; a urlencoded body uses none of
them), and ``urllib.parse.parse_qsl``, replaced by :func:`parse_urlencoded`, which gives the same pairs and
skips the ``+`` and ``%`` decoding for the fields that hold neither (nearly all of Twilio's twenty: SIDs,
numbers, flags). Other bodies (multipart), and every body in debug mode (Flask's helpful error for a missing
file), go through werkzeug's own parser. A test checks the pairs against ``parse_qsl`` on awkward bodies, and
the form a view reads against werkzeug's.
"""

from __future__ import annotations

from urllib.parse import unquote

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" error handler used below
from flask import Request, current_app

# werkzeug's handler for bytes that are not UTF-8 after %-decoding (it keeps them %-quoted).
_ERRORS = "werkzeug.url_quote"
URLENCODED = "application/x-www-form-urlencoded"


def parse_urlencoded(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")``, as werkzeug parses a form."""
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(part: str) -> str:
    if "+" in part:
        part = part.replace("+", " ")
    return unquote(part, errors=_ERRORS) if "%" in part else part


class HelplineRequest(Request):
    """Flask's request, its urlencoded forms parsed by :func:`parse_urlencoded` without werkzeug's parser object."""

    def _load_form_data(self) -> None:
        # current_app read once through its proxy, not twice (see bot.web.twilio_adapter.twilio_signed)
        if ("form" in self.__dict__ or self.mimetype != URLENCODED
                or (current_app and current_app._get_current_object().debug)):
            return super()._load_form_data()
        stream = self._get_stream_for_parsing()  # limited to the body's length and MAX_CONTENT_LENGTH (413)
        try:
            form = self.parameter_storage_class(parse_urlencoded(stream.read().decode()))
        except ValueError:  # not UTF-8: werkzeug's parser is silent, the form is empty
            form = self.parameter_storage_class()
        d = self.__dict__
        d["stream"], d["form"], d["files"] = stream, form, self.parameter_storage_class()
        return None
