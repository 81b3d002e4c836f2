"""Topic matching: which guide topic answers a question.

Two readers, both over the same folded tokens as triage:

- **Keywords** (``replies/topics.*.toml``): the topic whose keywords cover the most words of the
  message, typos tolerated for non-words; weak keywords (bare drug names) count half.
- **A learned model** (``replies/topics_model.json``, trained by ``tools/train_topics.py`` on
  questions written by people who never saw the topics): a multinomial logistic regression over
  char and word n-grams, and a second head that says whether a text asks something the guide
  answers at all, so that chatter and statements get the menu rather than a stray excerpt.

A text of two words or more that does not read as a question gets no topic; otherwise the model
decides when it is confident, then the keywords, then the model's guess when it is somewhat sure;
otherwise nothing (the bot sends the menu). A single word is the keywords' alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

from bot.core.content import Content, Topic
from bot.core.model import FORMAT, CharGrams, indices, load_model, model_words, unpack_block, word_grams
from bot.core.phrases import PhraseIndex, load_real_words

WEAK = "~"  # label suffix for weak keywords (bare drug names): they count for half
MODEL_MIN_WORDS = 2  # a single word ("ok?", "hours") is the keywords' to answer, or the menu's
NONE = "none"  # "no topic" (the trainer's label for statements; never a model class)


class TopicModel:
    """The learned topic reader: ``predict(words) -> (topic, probability, asks)``.

    Scoring is one numpy gather-and-sum per feature block (22 topics at once): the only numpy in
    the core, because summing 22 heads in Python would cost more than the rest of a decision.
    """

    def __init__(self, data: Mapping):
        import numpy as np

        try:
            if int(data["format"]) != FORMAT:
                raise ValueError(f"unsupported topic model format {data.get('format')!r}")
            self.classes = tuple(data["classes"])
            self.thresholds = {k: float(v) for k, v in data["thresholds"].items()}
            # The topics, then the question head ("asks": is this a question the guide answers at all?).
            self._intercepts = np.array([float(data["intercepts"][c]) for c in (*self.classes, "asks")])
            self._blocks = []
            for key, ranges in (("char", "char_ngrams"), ("word", "word_ngrams")):
                grams, values, width = unpack_block(data[key])
                if width != len(self.classes) + 2:  # idf, each topic, the question head
                    raise ValueError(f"{key} rows have {width} numbers, expected {len(self.classes) + 2}")
                # Column 0 becomes idf squared (each feature's share of the L2 norm), the others
                # weight * idf per topic: in place, over the loaded array (no second 4 MB table).
                packed = np.frombuffer(values, dtype=np.float64).reshape(len(grams), width)
                idf = packed[:, 0].copy()
                packed[:, 1:] *= idf[:, None]
                packed[:, 0] = idf * idf
                self._blocks.append(({g: i for i, g in enumerate(grams)}, tuple(data[ranges]), packed))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"malformed topic model: {exc!r}") from exc
        self._np = np
        self._chars = CharGrams(self._blocks[0][0], self._blocks[0][1])

    @classmethod
    def load(cls, path: Path | str) -> TopicModel | None:
        """The model at ``path``, or None when there is none (keywords alone then)."""
        return load_model(cls, path)

    def predict(self, words: list[str]) -> tuple[str, float, float]:
        """The most likely topic, its probability, and the probability that the text asks at all, from
        the model's words (:func:`bot.core.model.model_words` of the tokens)."""
        np = self._np
        logits = self._intercepts.copy()
        for k, (index, ranges, packed) in enumerate(self._blocks):
            feats = self._chars.of(words) if k == 0 else word_grams(index, words, ranges)
            if feats:
                # take() gathers the same rows as fancy indexing, with less overhead; np.add.reduce is
                # what ndarray.sum calls, without its Python wrapper.
                total = np.add.reduce(packed.take(indices(feats), axis=0), axis=0)
                logits += total[1:] / math.sqrt(total[0])
        asks = 1.0 / (1.0 + math.exp(-float(logits[-1])))
        topics = logits[:-1] - logits[:-1].max()
        exps = np.exp(topics)
        best = int(exps.argmax())
        return self.classes[best], float(exps[best] / np.add.reduce(exps)), asks


class TopicMatcher:
    """Keyword scores for every topic of a language through one phrase index, plus the model."""

    def __init__(self, content: Content, model: TopicModel | None | bool = True):
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
            self._index[lang] = PhraseIndex(phrases, real_words=load_real_words(), emoji=content.emoji)
        if model is True:
            model = TopicModel.load(content.root / "topics_model.json")
        self.model = model or None

    def scores(self, text: str, language: str, tokens: list[str] | None = None) -> dict[str, float]:
        """Score per topic: message words its keywords cover (weak keywords count half)."""
        index = self._index[language]
        strong: dict[str, set[int]] = {}
        weak: dict[str, set[int]] = {}
        for label, start, end, _ in index.matches(index.tokens(text) if tokens is None else tokens):
            bucket = weak if label.endswith(WEAK) else strong
            bucket.setdefault(label.rstrip(WEAK), set()).update(range(start, end))
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

    def keyword_match(self, text: str, language: str, tokens: list[str] | None = None) -> str | None:
        """The keyword reader's topic over both languages' keywords (None: no keyword)."""
        choice = None
        for lang in (language, *[l for l in self._index if l != language]):
            found = self.best(text, lang, tokens)
            if found and (choice is None or found[1] > choice[1]):
                choice = found
        return choice[0] if choice else None

    def match(self, text: str, language: str, tokens: list[str] | None = None) -> Topic | None:
        """The topic that answers the message, in ``language`` (None: send the menu)."""
        if tokens is None:
            tokens = self._index[language].tokens(text)
        words = model_words(tokens) if self.model is not None else ()
        if len(words) >= MODEL_MIN_WORDS:
            guess, p, asks = self.model.predict(words)
            th = self.model.thresholds
            # The keywords are read only when the model leaves the choice to them: most texts are
            # statements or confident questions, and matching both languages' keywords costs a
            # good part of what the model does.
            if asks < th["asks"]:
                tid = None  # chatter or a statement: the menu, and the unmatched list, not a stray excerpt
            elif p >= th["confident"]:
                tid = guess
            else:
                tid = self.keyword_match(text, language, tokens)
                if tid is None and p >= th["fallback"]:
                    tid = guess
        else:
            tid = self.keyword_match(text, language, tokens)
        if tid is None:
            return None
        for lang in (language, "en"):
            topic = self._topics.get(lang, {}).get(tid)
            if topic:
                return topic
        return None
