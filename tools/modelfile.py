"""Writing a trained linear model in the JSON layout bot/core/model.py and bot/core/topics.py read."""

from __future__ import annotations

import json
from pathlib import Path

from bot.core.model import pack_block


def ngram_block(vec, coef, offset: int) -> dict:
    """One feature block of a fitted TfidfVectorizer: each n-gram -> [idf, weight per head...],
    packed as bot/core/model.py's ``pack_block`` stores it.

    ``coef`` holds one row per head; the block's columns start at ``offset``.
    """
    return pack_block({gram: [float(f"{vec.idf_[i]:.6g}"), *(float(f"{w:.5g}") for w in coef[:, offset + i])]
                       for gram, i in vec.vocabulary_.items()})


def write(path: Path | str, data: dict) -> None:
    """Compact, key-sorted JSON: the same model always gives the same bytes."""
    Path(path).write_text(json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n",
                          encoding="utf-8")
