"""The decision for one inbound text: crisis first, then compliance words, then guide topics.

This is the whole bot as a pure function of (message, what we know about the sender). The
webhook, the terminal simulator, the batch ``triage`` command and the tests all call
:meth:`Bot.decide`; storage and Twilio live outside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from bot.core.content import Content, load_cached
from bot.core.language import LanguageDetector
from bot.core.normalize import strip_accents
from bot.core.sms import fits
from bot.core.states import Channel, DecisionKind as K, quick_init
from bot.core.topics import TopicMatcher
from bot.core.triage import Triage, Triager, more_severe

# Carrier compliance words: the whole message, any case (Twilio's list).
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO", "AYUDA"})
TO_SPANISH = frozenset({"ESPANOL", "SPANISH"})
TO_ENGLISH = frozenset({"ENGLISH", "INGLES"})

# Triage reads this much of a body (a crisis can hide deep in a long text); topics read less.
TRIAGE_CHARS = 20_000
TOPIC_CHARS = 1_600
TOPIC_TOKENS = 400

_KEYWORD_STRIP = re.compile(r"[^A-Z]")


@dataclass(frozen=True)
class Inbound:
    """A channel-neutral inbound message."""

    sender: str
    body: str
    channel: Channel = Channel.SMS
    message_id: str | None = None
    media_count: int = 0


@dataclass(frozen=True)
class State:
    """What storage knows about the sender; the defaults are what we assume when it is down."""

    language: str | None = None
    opted_out: bool = False
    escalated: bool = False
    recent: tuple[str, ...] = ()  # recent texts that did not escalate on their own
    claimed: bool = False  # a staff member has the conversation: the bot sends nothing at all


@quick_init
@dataclass(frozen=True)
class Decision:
    """What to do with one message."""

    kind: K
    reply: str | None
    language: str
    triage: Triage
    topic: str | None = None
    opt_out: bool | None = None  # True: opted out now; False: opted back in now
    remember_language: str | None = None
    alerted_reply: str | None = None  # the crisis reply to send instead once a page is really queued
    # Claimed conversation: the crisis reply the bot held back (staff answer; sent only as a fallback).
    held_reply: str | None = None


KEYWORD_MAX = 24  # "UNSUBSCRIBE!!" fits; a sentence is never a keyword


def keyword(text: str) -> str:
    """The message as a bare keyword: 'Stop.' -> 'STOP', 'Español' -> 'ESPANOL' ('' for sentences)."""
    text = (text or "").strip()
    if len(text) > KEYWORD_MAX:
        return ""
    return _KEYWORD_STRIP.sub("", strip_accents(text).upper())


class Bot:
    """Content compiled into matchers; one per process."""

    def __init__(self, content: Content):
        self.content = content
        self.triager = Triager(content)
        self.topics = TopicMatcher(content)
        self.languages = LanguageDetector(content)

    def triage(self, text: str, recent: tuple[str, ...] = (), tokens: list[str] | None = None) -> Triage:
        """Triage a text, also read together with the sender's last few texts."""
        if tokens is None:
            verdict = self.triager.triage((text or "")[:TRIAGE_CHARS])
        else:
            verdict = self.triager.triage_safely(tokens)
        if recent:
            joined = "\n".join((*recent, text or ""))[-TRIAGE_CHARS:]
            together = self.triager.triage(joined)
            if more_severe(together.severity, verdict.severity) != verdict.severity:
                verdict = together
        return verdict

    def crisis_reply(self, verdict: Triage, language: str, alerted: bool = False) -> str:
        """The crisis reply for a paging verdict: by its kind and tier, in the texter's language.

        It says staff have been alerted only when ``alerted``: the caller knows whether a page was
        really queued (the core alone cannot, so by default it promises a person, not a page).
        """
        return self.content.crisis_reply(verdict.severity, verdict.kind, language, alerted)

    def decide(self, msg: Inbound, state: State = State()) -> Decision:
        """Decide the reply and side effects for one message.

        While a staff member has the conversation (``state.claimed``) nothing is sent, not even a
        crisis reply: the decision is silent but keeps the triage verdict, the side effects (opt-out,
        language) and, for a crisis, the reply it held back for the caller's fallback.
        """
        decision = self._decide(msg, state)
        if state.claimed and decision.reply is not None:
            # Held for a conversation staff already own: sent later, it may truly say staff are alerted.
            held = (decision.alerted_reply or decision.reply) if decision.kind == K.CRISIS else None
            return replace(decision, kind=K.SILENT, reply=None, held_reply=held)
        return decision

    def _decide(self, msg: Inbound, state: State) -> Decision:
        text = msg.body or ""
        # Fold and tokenise once; triage, language and topics all read the same tokens.
        try:
            tokens = self.triager.index.tokens(text[:TRIAGE_CHARS])
        except Exception:  # noqa: BLE001 - let triage's own error policy escalate
            tokens = None
        verdict = self.triage(text, state.recent, tokens)
        tokens = tokens or []
        word = keyword(text)
        detected = self.languages.detect(text, tokens)
        language = detected or state.language or "en"
        if word in TO_SPANISH:
            language = "es"
        elif word in TO_ENGLISH:
            language = "en"
        remember = language if language != state.language and (detected or word in TO_SPANISH | TO_ENGLISH) else None

        def decision(kind, reply, **kw):
            return Decision(kind, reply, language, verdict, remember_language=remember, **kw)

        if verdict.pages:
            # Crisis outranks everything: opt-out, an open escalation, any keyword.
            return decision(K.CRISIS, self.crisis_reply(verdict, language),
                            alerted_reply=self.crisis_reply(verdict, language, alerted=True))
        if word in OPT_OUT:
            # Twilio sends the carrier confirmation itself; anything we add would be blocked.
            return decision(K.OPTOUT, None, opt_out=True)
        if word in OPT_IN and state.opted_out:
            return decision(K.OPTIN, self.content.message("optin", language), opt_out=False)
        if word in HELP:
            return decision(K.HELP, self.content.message("help", language))
        if state.opted_out or state.escalated:
            # Opted out: they asked for silence. Escalated: a human is handling the conversation.
            return decision(K.SILENT, None)
        if word in TO_SPANISH or word in TO_ENGLISH:
            return decision(K.LANGUAGE, self.content.message("language_set", language))
        if not text.strip():
            key = "media" if msg.media_count else "fallback"
            return decision(K.MEDIA if msg.media_count else K.MENU, self.content.message(key, language))
        topic = self.topics.match(text[:TOPIC_CHARS], language, tokens[:TOPIC_TOKENS])
        if verdict.escalate:
            return decision(K.REVIEW, self._review_reply(topic.reply if topic else None, language),
                            topic=topic.id if topic else None)
        if topic:
            # Triage did not escalate but was uneasy: the answer ends with the 911/988 line if it fits.
            reply = (self._with_footer(topic.reply, language) or topic.reply) if verdict.uneasy else topic.reply
            return decision(K.TOPIC, reply, topic=topic.id)
        return decision(K.MENU, self.content.message("menu", language))

    def explain(self, text: str, recent: tuple[str, ...] = ()) -> dict:
        """Why triage decided what it did, for staff and ``helpline triage --explain``.

        ``rules``: every rule that fired (tier after context, base tier, kind, what lowered it,
        whether it was weak evidence the model could overrule, or overruled, and whether it is a floor
        rule the model never learned from); ``model``: its
        probabilities, kind, and the words pulling hardest toward and away from escalation.
        """
        text = (text or "")[:TRIAGE_CHARS]
        verdict = self.triage(text, recent)
        hits = [{"rule": h.rule, "tier": h.severity, "base": h.base, "kind": h.kind, "lowered_by": h.lowered_by,
                 "weak": h.weak, "overruled": False, "floor": h.floor} for h in verdict.hits]
        hits += [{"rule": h.rule, "tier": None, "base": h.base, "kind": h.kind, "lowered_by": "model",
                  "weak": True, "overruled": True, "floor": h.floor} for h in verdict.overruled]
        out: dict = {"rules": hits, "model": None}
        model = self.triager.model
        if model is not None:
            tokens = self.triager.index.tokens(text)
            extra = self.triager.read(tokens)[1]
            s = verdict.scores or model.scores(tokens, extra)
            out["model"] = {"escalate": round(s.escalate, 3), "page": round(s.page, 3),
                            "emergency": round(s.emergency, 3), "other": round(s.other, 3), "kind": s.kind,
                            **model.explain(tokens, extra)}
        return out

    def _review_reply(self, answer: str | None, language: str) -> str:
        """Answer the question with a one-line 911/988 footer when both fit; else the review message."""
        return (self._with_footer(answer, language) if answer else None) or self.content.message("review", language)

    def _with_footer(self, answer: str, language: str) -> str | None:
        """The answer and the one-line 911/988 footer, if both fit in an SMS reply."""
        combined = f"{answer} {self.content.message('review_footer', language)}"
        return combined if fits(combined, language) else None


@lru_cache(maxsize=4)
def get_bot(replies_dir: str | Path) -> Bot:
    """The process-wide bot for a replies folder."""
    return Bot(load_cached(str(replies_dir)))
