"""Saved replies for staff (``replies/canned.<lang>.toml``): content the clinic edits, not code.

A counsellor inserts one into the reply box and edits it before sending. ``{clinic}`` and
``{phone}`` are filled in when loading; ``{name}`` (the counsellor's first name) when inserting.
Checked by :func:`bot.core.checks.check_canned` (``helpline check-content``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.core.content import LANGUAGES, ContentError

NAME = "{name}"


@dataclass(frozen=True)
class CannedReply:
    """One saved reply in one language."""

    id: str
    language: str
    title: str
    text: str  # with {clinic} and {phone} filled in; {name} left for the counsellor's name
    must_include: tuple[str, ...] = ()

    def for_staff(self, staff_name: str) -> str:
        """The text as a counsellor inserts it: their first name in place of {name}."""
        first = (staff_name or "").split()[0] if (staff_name or "").split() else "staff"
        return self.text.replace(NAME, first)


def _clinic(root: Path) -> dict:
    with (root / "clinic.toml").open("rb") as fh:
        return tomllib.load(fh)


def load_canned(root: Path | str) -> dict[str, tuple[CannedReply, ...]]:
    """Saved replies by language, in file order; a missing file is an error (check-content says so)."""
    root = Path(root)
    clinic = _clinic(root)
    out: dict[str, tuple[CannedReply, ...]] = {}
    for lang in LANGUAGES:
        path = root / f"canned.{lang}.toml"
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ContentError(f"missing content file {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ContentError(f"{path}: {exc}") from exc
        items = []
        for i, r in enumerate(raw.get("reply", [])):
            if not isinstance(r, dict) or not r.get("id") or not r.get("title") or not r.get("text"):
                raise ContentError(f"{path}: reply {i + 1} needs id, title and text")
            fill = lambda t: t.strip().replace("{clinic}", clinic["name"]).replace("{phone}", clinic["phone"])  # noqa: E731
            items.append(CannedReply(id=str(r["id"]), language=lang, title=str(r["title"]).strip(),
                                     text=fill(str(r["text"])),
                                     must_include=tuple(fill(str(m)) for m in r.get("must_include", ()))))
        out[lang] = tuple(items)
    return out


@lru_cache(maxsize=4)
def load_canned_cached(root: str) -> dict[str, tuple[CannedReply, ...]]:
    """Load once per folder per process."""
    return load_canned(Path(root))
