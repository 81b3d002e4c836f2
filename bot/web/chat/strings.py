"""What the chat says besides the bot's replies: read from replies/chat.<lang>.toml, never written here."""

from __future__ import annotations

from flask import current_app

from bot.core.content import LANGUAGES, Content


def content() -> Content:
    """The app's loaded replies/ content."""
    return current_app.extensions["helpline"].helpline.bot.content


def language(value: object) -> str | None:
    """A language code the chat speaks, or None."""
    return value if value in LANGUAGES else None


def say(key: str, lang: str | None, **extra: str) -> str:
    """One of the API's texts in this language (English by default), placeholders such as {last4} filled in."""
    text = content().chat_text("api", key, lang)
    for name, value in extra.items():
        text = text.replace("{" + name + "}", value)
    return text


def widget_strings(lang: str | None) -> dict[str, str]:
    """Every text the widget shows, in this language."""
    return dict(content().chat.get(lang or "en", content().chat["en"])["widget"])
