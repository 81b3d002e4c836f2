"""Ids in URLs and query strings: every malformed or out-of-range one is a 4xx, never a 500.

An id column is a 32-bit integer on PostgreSQL; a bigger number in a query fails in the driver
(SQLite's fails beyond 64 bits). So ``<int:...>`` in every route stops at ``MAX_ID`` (a bigger
id matches no route: 404), and ``after=`` parameters go through :func:`after_param` (400).
"""

from __future__ import annotations

from flask import abort
from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1
MAX_DIGITS = 10


class BoundedIntConverter(IntegerConverter):
    """Werkzeug's ``int`` converter with ``max`` defaulting to the largest id a column holds."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID,  # noqa: A002
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def parse_id(value: object, default: int = 0) -> int:
    """A non-negative id from a parameter (``default`` when missing); anything else is a 400."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        abort(400)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        number = int(value)
    else:
        abort(400)
    if not 0 <= number <= MAX_ID:
        abort(400)
    return number
