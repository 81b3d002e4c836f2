"""Content checks for replies/: SMS limits, the clinic number, reachability, rule examples.

Used by ``helpline check-content`` and by the test suite, so a clinician's edit that breaks a
rule fails before it ships.
"""

from __future__ import annotations

import re

from bot.core.content import Content
from bot.core.engine import HELP, OPT_IN, OPT_OUT, TO_ENGLISH, TO_SPANISH, Bot, Inbound, State, keyword
from bot.core.sms import fits, non_gsm7, segments

# Dosing or taper instructions have no place in a text reply.
DOSING = re.compile(r"\b\d+(\.\d+)?\s?(mg|milligram|ml|mcg)\b|\btaper (by|over)\b|\breduce (your|the) dose by\b"
                    r"|\bevery \d+ (days|weeks)\b|\bpor ciento\b|%", re.I)
RESERVED = OPT_OUT | OPT_IN | HELP | TO_SPANISH | TO_ENGLISH
CRISIS_MUST = {"en": ("911", "988", "automated"), "es": ("911", "988", "automátic", "AYUDA")}
# Web chat texts (replies/chat.*.toml): a promise to call names the number; a line about danger names
# both 911 and 988; no phone number but the clinic's (555-01xx numbers are fictional examples).
CALL_PROMISE = re.compile(r"\bcall us\b|\bll[aá]manos\b|\bllamarnos\b", re.I)
DANGER = re.compile(r"\b(danger|emergency|crisis|peligro|emergencia)\b|\b(911|988)\b", re.I)
PHONE_LIKE = re.compile(r"\(?\b\d{3}\)?[ .-]?\d{3}[ .-]\d{4}\b")
FICTIONAL = re.compile(r"555[ .-]01\d\d$")
AUTOMATED = {"en": "automated", "es": "automátic"}
POISON_CONTROL = "1-800-222-1222"
DV_HOTLINE = ("1-800-799-7233",)
# What each kind's crisis reply must name, and which number must come first.
# Every crisis reply names 911 and 988 (the outage path and staff count on it), whichever leads.
KIND_MUST = {
    "overdose": (("911", "988", POISON_CONTROL), "911"),
    "medical": (("911", "988"), "911"),
    "suicide": (("988", "911"), "988"),
    "self_harm": (("988", "911"), "988"),
    "violence": (("911", "988", *DV_HOTLINE), "911"),
    "distress": (("911", "988"), None),
}
SPANISH_988 = ("marca 2", "AYUDA")


def check(content: Content) -> list[str]:
    """Every problem found, as readable lines; an empty list means the content is sound."""
    problems: list[str] = check_chat(content)
    bot = Bot(content)
    phone = content.clinic_phone

    def reply_ok(where: str, text: str, lang: str) -> None:
        if phone not in text:
            problems.append(f"{where}: lacks the clinic number {phone}")
        if not fits(text, lang):
            detail = f"{len(text)} chars, {segments(text)} segments"
            bad = non_gsm7(text) if lang == "en" else []
            problems.append(f"{where}: too long or not plain GSM-7 ({detail}{', non-GSM-7: ' + ''.join(bad) if bad else ''})")
        if DOSING.search(text):
            problems.append(f"{where}: looks like dosing or taper instructions")

    for lang, messages in content.messages.items():
        for key, text in messages.items():
            if key in ("review_footer", "staff_alerted", "staff_later"):
                continue
            reply_ok(f"messages.{lang}.{key}", text, lang)
        # The menu too: a crisis the triage misses gets the menu ("I didn't understand") more than
        # any other reply (README, "Crisis triage"), so it carries 911 and 988 whatever triage said.
        for key in ("help", "review", "menu"):
            for needle in ("911", "988"):
                if needle not in messages[key]:
                    problems.append(f"messages.{lang}.{key}: must mention {needle}")
            if lang == "es" and not any(n in messages[key] for n in SPANISH_988):
                problems.append(f"messages.{lang}.{key}: 988 needs its Spanish option (marca 2 / AYUDA)")
        for kind, tiers in content.crisis[lang].items():
            must, first = KIND_MUST[kind]
            for tier in tiers:
                for alerted in (False, True):
                    where = f"messages.{lang}.crisis.{kind}.{tier}" + (" (staff alerted)" if alerted else "")
                    text = content.crisis_reply(tier, kind, lang, alerted)
                    reply_ok(where, text, lang)
                    for needle in (*must, AUTOMATED[lang]):
                        if needle.lower() not in text.lower():
                            problems.append(f"{where}: must mention {needle!r}")
                    if first and any(n in text and text.index(n) < text.index(first) for n in ("911", "988")):
                        problems.append(f"{where}: must lead with {first}")
                    if lang == "es" and "988" in text and not any(n in text for n in SPANISH_988):
                        problems.append(f"{where}: 988 needs its Spanish option (marca 2 / AYUDA)")
                    if "{staff}" in text:
                        problems.append(f"{where}: {{staff}} was not filled in")

    ids = {lang: [t.id for t in topics] for lang, topics in content.topics.items()}
    if ids.get("en") != ids.get("es"):
        problems.append(f"topics differ between languages: en={ids.get('en')} es={ids.get('es')}")
    for lang, topics in content.topics.items():
        owner: dict[str, str] = {}
        for topic in topics:
            reply_ok(f"topics.{lang}.{topic.id}", topic.reply, lang)
            for needle in topic.must_include:
                if needle.lower() not in topic.reply.lower():
                    problems.append(f"topics.{lang}.{topic.id}: reply must include {needle!r}")
            for kw in (*topic.keywords, *topic.weak_keywords):
                if kw in owner and owner[kw] != topic.id:
                    problems.append(f"topics.{lang}: keyword {kw!r} is in both {owner[kw]} and {topic.id}")
                owner[kw] = topic.id
            # Reachable: the menu word and every keyword alone lead to this topic.
            for kw in (topic.menu_word, *topic.keywords):
                if keyword(kw) in RESERVED:
                    continue  # STOP/QUIT/HELP/ESPANOL alone are compliance or language commands
                got = bot.decide(Inbound(sender="check", body=kw), State(language=lang))
                if got.topic != topic.id:
                    problems.append(f"topics.{lang}.{topic.id}: keyword {kw!r} leads to "
                                    f"{got.topic or got.kind} instead (shadowed)")

    for rule in content.rules:
        if not rule.examples:
            problems.append(f"rule {rule.id}: has no examples")
        for ex in rule.examples:
            verdict = bot.triager.triage(ex)
            if rule.id not in verdict.rules:
                problems.append(f"rule {rule.id}: example {ex!r} does not fire it (got {verdict.rules or 'nothing'})")
    problems.extend(_check_idioms(content, bot))
    problems.extend(check_canned(content))
    return problems


