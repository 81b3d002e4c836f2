"""Crisis triage: decide whether a text is an emergency, urgent, needs review, or is routine.

Safety logic, in order:

1. The text is folded (lowercase, no accents, emoji as words) and tokenised; every token is
   resolved to lexicon words with typo tolerance (see :mod:`bot.core.phrases`).
2. Lexicon phrases become labels: concept names (``SELF``, ``INGESTED``...) and literal words.
   Counts of pills ("took 30") add a ``MANY`` label unless a unit follows ("30 mg", "30 days").
3. Rules from ``replies/crisis/rules.toml`` fire on labels, either in order with small gaps
   (``KILL SELF``) or together within a window (``INGESTED MANY MEDS``). Rules are indexed by
   the labels they need, so only rules whose first slot occurs in the message are tried.
4. Idioms from ``replies/crisis/idioms.toml`` ("my back is killing me") cancel only the hits that
   lie inside them, so an idiom never hides a real crisis elsewhere in the same text.
5. Context may lower a hit, never to nothing: a negation just before one of its words lowers
   it one tier ("I'm not suicidal" -> review); a time long past near it ("years ago", "in 2019")
   with nothing saying "now" makes it review ("my mom overdosed years ago"). Some rules add a
   tier when means and "now" are also present (``raise_with``).
6. The message gets the most severe tier of any hit, and the rule that produced it.
7. Second net: when no rule fired, a small n-gram model (``replies/crisis/second_net.json``, see
   :mod:`bot.core.second_net`) may still send the text to review (``model.second_net``). It
   never lowers or removes a rule verdict, and never pages.

A failure inside triage escalates (``triage.error`` at urgent) instead of passing the text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from bot.core.content import Content, Rule
from bot.core.normalize import BOUNDARY
from bot.core.phrases import Found, PhraseIndex
from bot.core.second_net import SecondNet
from bot.core.states import TIERS, Tier, rank

logger = logging.getLogger(__name__)

SECOND_NET = "model.second_net"

# Context concepts the engine itself reads (defined as lists in lexicon.toml).
NEG, HISTORY, NOW, BREAK, OTHER, UNIT = "NEG", "HISTORY", "NOW", "BREAK", "OTHER", "UNIT"
NEG_WINDOW = 3
HISTORY_WINDOW = 6


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, where, and how context changed its tier."""

    rule: str
    base: str
    severity: str
    start: int
    end: int
    lowered_by: str | None = None
    about_other: bool = False
    order: int = 0


@dataclass(frozen=True)
class Triage:
    """The verdict on one text."""

    severity: str | None
    rule: str | None
    hits: tuple[Hit, ...] = ()
    kind: str | None = None  # CrisisKind of the verdict, None when routine

    @property
    def escalate(self) -> bool:
        """Every tier, review included, is an escalation."""
        return self.severity is not None

    @property
    def pages(self) -> bool:
        """Emergency and urgent page staff at once."""
        return self.severity is not None and Tier(self.severity).pages

    @property
    def about_other(self) -> bool:
        """Whether the danger is someone else's (the texter is the rescuer)."""
        return any(h.about_other for h in self.hits)

    @property
    def rules(self) -> tuple[str, ...]:
        """Every rule that fired, most severe first."""
        return tuple(h.rule for h in self.hits)


ROUTINE = Triage(None, None)
TRIAGE_ERROR = Triage(Tier.URGENT, "triage.error")


def more_severe(a: str | None, b: str | None) -> str | None:
    """The more severe of two tiers (None is routine)."""
    return a if rank(a) >= rank(b) else b


def raise_(severity: str) -> str:
    """One tier up, never above emergency."""
    return TIERS[max(TIERS.index(severity) - 1, 0)]


def lower(severity: str) -> str:
    """One tier down, never below review."""
    return TIERS[min(TIERS.index(severity) + 1, len(TIERS) - 1)]


