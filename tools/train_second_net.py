"""Train the crisis-triage "second net" and export it to replies/crisis/second_net.json.

Needs scikit-learn, which is NOT a runtime dependency: use a throwaway environment that can
also import this repository, for example::

    python3 -m venv /tmp/sn-venv && /tmp/sn-venv/bin/pip install scikit-learn
    /tmp/sn-venv/bin/python tools/train_second_net.py            # train, cross-validate, export
    /tmp/sn-venv/bin/python tools/train_second_net.py --dry-run  # report only

If the blind corpus's aggregate routine_quiet (tests/test_corpus.py, floor 0.95) falls under
its floor with the exported model, raise the threshold with ``--min-threshold`` (aggregate
figures only, never its lines) and say so: the blind figures are then no longer independent.

Data: tests/corpus/{dev,heldout,dev2}/*.txt (labels emergency/urgent/review -> crisis 1,
routine -> 0), rule examples from replies/crisis/rules.toml (crisis) and idiom examples from
replies/crisis/idioms.toml (routine). tests/corpus/blind is never read here.

Features: the triage engine's own reading of a text (fold with the lexicon's emoji map and
rewrites, tokenise, drop sentence marks), then scikit-learn char_wb n-grams 2..5, binary,
optionally idf-weighted, L2-normalised; L2 logistic regression. bot.core.second_net reproduces
the features in pure Python.

Model choice and threshold come from stratified 5-fold cross-validation (repeated 3 times) with
the vectoriser fit inside each fold: the configuration with the best recall at the target
routine false-positive rate wins (ties within a point go to the most regularised), and the
threshold is the lowest out-of-fold score that keeps routine false positives at or under the
target: 1% by default, never above 3%. Texts under MIN_WORDS words never flag. The final model
is then fit on all the data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from bot.core.content import load  # noqa: E402
from bot.core.corpus import read  # noqa: E402
from bot.core.normalize import words  # noqa: E402
from bot.core.second_net import FORMAT, SecondNet, model_text  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
TRAIN_SETS = ("dev", "heldout", "dev2")  # never "blind"
NGRAM_RANGE = (2, 5)
MAX_FEATURES = 20_000
MAX_FPR = 0.03  # ceiling on the routine false-positive rate at the chosen threshold
# What the threshold is actually chosen for. The rules alone already leave ~3% of routine texts
# escalated on independent text (blind corpus aggregate 0.97 quiet, floor 0.95), so the net may
# add at most ~2 points there; aiming at 1% in cross-validation keeps a margin.
TARGET_FPR = 0.01
RECALL_TOLERANCE = 0.01
# Texts shorter than this never flag: one or two words ("hi", "no") are all noise once
# L2-normalised ("30 of them" alone is not a crisis), and the rules cover the short crisis texts
# ("help", "kms", "took 30 valium"); in this data almost every crisis text the rules miss has
# at least 4 words, so the gate costs next to no recall where the net matters.
MIN_WORDS = 4
FOLDS = 5
SEEDS = (0, 1, 2)  # repeated CV: out-of-fold scores are averaged over these shuffles
GRID = [  # (C, use_idf, class_weight, min_df)
    (c, idf, cw, md)
    for c in (3.0, 10.0, 30.0, 100.0)
    for idf in (False, True)
    for cw in (None, "balanced")
    for md in (2, 3)
]


def examples(content) -> tuple[list[str], list[int], dict[str, int]]:
    """Raw texts, labels (1 crisis, 0 routine) and line counts per source."""
    texts: list[str] = []
    labels: list[int] = []
    counts: dict[str, int] = {}
    for kind in TRAIN_SETS:
        assert kind != "blind"
        for path in sorted((CORPUS / kind).glob("*.txt")):
            rows = read(path)
            counts[str(path.relative_to(ROOT))] = len(rows)
            for ex in rows:
                texts.append(ex.text)
                labels.append(0 if ex.label == "routine" else 1)
    n = 0
    for rule in content.rules:
        for ex in rule.examples:
            texts.append(ex)
            labels.append(1)
            n += 1
    counts["replies/crisis/rules.toml"] = n
    n = 0
    for idiom in content.idioms:
        for ex in idiom.examples:
            texts.append(ex)
            labels.append(0)
            n += 1
    counts["replies/crisis/idioms.toml"] = n
    return texts, labels, counts


def dedupe(docs: list[str], labels: list[int], raw: list[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """One row per distinct model text (a text labelled both ways counts as crisis), and a raw text for it."""
    seen: dict[str, int] = {}
    first: dict[str, str] = {}
    for doc, y, text in zip(docs, labels, raw):
        seen[doc] = max(seen.get(doc, 0), y)
        first.setdefault(doc, text)
    return list(seen), np.array(list(seen.values())), [first[d] for d in seen]


def rules_silent(content, texts: list[str]) -> np.ndarray:
    """Which texts the hand-written rules alone leave routine (where the second net matters)."""
    from bot.core.triage import Triager

    triager = Triager(content)
    triager.second_net = None
    return np.array([not triager.triage(t).escalate for t in texts])


def vectorizer(use_idf: bool, min_df: int) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAM_RANGE, lowercase=False, binary=True,
                           use_idf=use_idf, smooth_idf=True, norm="l2", min_df=min_df,
                           max_features=MAX_FEATURES, dtype=np.float64)


def fit(docs, y, c, use_idf, cw, min_df):
    vec = vectorizer(use_idf, min_df)
    x = vec.fit_transform(docs)
    clf = LogisticRegression(C=c, class_weight=cw, max_iter=5000, solver="lbfgs")
    clf.fit(x, y)
    return vec, clf


def out_of_fold(docs, y, c, use_idf, cw, min_df) -> np.ndarray:
    """Each text's crisis probability from models that never saw it, averaged over SEEDS."""
    oof = np.zeros(len(docs))
    for seed in SEEDS:
        folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
        for train, test in folds.split(docs, y):
            vec, clf = fit([docs[i] for i in train], y[train], c, use_idf, cw, min_df)
            oof[test] += clf.predict_proba(vec.transform([docs[i] for i in test]))[:, 1]
    return oof / len(SEEDS)


