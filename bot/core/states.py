"""Every state, tier, kind and channel the helpline knows, defined once as ``StrEnum`` s.

They are plain strings on the wire and in the database (``Tier.URGENT == "urgent"``), so a
row read back compares equal to the enum; but code names them through these classes, so a new
channel or status cannot be forgotten in one of several hand-written lists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    """How fast a human must act on a text, most severe first."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    REVIEW = "review"

    @property
    def rank(self) -> int:
        """3 for emergency ... 1 for review (0 is routine, see :func:`rank`)."""
        return len(TIERS) - TIERS.index(self)

    @property
    def pages(self) -> bool:
        """Emergency and urgent page staff at once; review is read the same day."""
        return self in PAGING_TIERS


TIERS: tuple[Tier, ...] = tuple(Tier)
PAGING_TIERS: tuple[Tier, ...] = (Tier.EMERGENCY, Tier.URGENT)


def rank(tier: str | None) -> int:
    """A tier's rank; routine (None) is 0."""
    # A dict lookup first: triage ranks tiers many times a message and Tier(...) is slow.
    # An unknown tier falls through to Tier(tier), which raises as before.
    r = _RANKS.get(tier)
    return r if r is not None else Tier(tier).rank if tier else 0


def pages(tier: str) -> bool:
    """Whether a tier pages staff (``Tier(tier).pages``, without building the enum)."""
    r = _RANKS.get(tier)
    return r >= _PAGE_RANK if r is not None else Tier(tier).pages


_RANKS: dict[str, int] = {t: t.rank for t in TIERS}
_PAGE_RANK = min(t.rank for t in PAGING_TIERS)


class CrisisKind(StrEnum):
    """What the danger is; the crisis reply is chosen by kind (and tier, and language)."""

    SUICIDE = "suicide"
    SELF_HARM = "self_harm"
    OVERDOSE = "overdose"  # taken, being taken, dangerous mixing now or planned, lethal-dose questions
    MEDICAL = "medical"  # seizure, unresponsive, not breathing, severe withdrawal
    VIOLENCE = "violence"  # abuse, threats, a child at risk, wanting to hurt someone
    DISTRESS = "distress"  # review tier without one of the dangers above


# When one text carries several kinds, the reply leads with the most immediate danger to a body.
KIND_PRIORITY: tuple[CrisisKind, ...] = (
    CrisisKind.OVERDOSE, CrisisKind.MEDICAL, CrisisKind.VIOLENCE, CrisisKind.SUICIDE,
    CrisisKind.SELF_HARM, CrisisKind.DISTRESS,
)


class DecisionKind(StrEnum):
    """What the bot decided to do with one inbound text (stored as ``messages.kind``)."""

    CRISIS = "crisis"  # emergency or urgent: the crisis reply
    REVIEW = "review"  # the answer plus a 911/988 footer, escalated without a page
    TOPIC = "topic"
    MENU = "menu"
    HELP = "help"
    OPTOUT = "optout"
    OPTIN = "optin"
    LANGUAGE = "language"
    MEDIA = "media"
    SILENT = "silent"  # opted out, or a human has the conversation
    LIMITED = "limited"  # over the reply limit: stored, not answered


class Channel(StrEnum):
    """Where a text came from."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    WEB = "web"  # the chat widget
    TEST = "test"  # the dashboard's test texter (staff training)
    SIM = "sim"  # ``helpline simulate`` in a terminal


@dataclass(frozen=True)
class ChannelSpec:
    """What a channel can do: the one table every layer reads."""

    label: str  # how staff read it
    texts_back: bool  # staff replies and follow-ups go out through Twilio
    shows_followup: bool  # the texter follow-up reaches them (texted, or shown in the chat)
    pages_staff: bool  # a crisis on it pages on-call staff
    training: bool  # staff practice: never paged, never rate limited


CHANNELS: dict[Channel, ChannelSpec] = {
    Channel.SMS: ChannelSpec("SMS", texts_back=True, shows_followup=True, pages_staff=True, training=False),
    Channel.WHATSAPP: ChannelSpec("WhatsApp", texts_back=True, shows_followup=True, pages_staff=True, training=False),
    Channel.WEB: ChannelSpec("web chat", texts_back=False, shows_followup=True, pages_staff=True, training=False),
    Channel.TEST: ChannelSpec("test texter", texts_back=False, shows_followup=False, pages_staff=False, training=True),
    Channel.SIM: ChannelSpec("simulator", texts_back=False, shows_followup=False, pages_staff=False, training=True),
}


def channel_spec(channel: str | None) -> ChannelSpec:
    """The spec of a stored channel name; an unknown name is treated as a real, paging channel."""
    try:
        return CHANNELS[Channel(channel)]
    except ValueError:
        return CHANNELS[Channel.SMS]


def channels_where(**flags: bool) -> tuple[Channel, ...]:
    """Channels whose spec has these flag values, e.g. ``channels_where(pages_staff=True)``."""
    return tuple(c for c, spec in CHANNELS.items() if all(getattr(spec, k) == v for k, v in flags.items()))


class EscalationStatus(StrEnum):
    """An escalation's life: open -> claimed -> resolved or handed back (or released to open)."""

    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    HANDED_BACK = "handed_back"


OPEN_STATUSES: tuple[EscalationStatus, ...] = (EscalationStatus.OPEN, EscalationStatus.CLAIMED)


def silences_bot(status: str, severity: str) -> bool:
    """Whether an open escalation means a human handles the conversation: any claimed one, or an open
    one that pages staff. An open review-tier escalation (a bare HELP, a vague "can't do this") is read
    the same day; until someone claims it the bot keeps answering questions rather than go quiet."""
    return status == EscalationStatus.CLAIMED or Tier(severity).pages


class OutboxKind(StrEnum):
    """Why an outbound text exists."""

    PAGE = "page"
    FOLLOWUP = "followup"
    REPLY = "reply"


class OutboxStatus(StrEnum):
    """Where an outbound text is on its way to a phone."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNSENT_STATUSES: tuple[OutboxStatus, ...] = (OutboxStatus.PENDING, OutboxStatus.SENDING)


class Direction(StrEnum):
    """A stored message's direction."""

    IN = "in"
    OUT = "out"


class Author(StrEnum):
    """Who wrote an outbound message (stored as ``messages.kind`` for outbound rows)."""

    BOT = "bot"
    STAFF = "staff"
    FOLLOWUP = "followup"


def quick_init(cls):
    """Give a frozen dataclass (no slots, no factories, no ``__post_init__``) an ``__init__`` that fills
    the instance's dict in one update, instead of the generated one's ``object.__setattr__`` call per
    field, which costs about twice as much. Same parameters, defaults and resulting fields; the
    class stays frozen (assignment still raises), equal and hashable as before. The core builds a
    few per message (a decision, its triage, the model's scores)."""
    fields = dataclasses.fields(cls)
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__") or any(
            not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING for f in fields):
        raise TypeError(f"quick_init does not handle {cls.__name__}")
    defaults = {f"_default_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    params = ", ".join(f.name if f.default is dataclasses.MISSING else f"{f.name}=_default_{f.name}" for f in fields)
    values = ", ".join(f"{f.name}={f.name}" for f in fields)
    namespace: dict = {}
    exec(f"def __init__(self, {params}):\n    self.__dict__.update({values})\n", defaults, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init
    return cls
