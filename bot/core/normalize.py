"""Turn a raw text message into lowercase, accent-free tokens the matchers can read."""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

BOUNDARY = "."  # token that marks a sentence end; scope rules stop at it
CLAUSE = ","  # token that marks a clause break (comma, semicolon, colon); a negation's scope stops at it
MARKS = frozenset({BOUNDARY, CLAUSE})

_APOSTROPHES = re.compile(r"['\u2019\u2018`\u00b4]")
_TOKEN = re.compile(r"[a-z0-9]+|[.!?\n]+|[,;:]+")
_NUM_UNIT = re.compile(r"^(\d+)([a-z]+)$")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_REPEATS = re.compile(r"(.)\1+")


class _DropCombining(dict):
    """A ``str.translate`` table that drops combining marks and keeps every other character: each
    code point is asked ``unicodedata.combining`` once, then answered from the table (bounded:
    texters can send any character)."""

    def __missing__(self, code: int) -> int | None:
        keep = None if unicodedata.combining(chr(code)) else code
        if len(self) < 20_000:
            self[code] = keep
        return keep


_DROP_COMBINING = _DropCombining()


def strip_accents(text: str) -> str:
    """Remove combining marks so 'Síntomas' and 'sintomas' compare equal."""
    if text.isascii():
        return text  # NFKD leaves ASCII as it is and it has no combining marks
    # What "".join(ch for ch in decomposed if not unicodedata.combining(ch)) gives, in one C call.
    return unicodedata.normalize("NFKD", text).translate(_DROP_COMBINING)


def squeeze(word: str) -> str:
    """Collapse repeated letters ('valiumm' -> 'valium', 'killl' -> 'kil')."""
    return _REPEATS.sub(r"\1", word)


def fold(text: str, emoji: Mapping[str, str] | None = None,
         replace: Mapping[str, str] | None = None) -> str:
    """Lowercase, map emoji to words, apply literal rewrites and drop accents and apostrophes."""
    if text.isascii():
        # Most texts are plain ASCII: no emoji, no accents, no compatibility forms to fold.
        text = text.lower()
        if replace:
            for old, new in replace.items():
                if old in text:
                    text = text.replace(old, new)
        # The other apostrophes are not ASCII: most texts have none of these two, and skip the regex.
        return _APOSTROPHES.sub("", text) if "'" in text or "`" in text else text
    text = unicodedata.normalize("NFKC", text)
    if emoji:
        for symbol, word in emoji.items():
            if symbol in text:
                text = text.replace(symbol, f" {word} ")
    text = text.lower()
    if replace:
        for old, new in replace.items():
            if old in text:
                text = text.replace(old, new)
    text = strip_accents(text)
    # "don't" -> "dont": apostrophes join words rather than split them.
    return _APOSTROPHES.sub("", text)


def tokenize(folded: str) -> list[str]:
    """Split folded text into word tokens, sentence-boundary and clause-break tokens."""
    tokens: list[str] = []
    for raw in _TOKEN.findall(folded):
        if raw.isalpha():  # the common case first (tokens are ASCII: a word is never a mark)
            tokens.append(raw)
            continue
        if raw[0] in ".!?\n":
            if tokens and tokens[-1] == CLAUSE:
                tokens[-1] = BOUNDARY
            elif tokens and tokens[-1] != BOUNDARY:
                tokens.append(BOUNDARY)
            continue
        if raw[0] in ",;:":
            if tokens and tokens[-1] not in MARKS:
                tokens.append(CLAUSE)
            continue
        if raw.isdigit():
            tokens.append(raw)
            continue
        unit = _NUM_UNIT.match(raw)
        if unit:  # "10mg" -> "10", "mg"
            tokens.extend(unit.groups())
        else:  # "k1ll", "su1c1de": digits inside a word are letters in disguise
            tokens.append(raw.translate(_LEET))
    if tokens and tokens[-1] in MARKS:
        tokens.pop()
    return tokens


def expand(tokens: list[str], spelled: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Whole-word rewrites of texting shorthand ("ima" -> "im", "gonna"): a token listed in
    ``spelled`` becomes its words. Unlike ``fold``'s literal rewrites it never touches part of a word."""
    if not spelled or spelled.keys().isdisjoint(tokens):
        return tokens
    out: list[str] = []
    for tok in tokens:
        out.extend(spelled.get(tok, (tok,)))
    return out


def words(text: str, emoji: Mapping[str, str] | None = None,
          replace: Mapping[str, str] | None = None,
          spelled: Mapping[str, tuple[str, ...]] | None = None) -> list[str]:
    """Fold, tokenize and expand shorthand in one step."""
    return expand(tokenize(fold(text, emoji, replace)), spelled or {})
