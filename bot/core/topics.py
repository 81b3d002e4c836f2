"""Topic matching: the guide topic whose keywords best cover a message, typos tolerated."""

from __future__ import annotations

from bot.core.content import Content, Topic
from bot.core.phrases import PhraseIndex

WEAK = "~"  # label suffix for weak keywords (bare drug names): they count for half


class TopicMatcher:
    """Scores every topic of a language at once through one phrase index."""

    def __init__(self, content: Content):
        self._topics: dict[str, dict[str, Topic]] = {}
        self._order: dict[str, dict[str, int]] = {}
        self._index: dict[str, PhraseIndex] = {}
        for lang, topics in content.topics.items():
            self._topics[lang] = {t.id: t for t in topics}
            self._order[lang] = {t.id: i for i, t in enumerate(topics)}
            phrases: dict[str, set[str]] = {}
            for t in topics:
                for kw in t.keywords:
                    phrases.setdefault(kw, set()).add(t.id)
                for kw in t.weak_keywords:
                    phrases.setdefault(kw, set()).add(t.id + WEAK)
            self._index[lang] = PhraseIndex(phrases, emoji=content.emoji)

    def scores(self, text: str, language: str, tokens: list[str] | None = None) -> dict[str, float]:
        """Score per topic: message words its keywords cover (weak keywords count half)."""
        index = self._index[language]
        strong: dict[str, set[int]] = {}
        weak: dict[str, set[int]] = {}
        for f in index.find(index.tokens(text) if tokens is None else tokens):
            bucket = weak if f.label.endswith(WEAK) else strong
            bucket.setdefault(f.label.rstrip(WEAK), set()).update(range(f.start, f.end))
        out = {tid: float(len(pos)) for tid, pos in strong.items()}
        for tid, pos in weak.items():
            out[tid] = out.get(tid, 0.0) + 0.5 * len(pos - strong.get(tid, set()))
        return out

    def best(self, text: str, language: str, tokens: list[str] | None = None) -> tuple[str, float] | None:
        """The best topic id and its score in one language; ties go to the earlier topic."""
        scores = self.scores(text, language, tokens)
        if not scores:
            return None
        order = self._order[language]
        tid = max(scores, key=lambda t: (scores[t], -order[t]))
        return tid, scores[tid]

    def match(self, text: str, language: str, tokens: list[str] | None = None) -> Topic | None:
        """The best topic over both languages' keywords, answered in ``language``."""
        choice = None
        for lang in (language, *[l for l in self._index if l != language]):
            found = self.best(text, lang, tokens)
            if found and (choice is None or found[1] > choice[1]):
                choice = found
        if choice is None:
            return None
        for lang in (language, "en"):
            topic = self._topics.get(lang, {}).get(choice[0])
            if topic:
                return topic
        return None
