"""Load everything under ``replies/``: clinic facts, fixed messages, topics and the crisis lexicon."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from bot.core.states import PAGING_TIERS, TIERS, CrisisKind

CRISIS_KINDS = tuple(k.value for k in CrisisKind)
PAGING_TIER_NAMES = tuple(t.value for t in PAGING_TIERS)

LANGUAGES = ("en", "es")

# Fixed messages every language must define.
MESSAGE_KEYS = (
    "review", "review_footer", "help", "menu", "staff_alerted", "staff_later",
    "media", "optin", "language_set", "trouble", "fallback", "followup", "reply_limited",
)

# The web chat's own words (replies/chat.<lang>.toml), by section: what the API writes, what the
# widget shows, and the demo page's safety line. Every language defines every key.
CHAT_KEYS = {
    "api": ("greeting", "limited", "start_limited", "reply_limited", "optout", "too_long", "empty", "expired",
            "bad_phone", "no_escalation", "callback_saved"),
    "widget": ("open", "open_new", "title", "auto", "staff", "notice", "close", "log", "label", "placeholder",
               "send", "you", "bot", "staff_who", "followup", "connecting", "typing", "offline", "alerted",
               "callback_label", "callback_send", "restarted", "too_long"),
    "demo": ("safety",),
}


class ContentError(ValueError):
    """The files under replies/ are malformed."""


@dataclass(frozen=True)
class Topic:
    """A guide topic: what it is called, the words that reach it, and its reply."""

    id: str
    language: str
    keywords: tuple[str, ...]
    reply: str
    menu_word: str
    weak_keywords: tuple[str, ...] = ()
    must_include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One crisis rule as written in replies/crisis/rules.toml."""

    id: str
    severity: str
    slots: tuple[tuple[str, ...], ...]  # each slot: labels that may fill it
    ordered: bool
    gap: int
    window: int
    whole: bool
    negatable: bool
    examples: tuple[str, ...]
    raise_with: tuple[str, ...] = ()
    note: str = ""
    order: int = 0
    kind: str | None = None  # CrisisKind (None for idioms)
    idiomatic: bool = False  # its words are often figurative or general: the model may overrule it
    floor: bool = False  # from crisis/floor.toml: the model never learns from it, it only raises a tier


@dataclass(frozen=True)
class Content:
    """All reply content and crisis rules, loaded and rendered once."""

    root: Path
    clinic_name: str
    clinic_phone: str
    messages: dict[str, dict[str, str]]
    topics: dict[str, tuple[Topic, ...]]
    keywords: dict[str, dict[str, tuple[str, ...]]]
    concepts: dict[str, tuple[str, ...]]
    rules: tuple[Rule, ...]
    idioms: tuple[Rule, ...]
    emoji: dict[str, str]
    replace: dict[str, str]
    spelled: dict[str, tuple[str, ...]]
    number_min: int
    # A count of days above this next to a DAYS word ("90 days off", "day 45") is a milestone, not
    # the early-withdrawal window; None: every count reads as DAYS.
    recent_days_max: int | None = None
    language_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    clinic_short_name: str = ""
    clinic_city: str = ""
    chat: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # language -> section -> key -> text
    crisis: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # lang -> kind -> tier -> text
    floor_concepts: frozenset[str] = frozenset()  # concepts defined in crisis/floor.toml (hidden from the model)
    # crisis/floor.toml's model_kinds_that_page: a text the model alone escalates, with one of these kinds, pages.
    model_kinds_that_page: frozenset[str] = frozenset()

    def message(self, key: str, language: str) -> str:
        """A fixed message in the given language, falling back to English."""
        return self.messages.get(language, {}).get(key) or self.messages["en"][key]

    def chat_text(self, section: str, key: str, language: str | None) -> str:
        """One of the web chat's texts in the given language, falling back to English."""
        return self.chat.get(language or "en", {}).get(section, {}).get(key) or self.chat["en"][section][key]
    def crisis_reply(self, tier: str, kind: str | None, language: str, alerted: bool) -> str:
        """The crisis reply for a paging tier and a kind; "staff have been alerted" only if ``alerted``."""
        by_kind = self.crisis.get(language) or self.crisis["en"]
        text = by_kind.get(kind or "", by_kind[CrisisKind.DISTRESS])[tier]
        staff = self.message("staff_alerted" if alerted else "staff_later", language)
        return text.replace("{staff}", staff)


