"""Crisis triage: decide whether a text is an emergency, urgent, needs review, or is routine,
and what kind of danger it is (suicide, self-harm, overdose, medical, violence, distress).

Two nets, read together:

1. **Rules** (``replies/crisis/``), the explainable floor for clear structures:
   a. The text is folded (lowercase, no accents, emoji as words) and tokenised; every token is
      resolved to lexicon words, with typo tolerance for non-words only (see
      :mod:`bot.core.phrases`).
   b. Lexicon phrases become labels: concept names (``SELF``, ``INGESTED``...) and literal words.
      Counts of pills ("took 30") add a ``MANY`` label unless a unit follows ("30 mg", "30 days").
   c. Rules fire on labels, in order with small gaps (``KILL SELF``) or together within a window
      (``INGESTED MANY MEDS``); only rules whose first slot occurs in the message are tried.
   d. Idioms ("my back is killing me") cancel only the hits that lie inside them.
   e. Context may lower a hit, never to nothing: a negation just before one of its words lowers it
      one tier ("I'm not suicidal" -> review); a time long past near it ("years ago", "in 2019")
      with nothing saying "now" makes it review. Some rules add a tier when means and "now" are
      also present (``raise_with``).
2. **The model** (:mod:`bot.core.model`, ``replies/crisis/model.json``): calibrated linear
   models over word and character n-grams, trained on real and blind-written text, giving the
   probabilities that a text needs a human, needs a page, is an emergency, and its kind.

How they combine (:func:`combine`, also used by the trainer to choose the thresholds):

- The model may raise: a text of at least ``min_words`` words gets the model's tier when that is
  higher than the rules' (page at ``page``, or when the escalate head reaches ``sure``; emergency
  at ``emergency``; review at ``escalate``). Where no rule hit is kept and the model's review is of a
  kind in ``floor.toml``'s ``model_kinds_that_page`` (self-harm, violence, medical), it pages (urgent).
- The model may overrule a rule only where the rule's evidence is weak: a match through a typo
  correction, a rule marked ``idiomatic`` (its words are often figurative or general questions),
  or a hit inside a long text (a post or a story, judged by the sentence it lies in). Such a hit
  loses its page when the model does not support one, and is dropped when the model is confident
  the text is routine (``overrule``), except a negated one ("I'm not suicidal"), a past
  attempt brought up now, or a clear structure inside a long text, which stay at review
  (:func:`kept_at_review`). Every other hit stands.
- The verdict is the most severe tier left; its kind is that of the most severe hit (on a tie, a
  hit at its own tier before one the model lowered to it, then the most immediate danger first:
  overdose, medical, violence, suicide, self-harm), or the model's kind when the model set the tier.

A failure inside triage escalates (``triage.error`` at urgent) instead of passing the text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping

from bot.core.content import Content, Rule
from bot.core.normalize import BOUNDARY, CLAUSE, MARKS
from bot.core.phrases import Found, PhraseIndex, load_real_words
from bot.core.model import NEVER, Scores, TriageModel
from bot.core.states import KIND_PRIORITY, TIERS, CrisisKind, Tier, pages, quick_init, rank

logger = logging.getLogger(__name__)

MODEL = "model.triage"
MODEL_KIND = "model.kind"  # the model's review raised to a page by its kind (floor.toml model_kinds_that_page)

# Context concepts the engine itself reads (defined as lists in lexicon.toml).
NEG, HISTORY, NOW, BREAK, OTHER, UNIT = "NEG", "HISTORY", "NOW", "BREAK", "OTHER", "UNIT"
DAYS = "DAYS"  # the lexicon's days-since words; see Triager._drop_milestones
NEG_WINDOW = 3
HISTORY_WINDOW = 6
# A text longer than this is a post or a story, not a text message: a crisis phrase inside it is
# judged by the model on its sentence (at most LOCAL words each side), as a counsellor would read it.
LONG_TEXT = 40
LOCAL = 12
# The model alone pages only a text of at least this many words: one or two words ("cutting
# down", "so done") carry too little for a page, though they may still go to review.
PAGE_MIN_WORDS = 3


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, where, and how context changed its tier."""

    rule: str
    base: str
    severity: str
    start: int
    end: int
    lowered_by: str | None = None  # negation, past, model
    about_other: bool = False
    order: int = 0
    kind: str | None = None
    weak: bool = False  # a typo-corrected match, an idiomatic rule, or a long text: the model may overrule it
    window: tuple[str, ...] = ()  # in a long text, the words around the hit that the model judges it by
    clear: bool = True  # a clear structure (no typo, not idiomatic): in a long text it may lose its page, not its review
    floor: bool = False  # a rule of crisis/floor.toml: never shown to the model (see evidence())


