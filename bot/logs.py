"""Log set-up for every entry point: one line per record, whatever a value carries.

Values from requests reach log lines (a MessageSid, a path, an exception's message). A newline in
one would start what looks like a new record (``... CRITICAL forged``), so the formatter writes
control characters in the message as escapes (``\\n``); tracebacks keep their lines.
"""

from __future__ import annotations

import logging
import re
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character (newlines included) written as an escape."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


class OneLineFormatter(logging.Formatter):
    """A formatter whose messages cannot forge records: control characters are escaped.

    The time is formatted once per second, not once per record (``time.localtime`` and ``strftime``
    were most of a record's formatting; every text logs at least one)."""

    _second: int | None = None
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second  # after the stamp: another thread never pairs this second with the last one's
        return self.default_msec_format % (self._stamp, record.msecs)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's naming
        record.message = one_line(record.message)
        return super().formatMessage(record)


def setup(level: int = logging.INFO) -> None:
    """INFO and above to stderr, one line per record (a no-op when logging is already set up).

    When this handler is the root's only one, records skip the caller's file, line and function, which its
    format never prints and logging finds by walking up the stack for every record (its documented switch;
    a handler added later that prints them shows them unknown). Process and thread ids stay: gunicorn's
    own log format prints the process id."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(level)
        logging._srcfile = None  # noqa: SLF001 - the documented way to skip findCaller
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)  # request dumps at INFO