# A long first name, so a saved reply still fits when {name} is filled in.
LONGEST_NAME = "Maximiliano-Fernanda"


def check_canned(content: Content) -> list[str]:
    """Saved staff replies (``replies/canned.*.toml``): same ids in both languages, SMS limits with a
    long name filled in, required words kept, no dosing, known placeholders only."""
    from bot.core.canned import NAME, load_canned
    from bot.core.content import ContentError
    try:
        canned = load_canned(content.root)
    except ContentError as exc:
        return [f"canned replies: {exc}"]
    problems: list[str] = []
    ids = {lang: [r.id for r in replies] for lang, replies in canned.items()}
    if ids.get("en") != ids.get("es"):
        problems.append(f"canned replies differ between languages: en={ids.get('en')} es={ids.get('es')}")
    for lang, replies in canned.items():
        if not replies:
            problems.append(f"canned.{lang}: no replies")
        seen: set[str] = set()
        for r in replies:
            where = f"canned.{lang}.{r.id}"
            if r.id in seen:
                problems.append(f"{where}: id used twice")
            seen.add(r.id)
            text = r.text.replace(NAME, LONGEST_NAME)
            if re.search(r"\{[^}]*\}", text):
                problems.append(f"{where}: unknown placeholder {re.search(r'{[^}]*}', text).group(0)}")
            if not fits(text, lang):
                bad = non_gsm7(text) if lang == "en" else []
                problems.append(f"{where}: too long or not plain GSM-7 ({len(text)} chars, {segments(text)} segments"
                                f"{', non-GSM-7: ' + ''.join(bad) if bad else ''})")
            if DOSING.search(text):
                problems.append(f"{where}: looks like dosing or taper instructions")
            for needle in r.must_include:
                if needle not in r.text:
                    problems.append(f"{where}: must include {needle!r}")
    return problems


def check_chat(content: Content) -> list[str]:
    """Problems in the web chat's own texts (the API, the widget, the demo page), in every language."""
    problems: list[str] = []
    phone = content.clinic_phone
    sections = {lang: {sec: set(texts) for sec, texts in chat.items()} for lang, chat in content.chat.items()}
    if len({repr(sorted((k, sorted(v)) for k, v in secs.items())) for secs in sections.values()}) > 1:
        problems.append("chat.*.toml: the languages define different keys")
    for lang, chat in content.chat.items():
        for section, texts in chat.items():
            for key, text in texts.items():
                where = f"chat.{lang}.{section}.{key}"
                if CALL_PROMISE.search(text) and phone not in text:
                    problems.append(f"{where}: promises a call but lacks the clinic number {phone}")
                if DANGER.search(text):
                    for needle in ("911", "988"):
                        if needle not in text:
                            problems.append(f"{where}: speaks of danger or emergencies but does not mention {needle}")
                for number in PHONE_LIKE.finditer(text):
                    if number.group() != phone and not FICTIONAL.search(number.group()):
                        problems.append(f"{where}: names a phone number other than the clinic's "
                                        f"({number.group()}); write {{phone}}")
                if DOSING.search(text):
                    problems.append(f"{where}: looks like dosing or taper instructions")
    return problems


def _check_idioms(content: Content, bot: Bot) -> list[str]:
    """Every idiom example matches its own idiom, the idiom matters for it, and it is routine.

    An idiom matters when a rule fires on the example once the idioms are gone (the idiom is what
    cancels it), or when the model, told of the idiom, is less sure the text needs a human than
    without it (idioms are part of what the model reads). Otherwise the check could not fail.
    """
    from dataclasses import replace as replaced
    bare = Bot(replaced(content, idioms=()))
    bare.triager.model = None
    model = bot.triager.model
    problems = []
    for idiom in content.idioms:
        for ex in idiom.examples:
            tokens = bot.triager.index.tokens(ex)
            extra = bot.triager.read(tokens)[1]
            if f"i:{idiom.id}" not in extra:
                problems.append(f"idiom {idiom.id}: example {ex!r} does not match the idiom")
            elif not bare.triager.rule_hits(bare.triager.index.tokens(ex)) and (
                    model is None or model.escalate_p(tokens, extra) >= model.escalate_p(
                        tokens, [e for e in extra if not e.startswith("i:")])):
                problems.append(f"idiom {idiom.id}: example {ex!r} changes nothing (no rule fires without the "
                                "idioms and the model is no less sure with it)")
            verdict = bot.triager.triage(ex)
            if verdict.escalate:
                problems.append(f"idiom {idiom.id}: example {ex!r} still escalates via {verdict.rule}")
    return problems

