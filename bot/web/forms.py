"""Form bodies (every Twilio webhook is one): werkzeug's parser, with the urlencoded step done for less.

werkzeug reads and limits the body as ever (``MAX_CONTENT_LENGTH``, a missing length, a body that is not
UTF-8); only ``urllib.parse.parse_qsl`` is replaced, by :func:`parse_urlencoded`, which gives the same
pairs and skips the ``+`` and ``%`` decoding for the fields that hold neither (nearly all of Twilio's
twenty: SIDs, numbers, flags). A test checks it against ``parse_qsl`` on awkward bodies.
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import Request
from werkzeug.formparser import FormDataParser

# werkzeug's handler for bytes that are not UTF-8 after %-decoding (it keeps them %-quoted).
_ERRORS = "werkzeug.url_quote"


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


class FormParser(FormDataParser):
    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        return stream, self.cls(parse_urlencoded(stream.read().decode())), self.cls()


class HelplineRequest(Request):
    """Flask's request, its urlencoded forms parsed by :func:`parse_urlencoded`."""

    form_data_parser_class = FormParser
