"""Agreement between the two labellers of the real texts (tests/labels/real.tsv).

    .venv/bin/python tools/label_agreement.py [tests/labels/real-round2.tsv]

Prints raw agreement and Cohen's kappa for the tier, for "escalate at all" and "page", and for the
kind where both labellers escalated; and how many disagreements the third labeller settled.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core.corpus import read_real_labels  # noqa: E402

LABELS = ROOT / "tests" / "labels" / "real.tsv"


def kappa(xs: list, ys: list) -> tuple[float, float]:
    """(raw agreement, Cohen's kappa) of two label sequences."""
    n = len(xs)
    po = sum(x == y for x, y in zip(xs, ys)) / n
    cx, cy = Counter(xs), Counter(ys)
    pe = sum(cx[c] * cy[c] for c in set(xs) | set(ys)) / (n * n)
    return po, (po - pe) / (1 - pe) if pe < 1 else 1.0


def agreement(path: Path = LABELS) -> dict[str, object]:
    """Every figure the README quotes, computed from the labels file."""
    rows = read_real_labels(path)
    a = [r["a_tier"] for r in rows]
    b = [r["b_tier"] for r in rows]
    esc = lambda t: t != "routine"  # noqa: E731
    page = lambda t: t in ("emergency", "urgent")  # noqa: E731
    both = [r for r in rows if esc(r["a_tier"]) and esc(r["b_tier"])]
    settled = [r for r in rows if r["c_tier"]]
    out: dict[str, object] = {"texts": len(rows), "by_source": dict(Counter(r["source"] for r in rows))}
    for name, (xs, ys) in {
        "tier": (a, b),
        "escalate": ([esc(t) for t in a], [esc(t) for t in b]),
        "page": ([page(t) for t in a], [page(t) for t in b]),
        "kind_when_both_escalated": ([r["a_kind"] for r in both], [r["b_kind"] for r in both]),
    }.items():
        po, k = kappa(xs, ys)
        out[name] = {"agreement": round(po, 3), "kappa": round(k, 3)}
    out["settled_by_third"] = len(settled)
    out["final_tiers"] = dict(Counter(r["tier"] for r in rows))
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(agreement(Path(sys.argv[1]) if len(sys.argv) > 1 else LABELS), indent=2))
