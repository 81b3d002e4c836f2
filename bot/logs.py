"""Log set-up for every entry point: one line per record, whatever a value carries.

Values from requests reach log lines (a MessageSid, a path, an exception's message). A newline in
one would start what looks like a new record (``... CRITICAL forged``), so the formatter writes
control characters in the message as escapes (``\\n``); tracebacks keep their lines.
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character (newlines included) written as an escape."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


class OneLineFormatter(logging.Formatter):
    """A formatter whose messages cannot forge records: control characters are escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's naming
        record.message = one_line(record.message)
        return super().formatMessage(record)


def setup(level: int = logging.INFO) -> None:
    """INFO and above to stderr, one line per record (a no-op when logging is already set up)."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # request dumps at INFO
