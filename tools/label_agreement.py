"""Agreement between the two labellers of the real texts (tests/labels/real.tsv).

    .venv/bin/python tools/label_agreement.py [tests/labels/real-round2.tsv]
    .venv/bin/python tools/label_agreement.py tests/corpus/blind-i   # a blind set's second labeller

Prints raw agreement and Cohen's kappa for the tier, for "escalate at all" and "page", and for the
kind where both labellers escalated; and how many disagreements the third labeller settled.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core.corpus import read_jsonl, read_real_labels  # noqa: E402

LABELS = ROOT / "tests" / "labels" / "real.tsv"


def kappa(xs: list, ys: list) -> tuple[float, float]:
    """(raw agreement, Cohen's kappa) of two label sequences."""
    n = len(xs)
    po = sum(x == y for x, y in zip(xs, ys)) / n
    cx, cy = Counter(xs), Counter(ys)
    pe = sum(cx[c] * cy[c] for c in set(xs) | set(ys)) / (n * n)
    return po, (po - pe) / (1 - pe) if pe < 1 else 1.0


def _esc(tier: str) -> bool:
    return tier != "routine"


def _page(tier: str) -> bool:
    return tier in ("emergency", "urgent")


def figures(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> dict[str, object]:
    """Raw agreement and kappa of two labellers' (tier, kind) pairs over the same texts."""
    at, bt = [t for t, _ in a], [t for t, _ in b]
    both = [(x[1], y[1]) for x, y in zip(a, b) if _esc(x[0]) and _esc(y[0])]
    out: dict[str, object] = {}
    for name, (xs, ys) in {
        "tier": (at, bt),
        "escalate": ([_esc(t) for t in at], [_esc(t) for t in bt]),
        "page": ([_page(t) for t in at], [_page(t) for t in bt]),
        "kind_when_both_escalated": ([k for k, _ in both], [k for _, k in both]),
    }.items():
        po, k = kappa(xs, ys)
        out[name] = {"agreement": round(po, 3), "kappa": round(k, 3)}
    return out


def agreement(path: Path = LABELS) -> dict[str, object]:
    """Every figure the README quotes, computed from the labels file."""
    rows = read_real_labels(path)
    out: dict[str, object] = {"texts": len(rows), "by_source": dict(Counter(r["source"] for r in rows))}
    out.update(figures([(r["a_tier"], r["a_kind"]) for r in rows], [(r["b_tier"], r["b_kind"]) for r in rows]))
    out["settled_by_third"] = len([r for r in rows if r["c_tier"]])
    out["final_tiers"] = dict(Counter(r["tier"] for r in rows))
    return out


def blind_agreement(folder: Path) -> dict[str, object]:
    """A blind set's writers' labels against a second labeller's (``second-labeller.tsv`` in the set's
    folder: ``id tier kind about``, ids ``<file stem>-<line>``), who saw only the guide and the texts."""
    second = {r["id"]: (r["tier"], r["kind"]) for r in read_real_labels(folder / "second-labeller.tsv")}
    a, b = [], []
    for path in sorted(folder.glob("*.jsonl")):
        for n, ex in enumerate(read_jsonl(path), 1):
            a.append((ex.label, ex.kind))
            b.append(second[f"{path.stem}-{n}"])
    if len(second) != len(a):
        raise ValueError(f"{folder}: {len(second)} second labels for {len(a)} texts")
    return {"texts": len(a), **figures(a, b), "second_labeller_tiers": dict(Counter(t for t, _ in b))}


if __name__ == "__main__":
    import json
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else LABELS
    print(json.dumps(blind_agreement(target) if target.is_dir() else agreement(target), indent=2))
