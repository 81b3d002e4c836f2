"""The learned crisis classifier: calibrated linear models over word and character n-grams.

Trained by ``tools/train_triage.py`` (scikit-learn, at build time) on real labelled text from
drug-use forums and everyday SMS, blind-written helpline texts, and the project's corpora, and
shipped as ``replies/crisis/model.json``. This module is the inference: the standard library,
and one numpy gather-and-accumulate per feature block for texts that need more than the escalate
head (see :class:`_Block`), a few microseconds a message.

What it reproduces exactly (``tests/test_model.py`` checks it against scikit-learn):

- the document is the triage engine's reading of the text (folded, tokenised, sentence marks
  dropped, words joined by single spaces);
- three ``TfidfVectorizer(binary=True, lowercase=False, use_idf=True, norm="l2")`` feature
  blocks, each L2-normalised on its own and concatenated: ``analyzer="char_wb"`` n-grams and
  ``analyzer="word"`` (``token_pattern=r"\\S+"``) n-grams of the words, and the rules' reading
  of the text as single tokens (concepts present, rules fired, context that lowered them; see
  :func:`bot.core.triage.evidence`), so the model learns when the lexicon's structures mean danger;
- one logistic-regression head per question, each followed by Platt scaling fitted on
  out-of-fold scores: ``p = sigmoid(a * logit + c)``.

Heads: ``escalate`` (any tier), ``page`` (emergency or urgent), ``emergency``, ``other`` (about
someone else), and one head per crisis kind (softmax). How the triage engine combines them with
the rules is in :mod:`bot.core.triage`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import sys
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from bot.core.normalize import MARKS
from bot.core.states import quick_init

FORMAT = 3  # 3: each feature block's numbers are one packed float64 array (2: a JSON list per n-gram)
# A threshold no probability reaches: a model file without "sure" never pages on the escalate head.
NEVER = 2.0
BINARY_HEADS = ("escalate", "page", "emergency", "other")
_CACHE_LIMIT = 50_000  # bounded: texters can invent endless words
_CACHE_WORD_CHARS = 40


def model_words(tokens: Iterable[str]) -> list[str]:
    """The words the model reads: triage tokens without sentence marks."""
    return [t for t in tokens if t not in MARKS]


def model_text(tokens: Iterable[str]) -> str:
    """The document the trainer hands to scikit-learn (words joined by single spaces)."""
    return " ".join(model_words(tokens))


def sigmoid(z: float) -> float:
    """The logistic function, safe for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@quick_init
@dataclass(frozen=True)
class Scores:
    """What the model says about one text (probabilities after calibration)."""

    escalate: float
    page: float
    emergency: float
    other: float
    kind: str | None
    kind_p: float
    words: int

    def supports_page(self, thresholds: Mapping[str, float]) -> bool:
        """Whether the model pages (see :meth:`tier`); a weak rule hit keeps its page only then."""
        return self.page >= thresholds["page"] or self.escalate >= thresholds.get("sure", NEVER)

    def tier(self, thresholds: Mapping[str, float]) -> str | None:
        """The tier the model alone would give (None: routine).

        It pages when the page head reaches ``page``, or when it is all but certain that a human is
        needed at all (the escalate head at ``sure``, when the model has one): such texts are rarely
        routine, and the page head, which must tell crisis from same-day review, is often unsure of
        them ("i dont see myself making it to 30 and i dont really want to").
        """
        if self.supports_page(thresholds):
            return "emergency" if self.emergency >= thresholds["emergency"] else "urgent"
        if self.escalate >= thresholds["escalate"]:
            return "review"
        return None


