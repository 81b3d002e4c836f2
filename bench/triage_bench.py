"""Section 2: messages/s through the pure core, with the shipped content and with 10x and 100x.

    python bench/triage_bench.py --factor 100 [--seconds 2] [--wait-go]

Each content size is measured in a fresh process (one core, no web, no database):
``Bot(load(folder)).decide(Inbound(...))`` over the dev corpus.

Growing the content F times, in a temporary copy of ``replies/``:

- topics: (F-1) x the shipped topic count of generated ``[[topic]]`` blocks appended to both
  topics files (same ids, same order), each with the shipped mean keyword count;
- crisis: (F-1) x the shipped concept count of generated concepts appended to
  ``crisis/lexicon.toml`` (the shipped mean term count each) and (F-1) x the shipped rule count
  of generated ``[[rule]]`` blocks in ``crisis/rules.toml`` (first slot a generated concept,
  later slots generated or, one in three, a shipped concept; ordered or windowed, 1-3 slots; a
  kind drawn from the shipped rules' kinds).

So terms, keywords, rules, topics and distinct words all grow F times. Words are pronounceable
pseudo-words drawn from a generated vocabulary (F-1 times the shipped one) with the shipped
word-length spread, and phrases have the shipped words-per-phrase spread, so the typo-tolerant
index meets them as it would meet real vocabulary. No generated word is a word of the shipped
content or the corpus; the run reports how many corpus verdicts still changed.

``--wait-go``: build, print ``READY``, and measure only after a line arrives on stdin (the suite
builds the 100x bot while another, untimed section runs, and measures on a quiet machine).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, corpus

REPLIES = ROOT / "replies"
_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "sl", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "ie"]
_CODAS = ["", "", "", "n", "r", "s", "l", "t", "nd", "st", "rk"]


def _pseudo(rng: random.Random, length: int) -> str:
    w = ""
    while len(w) < length:
        w += rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
    return w[:length]


def _tokens(phrases) -> list[list[str]]:
    from bot.core.normalize import BOUNDARY, words
    return [[t for t in words(p) if t != BOUNDARY] for p in phrases]


def _vocabulary(rng: random.Random, size: int, lengths: list[int], taken: set[str]) -> list[str]:
    """``size`` distinct pseudo-words, lengths drawn from ``lengths``, none in ``taken``."""
    out: list[str] = []
    seen = set(taken)
    while len(out) < size:
        length = rng.choice(lengths)
        for attempt in range(10_000):
            w = _pseudo(rng, length + attempt // 20)  # short words run out: then a letter longer
            if w not in seen:
                seen.add(w)
                out.append(w)
                break
    return out


def _phrases(rng: random.Random, n: int, pool: list[str], sizes: list[int]) -> list[str]:
    """``n`` distinct phrases of pool words; words-per-phrase drawn from ``sizes``. Every pool word is used."""
    order = pool[:]
    rng.shuffle(order)
    out, used, k = [], set(), 0
    while len(out) < n:
        words = []
        for _ in range(rng.choice(sizes)):
            if k < len(order):
                words.append(order[k])
                k += 1
            else:
                words.append(rng.choice(pool))
        p = " ".join(words)
        if p not in used:
            used.add(p)
            out.append(p)
    return out


def _list(items) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def grow(dst: Path, factor: int, texts, seed: int = 11) -> dict[str, int]:
    """Copy replies/ to ``dst`` and grow it ``factor`` times (see the module docstring)."""
    from bot.core.content import load
    from bot.core.normalize import words
    shutil.copytree(REPLIES, dst)
    base = load(REPLIES)
    rng = random.Random(seed)
    taken: set[str] = set()
    for path in REPLIES.rglob("*.toml"):
        taken.update(words(path.read_text(encoding="utf-8")))
    for t in texts:
        taken.update(words(t.body))

    # Topics: the same generated keywords in both languages (as translated topics would be).
    kws = [k for t in base.topics["en"] for k in (*t.keywords, *t.weak_keywords)]
    kw_tokens = _tokens(kws)
    kw_vocab = {w for toks in kw_tokens for w in toks}
    n_topics = len(base.topics["en"]) * (factor - 1)
    per_topic = round(len(kws) / len(base.topics["en"]))
    pool = _vocabulary(rng, len(kw_vocab) * (factor - 1), [len(w) for w in kw_vocab], taken)
    taken.update(pool)
    topic_kws = _phrases(rng, n_topics * per_topic, pool, [len(t) for t in kw_tokens if t])
    for lang in ("en", "es"):
        with open(dst / f"topics.{lang}.toml", "a", encoding="utf-8") as fh:
            fh.write("\n# ---- generated by bench/triage_bench.py ----\n")
            for k in range(n_topics):
                mine = topic_kws[k * per_topic:(k + 1) * per_topic]
                fh.write(f'\n[[topic]]\nid = "synthetic_{k:05d}"\nmenu_word = "{mine[0]}"\nkeywords = {_list(mine)}\n'
                         f'reply = "Generated topic {k} for the benchmark. Call us at {{phone}}."\n')

    # Crisis lexicon and rules.
    terms = [t for ts in base.concepts.values() for t in ts]
    term_tokens = _tokens(terms)
    term_vocab = {w for toks in term_tokens for w in toks}
    n_concepts = len(base.concepts) * (factor - 1)
    per_concept = round(len(terms) / len(base.concepts))
    pool = _vocabulary(rng, len(term_vocab) * (factor - 1), [len(w) for w in term_vocab], taken)
    concept_terms = _phrases(rng, n_concepts * per_concept, pool, [len(t) for t in term_tokens if t])
    names = [f"SYN{k:05d}" for k in range(n_concepts)]
    with open(dst / "crisis" / "lexicon.toml", "a", encoding="utf-8") as fh:
        fh.write("\n# ---- generated by bench/triage_bench.py (still inside [concepts]) ----\n")
        for k, name in enumerate(names):
            fh.write(f"{name} = {_list(concept_terms[k * per_concept:(k + 1) * per_concept])}\n")
    shipped = sorted(base.concepts)
    n_rules = len(base.rules) * (factor - 1)
    kinds = [str(r.kind) for r in base.rules]
    with open(dst / "crisis" / "rules.toml", "a", encoding="utf-8") as fh:
        fh.write("\n# ---- generated by bench/triage_bench.py ----\n")
        for k in range(n_rules):
            slots = [rng.choice(names)] + [rng.choice(shipped) if rng.random() < 1 / 3 else rng.choice(names)
                                           for _ in range(rng.choice((0, 1, 1, 2)))]
            sev = rng.choice(("emergency", "urgent", "review"))
            kind = rng.choice(kinds)  # every rule has a kind; drawn with the shipped rules' spread
            if len(slots) == 1 or rng.random() < 0.65:
                body = f'pattern = "{" ".join(slots)}"\ngap = {rng.choice((1, 2, 3))}'
            else:
                body = f"all = {_list(slots)}\nwindow = {rng.choice((6, 8, 12))}"
            fh.write(f'\n[[rule]]\nid = "synthetic.r{k:05d}"\nseverity = "{sev}"\nkind = "{kind}"\n{body}\n')
    return {"topics": len(base.topics["en"]) + n_topics, "keywords": len(kws) + len(topic_kws),
            "concepts": len(base.concepts) + n_concepts, "terms": len(terms) + len(concept_terms),
            "rules": len(base.rules) + n_rules}


def _clear_caches(bot) -> bool:
    """Empty the core's per-token caches (read-only use of its internals); False if not found."""
    found = False
    indexes = [getattr(getattr(bot, "triager", None), "index", None),
               *getattr(getattr(bot, "topics", None), "_index", {}).values()]
    for idx in indexes:
        cache = getattr(idx, "_cache", None)
        if isinstance(cache, dict):
            cache.clear()
            found = True
    net = getattr(getattr(bot, "triager", None), "second_net", None)
    words = getattr(net, "_words", None)
    if isinstance(words, dict):
        words.clear()
    return found


