"""Writing a trained linear model in the JSON layout bot/core/model.py and bot/core/topics.py read."""

from __future__ import annotations

import json
from pathlib import Path


def ngram_block(vec, coef, offset: int) -> dict[str, list[float]]:
    """One feature block: each n-gram of a fitted TfidfVectorizer -> [idf, weight per head...].

    ``coef`` holds one row per head; the block's columns start at ``offset``.
    """
    return {gram: [float(f"{vec.idf_[i]:.6g}"), *(float(f"{w:.5g}") for w in coef[:, offset + i])]
            for gram, i in sorted(vec.vocabulary_.items())}


def write(path: Path | str, data: dict) -> None:
    """Compact, key-sorted JSON: the same model always gives the same bytes."""
    Path(path).write_text(json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n",
                          encoding="utf-8")