class CharGrams:
    """char_wb n-gram features of words, cached per word (words repeat across texts).

    scikit-learn's ``_char_wb_ngrams``, kept exactly: the word is padded with one space each side;
    a padded word no longer than n is counted once, whole, and no longer n-grams are cut from it.
    """

    def __init__(self, index: Mapping[str, int], ngram_range: tuple[int, int]):
        self.index = index
        self.ngram_range = ngram_range
        self._cache: dict[str, frozenset[int]] = {}
        self._spans: dict[int, list[tuple[int, int]]] = {}

    def of_word(self, word: str) -> frozenset[int]:
        """The vocabulary n-grams of one word."""
        feats = self._cache.get(word)
        if feats is not None:
            return feats
        w = f" {word} "
        spans = self._spans.get(len(w))
        if spans is None:
            lo, hi = self.ngram_range
            spans = []
            for n in range(lo, hi + 1):
                if len(w) <= n:
                    spans.append((0, len(w)))
                    break
                spans.extend((i, i + n) for i in range(len(w) - n + 1))
            if len(w) <= _CACHE_WORD_CHARS:
                self._spans[len(w)] = spans
        get = self.index.get
        feats = frozenset(i for i in (get(w[a:b]) for a, b in spans) if i is not None)
        if len(word) <= _CACHE_WORD_CHARS:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = feats
        return feats

    def of(self, words: list[str]) -> set[int]:
        """The vocabulary n-grams of a text (binary: each counted once)."""
        if not words:
            return set()
        # The per-word cache is read inline (of_word's call costs more than the lookup; an empty
        # frozenset is falsy and goes through of_word, which answers it from the cache all the same).
        cached = self._cache.get
        of_word = self.of_word
        return set().union(*[cached(w) or of_word(w) for w in words])


def word_grams(index: Mapping[str, int], words: list[str], ngram_range: tuple[int, int]) -> set[int]:
    """Indices of the vocabulary word n-grams in a token list."""
    get = index.get
    lo, hi = ngram_range
    found: set[int] = set()
    # The n-grams are looked up in the same order as one loop over n and i would (unigrams, then
    # bigrams...), so the set is built by the same insertions and iterates in the same order
    # (the model's sums run over it in that order: the same order gives bit-identical scores).
    for n in range(lo, hi + 1):
        if n == 1:
            grams = words
        elif n == 2:
            grams = map(" ".join, zip(words, words[1:]))
        else:
            grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        found.update([j for j in map(get, grams) if j is not None])
    return found


_LOADED: OrderedDict[tuple[type, bytes], object] = OrderedDict()
_LOADED_MAX = 4


def load_model(cls, path: Path | str):
    """``cls(parsed JSON)`` for the model file at ``path``, or None when there is no such file.

    Models are read-only once built, so one built from the same bytes is shared: a process that
    builds several bots (the CLI's checks, the tests' copies of ``replies/``) parses each 5-7 MB
    file once. Keyed by the file's digest, so an edited or retrained file is always parsed anew.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    key = (cls, hashlib.sha256(raw).digest())
    model = _LOADED.get(key)
    if model is None:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        del raw  # the file's bytes, no longer needed while the model is built
        model = cls(data)
        _LOADED[key] = model
        if len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(key)
    return model


def pack_block(rows: Mapping[str, Iterable[float]]) -> dict:
    """A feature block as the model file stores it: the n-grams in order, and one float64 array
    (little-endian, base64) of their rows ``[idf, weight per head...]`` one after the other.

    One array instead of a JSON list per n-gram: loading makes no Python object per number, so a
    web worker does not keep the parser's 100 MB of garbage around as resident memory.
    """
    grams = sorted(rows)
    values = array("d")
    width = 0
    for g in grams:
        row = list(rows[g])
        width = width or len(row)
        if len(row) != width:
            raise ValueError(f"n-gram {g!r} has {len(row)} numbers, not {width}")
        values.extend(row)
    if sys.byteorder == "big":
        values.byteswap()
    return {"grams": grams, "width": width, "values": base64.b64encode(values.tobytes()).decode("ascii")}


_DECODE_CHARS = 1 << 16  # base64 characters decoded at a time (a multiple of 4)


def _decode_doubles(text: str) -> array:
    """A base64 string of packed doubles as an array, decoded a slice at a time.

    Decoding the whole string at once would hold a second copy of the block (up to 8 MB) next to
    the array; freed among long-lived objects, such copies stay in a worker's resident memory.
    """
    values = array("d")
    for start in range(0, len(text), _DECODE_CHARS):
        values.frombytes(base64.b64decode(text[start:start + _DECODE_CHARS]))
    return values


def unpack_block(block: Mapping) -> tuple[list[str], array, int]:
    """(n-grams, their rows as one flat float64 array, numbers per row) from :func:`pack_block`'s form."""
    grams, width = list(block["grams"]), int(block["width"])
    values = _decode_doubles(block["values"])
    if sys.byteorder == "big":
        values.byteswap()
    if len(values) != len(grams) * width:
        raise ValueError(f"block holds {len(values)} numbers for {len(grams)} n-grams x {width}")
    return grams, values, width