@quick_init
@dataclass(frozen=True)
class Triage:
    """The verdict on one text."""

    severity: str | None
    rule: str | None
    hits: tuple[Hit, ...] = ()
    kind: str | None = None  # CrisisKind of the verdict, None when routine
    scores: Scores | None = None  # the model's view, when it was asked
    overruled: tuple[Hit, ...] = ()  # weak rule hits the model dropped
    other: bool = False  # the model's reading: about someone else
    # Not escalated, yet not quite nothing: a rule hit the model overruled, or the model at least UNEASY
    # sure a human is needed. The reply then carries the 911/988 line (bot/core/engine.py); no one is paged.
    uneasy: bool = False

    @property
    def escalate(self) -> bool:
        """Every tier, review included, is an escalation."""
        return self.severity is not None

    @property
    def pages(self) -> bool:
        """Emergency and urgent page staff at once."""
        return self.severity is not None and pages(self.severity)

    @property
    def about_other(self) -> bool:
        """Whether the danger is someone else's (the texter is the rescuer)."""
        return self.other or any(h.about_other for h in self.hits)

    @property
    def rules(self) -> tuple[str, ...]:
        """Every rule that fired, most severe first."""
        return tuple(h.rule for h in self.hits)


ROUTINE = Triage(None, None)
# Chosen on training texts' out-of-fold scores (a 2026-11-29 retraining's, one fold split; README, "What a
# missed crisis gets back"): at 0.15, 65% of the crises triage missed there scored at least this, and 5% of
# the everyday SMS and forum comments that needed nothing (one harmless line for them). The escalate
# threshold is about 0.5.
UNEASY = 0.15
UNEASY_ROUTINE = Triage(None, None, uneasy=True)
TRIAGE_ERROR = Triage(Tier.URGENT, "triage.error", kind=CrisisKind.DISTRESS)


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
        self.index = PhraseIndex(phrases, real_words=load_real_words(),
                                 emoji=content.emoji, replace=content.replace, spelled=content.spelled)
        self._by_anchor = self._anchor(self.rules)
        self._idioms_by_anchor = self._anchor(self.idioms)
        # The same lists, each rule with the labels it needs before it can match (see _needs).
        self._rules_needing = {label: [(rule, *_needs(rule)) for rule in rules]
                               for label, rules in self._by_anchor.items()}
        self._idioms_needing = {label: [(rule, *_needs(rule)) for rule in rules]
                                for label, rules in self._idioms_by_anchor.items()}
        self.number_min = content.number_min
        self.recent_days_max = content.recent_days_max
        self.floor_concepts = content.floor_concepts
        self.kinds_that_page = content.model_kinds_that_page
        self.model = TriageModel.load(content.root / "crisis" / "model.json")
        # evidence()'s token for each label the content can find, made once rather than per text.
        labels = {label for found in phrases.values() for label in found} | {"MANY", HISTORY}
        self._concept_tokens = {label: concept_token(label, self.floor_concepts) for label in labels}

    @staticmethod
    def _anchor(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
        by: dict[str, list[Rule]] = {}
        for rule in rules:
            for label in rule.slots[0]:
                by.setdefault(label, []).append(rule)
        return by

    def labels(self, tokens: list[str], fuzzy: set[int] | None = None) -> dict[str, list[tuple[int, int]]]:
        """Label occurrences in the token list, including counted pills as MANY.

        Positions matched only through a typo correction are added to ``fuzzy`` when given.
        """
        occ, fuzzy_spans = self.index.occurrences(tokens)
        if fuzzy_spans and fuzzy is not None:
            for start, end in fuzzy_spans:
                fuzzy.update(i for i in range(start, end) if self.index.resolve(tokens[i])[1])
        units = {s for s, _ in occ.get(UNIT, ())}
        # Only digit tokens matter below; most texts have none, so skip the scan then.
        digits = any(map(str.isdigit, tokens))
        for i, tok in (enumerate(tokens) if digits else ()):
            if not tok.isdigit():
                continue
            value = int(tok)
            if len(tok) == 4 and 1950 <= value <= 2035:
                # "in 2019" is a time long past; "since 2015" is ongoing use, so only "in"/"en".
                if i and tokens[i - 1] in ("in", "en"):
                    occ.setdefault(HISTORY, []).append((i - 1, i + 1))
            elif self.number_min <= value <= 10_000 and (i + 1) not in units:
                occ.setdefault("MANY", []).append((i, i + 1))
        if digits and self.recent_days_max is not None and DAYS in occ:
            self._drop_milestones(tokens, occ)
        for spans in occ.values():
            if len(spans) > 1:  # most labels occur once
                spans.sort()
        return occ

    def _drop_milestones(self, tokens: list[str], occ: dict[str, list[tuple[int, int]]]) -> None:
        """A DAYS word right next to a count past the early-withdrawal window ("90 days off benzos
        today", "dia 45 sin valium", "hace 60 dias") is a recovery milestone or old history, not the
        first days without: it no longer fills DAYS."""
        def big(i: int) -> bool:
            return 0 <= i < len(tokens) and tokens[i].isdigit() and int(tokens[i]) > self.recent_days_max
        kept = [(s, e) for s, e in occ[DAYS] if not (big(s - 1) or big(e))]
        if kept:
            occ[DAYS] = kept
        else:
            del occ[DAYS]

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
        # One slot (most rules): its span is the rule's; else from the first start to the last end.
        span = chosen[0] if len(chosen) == 1 else (min(s for s, _ in chosen), max(e for _, e in chosen))
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

    def _negated(self, trigger: tuple[int, int], chosen, occ, tokens, clauses: frozenset[int]) -> bool:
        """NegEx-style: a cue at most NEG_WINDOW words before a trigger word, in the same clause.

        A clause ends at a sentence mark, a comma or semicolon (``clauses``: positions that follow
        one), or a word like "but". A cue that is itself one of the rule's words ("day 3 *without*
        diazepam") is not a negation.
        """
        breaks = {b for b, _ in occ.get(BREAK, ())}
        for s, e in occ.get(NEG, ()):
            if not (trigger[0] - NEG_WINDOW <= s and e <= trigger[0]):
                continue
            if any(cs < e and s < ce for cs, ce in chosen):
                continue
            if (BOUNDARY not in tokens[e:trigger[0]] and not any(e <= b < trigger[0] for b in breaks)
                    and not any(e <= c <= trigger[0] for c in clauses)):
                return True
        return False

    def _context(self, rule: Rule, span, starts, occ, tokens, clauses) -> tuple[str, str | None, bool]:
        start, end = span
        lowered = None
        # Each test below finds nothing when its label is absent from the text (most texts): the
        # membership test first spares the calls and generators.
        if rule.negatable and NEG in occ and any(self._negated(t, starts, occ, tokens, clauses) for t in starts):
            lowered = "negation"
        if lowered is None and HISTORY in occ and self._near(occ, HISTORY, start, end, HISTORY_WINDOW,
                                                             HISTORY_WINDOW, tokens):
            if not self._near(occ, NOW, start, end, HISTORY_WINDOW, HISTORY_WINDOW, tokens):
                lowered = "past"
        other = OTHER in occ and (self._near(occ, OTHER, start, end, 4, 0, tokens) or any(
            start <= s < end for s, _ in occ[OTHER]))
        severity = rule.severity
        if rule.raise_with and not lowered and all(label in occ for label in rule.raise_with):
            severity = raise_(severity)
        if lowered == "negation":
            severity = lower(severity)
        elif lowered == "past":
            severity = Tier.REVIEW  # a story long past is not happening now, but a human still reads it
        return severity, lowered, other

    def rule_hits(self, tokens: list[str]) -> list[Hit]:
        """Every rule that fires, with context applied, most severe first (the rules alone)."""
        return self.read(tokens)[0]

    def read(self, tokens: list[str]) -> tuple[list[Hit], tuple[str, ...]]:
        """The rules' reading of a text: every hit (most severe first), and what the model learns
        from it besides the words (:func:`evidence`)."""
        tokens, clauses = _without_clause_marks(tokens)
        fuzzy: set[int] = set()
        occ = self.labels(tokens, fuzzy)
        n_words = len(tokens) - tokens.count(BOUNDARY)
        present = set(occ)  # a set: frozenset <= set is a direct test (against dict keys it is not)
        masks = []
        idioms = set()
        labels = list(occ)
        idioms_needing = self._idioms_needing
        for label in labels:
            for idiom, single, several in idioms_needing.get(label, ()):
                # Every slot needs a label in the text: a cheap set test before _match, which would
                # return None exactly when it fails (each label in occ has a span). Most candidates
                # stop here; it is written out inline because a call per candidate shows (and
                # "no slot's labels all absent" as any(map(...)): no generator frame per candidate).
                if not (single <= present and (several is None or not any(map(present.isdisjoint, several)))):
                    continue
                found = self._match(idiom, occ, n_words)
                if found:
                    masks.append(found[0])
                    idioms.add(idiom.id)
        hits: list[Hit] = []
        seen: set[str] = set()
        rules_needing = self._rules_needing
        for label in labels:
            for rule, single, several in rules_needing.get(label, ()):
                if rule.id in seen or not (
                        single <= present and (several is None or not any(map(present.isdisjoint, several)))):
                    continue
                found = self._match(rule, occ, n_words)
                if not found:
                    continue
                span, starts = found
                if any(m[0] <= span[0] and span[1] <= m[1] for m in masks):
                    continue
                seen.add(rule.id)
                severity, lowered, other = self._context(rule, span, starts, occ, tokens, clauses)
                # (fuzzy is empty unless a typo was corrected somewhere: then there is nothing to look for)
                weak = rule.idiomatic or (bool(fuzzy) and any(i in fuzzy for s_, e_ in starts for i in range(s_, e_)))
                clear = not weak
                window: tuple[str, ...] = ()
                if n_words > LONG_TEXT:
                    weak = True
                    window = _sentence(tokens, span)
                hits.append(Hit(rule.id, rule.severity, severity, span[0], span[1], lowered, other, rule.order,
                                rule.kind, weak, window, clear, rule.floor))
        hits.sort(key=_strength)
        return hits, evidence(occ, hits, idioms, self.floor_concepts, self._concept_tokens)

    def triage_tokens(self, tokens: list[str]) -> Triage:
        """Triage an already tokenised text: the rules, then the model, combined."""
        hits, extra = self.read(tokens)
        if self.model is None:
            return combine(hits, None, {}, 0)
        words = [t for t in tokens if t not in MARKS]
        model = self.model
        th = model.thresholds
        if not hits and len(words) < model.min_words:
            return ROUTINE
        if hits and hits[0].severity == Tier.EMERGENCY and not any(h.weak for h in hits):
            return combine(hits, None, th, model.min_words)  # a floor at the top tier: nothing to add
        # The text's features, read once for every head asked below.
        feats = model.read(words, extra)
        if not hits:
            # The common case: the two heads that can escalate a text on their own both say nothing
            # to do. The page head pages without the escalate head (Scores.tier, and the trainer's
            # tiers(), which chose the thresholds): gating on the escalate head alone turned away
            # texts the page head was sure of ("gonna do it now. bye": escalate 0.46, page 0.70).
            p, page = model.gate(words, extra, feats)
            if p < th["escalate"] and page < th["page"] and p < th.get("sure", NEVER):
                return UNEASY_ROUTINE if p >= UNEASY else ROUTINE

        def local(window: tuple[str, ...]) -> Scores:
            return model.scores(window, self.read(list(window))[1], detail=False)

        return combine(hits, model.scores(words, extra, detail=False, feats=feats), th, model.min_words, local,
                       lambda: model.scores(words, extra, feats=feats), self.kinds_that_page)

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


def concept_token(label: str, hidden: frozenset[str] = frozenset()) -> str:
    """:func:`evidence`'s token for a label found in a text: ``c:LABEL`` for a lexicon concept, "" for a
    literal word or a concept of the floor (``hidden``)."""
    return f"c:{label}" if label.isupper() and label not in hidden else ""


def evidence(occ: dict[str, list[tuple[int, int]]], hits: list[Hit], idioms: Iterable[str] = (),
             hidden: frozenset[str] = frozenset(), tokens: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The rules' reading as tokens for the model: concepts present ("c:INGESTED"), rules that
    fired ("r:overdose.took_count"), how context changed them ("l:negation") and idioms found
    ("i:idiom.die_for"), so the model learns what the clinicians' lexicon knows.

    The floor (crisis/floor.toml) is left out: its ``hidden`` concepts and its rules' hits. So a
    floor rule changes no model input, and the model reads every text as it was trained to.
    ``tokens``: :func:`concept_token` of the labels a content can find, made once (the engine's hot
    path); a label not in it is formatted here."""
    if tokens is None:
        tokens = {}
    out = set(map(tokens.get, occ))
    if None in out:  # labels not in tokens (all of them when none are given)
        out.discard(None)
        out.update(concept_token(label, hidden) for label in occ if label not in tokens)
    out.discard("")
    out.update(f"i:{i}" for i in idioms)
    for hit in hits:
        if hit.floor:
            continue
        out.add(f"r:{hit.rule}")
        if hit.lowered_by:
            out.add(f"l:{hit.lowered_by}")
    return tuple(sorted(out))


def kept_at_review(hit: Hit) -> bool:
    """Hits the model may lower but never drop: context already spoke about the danger itself.

    "I'm not suicidal" (a negation) and a past attempt brought up now ("I tried to kill myself in
    2019") are read by a human the same day, as crisis lines do; so is a clear structure inside a
    long text, which the model may judge by its sentence but never silence.
    """
    return hit.lowered_by == "negation" or (
        hit.lowered_by == "past" and hit.kind in (CrisisKind.SUICIDE, CrisisKind.SELF_HARM)) or (
        bool(hit.window) and hit.clear)  # "I took 30 valium" deep in a long text is read, whatever the rest says


def _sentence(tokens: list[str], span: tuple[int, int]) -> tuple[str, ...]:
    """The words of the sentence(s) a hit lies in, at most LOCAL words either side of it."""
    lo = span[0]
    while lo > 0 and span[0] - lo < LOCAL and tokens[lo - 1] != BOUNDARY:
        lo -= 1
    hi = span[1]
    while hi < len(tokens) and hi - span[1] < LOCAL and tokens[hi] != BOUNDARY:
        hi += 1
    return tuple(t for t in tokens[lo:hi] if t != BOUNDARY)


def _needs(rule: Rule) -> tuple[frozenset[str], tuple[frozenset[str], ...] | None]:
    """The labels a rule cannot match without: every one-label slot's label, and for each slot
    of several labels the set of which at least one must occur (None when no slot has several:
    the common case, tested without setting up a loop). :meth:`Triager.read` tests them."""
    single = frozenset(slot[0] for slot in rule.slots if len(slot) == 1)
    several = tuple(frozenset(slot) for slot in rule.slots if len(slot) > 1)
    return single, several or None


def _without_clause_marks(tokens: list[str]) -> tuple[list[str], frozenset[int]]:
    """The tokens without clause marks (rules count gaps in words), and where each mark was:
    the position of the token that followed it."""
    if CLAUSE not in tokens:
        return tokens, frozenset()
    out: list[str] = []
    clauses = set()
    for t in tokens:
        if t == CLAUSE:
            clauses.add(len(out))
        else:
            out.append(t)
    return out, frozenset(clauses)


def _strength(hit: Hit) -> tuple[int, bool, int, int]:
    """Sort key: most severe first; on a tie a hit at its own tier before one the model lowered to it
    ("i want someone to kill me": the plea, not the threat it also reads as); then the most immediate
    kind; then the rule written first."""
    return (-rank(hit.severity), hit.lowered_by == "model", _KIND_ORDER.get(hit.kind, len(KIND_PRIORITY)),
            hit.order)


_KIND_ORDER = {kind: i for i, kind in enumerate(KIND_PRIORITY)}  # KIND_PRIORITY.index, as a dict


def combine(hits: list[Hit], scores: Scores | None, thresholds: dict[str, float], min_words: int,
            local: Callable[[tuple[str, ...]], Scores] | None = None,
            detail: Callable[[], Scores] | None = None,
            kinds_that_page: frozenset[str] = frozenset()) -> Triage:
    """The verdict from the rules' hits (most severe first) and the model's scores (see the module doc).

    ``local`` scores the words around a hit in a long text; ``detail`` gives the full scores (kind,
    someone else) when ``scores`` lacks them and the model sets the tier. ``kinds_that_page``
    (crisis/floor.toml): when the model alone escalates a text (no rule hit kept) and reads its kind as
    one of these, the text pages (urgent): the clinic's tiers have no same-day level for them.

    A floor rule (crisis/floor.toml) only raises: the verdict is never below the one its hits' absence
    would give. (A weak floor hit the model lowered to review is a kept rule hit, so on its own it would
    keep the model's review of a kind that pages from paging.)
    """
    verdict = _combine(hits, scores, thresholds, min_words, local, detail, kinds_that_page)
    if any(h.floor for h in hits):
        core = _combine([h for h in hits if not h.floor], scores, thresholds, min_words, local, detail, kinds_that_page)
        if rank(core.severity) > rank(verdict.severity):
            return core
    return verdict


def _combine(hits: list[Hit], scores: Scores | None, thresholds: dict[str, float], min_words: int,
             local: Callable[[tuple[str, ...]], Scores] | None, detail: Callable[[], Scores] | None,
             kinds_that_page: frozenset[str]) -> Triage:
    """:func:`combine` for one set of hits."""
    kept: list[Hit] = []
    overruled: list[Hit] = []
    judged = scores is not None and scores.words >= min_words
    for hit in hits:
        if hit.weak and judged:
            view = local(hit.window) if hit.window and local is not None else scores
            if view.escalate < thresholds["overrule"]:
                if not kept_at_review(hit):
                    overruled.append(hit)
                    continue
                hit = replace(hit, severity=Tier.REVIEW)
            if pages(hit.severity) and not view.supports_page(thresholds):
                hit = replace(hit, severity=Tier.REVIEW, lowered_by="model")
        kept.append(hit)
    kept.sort(key=_strength)
    rule_tier = kept[0].severity if kept else None
    model_tier = scores.tier(thresholds) if judged else None
    by_kind = False
    if model_tier == Tier.REVIEW and rule_tier is None and kinds_that_page:
        if scores.kind is None and detail is not None:
            scores = detail()
        if scores.kind in kinds_that_page:
            model_tier, by_kind = Tier.URGENT, True
    if model_tier is not None and pages(model_tier) and scores.words < PAGE_MIN_WORDS:
        model_tier = Tier.REVIEW
    if model_tier is not None and rank(model_tier) > rank(rule_tier):
        if scores.kind is None and detail is not None:
            scores = detail()
        kind = scores.kind or CrisisKind.DISTRESS
        rule = MODEL_KIND if by_kind and pages(model_tier) else MODEL
        return Triage(model_tier, rule, tuple(kept), kind, scores, tuple(overruled), other=scores.other >= 0.5)
    if rule_tier is None:
        uneasy = bool(overruled) or (scores is not None and scores.escalate >= UNEASY)
        return Triage(None, None, (), None, scores, tuple(overruled), uneasy=uneasy)
    return Triage(rule_tier, kept[0].rule, tuple(kept), kept[0].kind, scores, tuple(overruled))
