"""The "second net": a small character n-gram logistic regression behind the crisis rules.

The hand-written rules miss crisis texts phrased in ways nobody listed. This model, trained by
``tools/train_second_net.py`` on the project's own labelled corpora, only ever *adds* a
same-day review when the rules found nothing; it never lowers or removes a rule verdict.

Features reproduce scikit-learn's ``TfidfVectorizer(analyzer="char_wb", binary=True,
lowercase=False, norm="l2")`` exactly, on the text as the triage engine reads it: folded
(:func:`bot.core.normalize.fold`: lowercase, emoji as words, no accents or apostrophes),
tokenised, sentence marks dropped, words joined by single spaces. Each word is padded with a
space on both sides and cut into character n-grams; the message's features are the set of
n-grams found in the model's vocabulary, weighted by idf (1 when the model has none) and
L2-normalised. The score is ``sigmoid(intercept + w . x)``; a text flags when it has at least
``min_words`` words and its score reaches ``threshold``.

Pure Python on purpose (no numpy): per word, the vocabulary n-grams are cached, so scoring a
message is a few set unions and a sum.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping

from bot.core.normalize import BOUNDARY, words

FORMAT = 1
_CACHE_LIMIT = 50_000  # bounded: texters can invent endless words
_CACHE_WORD_CHARS = 40
_NONE = frozenset((None,))


def model_words(tokens: Iterable[str]) -> list[str]:
    """The words the model reads: triage tokens without sentence marks."""
    return [t for t in tokens if t != BOUNDARY]


def model_text(tokens: Iterable[str]) -> str:
    """The document the trainer hands to scikit-learn (words joined by single spaces)."""
    return " ".join(model_words(tokens))


def char_wb_ngrams(word: str, lo: int, hi: int) -> list[str]:
    """scikit-learn's ``_char_wb_ngrams`` for one whitespace-free word.

    The word is padded with one space each side; a padded word no longer than n is counted
    once, whole, and no longer n-grams are cut from it (scikit-learn's quirk, kept exactly).
    """
    w = f" {word} "
    size = len(w)
    out: list[str] = []
    for n in range(lo, hi + 1):
        if size <= n:
            out.append(w)
            break
        out.extend([w[i:i + n] for i in range(size - n + 1)])
    return out


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class SecondNet:
    """A loaded second-net model: ``score`` a text, ``explain`` which n-grams drove it."""

    def __init__(self, data: Mapping, emoji: Mapping[str, str] | None = None,
                 replace: Mapping[str, str] | None = None):
        try:
            if int(data.get("format", FORMAT)) != FORMAT:
                raise ValueError(f"unsupported second-net format {data.get('format')!r}")
            lo, hi = (int(n) for n in data["ngram_range"])
            weights = {str(g): float(w) for g, w in data["weights"].items()}
            idf = {str(g): float(v) for g, v in (data.get("idf") or {}).items()}
            self.threshold = float(data["threshold"])
            self.min_words = int(data.get("min_words", 1))
            self.intercept = float(data["intercept"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed second-net model: {exc!r}") from exc
        if not 1 <= lo <= hi:
            raise ValueError(f"bad ngram_range {data['ngram_range']!r}")
        if idf and idf.keys() != weights.keys():
            raise ValueError("second-net idf and weights name different n-grams")
        self.version = data.get("version")
        self.ngram_range = (lo, hi)
        self.emoji = dict(emoji or {})
        self.replace = dict(replace or {})
        # Feature i: n-gram, weight * idf (its pull before normalising) and idf squared (its
        # share of the L2 norm). Every vocabulary n-gram counts in the norm, as in scikit-learn.
        self.ngrams = sorted(weights)
        self._index = {g: i for i, g in enumerate(self.ngrams)}
        self._pull = [weights[g] * idf.get(g, 1.0) for g in self.ngrams]
        self._sq = [idf.get(g, 1.0) ** 2 for g in self.ngrams]
        self._both = [complex(p, q) for p, q in zip(self._pull, self._sq)]
        self._words: dict[str, frozenset[int]] = {}  # word -> its vocabulary n-grams
        self._spans: dict[int, list[tuple[int, int]]] = {}

    @classmethod
    def load(cls, path: Path | str, emoji: Mapping[str, str] | None = None,
             replace: Mapping[str, str] | None = None) -> SecondNet | None:
        """The model at ``path``, or None when there is no such file (the net is optional)."""
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        return cls(data, emoji=emoji, replace=replace)

    def __len__(self) -> int:
        return len(self.ngrams)

    # -- features ---------------------------------------------------------------------------

    def _spans_for(self, size: int) -> list[tuple[int, int]]:
        """(start, end) of every n-gram in a padded word of this length, as char_wb cuts them."""
        spans = self._spans.get(size)
        if spans is None:
            lo, hi = self.ngram_range
            spans = []
            for n in range(lo, hi + 1):
                if size <= n:
                    spans.append((0, size))
                    break
                spans.extend((i, i + n) for i in range(size - n + 1))
            if size <= _CACHE_WORD_CHARS:
                self._spans[size] = spans
        return spans

    def _word_features(self, word: str) -> frozenset[int]:
        w = f" {word} "
        grams = [w[i:j] for i, j in self._spans_for(len(w))]
        feats = frozenset(map(self._index.get, grams))
        if None in feats:
            feats = feats - _NONE
        if len(word) <= _CACHE_WORD_CHARS:  # a 20,000-letter "word" is scored, not remembered
            if len(self._words) >= _CACHE_LIMIT:
                self._words.clear()
            self._words[word] = feats
        return feats

    def features(self, tokens: Iterable[str]) -> set[int]:
        """Indices of the vocabulary n-grams present (binary: each counted once)."""
        get = self._words.get
        miss = self._word_features
        return set().union(*[get(t) or miss(t) for t in tokens if t != BOUNDARY])

    def tokens(self, text: str) -> list[str]:
        """Fold and tokenise a raw text the way the triage engine does."""
        return words(text or "", self.emoji, self.replace)

    # -- scoring ----------------------------------------------------------------------------

    def _logit(self, feats: set[int]) -> float:
        if not feats:
            return self.intercept
        # One C-level pass: the real parts add up the pulls, the imaginary parts the norm.
        total = sum(map(self._both.__getitem__, feats))
        return self.intercept + total.real / math.sqrt(total.imag)

    def score_tokens(self, tokens: Iterable[str]) -> float:
        """Crisis probability of an already tokenised text."""
        return _sigmoid(self._logit(self.features(tokens)))

    def score(self, text: str) -> float:
        """Crisis probability (0..1) of a raw text."""
        return self.score_tokens(self.tokens(text))

    def flags(self, tokens: Iterable[str]) -> bool:
        """Whether the model alone would send this tokenised text to review.

        Texts shorter than ``min_words`` never do: a word or two ("hi", "no", "ok") carries too
        little evidence once L2-normalised, and the rules already cover the short crisis texts
        ("help", "kms", a lone pill emoji).
        """
        words_ = model_words(tokens)
        return len(words_) >= self.min_words and self.score_tokens(words_) >= self.threshold

    def explain(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` n-grams pushing hardest toward crisis, with their share of the logit.

        Contributions are after normalisation, so they plus the intercept add up to the logit;
        the most crisis-ward come first (negative ones last, if fewer than ``k`` are positive).
        """
        feats = self.features(self.tokens(text))
        if not feats:
            return []
        norm = math.sqrt(sum(self._sq[i] for i in feats))
        parts = sorted(((self.ngrams[i], self._pull[i] / norm) for i in feats), key=lambda p: (-p[1], p[0]))
        return parts[:k]
