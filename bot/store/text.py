"""What a database can store: text without NUL bytes or lone surrogates.

PostgreSQL refuses a NUL byte in a text column, and neither database driver can encode a lone
surrogate (``"\\ud800"``, which JSON can carry). Such a message would fail on every try, so
the edges (the Twilio webhook, the chat API) clean text with :func:`storable` before it reaches
the service; the spool's ``retry --clean`` does the same for an entry that was journalled
before this existed.
"""

from __future__ import annotations

import re

# NUL and the other C0/C1 controls except tab, newline and carriage return; and lone surrogates.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str | None) -> str | None:
    """``text`` with NUL, other control characters and lone surrogates replaced by U+FFFD."""
    if text is None:
        return None
    return _UNSTORABLE.sub(REPLACEMENT, text)


def unstorable(text: str | None) -> bool:
    """Whether ``text`` holds anything :func:`storable` would replace."""
    return bool(text) and _UNSTORABLE.search(text) is not None
