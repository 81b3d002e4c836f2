"""Find labelled phrases in a token list, tolerating typos, without scanning phrase by phrase.

A :class:`PhraseIndex` is built once from ``{phrase: labels}``. Every message token is resolved
to the vocabulary words it could be (exact, repeated letters squeezed, or within a small
edit distance through a symmetric-delete index), then phrases are found by looking up the
resolved first word in a dict. Cost grows with the message, not with the number of phrases.

Typo tolerance is only for non-words: a token that is itself a common English or Spanish word
(``bot/core/data/common_words.txt``, built from wordfreq) is never squeezed or corrected into
another word, so "nose" is not "noose", "amused" is not "abused" and "crave" is not "carve".
A phrase found through a corrected token is marked ``fuzzy``: weaker evidence, which the
triage model may overrule.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Mapping, NamedTuple

from bot.core.normalize import MARKS, squeeze, words

REAL_WORDS = Path(__file__).parent / "data" / "common_words.txt"


class Found(NamedTuple):
    """One phrase occurrence: its label and the token span ``[start, end)``.

    A NamedTuple rather than a frozen dataclass: a message makes dozens of these and a tuple is
    built several times faster (same fields, same read-only use).
    """

    label: str
    start: int
    end: int
    fuzzy: bool = False  # at least one of its tokens was a typo correction


_NOTHING: tuple[frozenset[str], bool] = (frozenset(), False)
_NO_ENTRY: tuple[frozenset[str], bool, tuple] = (frozenset(), False, ())  # a sentence mark: no word


@lru_cache(maxsize=2)
def load_real_words(path: Path | str = REAL_WORDS) -> frozenset[str]:
    """The common-word list (one word per line, '#' comments), folded like triage text."""
    with Path(path).open(encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip() and not line.startswith("#"))


def _deletes(word: str, depth: int) -> set[str]:
    out = {word}
    frontier = {word}
    for _ in range(depth):
        nxt = set()
        for w in frontier:
            for i in range(len(w)):
                nxt.add(w[:i] + w[i + 1:])
        out |= nxt
        frontier = nxt
    return out


def _frozen(children: dict) -> dict:
    """A built trie level, read-only from now on: each node's labels as a tuple (the set's order)
    and its children, or None instead of an empty dict (a fifth of the memory per node)."""
    return {tok: (tuple(labels), _frozen(kids) if kids else None) for tok, (labels, kids) in children.items()}


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal-string-alignment distance (Levenshtein plus adjacent swaps)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def max_typos(word: str) -> int:
    """How many typos a word of this length may carry: short words must be exact."""
    if len(word) >= 9:
        return 2
    if len(word) >= 5:
        return 1
    return 0


class PhraseIndex:
    """Typo-tolerant multi-word phrase finder over a fixed vocabulary."""

    def __init__(self, phrases: Mapping[str, Iterable[str]], real_words: Iterable[str] = (),
                 emoji: Mapping[str, str] | None = None, replace: Mapping[str, str] | None = None,
                 spelled: Mapping[str, tuple[str, ...]] | None = None):
        self.emoji = dict(emoji or {})
        self.replace = dict(replace or {})
        self.spelled = dict(spelled or {})
        self._real_words = frozenset(real_words)
        # A token trie: node = (labels ending here, children by next word).
        trie: dict[str, tuple[set[str], dict]] = {}
        vocab: set[str] = set()
        for phrase, labels in phrases.items():
            toks = tuple(t for t in words(phrase, replace=self.replace, spelled=self.spelled) if t not in MARKS)
            if not toks:
                continue
            vocab.update(toks)
            children = trie
            for k, tok in enumerate(toks):
                node = children.setdefault(tok, (set(), {}))
                if k == len(toks) - 1:
                    node[0].update(labels)
                children = node[1]
        self.vocab = frozenset(vocab)
        self._trie: dict[str, tuple[tuple[str, ...], dict | None]] = _frozen(trie)
        self._squeezed: dict[str, set[str]] = {}
        fuzzy: dict[str, set[str]] = {}
        for word in vocab:
            self._squeezed.setdefault(squeeze(word), set()).add(word)
            for d in _deletes(word, max_typos(word)):
                fuzzy.setdefault(d, set()).add(word)
        # Read-only from here: a tuple keeps each set's order (the same corrections in the same
        # order) at a quarter of a set's size; there is one per delete key, tens of thousands.
        self._fuzzy: dict[str, tuple[str, ...]] = {d: tuple(words) for d, words in fuzzy.items()}
        # Per token: what resolve() says, and the trie nodes of those words that start a phrase
        # (see _entry). Read inline by matches().
        self._cache: dict[str, tuple[frozenset[str], bool, tuple]] = {}

    def resolve(self, token: str) -> tuple[frozenset[str], bool]:
        """Vocabulary words this token may stand for (empty if none), and whether by typo correction."""
        words, fuzzy, _ = self._cache.get(token) or self._entry(token)
        return words, fuzzy

    def _entry(self, token: str) -> tuple[frozenset[str], bool, tuple]:
        """The cached reading of a token: :meth:`resolve`'s answer, and for each of its words that
        starts a phrase (in the order the words iterate), that word's trie node. Most tokens start
        nothing, and matches() skips them on an empty tuple without looking anything up."""
        words, fuzzy = self._resolve(token)
        trie = self._trie
        out = (words, fuzzy, tuple(trie[w] for w in words if w in trie))
        if len(self._cache) > 50_000:  # bounded: texters can invent endless tokens
            self._cache.clear()
        self._cache[token] = out
        return out

    def _resolve(self, token: str) -> tuple[frozenset[str], bool]:
        if token in self.vocab:
            return frozenset((token,)), False
        if token in self._real_words or token.isdigit():
            return _NOTHING  # a real word of its own, never a typo of another
        sq = squeeze(token)
        if sq in self._squeezed:
            return frozenset(self._squeezed[sq]), False
        if sq in self._real_words:
            return _NOTHING
        best: set[str] = set()
        best_d = 99
        for cand_key in _deletes(token, max_typos(token)):
            for cand in self._fuzzy.get(cand_key, ()):
                # Typos rarely hit the first letter; requiring it keeps "diet" away from "died".
                if cand[0] != token[0]:
                    continue
                limit = min(max_typos(cand), max_typos(token))
                if limit == 0:
                    continue
                d = edit_distance(token, cand, limit)
                if d <= limit:
                    if d < best_d:
                        best, best_d = {cand}, d
                    elif d == best_d:
                        best.add(cand)
        return (frozenset(best), True) if best else _NOTHING

    def tokens(self, text: str) -> list[str]:
        """Tokenize a raw message with this index's emoji map, rewrites and shorthand."""
        return words(text, self.emoji, self.replace, self.spelled)

    def find(self, tokens: list[str]) -> list[Found]:
        """Every phrase occurrence in the token list (a trie walk from each position)."""
        return [Found(*m) for m in self.matches(tokens)]

    def _walk(self, tokens: list[str]) -> Iterator[tuple[tuple[str, ...], int, int, bool]]:
        """The trie walk from each position: ``(labels, start, end, fuzzy)`` for every phrase node reached
        that carries labels, in the order :meth:`matches` lists them."""
        # The per-token cache is read inline (a method call per token costs more than the lookup).
        cached = self._cache.get
        entry = self._entry
        resolved = [_NO_ENTRY if t in MARKS else (cached(t) or entry(t)) for t in tokens]
        n = len(tokens)
        for i in range(n):
            _, fuzzy, starts = resolved[i]
            # Most resolved words never start a phrase: their token has no trie node to start from.
            if not starts:
                continue
            # The walk's first step, from the token's cached nodes (what trie.get of each of its
            # words would give, in the same order), then deeper by the words that follow.
            stack = []
            for labels, kids in starts:
                if labels:
                    yield labels, i, i + 1, fuzzy
                if kids and i + 1 < n:
                    stack.append((kids, i + 1, fuzzy))
            while stack:
                children, j, fuzzy = stack.pop()
                words_j, fuzzy_j, _ = resolved[j]
                fuzzy = fuzzy or fuzzy_j
                for word in words_j:
                    node = children.get(word)
                    if node is None:
                        continue
                    labels, kids = node
                    if labels:
                        yield labels, i, j + 1, fuzzy
                    if kids and j + 1 < n:
                        stack.append((kids, j + 1, fuzzy))

    def matches(self, tokens: list[str]) -> list[tuple[str, int, int, bool]]:
        """What :meth:`find` finds, in the same order, as plain ``(label, start, end, fuzzy)``
        tuples: the matchers' hot path, where building a named tuple per hit shows."""
        return [(label, i, j, fuzzy) for labels, i, j, fuzzy in self._walk(tokens) for label in labels]

    def occurrences(self, tokens: list[str]) -> tuple[dict[str, list[tuple[int, int]]], list[tuple[int, int]]]:
        """What :meth:`matches` finds, gathered as the triage engine reads it: each label's spans
        (labels in the order matches() first finds them, spans in the order it finds them), and
        the spans of the fuzzy matches. The same walk, without a tuple per match to unpack again."""
        occ: dict[str, list[tuple[int, int]]] = {}
        get = occ.get
        fuzzy_spans: list[tuple[int, int]] = []
        for labels, i, j, fuzzy in self._walk(tokens):
            span = (i, j)
            for label in labels:
                spans = get(label)
                if spans is None:
                    occ[label] = [span]
                else:
                    spans.append(span)
            if fuzzy:
                fuzzy_spans.append(span)
        return occ, fuzzy_spans