class Triager:
    """Crisis rules compiled for fast matching; build once per content load."""

    def __init__(self, content: Content):
        self.content = content
        phrases: dict[str, set[str]] = {}
        for concept, terms in content.concepts.items():
            for term in terms:
                phrases.setdefault(term, set()).add(concept)
        self.rules = content.rules
        self.idioms = content.idioms
        for rule in (*self.rules, *self.idioms):
            for slot in rule.slots:
                for label in slot:
                    if label.isupper():
                        if label not in content.concepts and label != "MANY":
                            raise ValueError(f"rule {rule.id} uses unknown concept {label}")
                    else:
                        phrases.setdefault(label, set()).add(label)
        self.index = PhraseIndex(phrases, never_fuzzy=content.never_fuzzy,
                                 emoji=content.emoji, replace=content.replace)
        self._by_anchor = self._anchor(self.rules)
        self._idioms_by_anchor = self._anchor(self.idioms)
        self.number_min = content.number_min
        self.second_net = SecondNet.load(content.root / "crisis" / "second_net.json",
                                         emoji=content.emoji, replace=content.replace)

    @staticmethod
    def _anchor(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
        by: dict[str, list[Rule]] = {}
        for rule in rules:
            for label in rule.slots[0]:
                by.setdefault(label, []).append(rule)
        return by

    def labels(self, tokens: list[str]) -> dict[str, list[tuple[int, int]]]:
        """Label occurrences in the token list, including counted pills as MANY."""
        occ: dict[str, list[tuple[int, int]]] = {}
        found = self.index.find(tokens)
        for f in found:
            occ.setdefault(f.label, []).append((f.start, f.end))
        units = {s for s, _ in occ.get(UNIT, ())}
        for i, tok in enumerate(tokens):
            if not tok.isdigit():
                continue
            value = int(tok)
            if len(tok) == 4 and 1950 <= value <= 2035:
                # "in 2019" is a time long past; "since 2015" is ongoing use, so only "in"/"en".
                if i and tokens[i - 1] in ("in", "en"):
                    occ.setdefault(HISTORY, []).append((i - 1, i + 1))
            elif self.number_min <= value <= 10_000 and (i + 1) not in units:
                occ.setdefault("MANY", []).append((i, i + 1))
        for spans in occ.values():
            spans.sort()
        return occ

    def _match(self, rule: Rule, occ: dict[str, list[tuple[int, int]]],
               n_words: int) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]] | None:
        """Where the rule's slots are all filled: (span, the span filling each slot), or None."""
        slot_spans = []
        for slot in rule.slots:
            if len(slot) == 1:
                spans = occ.get(slot[0])  # already sorted by labels()
            else:
                spans = sorted(s for label in slot for s in occ.get(label, ()))
            if not spans:
                return None
            slot_spans.append(spans)
        if rule.ordered:
            starts = self._ordered(slot_spans, 0, None, rule.gap)
        else:
            starts = self._together(slot_spans, rule.window)
        if not starts:
            return None
        chosen = starts
        span = (min(s for s, _ in chosen), max(e for _, e in chosen))
        if rule.whole:
            covered = {i for spans in slot_spans for s, e in spans for i in range(s, e)}
            if len(covered) < n_words:
                return None
            span = (min(covered), max(covered) + 1)
        return span, tuple(chosen)

    def _ordered(self, slot_spans, k, prev_end, gap):
        """Depth-first search for slots in order, each starting at most ``gap`` tokens after the last."""
        for start, end in slot_spans[k]:
            if prev_end is not None and not (prev_end <= start <= prev_end + gap):
                continue
            if k == len(slot_spans) - 1:
                return [(start, end)]
            rest = self._ordered(slot_spans, k + 1, end, gap)
            if rest:
                return [(start, end), *rest]
        return None

    @staticmethod
    def _together(slot_spans, window):
        """Slots in any order, all within ``window`` tokens of the first slot's occurrence."""
        for anchor in slot_spans[0]:
            chosen = [anchor]
            lo, hi = anchor
            for spans in slot_spans[1:]:
                best = min(spans, key=lambda s: abs(s[0] - anchor[0]))
                chosen.append(best)
                lo, hi = min(lo, best[0]), max(hi, best[1])
            if hi - lo <= window:
                return chosen
        return None

    def _near(self, occ, label, start, end, before, after, tokens) -> bool:
        """Whether a label occurs within the window around [start, end) in the same sentence."""
        for s, e in occ.get(label, ()):
            if start - before <= s < start or end <= s < end + after:
                lo, hi = (e, start) if s < start else (end, s)
                if BOUNDARY not in tokens[lo:hi]:
                    return True
        return False

    def _negated(self, trigger: tuple[int, int], chosen, occ, tokens) -> bool:
        """NegEx-style: a cue at most NEG_WINDOW words before a trigger word, in the same clause.

        A cue that is itself one of the rule's words ("day 3 *without* diazepam") is not a negation.
        """
        breaks = {b for b, _ in occ.get(BREAK, ())}
        for s, e in occ.get(NEG, ()):
            if not (trigger[0] - NEG_WINDOW <= s and e <= trigger[0]):
                continue
            if any(cs < e and s < ce for cs, ce in chosen):
                continue
            if BOUNDARY not in tokens[e:trigger[0]] and not any(e <= b < trigger[0] for b in breaks):
                return True
        return False

    def _context(self, rule: Rule, span, starts, occ, tokens) -> tuple[str, str | None, bool]:
        start, end = span
        lowered = None
        if rule.negatable and any(self._negated(t, starts, occ, tokens) for t in starts):
            lowered = "negation"
        if lowered is None and self._near(occ, HISTORY, start, end, HISTORY_WINDOW, HISTORY_WINDOW, tokens):
            if not self._near(occ, NOW, start, end, HISTORY_WINDOW, HISTORY_WINDOW, tokens):
                lowered = "past"
        other = self._near(occ, OTHER, start, end, 4, 0, tokens) or any(
            start <= s < end for s, _ in occ.get(OTHER, ()))
        severity = rule.severity
        if rule.raise_with and not lowered and all(label in occ for label in rule.raise_with):
            severity = raise_(severity)
        if lowered == "negation":
            severity = lower(severity)
        elif lowered == "past":
            severity = Tier.REVIEW  # a story long past is not happening now, but a human still reads it
        return severity, lowered, other

    def triage_tokens(self, tokens: list[str]) -> Triage:
        """Triage an already tokenised text."""
        occ = self.labels(tokens)
        n_words = sum(1 for t in tokens if t != BOUNDARY)
        masks = []
        for label in list(occ):
            for idiom in self._idioms_by_anchor.get(label, ()):
                found = self._match(idiom, occ, n_words)
                if found:
                    masks.append(found[0])
        hits: list[Hit] = []
        seen: set[str] = set()
        for label in list(occ):
            for rule in self._by_anchor.get(label, ()):
                if rule.id in seen:
                    continue
                found = self._match(rule, occ, n_words)
                if not found:
                    continue
                span, starts = found
                if any(m[0] <= span[0] and span[1] <= m[1] for m in masks):
                    continue
                seen.add(rule.id)
                severity, lowered, other = self._context(rule, span, starts, occ, tokens)
                hits.append(Hit(rule.id, rule.severity, severity, span[0], span[1], lowered, other, rule.order))
        if not hits:
            if self.second_net is not None and self.second_net.flags(tokens):
                return Triage(Tier.REVIEW, SECOND_NET, (Hit(SECOND_NET, Tier.REVIEW, Tier.REVIEW, 0, 0),))
            return ROUTINE
        hits.sort(key=lambda h: (-rank(h.severity), h.order))
        return Triage(hits[0].severity, hits[0].rule, tuple(hits))

    def triage(self, text: str) -> Triage:
        """Triage one raw text; any internal failure escalates rather than passes."""
        try:
            tokens = self.index.tokens(text or "")
        except Exception:  # noqa: BLE001 - a crash must never read as "no crisis"
            logger.exception("triage failed; escalating as a precaution")
            return TRIAGE_ERROR
        return self.triage_safely(tokens)

    def triage_safely(self, tokens: list[str]) -> Triage:
        """Triage tokens; any internal failure escalates (urgent, ``triage.error``) rather than passes."""
        try:
            return self.triage_tokens(tokens)
        except Exception:  # noqa: BLE001 - a crash must never read as "no crisis"
            logger.exception("triage failed; escalating as a precaution")
            return TRIAGE_ERROR
