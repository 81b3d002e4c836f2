"""SMS length arithmetic: GSM-7 vs UCS-2 and how many segments a text costs."""

from __future__ import annotations

# GSM 03.38 basic character set and its extension table (extension chars cost two septets).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")
_GSM7 = frozenset(GSM7_BASIC | GSM7_EXTENDED)  # either table: one C-level subset test per text

MAX_SEGMENTS = 3
MAX_CHARS_EN = 320  # Twilio's recommendation; also keeps English under 3 GSM-7 segments


def is_gsm7(text: str) -> bool:
    """True when every character fits the GSM-7 alphabet (so the SMS is not UCS-2)."""
    return _GSM7.issuperset(text)


def non_gsm7(text: str) -> list[str]:
    """The characters that would force UCS-2 encoding."""
    return sorted({ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENDED})


def segments(text: str) -> int:
    """How many SMS segments Twilio will bill for this body."""
    if is_gsm7(text):
        # One unit a character, two for each from the extension table (counted per table character).
        units = len(text) + sum(map(text.count, GSM7_EXTENDED))
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def fits(text: str, language: str = "en") -> bool:
    """Whether a reply respects the limits: 3 segments, and 320 GSM-7 characters in English."""
    if segments(text) > MAX_SEGMENTS:
        return False
    if language == "en":
        return len(text) <= MAX_CHARS_EN and is_gsm7(text)
    return len(text) <= MAX_CHARS_EN