class _GcTimer:
    """Time spent in the cyclic garbage collector (part of the cost of a large content heap)."""

    def __init__(self):
        self.spent = 0.0
        self._start = 0.0

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.spent += time.perf_counter() - self._start


def _rate(bot, bodies, seconds: float, cold: bool) -> tuple[float, float]:
    """Messages/s over whole corpus passes for about ``seconds``, and the share spent in GC."""
    from bot.core.engine import Inbound
    timer = _GcTimer()
    gc.callbacks.append(timer)
    try:
        n, spent = 0, 0.0
        while spent < seconds:
            if cold:
                _clear_caches(bot)
            t = time.perf_counter()
            for b in bodies:
                bot.decide(Inbound("+15555550100", b))
            spent += time.perf_counter() - t
            n += len(bodies)
    finally:
        gc.callbacks.remove(timer)
    return n / spent, timer.spent / spent


def measure(bot, texts, seconds: float, ref=None, rounds: int = 5) -> dict:
    """Best of ``rounds`` per mode (other load on the machine only ever slows a round down).

    Warm: the corpus over and over, per-token caches hot. Cold: the caches emptied before each
    pass, so every distinct token of the corpus is resolved afresh once per pass.
    ``ref``: the shipped-content bot, measured in the same process in rounds alternating with
    ``bot``'s, so that the per-message ratio compares like with like (``ref_warm``, ``ref_cold``).
    """
    from bot.core.engine import Inbound
    bodies = [t.body for t in texts]
    bots = {"": bot} if ref is None else {"": bot, "ref_": ref}
    for b in bots.values():
        for body in bodies:  # one untimed pass
            b.decide(Inbound("+15555550100", body))
    out: dict = {}
    modes = ("warm", "cold") if _clear_caches(bot) else ("warm",)
    for mode in modes:
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for prefix, b in bots.items():
                r = _rate(b, bodies, seconds / rounds, mode == "cold")
                if prefix not in best or r[0] > best[prefix][0]:
                    best[prefix] = r
        for prefix, (rate, gc_share) in best.items():
            out[prefix + mode], out[prefix + mode + "_gc"] = rate, gc_share
    return out