_PACKERS: dict[int, Callable[..., bytes]] = {}
_PACKED_MAX = 1 << 14  # longer feature sets (rare: very long texts) go through np.fromiter


def indices(feats: set[int] | frozenset[int]) -> np.ndarray:
    """The feature indices as an intp array, in the set's iteration order (the order the sums add
    rows in), for ``take``. The same array ``np.fromiter(feats, np.intp)`` gives, at about a third
    of its cost: ``struct`` packs the set's ints into native ssize_t (numpy's intp) in one call,
    where fromiter converts each int through numpy's generic scalar assignment."""
    n = len(feats)
    pack = _PACKERS.get(n)
    if pack is None:
        if n > _PACKED_MAX:
            return np.fromiter(feats, dtype=np.intp, count=n)
        pack = _PACKERS[n] = struct.Struct(f"{n}n").pack
    return np.frombuffer(pack(*feats), np.intp)


class _Block:
    """One feature block (char or word n-grams): vocabulary, each feature's share of the L2 norm
    and its pull on each head.

    Every text needs the norm and the escalate head: they stay packed in one complex number per
    feature (real: the escalate pull, imaginary: the norm share), so one C-level sum serves both.
    Texts that may escalate need every head: for them the same numbers, and the other heads' pulls,
    are one float64 matrix (a row per feature: the norm share, then each head's pull; 8 bytes a
    number instead of 40 for a list slot and a boxed complex), whose rows present are gathered and
    accumulated in one numpy call for every head at once, where a Python sum per head cost three
    times the whole escalate sum.

    Each sum adds the same doubles in the same order as a Python ``sum`` over the feature set would:
    ``np.fromiter`` walks the set in its own iteration order, as ``map`` does, and reducing the
    gathered rows along axis 0 adds them one row after another: numpy runs its inner loop across a
    row's columns (the contiguous axis), adding each row into the running totals, and sums pairwise
    only along the contiguous axis of a reduction (a 1-D sum), which this never is: the matrix always
    has several columns. So every score is bit-identical to the pure-Python one;
    ``tests/test_model_sums.py`` holds numpy to that (``np.add.accumulate``, sequential by
    definition, gives the same doubles at three times the cost).
    """

    def __init__(self, block: Mapping, n_heads: int, ngram_range: tuple[int, int]):
        self.ngram_range = ngram_range
        grams, values, width = unpack_block(block)
        if width != 1 + n_heads:
            raise ValueError(f"block rows have {width} numbers, expected {1 + n_heads}")
        self.index = {g: i for i, g in enumerate(grams)}
        # Each feature's pull on a head is weight * idf; its share of the L2 norm is idf squared.
        idf = values[0::width]

        def pull(h: int) -> array:
            return array("d", [w * d for w, d in zip(values[1 + h::width], idf)])

        self.first = [complex(p, d * d) for p, d in zip(pull(0), idf)]
        # One C-contiguous row per feature (what take(axis=0) copies fastest): the norm share and
        # the escalate pull (the very doubles packed in ``first``), then the other heads' pulls.
        rows = np.empty((len(grams), 1 + n_heads), dtype=np.float64)
        rows[:, 0] = [c.imag for c in self.first]
        rows[:, 1] = [c.real for c in self.first]
        for h in range(1, n_heads):
            rows[:, 1 + h] = np.frombuffer(pull(h), dtype=np.float64)
        self.rows = rows

    def sums(self, feats: frozenset[int] | set[int], heads: int) -> tuple[float, list[float]]:
        """(norm, pull sums of the first ``heads`` heads) over the features present."""
        if not feats:
            return 0.0, []
        if heads == 1:
            first = sum(map(self.first.__getitem__, feats))
            return math.sqrt(first.imag), [first.real]
        # Every head in one pass (summing all of them costs about what summing one does): row
        # after row, in the set's order (see the class doc).
        rows = self.rows.take(indices(feats), axis=0)
        total = np.add.reduce(rows, axis=0)[:heads + 1].tolist()
        return math.sqrt(total[0]), total[1:]


