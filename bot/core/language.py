"""Per-message language detection (English or Spanish) from marker words."""

from __future__ import annotations

from bot.core.content import Content
from bot.core.normalize import words

_SPANISH_MARKS = set("ñ¿¡áéíóú")


class LanguageDetector:
    """Counts marker words of each language; says None when the text does not tell."""

    def __init__(self, content: Content):
        self._markers = {lang: frozenset(w.lower() for w in content.language_words.get(lang, ()))
                         for lang in ("en", "es")}

    def detect(self, text: str, tokens: list[str] | None = None) -> str | None:
        """'en', 'es', or None when the message is too short or mixed evenly."""
        toks = words(text or "") if tokens is None else tokens
        # Counting with map over the set's membership test (True counts 1): no Python-level loop.
        en = sum(map(self._markers["en"].__contains__, toks))
        es = sum(map(self._markers["es"].__contains__, toks))
        # The marks are all non-ASCII: an ASCII text (most) has none, and is not scanned for them.
        if not (text or "").isascii() and not _SPANISH_MARKS.isdisjoint(text.lower()):
            es += 1
        if es > en:
            return "es"
        if en > es:
            return "en"
        return None