def _read(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ContentError(f"missing content file {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ContentError(f"{path}: {exc}") from exc


def _render(text: str, clinic: dict) -> str:
    return text.strip().replace("{clinic}", clinic["name"]).replace("{phone}", clinic["phone"])


def _crisis_replies(raw: dict, clinic: dict, where: str) -> dict[str, dict[str, str]]:
    """The [crisis.<kind>] tables: an emergency and an urgent reply for every kind."""
    out: dict[str, dict[str, str]] = {}
    for kind in CRISIS_KINDS:
        tiers = raw.get(kind)
        if not isinstance(tiers, dict) or any(t not in tiers for t in PAGING_TIER_NAMES):
            raise ContentError(f"{where}: [crisis.{kind}] needs {' and '.join(PAGING_TIER_NAMES)} replies")
        out[kind] = {t: _render(tiers[t], clinic) for t in PAGING_TIER_NAMES}
    return out


def parse_rule(raw: dict, where: str, default_severity: str | None = None, order: int = 0,
               floor: bool = False) -> Rule:
    """Build a Rule from its TOML table; patterns are 'SLOT SLOT', a slot is 'A|b|C'."""
    rid = raw.get("id")
    if not rid:
        raise ContentError(f"{where}: a rule without id")
    severity = raw.get("severity", default_severity)
    if severity not in TIERS and severity != "none":
        raise ContentError(f"{where}: rule {rid} has severity {severity!r}")
    if ("pattern" in raw) == ("all" in raw):
        raise ContentError(f"{where}: rule {rid} needs exactly one of 'pattern' or 'all'")
    kind = raw.get("kind")
    if default_severity is None and kind not in CRISIS_KINDS:
        raise ContentError(f"{where}: rule {rid} has kind {kind!r} (one of {', '.join(CRISIS_KINDS)})")
    spec = raw["pattern"].split() if "pattern" in raw else list(raw["all"])
    slots = tuple(tuple(s.split("|")) for s in spec)
    return Rule(
        id=rid, severity=severity, slots=slots, ordered="pattern" in raw,
        gap=int(raw.get("gap", 1)), window=int(raw.get("window", 8)),
        whole=bool(raw.get("whole", False)), negatable=bool(raw.get("negatable", True)),
        examples=tuple(raw.get("examples", ())), raise_with=tuple(raw.get("raise_with", ())),
        note=raw.get("note", ""), order=order, kind=kind, idiomatic=bool(raw.get("idiomatic", False)),
        floor=floor,
    )


def _load_chat(root: Path, lang: str, clinic: dict) -> dict[str, dict[str, str]]:
    raw = _read(root / f"chat.{lang}.toml")
    out = {}
    for section, keys in CHAT_KEYS.items():
        table = raw.get(section, {})
        missing = [k for k in keys if k not in table]
        if missing:
            raise ContentError(f"chat.{lang}.toml [{section}] lacks {', '.join(missing)}")
        out[section] = {k: _render(v, clinic) for k, v in table.items()}
    return out


def load(root: Path | str) -> Content:
    """Read and render the whole replies/ folder."""
    root = Path(root)
    clinic = _read(root / "clinic.toml")
    messages: dict[str, dict[str, str]] = {}
    crisis: dict[str, dict[str, dict[str, str]]] = {}
    topics: dict[str, tuple[Topic, ...]] = {}
    keywords: dict[str, dict[str, tuple[str, ...]]] = {}
    for lang in LANGUAGES:
        raw = _read(root / f"messages.{lang}.toml")
        missing = [k for k in MESSAGE_KEYS if k not in raw]
        if missing:
            raise ContentError(f"messages.{lang}.toml lacks {', '.join(missing)}")
        crisis[lang] = _crisis_replies(raw.pop("crisis", {}), clinic, f"messages.{lang}.toml")
        messages[lang] = {k: _render(v, clinic) for k, v in raw.items()}
        raw_topics = _read(root / f"topics.{lang}.toml").get("topic", [])
        items = []
        for t in raw_topics:
            kws = tuple(k.strip() for k in t["keywords"] if k.strip())
            items.append(Topic(id=t["id"], language=lang, keywords=kws, reply=_render(t["reply"], clinic),
                               menu_word=t.get("menu_word", kws[0] if kws else t["id"]),
                               weak_keywords=tuple(t.get("weak_keywords", ())),
                               must_include=tuple(t.get("must_include", ()))))
        topics[lang] = tuple(items)
        keywords[lang] = {t.id: t.keywords for t in items}
    chat = {lang: _load_chat(root, lang, clinic) for lang in LANGUAGES}
    lex = _read(root / "crisis" / "lexicon.toml")
    concepts = {name: tuple(terms) for name, terms in lex.get("concepts", {}).items()}
    rules_raw = _read(root / "crisis" / "rules.toml").get("rule", [])
    rules = tuple(parse_rule(r, "crisis/rules.toml", order=i) for i, r in enumerate(rules_raw))
    floor_concepts, floor_rules, kinds_that_page = _floor(root / "crisis" / "floor.toml", concepts, rules)
    concepts.update(floor_concepts)
    rules += floor_rules
    idioms_raw = _read(root / "crisis" / "idioms.toml").get("idiom", [])
    idioms = tuple(parse_rule(r, "crisis/idioms.toml", "none", i) for i, r in enumerate(idioms_raw))
    lang_raw = _read(root / "language.toml")
    return Content(
        root=root, clinic_name=clinic["name"], clinic_phone=clinic["phone"],
        messages=messages, topics=topics, keywords=keywords, concepts=concepts,
        rules=rules, idioms=idioms, emoji=dict(lex.get("emoji", {})),
        replace=dict(lex.get("replace", {})),
        spelled=_spelled(lex.get("spelled", {})),
        number_min=int(lex.get("numbers", {}).get("many_at_least", 5)),
        recent_days_max=_optional_int(lex.get("numbers", {}).get("recent_days_at_most")),
        language_words={k: tuple(v) for k, v in lang_raw.items() if isinstance(v, list)},
        clinic_short_name=clinic.get("short_name") or clinic["name"], clinic_city=clinic.get("city", ""),
        chat=chat,
        crisis=crisis,
        floor_concepts=frozenset(floor_concepts),
        model_kinds_that_page=kinds_that_page,
    )


def _floor(path: Path, concepts: dict[str, tuple[str, ...]],
           learned: tuple[Rule, ...]) -> tuple[dict, tuple[Rule, ...], frozenset[str]]:
    """crisis/floor.toml: concepts and rules the model never learns from (an optional file), and the
    kinds whose escalation by the model alone pages (``model_kinds_that_page``).

    Its rules fire like any other and can only raise a tier: none may be idiomatic (the model
    could then drop it), and its concepts may not redefine the lexicon's.
    """
    if not path.exists():
        return {}, (), frozenset()
    raw = _read(path)
    kinds = frozenset(raw.get("model_kinds_that_page", ()))
    unknown = kinds - set(CRISIS_KINDS)
    if unknown:
        raise ContentError(f"crisis/floor.toml: model_kinds_that_page names unknown kinds {sorted(unknown)}")
    new = {name: tuple(terms) for name, terms in raw.get("concepts", {}).items()}
    for name in new:
        if name in concepts:
            raise ContentError(f"crisis/floor.toml: concept {name} is already in lexicon.toml")
    rules = tuple(parse_rule(r, "crisis/floor.toml", order=len(learned) + i, floor=True)
                  for i, r in enumerate(raw.get("rule", [])))
    taken = {r.id for r in learned}
    for rule in rules:
        if rule.id in taken:
            raise ContentError(f"crisis/floor.toml: rule {rule.id} is already in rules.toml")
        taken.add(rule.id)
        if rule.idiomatic:
            raise ContentError(f"crisis/floor.toml: rule {rule.id} is idiomatic; a floor rule is a clear structure")
    return new, rules, kinds


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def _spelled(table: dict) -> dict[str, tuple[str, ...]]:
    """The lexicon's [spelled] table: one folded word (what a text's token looks like) -> its words."""
    out = {}
    for short, words in table.items():
        if not short.isalnum() or short != short.lower() or not str(words).split():
            raise ContentError(f"crisis/lexicon.toml [spelled]: {short!r} must be one lowercase word spelled "
                               "out as one or more words")
        out[short] = tuple(str(words).split())
    return out


@lru_cache(maxsize=8)
def load_cached(root: str) -> Content:
    """Load once per folder per process."""
    return load(Path(root))