def verdicts(bot, texts) -> list:
    from bot.core.engine import Inbound
    return [(d.kind, d.triage.severity, d.triage.rule, d.topic)
            for d in (bot.decide(Inbound("+15555550100", t.body)) for t in texts)]


def main() -> None:
    ap = argparse.ArgumentParser(description="messages/s through Bot.decide for one content size")
    ap.add_argument("--factor", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--wait-go", action="store_true", help="print READY after building; measure on a stdin line")
    args = ap.parse_args()
    from bot.core.content import load
    from bot.core.engine import Bot
    texts = corpus()
    with tempfile.TemporaryDirectory(prefix="helpline-content-") as d:
        t = time.perf_counter()
        if args.factor == 1:
            root, sizes = REPLIES, {}
        else:
            root = Path(d) / f"replies_x{args.factor}"
            sizes = grow(root, args.factor, texts)
        generate = time.perf_counter() - t
        t = time.perf_counter()
        content = load(root)
        t2 = time.perf_counter()
        bot = Bot(content)
        t3 = time.perf_counter()
        if not sizes:
            sizes = {"topics": len(content.topics["en"]),
                     "keywords": sum(len(x.keywords) + len(x.weak_keywords) for x in content.topics["en"]),
                     "concepts": len(content.concepts), "terms": sum(len(v) for v in content.concepts.values()),
                     "rules": len(content.rules)}
        out = {"factor": args.factor, **sizes, "generate_s": generate, "load_s": t2 - t, "build_s": t3 - t2,
               "vocab": len(getattr(getattr(bot.triager, "index", None), "vocab", ()))}
        got = verdicts(bot, texts)
        ref_bot = None if args.factor == 1 else Bot(load(REPLIES))
        ref = got if ref_bot is None else verdicts(ref_bot, texts)
        out["changed"] = sum(a != b for a, b in zip(ref, got))
        with open("/proc/self/status") as fh:
            out["rss_mb"] = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS")) / 1024
        if args.wait_go:
            print("READY " + json.dumps(out), flush=True)
            if not sys.stdin.readline():
                return  # the suite gave up
        out.update(measure(bot, texts, args.seconds, ref=ref_bot))
        out["n_texts"] = len(texts)
        print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
