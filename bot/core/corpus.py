"""Read labelled corpus files (``label | message`` per line) and score triage against them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LABELS = ("emergency", "urgent", "review", "routine")


@dataclass(frozen=True)
class Example:
    """One labelled line of a corpus file."""

    label: str
    text: str
    source: str
    line: int


def read(path: Path | str) -> list[Example]:
    """Parse a corpus file; '#' lines and blank lines are skipped."""
    path = Path(path)
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        label, sep, text = raw.partition(" | ")
        label = label.strip().lower()
        if not sep or label not in LABELS:
            raise ValueError(f"{path}:{n}: expected 'label | message', got {raw!r}")
        out.append(Example(label, text, path.name, n))
    return out