def pick_threshold(scores: np.ndarray, y: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """Lowest threshold (3 decimals, rounded up) with routine false positives <= max_fpr."""
    routine = np.sort(scores[y == 0])[::-1]
    allowed = int(math.floor(max_fpr * len(routine)))
    # Everything strictly above the (allowed+1)-th highest routine score may fire.
    cut = routine[allowed] if allowed < len(routine) else 0.0
    threshold = math.floor(cut * 1000) / 1000 + 0.001
    while threshold < 1 and (scores[y == 0] >= threshold).mean() > max_fpr:
        threshold += 0.001
    return round(threshold, 3)


def metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    return {
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(int((y == 1).sum()), 1), 4),
        "fpr": round(fp / max(int((y == 0).sum()), 1), 4),
    }


def export(vec, clf, use_idf: bool) -> tuple[dict, dict, float]:
    vocab = vec.vocabulary_
    coef = clf.coef_[0]
    weights = {g: float(f"{coef[i]:.6g}") for g, i in sorted(vocab.items())}
    idf = {g: float(f"{vec.idf_[i]:.6g}") for g, i in sorted(vocab.items())} if use_idf else {}
    return weights, idf, float(f"{clf.intercept_[0]:.8g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "replies" / "crisis" / "second_net.json"))
    ap.add_argument("--dry-run", action="store_true", help="cross-validate and report, write nothing")
    ap.add_argument("--max-fpr", type=float, default=TARGET_FPR,
                    help=f"routine false-positive rate aimed at by the cross-validated threshold "
                         f"(default {TARGET_FPR}; never above {MAX_FPR})")
    ap.add_argument("--min-threshold", type=float, default=0.0,
                    help="never export a threshold below this: raise it when the blind corpus's aggregate "
                         "routine_quiet (tests/test_corpus.py) would fall under its floor of 0.95")
    args = ap.parse_args(argv)
    if not 0 < args.max_fpr <= MAX_FPR:
        ap.error(f"--max-fpr must be in (0, {MAX_FPR}]")

    content = load(ROOT / "replies")
    raw, labels, counts = examples(content)
    docs_all = [model_text(words(t, content.emoji, content.replace)) for t in raw]
    docs, y, firsts = dedupe(docs_all, labels, raw)
    silent = rules_silent(content, firsts)
    long_enough = np.array([len(d.split()) >= MIN_WORDS for d in docs])
    print(f"{len(raw)} examples, {len(raw) - len(docs)} duplicates dropped -> {len(docs)} "
          f"({int(y.sum())} crisis, {int((y == 0).sum())} routine)")
    for src, n in counts.items():
        print(f"  {src}: {n}")

    results = []
    for cfg in GRID:
        oof = np.where(long_enough, out_of_fold(docs, y, *cfg), 0.0)  # gated as at run time
        t = pick_threshold(oof, y, args.max_fpr)
        m = metrics(oof, y, t)
        print(f"C={cfg[0]:<5} idf={cfg[1]!s:<5} class_weight={cfg[2]!s:<8} min_df={cfg[3]}  "
              f"threshold={t:.3f}  {m}")
        results.append((cfg, oof, t, m))
    # The configurations differ by noise; among those within RECALL_TOLERANCE of the best
    # recall, take the most regularised (smallest C), then the smallest vocabulary.
    top = max(m["recall"] for *_, m in results)
    cfg, oof, cv_threshold, cv_at_cv_threshold = min(
        (r for r in results if r[3]["recall"] >= top - RECALL_TOLERANCE), key=lambda r: (r[0][0], -r[0][3]))
    threshold = max(cv_threshold, args.min_threshold)
    cv = metrics(oof, y, threshold)
    c, use_idf, cw, min_df = cfg
    print(f"chosen: C={c} idf={use_idf} class_weight={cw} min_df={min_df} "
          f"cv threshold={cv_threshold} {cv_at_cv_threshold}")
    if threshold != cv_threshold:
        print(f"threshold raised to {threshold} (--min-threshold): cv there {cv}")
    # Where it matters: texts the rules leave routine. Added escalations, right and wrong.
    behind = metrics(oof[silent], y[silent], threshold)
    if threshold != cv_threshold:
        print(f"where rules silent at cv threshold {cv_threshold}: {metrics(oof[silent], y[silent], cv_threshold)}")
    caught = [firsts[i] for i in np.flatnonzero(silent & (y == 1) & (oof >= threshold))]
    print(f"rules silent on {int((silent & (y == 1)).sum())} crisis and {int((silent & (y == 0)).sum())} "
          f"routine texts; out-of-fold second net there: {behind}")
    for text in caught[:10]:
        print(f"  caught: {text}")
    if len(caught) > 10:
        print(f"  ... and {len(caught) - 10} more")

    vec, clf = fit(docs, y, *cfg)
    weights, idf, intercept = export(vec, clf, use_idf)
    digest = hashlib.sha256("\n".join(f"{lab}\t{d}" for d, lab in zip(docs, y)).encode()).hexdigest()
    model = {
        "format": FORMAT,
        "version": f"char_wb-lr-{digest[:12]}",
        "threshold": threshold,
        "min_words": MIN_WORDS,
        "intercept": intercept,
        "ngram_range": list(NGRAM_RANGE),
        "features": {"analyzer": "char_wb", "binary": True, "norm": "l2", "use_idf": use_idf,
                     "smooth_idf": True, "min_df": min_df, "max_features": MAX_FEATURES,
                     "input": "bot.core.normalize.words(text, lexicon emoji, lexicon replace), "
                              "sentence marks dropped, joined by spaces"},
        "classifier": {"C": c, "class_weight": cw, "penalty": "l2", "sklearn": sklearn.__version__},
        "trained_on": counts,
        "examples": {"distinct": len(docs), "crisis": int(y.sum()), "routine": int((y == 0).sum())},
        "cv": {**cv, "folds": FOLDS, "repeats": len(SEEDS), "max_fpr": args.max_fpr, "where_rules_silent": behind,
               "threshold_cv": cv_threshold, "at_threshold_cv": cv_at_cv_threshold},
        "weights": weights,
    }
    if use_idf:
        model["idf"] = idf

    # The pure-Python runtime must agree with scikit-learn on the exported model.
    net = SecondNet(model, emoji=content.emoji, replace=content.replace)
    ours = np.array([net.score(t) for t in raw])  # probabilities, before the min_words gate
    theirs = clf.predict_proba(vec.transform(docs_all))[:, 1]
    gap = float(np.abs(ours - theirs).max())
    print(f"{len(weights)} features; runtime vs sklearn max |dp| = {gap:.2e}")
    if gap > 1e-4:
        print("runtime disagrees with sklearn", file=sys.stderr)
        return 1
    gate = np.array([len(d.split()) >= MIN_WORDS for d in docs_all])
    fit_m = metrics(np.where(gate, theirs, 0.0), np.array(labels), threshold)
    print(f"in-sample at {threshold}: {fit_m}")
    # The dev corpus must stay exact and idiom examples must never escalate (tests/): no routine
    # text the model was trained on may flag. Raise the threshold past any that would.
    flagged = [(p, t) for p, t, lab, g in zip(theirs, raw, labels, gate) if lab == 0 and g and p >= threshold]
    if flagged:
        for p, t in flagged:
            print(f"  routine training text flags in-sample ({p:.3f}): {t}")
        model["threshold"] = threshold = round(math.floor(max(p for p, _ in flagged) * 1000) / 1000 + 0.001, 3)
        model["cv"].update(metrics(oof, y, threshold))
        print(f"threshold raised to {threshold} so that none does; cv there {model['cv']}")
    if args.dry_run:
        return 0
    out = Path(args.out)
    out.write_text(json.dumps(model, ensure_ascii=False, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