class TriageModel:
    """A loaded model: ``scores(tokens)`` and ``explain(tokens)``."""

    def __init__(self, data: Mapping):
        try:
            if int(data["format"]) != FORMAT:
                raise ValueError(f"unsupported model format {data.get('format')!r}")
            self.kinds = tuple(data["kinds"])
            self.heads = (*BINARY_HEADS, *(f"kind:{k}" for k in self.kinds))
            n = len(self.heads)
            self.intercepts = [float(data["intercepts"][h]) for h in self.heads]
            self.calibration = {h: (float(a), float(c)) for h, (a, c) in data["calibration"].items()}
            self.thresholds = {k: float(v) for k, v in data["thresholds"].items()}
            self.min_words = int(data["min_words"])
            self.char = _Block(data["char"], n, tuple(data["char_ngrams"]))
            self.word = _Block(data["word"], n, tuple(data["word_ngrams"]))
            self.rule = _Block(data["rule"], n, (1, 1))
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"malformed triage model: {exc!r}") from exc
        for key in ("escalate", "page", "emergency", "overrule"):
            if key not in self.thresholds:
                raise ValueError(f"triage model lacks threshold {key!r}")
        self.version = data.get("version")
        self.trained_on = data.get("trained_on", {})
        self._chars = CharGrams(self.char.index, self.char.ngram_range)

    @classmethod
    def load(cls, path: Path | str) -> TriageModel | None:
        """The model at ``path``, or None when there is no such file."""
        return load_model(cls, path)

    def __len__(self) -> int:
        return len(self.char.index) + len(self.word.index) + len(self.rule.index)

    # -- features ---------------------------------------------------------------------------

    def _word_chars(self, word: str) -> frozenset[int]:
        return self._chars.of_word(word)

    def features(self, words: list[str]) -> tuple[set[int], set[int]]:
        """Indices of the char and word n-grams present (binary: each counted once)."""
        return self._chars.of(words), word_grams(self.word.index, words, self.word.ngram_range)

    # -- scoring ----------------------------------------------------------------------------

    def read(self, words: list[str], extra: Iterable[str]) -> tuple[set[int], set[int], set[int]]:
        """The features of a text, one set per block (char n-grams, word n-grams, rule tokens).

        The triage engine reads them once and hands them to :meth:`escalate_p` and :meth:`scores`,
        which would otherwise each find them again for the same text.
        """
        chars, found = self.features(words)
        get = self.rule.index.get
        return chars, found, {i for i in map(get, extra) if i is not None}

    def _logits(self, words: list[str], extra: Iterable[str], count: int,
                feats: tuple[set[int], set[int], set[int]] | None = None) -> list[float]:
        """Logits of the first ``count`` heads (escalate, page, emergency, other, kinds...).

        ``feats``: :meth:`read`'s features of these same words and extra tokens, when known.
        """
        chars, found, rules = self.read(words, extra) if feats is None else feats
        count = min(count, len(self.heads))
        out = list(self.intercepts[:count])
        for block, present in ((self.char, chars), (self.word, found), (self.rule, rules)):
            norm, heads = block.sums(present, count)
            if norm:
                for h in range(count):
                    out[h] += heads[h] / norm
        return out

    def _calibrated(self, head: str, logit: float) -> float:
        a, c = self.calibration.get(head, (1.0, 0.0))
        return sigmoid(a * logit + c)

    def escalate_p(self, tokens: Iterable[str], extra: Iterable[str] = (),
                   feats: tuple[set[int], set[int], set[int]] | None = None) -> float:
        """Probability that a text needs a human at all (the cheap first question).

        ``feats``: :meth:`read`'s features of the same text, when the caller already has them.
        """
        return self._calibrated("escalate", self._logits(model_words(tokens), extra, 1, feats=feats)[0])

    def gate(self, tokens: Iterable[str], extra: Iterable[str] = (),
             feats: tuple[set[int], set[int], set[int]] | None = None) -> tuple[float, float]:
        """(escalate, page) probabilities: the two heads that say whether a text with no rule hit can
        be anything but routine. Either may say so alone (:meth:`Scores.tier`): the page head is not
        a second step after the escalate head, and the thresholds were chosen with each on its own.
        """
        esc, page = self._logits(model_words(tokens), extra, 2, feats=feats)
        return self._calibrated("escalate", esc), self._calibrated("page", page)

    def scores(self, tokens: Iterable[str], extra: Iterable[str] = (), detail: bool = True,
               feats: tuple[set[int], set[int], set[int]] | None = None) -> Scores:
        """The heads' probabilities for a tokenised text and the rules' reading of it.

        Without ``detail`` only escalate, page and emergency are computed (``other`` is 0 and
        ``kind`` None): that is all the engine needs unless the model ends up setting the tier.
        ``feats``: :meth:`read`'s features of the same text, when the caller already has them.
        """
        words = model_words(tokens)
        logits = self._logits(words, extra, len(self.heads) if detail else 3, feats=feats)
        if not detail:
            return Scores(*(self._calibrated(h, z) for h, z in zip(BINARY_HEADS[:3], logits)), 0.0, None, 0.0,
                          len(words))
        probs = {h: self._calibrated(h, z) for h, z in zip(BINARY_HEADS, logits)}
        kind_logits = logits[len(BINARY_HEADS):]
        kind, kind_p = None, 0.0
        if kind_logits:
            top = max(kind_logits)
            exps = [math.exp(z - top) for z in kind_logits]
            best = max(range(len(exps)), key=exps.__getitem__)
            kind, kind_p = self.kinds[best], exps[best] / sum(exps)
        return Scores(probs["escalate"], probs["page"], probs["emergency"], probs["other"], kind, kind_p, len(words))

    def explain(self, tokens: Iterable[str], extra: Iterable[str] = (), k: int = 5) -> dict[str, list]:
        """The words (and rule evidence) pulling hardest toward escalation ("for") and away ("against").

        A word's share is the sum of its own features' contributions to the escalate logit (its
        char n-grams and the word n-grams it starts), after normalisation; each rule token
        ("r:...", "c:...") counts on its own. Shares plus the intercept add up to the logit.
        """
        words = model_words(tokens)
        chars, found = self.features(words)
        extra = [e for e in extra if e in self.rule.index]
        c_norm = math.sqrt(sum(self.char.first[i].imag for i in chars)) or 1.0
        w_norm = math.sqrt(sum(self.word.first[i].imag for i in found)) or 1.0
        r_norm = math.sqrt(sum(self.rule.first[self.rule.index[e]].imag for e in extra)) or 1.0
        # The escalate head's pull is the real part of each feature's first packed number.
        pull_c, pull_w, pull_r = self.char.first, self.word.first, self.rule.first
        share: dict[str, float] = {}
        lo, hi = self.word.ngram_range
        for i, word in enumerate(words):
            total = sum(pull_c[j].real for j in self._word_chars(word)) / c_norm
            for n in range(lo, hi + 1):
                if i + n <= len(words):
                    j = self.word.index.get(word if n == 1 else " ".join(words[i:i + n]))
                    if j is not None:
                        total += pull_w[j].real / w_norm
            share[word] = max(share.get(word, total), total) if total > 0 else min(share.get(word, total), total)
        for e in extra:
            share[e] = pull_r[self.rule.index[e]].real / r_norm
        ranked = sorted(share.items(), key=lambda kv: -kv[1])
        return {
            "for": [[w, round(v, 3)] for w, v in ranked if v > 0][:k],
            "against": [[w, round(v, 3)] for w, v in reversed(ranked) if v < 0][:k],
        }
