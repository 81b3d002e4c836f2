"""Train the crisis-triage model and choose its thresholds: ``make model``.

Writes ``replies/crisis/model.json`` (read by :mod:`bot.core.model`). Needs the ``train`` extra
(scikit-learn, numpy; ``make model`` installs it) and ``../shared/data`` for the real texts.
Deterministic: the same repository and data give the same file.

Data (never the blind sets ``tests/corpus/blind*`` or ``topics-blind``, never the real ``test`` fold;
with ``--retired``, an experiment not shipped, the spent ones in :data:`RETIRED` too; with ``--everyday``, another,
the everyday personal texts of :data:`EVERYDAY`):

- real texts labelled by two labellers and a third where they disagreed (``tests/labels/real.tsv``,
  fold ``train``): drug-forum comments and titles, everyday SMS;
- blind-written helpline texts (``tests/corpus/written/*.jsonl``, tier, kind and who);
- the project's corpora (``tests/corpus/{dev,dev2,heldout}``, tier only), rule examples (their
  rule's tier and kind) and idiom examples (routine);
- unlabelled everyday forum comments with none of the risk words of :data:`RISKY` (``PLAIN_SAMPLE``
  of them, a fixed sample), taken as routine: in the labelled sample 3 of 500 such comments needed a
  human, so they teach the model everyday language at little cost in noise. They are never counted
  in the figures below.

Method:

1. Features: the triage engine's reading of each text; char_wb 2-5-grams and word 1-2-grams,
   binary tf-idf, each block L2-normalised (:mod:`bot.core.model` reproduces them exactly).
2. Heads: logistic regressions for escalate, page, emergency, about-someone-else, and a
   multinomial one for the kind. Hyper-parameters by 5-fold cross-validation.
3. Calibration: Platt scaling of each binary head on its out-of-fold scores.
4. Thresholds: on the out-of-fold scores combined with the rules exactly as the engine does
   (:func:`bot.core.triage.combine`), the thresholds that page the most crisis texts while keeping
   false alarms under the targets below, per source; with ``--repeats N``, on N fold splits, each
   setting judged by its figures averaged over them. Nothing here looks at held-out text.
5. The final model is fit on all the training data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.sparse import hstack  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from bot.core.content import load  # noqa: E402
from modelfile import ngram_block, write  # noqa: E402
from bot.core.corpus import (DATA_DIR, Example, read, read_dir, read_real_labels, real_examples,  # noqa: E402
                             real_texts)
from bot.core.model import BINARY_HEADS, FORMAT, NEVER, Scores, model_text  # noqa: E402
from bot.core.states import CrisisKind, Tier, rank  # noqa: E402
from bot.core.triage import PAGE_MIN_WORDS, Triager, combine, kept_at_review  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
LABELS = ROOT / "tests" / "labels" / "real.tsv"
OUT = ROOT / "replies" / "crisis" / "model.json"
KINDS = tuple(k.value for k in CrisisKind)
# Words that make a forum text "risky-looking" (the labelling sample over-drew such texts); a comment
# with none of them is everyday language.
RISKY = re.compile(
    r"suicid|kill|kms|unalive|die\b|dying|dead|death|end (it|my life)|overdos|\bod(ed|'d|d|ing)?\b|o\.d|narcan|"
    r"naloxone|seiz|breath|wake|unresponsive|blue|cut|self.?harm|hang|jump|gun|shoot|rape|abus|beat|hit me|"
    r"threat|hallucinat|delirium|chest pain|goodbye|hopeless|can'?t go on|better off|lethal|too many|bottle|"
    r"pills|swallow|xan|bars?\b|benzo|valium|diazepam|klonopin|kpin|etiz|alprazolam|alcohol|drunk|booze|fent|"
    r"heroin|dope|oxy|perc|m30|blues|methadone|sub(oxone|s)?\b|mix|mg\b|took|taking|withdraw|cold turkey|"
    r"dopesick|relapse|craving|nod|sad|depress|alone|help|scared|panic|shak|sick", re.I)
PLAIN_SAMPLE = 4000
# --retired: sets written blind whose looks are spent, learned from as well (group "retired": never
# counted in the figures and ceilings the escalate and page thresholds are chosen on, so those keep
# their population; the emergency threshold, which only tells emergency from urgent, uses them).
# Tried 2026-11-29 and not shipped (README, "Measured"); off, the shipped model's training.
RETIRED = ("blind-a", "blind-b", "blind-c", "blind-d", "blind-e", "blind-f", "blind-g", "blind-h",
           "blind-i", "blind-j", "blind-k", "blind-l", "blind-m", "blind-n", "blind-o", "blind-p", "blind-q",
           "blind-r", "blind-s", "blind-t", "blind-u", "written-heldout-2", "written-heldout-3", "probe", "written-more")
LEARN_RETIRED = False
# --everyday: everyday personal texts written blind (README "Measured" (36)), learned from as routine (group
# "everyday": weight 1, never counted in the figures or ceilings). Tried and not shipped unless the README says so.
EVERYDAY = ("everyday-en",)
LEARN_EVERYDAY = False
# --round3: the third forum round (tests/labels/real-round3.tsv: drug-forum comments with danger words, picked
# without the model) learned from as real text (group "round3": the real-text weight, never counted in the figures
# or ceilings, like "retired"). Tried in README "Measured" (43); off, the shipped model's training.
LEARN_ROUND3 = False
ROUND3 = LABELS.with_name("real-round3.tsv")
# --sure: choose a "sure" threshold too (choose_sure); tried 2026-11-29, not shipped (README, "Measured" (15)).
SURE = False
RECHOOSE = False  # --rechoose: ignore the previous model's thresholds (thresholds_for)
# --keep-thresholds: keep the previous model's thresholds whatever the ceilings say (thresholds_for); tried in
# README "Measured" (38).
KEEP = False
CHAR_RANGE = (2, 5)
WORD_RANGE = (1, 2)
FOLDS = 5
SEED = 20261128  # folds and the plain-comment sample; --seed changes it (to see how much a retrain moves by chance)

# False-alarm ceilings the thresholds must respect on out-of-fold scores. The real-text ceilings
# are the targets with a margin (held-out text is harder than cross-validation); within
# them the thresholds page and escalate as many crisis texts as they can, because a missed crisis
# costs far more than a false alarm. Written "routine" texts are deliberately alarming look-alikes
# (jokes, idioms, drug talk): their pages are capped near the real-text ceiling, and their
# escalations (a same-day read, no page) more loosely, because holding them to 3% costs a tenth of
# the crisis texts (README, "Crisis triage").
CEILINGS = {
    # An escalation is a same-day read, not a page: 8.5% (was 8%) let the steady chooser keep as many
    # crises escalated as the one-split model had (README, "Measured").
    ("written", "escalated"): 0.085,
    # 4% (was 3%): the issue caps false pages on real text only; with floor.toml's model_kinds_that_page
    # the writers' look-alikes read 3.66% out of fold at the shipped thresholds (README, "Measured" (23)).
    ("written", "paged"): 0.04,
    # Held-out forum target: <= 8%. 7.5% (was 7%): the held-out fold read 6.8% where out-of-fold read 7.1%.
    ("forum", "escalated"): 0.075,
    ("forum", "paged"): 0.018,  # <= 2%
    ("sms", "escalated"): 0.025,  # <= 3%
    ("sms", "paged"): 0.0015,  # <= 0.2%
}
GRID = {
    "escalate": [round(x, 3) for x in np.arange(0.20, 0.96, 0.025)],
    "page": [round(x, 3) for x in np.arange(0.20, 0.98, 0.02)],
    # How unsure the model must be to drop a weak rule hit (a typo, an idiom, a long text's sentence).
    # Capped at 0.6: above it the model dropped typo-spelled crises ("i wanna diee") that the rules
    # read right, for a few false alarms on written look-alikes (2026-11-28).
    "overrule": [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    # One word is too little for the model to overrule or lower a rule ("SUICDIE" must page) or to
    # escalate on its own; cross-validated, judging one-word texts too changed 1 crisis in 5,000.
    "min_words": [2],
    # How sure the escalate head must be to page on its own (choose_sure).
    "sure": [round(x, 3) for x in np.arange(0.90, 0.995, 0.01)],
}
# (C, class_weight, char max_features, word max_features, weight of real texts). C=2 and real-text
# weight 6 lost to C=4, weight 3 in every cross-validation (2026-11-28); fitted to the optimum, C=8 beat
# 2 and 4, and C=16 lost to it on the same folds (README).
HYPER = [(8.0, None, 30_000, 20_000, 3.0)]
# How close to its optimum each head is fitted (--tol). L2-regularised logistic regression has one
# optimum, but lbfgs at scikit-learn's default tol, 1e-4 (the models shipped until 2026-11-29), stops
# after about 40 iterations with logits up to 1.7 (mean 0.29) away from it: the weights then depend on
# the machine's floating point, so a rerun elsewhere did not give the shipped file. At 1e-6 (about 130
# iterations) every logit is within 0.01 of the optimum. The shipped model is fitted so.
CONVERGED_TOL = 1e-6
TOL = CONVERGED_TOL
# Fold splits the thresholds are chosen on (--repeats): one split's choice moved a grid step or two
# with the split alone; six took 10 minutes with two jobs (README).
REPEATS = 6


@dataclass
class Row:
    """One training text as the trainer sees it."""

    text: str
    doc: str
    extra: str  # the rules' reading (bot.core.triage.evidence), space-separated
    tier: str
    kind: str | None
    about: str | None
    group: str  # written, corpus, rules, forum, sms

    @property
    def y(self) -> dict[str, int | None]:
        esc = self.tier != "routine"
        return {
            "escalate": int(esc),
            "page": int(self.tier in ("emergency", "urgent")),
            "emergency": int(self.tier == "emergency"),
            "other": (int(self.about == "other") if esc and self.about in ("self", "other") else None),
        }


def row_of(triager: Triager, ex: Example, group: str, kind: str | None = None, about: str | None = None) -> Row:
    """A labelled text as the trainer sees it: the model's document and the rules' reading of it."""
    tokens = triager.index.tokens(ex.text)
    return Row(ex.text, model_text(tokens), " ".join(triager.read(tokens)[1]), ex.label,
               kind if kind is not None else ex.kind, about if about is not None else ex.about, group)


def training_rows(triager: Triager, data_dir: Path) -> tuple[list[Row], dict]:
    """Every training text with its labels, and a summary of where they came from."""
    rows: list[Row] = []
    counts: dict[str, int] = {}

    def add(ex: Example, group: str, kind: str | None = None, about: str | None = None):
        rows.append(row_of(triager, ex, group, kind, about))
        counts[group] = counts.get(group, 0) + 1

    for ex in read_dir(CORPUS / "written"):
        add(ex, "written")
    for name in RETIRED if LEARN_RETIRED else ():
        for ex in read_dir(CORPUS / name):
            add(ex, "retired")
    for name in EVERYDAY if LEARN_EVERYDAY else ():
        for ex in read_dir(CORPUS / name):
            add(ex, "everyday")
    for name in ("dev", "dev2", "heldout"):
        for path in sorted((CORPUS / name).glob("*.txt")):
            for ex in read(path):
                add(ex, "corpus")
    for rule in triager.rules:
        if rule.floor:  # crisis/floor.toml: never learned from (bot/core/triage.py, evidence)
            continue
        for text in rule.examples:
            add(Example(rule.severity, text, "rules.toml", 0), "rules", kind=rule.kind)
    for idiom in triager.idioms:
        for text in idiom.examples:
            add(Example("routine", text, "idioms.toml", 0), "rules")
    real = [ex for ex in real_examples(LABELS, data_dir) if ex.fold == "train"]
    if not real:
        raise SystemExit(f"no real texts under {data_dir}: the model must learn from them (see ../shared/data)")
    for ex in real:
        add(ex, "sms" if ex.source == "sms" else "forum")
    for ex in real_examples(ROUND3, data_dir) if LEARN_ROUND3 else ():
        add(ex, "round3")
    labelled = {row["id"] for row in read_real_labels(LABELS)}
    plain = [(i, t) for i, t in sorted(real_texts(data_dir).items())
             if i.startswith("opiates-") and i not in labelled and t.strip() and not RISKY.search(t)]
    for i, text in random.Random(SEED).sample(plain, min(PLAIN_SAMPLE, len(plain))):
        add(Example("routine", text, "unlabelled", 0), "plain")
    return rows, counts


def digest(paths: list[Path]) -> str:
    """A hash of the training files' bytes (a stale model is caught by tests/test_model.py)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def training_files() -> list[Path]:
    """The repository files the model is trained from (real texts are outside, named by id in LABELS)."""
    sets = ("written", *(RETIRED if LEARN_RETIRED else ()), *(EVERYDAY if LEARN_EVERYDAY else ()))
    files = [p for name in sets for p in sorted((CORPUS / name).glob("*.jsonl"))]
    for name in ("dev", "dev2", "heldout"):
        files += sorted((CORPUS / name).glob("*.txt"))
    files += [ROOT / "replies" / "crisis" / n for n in ("rules.toml", "idioms.toml", "lexicon.toml")]
    return files + [LABELS] + ([ROUND3] if LEARN_ROUND3 else [])


# -- fitting -------------------------------------------------------------------------------------

def vectorizers(cm: int, wm: int):
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_RANGE, lowercase=False, binary=True,
                           use_idf=True, smooth_idf=True, norm="l2", min_df=2, max_features=cm, dtype=np.float64)
    word = TfidfVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=WORD_RANGE, lowercase=False,
                           binary=True, use_idf=True, smooth_idf=True, norm="l2", min_df=2, max_features=wm,
                           dtype=np.float64)
    rule = TfidfVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=(1, 1), lowercase=False, binary=True,
                           use_idf=True, smooth_idf=True, norm="l2", min_df=2, dtype=np.float64)
    return char, word, rule


def matrix(vecs, rows: list[Row], fit: bool = False):
    """The three feature blocks side by side (fit the vectorisers first when ``fit``)."""
    char, word, rule = vecs
    docs, extras = [r.doc for r in rows], [r.extra for r in rows]
    if fit:
        return hstack([char.fit_transform(docs), word.fit_transform(docs), rule.fit_transform(extras)]).tocsr()
    return hstack([char.transform(docs), word.transform(docs), rule.transform(extras)]).tocsr()


def classifier(c: float, cw, tol: float | None = None) -> LogisticRegression:
    """One head, unfitted (tolerance: TOL unless given)."""
    return LogisticRegression(C=c, class_weight=cw, max_iter=5000, solver="lbfgs", tol=TOL if tol is None else tol)


def fit(rows: list[Row], c: float, cw, cm: int, wm: int, real_weight: float = 1.0, forum_weight: float = 1.0,
        tol: float | None = None):
    """Vectorisers and heads fit on these rows.

    Real texts (forum, SMS) may weigh more than written ones: written texts are half crises and
    share a style, real ones are the everyday language the model must learn to leave alone.
    """
    vecs = vectorizers(cm, wm)
    x = matrix(vecs, rows, fit=True)
    weight = np.array([real_weight * (forum_weight if r.group == "forum" else 1.0)
                       if r.group in ("forum", "sms", "plain", "round3") else 1.0 for r in rows])
    heads = {}
    for head in BINARY_HEADS:
        idx = [i for i, r in enumerate(rows) if r.y[head] is not None]
        y = np.array([rows[i].y[head] for i in idx])
        clf = classifier(c, cw, tol)
        clf.fit(x[idx], y, sample_weight=weight[idx])
        heads[head] = clf
    idx = [i for i, r in enumerate(rows) if r.tier != "routine" and r.kind in KINDS]
    clf = classifier(c, cw, tol)
    clf.fit(x[idx], np.array([KINDS.index(rows[i].kind) for i in idx]))
    heads["kind"] = clf
    return vecs, heads


def logits(model, rows: list[Row]) -> dict[str, np.ndarray]:
    vecs, heads = model
    x = matrix(vecs, rows)
    out = {h: heads[h].decision_function(x) for h in BINARY_HEADS}
    kind = heads["kind"]
    full = np.full((len(rows), len(KINDS)), -1e9)
    full[:, kind.classes_] = kind.decision_function(x)
    out["kind"] = full
    return out


def one_fold(rows: list[Row], hyper, view: "RuleView", train, test, tol: float):
    """Fit on one fold's training rows; logits for its test rows and for their weak hits' windows."""
    model = fit([rows[i] for i in train], *hyper, tol=tol)
    got = logits(model, [rows[i] for i in test])
    held = set(test)
    mine = [j for j in np.flatnonzero(view.local) if view.row[j] in held]
    got_w = None
    if mine:
        docs = [Row("", view.docs[j], view.extras[j], "routine", None, None, "") for j in mine]
        got_w = logits(model, docs)
    return test, got, mine, got_w


def out_of_fold(rows: list[Row], hyper, view: "RuleView", seed: int | None = None,
                jobs: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Out-of-fold logits for every row, and for the local windows of weak hits in long texts.

    ``seed`` splits the folds (default SEED); ``jobs`` fits that many folds at once (same result).
    """
    from joblib import Parallel, delayed
    strata = [f"{r.group}:{r.tier}" for r in rows]
    oof = {h: np.zeros(len(rows)) for h in BINARY_HEADS}
    oof["kind"] = np.zeros((len(rows), len(KINDS)))
    oof_w = {h: np.zeros(len(view.row)) for h in BINARY_HEADS}
    splits = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED if seed is None else seed).split(rows, strata)
    for test, got, mine, got_w in Parallel(n_jobs=jobs)(
            delayed(one_fold)(rows, hyper, view, train, test, TOL) for train, test in splits):
        for h in oof:
            oof[h][test] = got[h]
        if mine:
            for h in BINARY_HEADS:
                oof_w[h][mine] = got_w[h]
    return oof, oof_w


def platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """a, c with sigmoid(a * logit + c) calibrated on out-of-fold scores."""
    clf = LogisticRegression(C=1e6, max_iter=1000)
    clf.fit(logit.reshape(-1, 1), y)
    return float(clf.coef_[0][0]), float(clf.intercept_[0])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# -- thresholds ----------------------------------------------------------------------------------

@dataclass
class RuleView:
    """The rules' hits: per text the strongest floor tier; per weak hit its text, tier and window."""

    strong: np.ndarray  # per row: rank of the strongest floor hit (0 = none)
    strong_core: np.ndarray  # per row: the same without crisis/floor.toml's rules
    row: np.ndarray  # per weak hit: its row
    rank: np.ndarray  # per weak hit: its tier's rank
    local: np.ndarray  # per weak hit: judged on its window (a long text)
    docs: list[str]  # per weak hit: the window's model text ("" when judged on the whole text)
    extras: list[str]  # per weak hit: the rules' reading of the window
    negated: np.ndarray  # per weak hit: the model may lower it to review but not drop it (kept_at_review)
    floor: np.ndarray  # per weak hit: a rule of crisis/floor.toml (which only raises: see combine())


def rule_view(triager: Triager, rows: list[Row]) -> tuple[RuleView, list]:
    hits = [triager.rule_hits(triager.index.tokens(r.text)) for r in rows]
    strong = np.array([max([rank(h.severity) for h in hs if not h.weak] or [0]) for hs in hits])
    strong_core = np.array([max([rank(h.severity) for h in hs if not h.weak and not h.floor] or [0]) for hs in hits])
    weak = [(i, h) for i, hs in enumerate(hits) for h in hs if h.weak]
    view = RuleView(strong, strong_core, np.array([i for i, _ in weak], dtype=int),
                    np.array([rank(h.severity) for _, h in weak]),
                    np.array([bool(h.window) for _, h in weak]), [" ".join(h.window) for _, h in weak],
                    [" ".join(triager.read(list(h.window))[1]) if h.window else "" for _, h in weak],
                    np.array([kept_at_review(h) for _, h in weak], dtype=bool),
                    np.array([h.floor for _, h in weak], dtype=bool))
    return view, hits


def hit_scores(view: RuleView, p: dict[str, np.ndarray], pw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per weak hit, the probabilities it is judged by: its window's in a long text, else its text's."""
    return {h: np.where(view.local, pw[h], p[h][view.row]) for h in ("escalate", "page")}


PAGING_KINDS = np.zeros(len(KINDS), dtype=bool)  # per KINDS index: in floor.toml's model_kinds_that_page


def paging_kinds(triager: Triager) -> np.ndarray:
    """Per KINDS index, whether a model escalation of that kind pages (crisis/floor.toml, combine())."""
    return np.array([k in triager.kinds_that_page for k in KINDS])


def with_kind(p: dict[str, np.ndarray], oof: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A run's probabilities with each row's kind (the index into KINDS of its kind head's highest
    logit, as the engine's Scores.kind), which tiers() reads."""
    return {**p, "kind": np.argmax(oof["kind"], axis=1)}


def tiers(view: RuleView, p: dict[str, np.ndarray], ph: dict[str, np.ndarray], words: np.ndarray,
          th: dict) -> np.ndarray:
    """combine() for every row at once (ranks 0-3); checked against combine() itself below.

    As in combine(), a floor rule only raises: each row's tier is the higher of its tier with every hit
    and its tier without crisis/floor.toml's hits."""
    judged = words >= th["min_words"]
    eff = view.rank.copy()
    ok = judged[view.row]
    drop = ok & (ph["escalate"] < th["overrule"])
    eff[drop & ~view.negated] = 0
    eff[drop & view.negated] = 1
    sure = th.get("sure", NEVER)
    eff[ok & ~drop & (eff >= 2) & (ph["page"] < th["page"]) & (ph["escalate"] < sure)] = 1
    paged = (p["page"] >= th["page"]) | (p["escalate"] >= sure)
    model = np.where(paged, np.where(p["emergency"] >= th["emergency"], 3, 2),
                     np.where(p["escalate"] >= th["escalate"], 1, 0))
    paging_kind = PAGING_KINDS[p["kind"]] if "kind" in p else np.zeros(len(words), dtype=bool)

    def final(strong: np.ndarray, counted: np.ndarray) -> np.ndarray:
        weak = np.zeros(len(words), dtype=int)
        np.maximum.at(weak, view.row[counted], eff[counted])
        rule = np.maximum(strong, weak)
        m = model.copy()
        m[(m == 1) & (rule == 0) & paging_kind] = 2  # a model escalation of a kind that pages, no rule hit kept
        m[(m >= 2) & (words < PAGE_MIN_WORDS)] = 1
        m[~judged] = 0
        return np.maximum(rule, m)

    every = final(view.strong, np.ones(len(view.row), dtype=bool))
    return np.maximum(every, final(view.strong_core, ~view.floor))


def _in_group(groups: np.ndarray, g: str) -> np.ndarray:
    """The rows a ceiling's group counts: "written" holds the project's corpora and rule examples too."""
    return np.isin(groups, ("written", "corpus", "rules")) if g == "written" else groups == g


_LABELS: list = []  # (rows, groups, tiers) of the last rows measured: the chooser measures one list ~50,000 times


def _labels(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group, and its tier as the figures count it ("" for a retired row), read once per list."""
    if not _LABELS or _LABELS[0] is not rows:
        groups = np.array([r.group for r in rows])
        _LABELS[:] = [rows, groups, np.where(np.isin(groups, ("retired", "round3")), "", np.array([r.tier for r in rows]))]
    return _LABELS[1], _LABELS[2]


def measure(final: np.ndarray, rows: list[Row]) -> dict[str, float]:
    """The figures the thresholds are chosen on. Retired blind sets and plain comments are learned
    from but not counted: the ceilings keep the population they were set on."""
    groups, tier = _labels(rows)
    crisis = np.isin(tier, ("emergency", "urgent"))
    routine = tier == "routine"
    out = {
        "crisis_escalated": float((final[crisis] >= 1).mean()),
        "crisis_paged": float((final[crisis] >= 2).mean()),
        "review_escalated": float((final[tier == "review"] >= 1).mean()),
        "review_paged": float((final[tier == "review"] >= 2).mean()),  # staff's cost, under no ceiling
    }
    for g in ("written", "forum", "sms"):
        sel = routine & _in_group(groups, g)
        out[f"{g}_routine_escalated"] = float((final[sel] >= 1).mean())
        out[f"{g}_routine_paged"] = float((final[sel] >= 2).mean())
        sel = crisis & (groups == g)
        if sel.any():
            out[f"{g}_crisis_escalated"] = float((final[sel] >= 1).mean())
            out[f"{g}_crisis_paged"] = float((final[sel] >= 2).mean())
    return out


def ceilings() -> dict[str, float]:
    """The false-alarm ceilings as the model file records them ("group:what": rate)."""
    return {f"{g}:{w}": c for (g, w), c in CEILINGS.items()}


def feasible(m: dict[str, float]) -> bool:
    return all(m[f"{g}_routine_{what}"] <= ceiling for (g, what), ceiling in CEILINGS.items())


def _routine_counts(rows: list[Row]) -> dict[str, int]:
    """How many routine texts each ceiling's group counts (as :func:`measure` groups them)."""
    groups = np.array([r.group for r in rows])
    routine = np.array([r.tier == "routine" for r in rows])
    return {g: int((routine & _in_group(groups, g)).sum()) for g in ("written", "forum", "sms")}


def within_a_text(m: dict[str, float], rows: list[Row]) -> bool:
    """Every ceiling met, or missed by less than one text of its group (averaged over the splits)."""
    n = _routine_counts(rows)
    return all(m[f"{g}_routine_{what}"] <= ceiling + 1 / max(n[g], 1) for (g, what), ceiling in CEILINGS.items())


def previous_thresholds(path: Path) -> dict | None:
    """The thresholds of the model file a training replaces (None if there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {**{k: float(v) for k, v in data["thresholds"].items()}, "min_words": int(data["min_words"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def thresholds_for(view: RuleView, runs: list[tuple[dict, dict]], words, rows,
                   previous: dict | None) -> tuple[dict, dict, str]:
    """The thresholds a training keeps: the previous model's while they hold the ceilings to within one
    text (sticky), else the best feasible ones (:func:`choose_thresholds`); and which it was.

    Each ceiling is a hard line over a few texts near it, so a retraining that adds six rows (a content
    fix) could move the escalate threshold a whole step and take held-out crises near it along, for a
    fraction of one text over a ceiling (README, "Measured", 2026-11-29 (10)). Kept thresholds change
    only what the new rules and weights change.
    """
    if previous is not None:
        m = pooled(view, runs, words, rows, previous)
        if KEEP:
            return previous, m, "kept (--keep-thresholds)"
        if within_a_text(m, rows):
            if not SURE or "sure" in previous:
                return previous, m, "kept"
            th, m = choose_sure(view, runs, words, rows, previous, m)
            return th, m, "kept, sure chosen" if "sure" in th else "kept"
    th, m = choose_thresholds(view, runs, words, rows)
    if SURE:
        th, m = choose_sure(view, runs, words, rows, th, m)
    return th, m, "chosen"


def choose_sure(view: RuleView, runs: list[tuple[dict, dict]], words, rows, th: dict, m: dict) -> tuple[dict, dict]:
    """Add the ``sure`` threshold (page when the escalate head is all but certain a human is needed),
    choosing it with the page threshold again, the escalate and overrule thresholds as they are.

    Only with ``--sure``. On out-of-fold scores (2026-11-29, README "Measured" (15)) paging at
    escalate >= 0.95 paged about as many more crises as lowering the page threshold from 0.77 to 0.70,
    at half the false pages and none among the everyday SMS: texts that sure of needing a human are
    rarely routine. A point is feasible when every ceiling holds, or stays no worse than ``th``'s where
    ``th`` (kept within a text) already exceeds it. Without a better point, ``th`` is returned
    unchanged (no ``sure``).
    """
    allowed = {key: max(ceiling, m[f"{key[0]}_routine_{key[1]}"]) for key, ceiling in CEILINGS.items()}

    def fits(mm: dict) -> bool:
        return all(mm[f"{g}_routine_{what}"] <= limit + 1e-12 for (g, what), limit in allowed.items())

    best, best_m, best_key = th, m, _gain(m)

    def consider(cand: dict) -> None:
        nonlocal best, best_m, best_key
        mm = pooled(view, runs, words, rows, cand)
        key = _gain(mm)
        if fits(mm) and key > best_key:
            best, best_m, best_key = cand, mm, key

    pages = [x for x in GRID["page"] if x >= th["page"] - 0.1]
    for sure in GRID["sure"]:
        for page in pages:
            consider({**th, "page": page, "sure": sure})
    if "sure" in best:
        coarse = best
        for sure in _around(coarse["sure"], GRID["sure"]):
            for page in _around(coarse["page"], GRID["page"]):
                if sure < 1.0:
                    consider({**coarse, "page": page, "sure": sure})
    return best, best_m


def _gain(m: dict[str, float]) -> tuple[float, float]:
    """What a threshold choice maximises: crises paged plus escalated, then escalated."""
    return round(m["crisis_paged"] + m["crisis_escalated"], 4), m["crisis_escalated"]


def pooled(view: RuleView, runs: list[tuple[dict, dict]], words, rows, th: dict) -> dict[str, float]:
    """The figures at these thresholds, averaged over the fold splits' out-of-fold scores."""
    each = [measure(tiers(view, p, ph, words, th), rows) for p, ph in runs]
    return {k: float(np.mean([m[k] for m in each])) for k in each[0]}


FINE = 0.005


def _around(value: float, grid: list[float]) -> list[float]:
    """FINE steps from one grid step below ``value`` to one above."""
    n = round((grid[1] - grid[0]) / FINE)
    return [round(value + k * FINE, 3) for k in range(-n, n + 1)]


def choose_thresholds(view: RuleView, runs: list[tuple[dict, dict]], words, rows) -> tuple[dict, dict]:
    """The grid point with the most crisis texts paged (then escalated) among the feasible ones,
    then refined in FINE steps around it.

    ``runs`` holds one (probabilities, hit probabilities) pair per fold split (``--repeats``), and a
    point is judged by its figures averaged over them. On one split, a hard ceiling is decided by the
    one to three texts nearest it, so the choice moved a grid step or two with the fold seed alone;
    averaged over N splits, each text near the ceiling counts 1/N.
    """
    tier = np.array([r.tier for r in rows])
    best, best_key = None, None

    def consider(th: dict) -> None:
        """Keep ``th`` if it is feasible and pages (then escalates) more crises than the best so far."""
        nonlocal best, best_key
        m = pooled(view, runs, words, rows, th)
        if not feasible(m):
            return
        key = (*_gain(m), -th["min_words"])
        if best_key is None or key > best_key:
            best, best_key = th, key

    for mw in GRID["min_words"]:
        for over in GRID["overrule"]:
            for page in GRID["page"]:
                for esc in GRID["escalate"]:
                    consider({"escalate": esc, "page": page, "emergency": 0.5, "overrule": over, "min_words": mw})
    if best is not None:
        # Then in FINE steps within one grid step either side: on the grid alone, a change of a few
        # training rows moved the page threshold a whole step (0.02: 7 held-out crises paged) when a
        # ceiling fell between two grid points (README, "Measured").
        coarse = best
        for page in _around(coarse["page"], GRID["page"]):
            for esc in _around(coarse["escalate"], GRID["escalate"]):
                consider({**coarse, "escalate": esc, "page": page})
    if best is None:
        # Say how close it came: the grid point with the smallest worst overshoot of a ceiling.
        closest = None
        for mw in GRID["min_words"]:
            for over in GRID["overrule"]:
                for page in GRID["page"][::2]:
                    for esc in GRID["escalate"][::2]:
                        th = {"escalate": esc, "page": page, "emergency": 0.5, "overrule": over, "min_words": mw}
                        m = pooled(view, runs, words, rows, th)
                        worst = max(m[f"{g}_routine_{w}"] / c for (g, w), c in CEILINGS.items())
                        if closest is None or worst < closest[0]:
                            closest = (worst, th, m)
        raise SystemExit("no thresholds meet the false-alarm ceilings; closest: "
                         + json.dumps({"thresholds": closest[1], **{k: round(v, 4) for k, v in closest[2].items()}}))
    # Emergency vs urgent among paged crisis texts: the threshold that gets the most of them right.
    crisis = np.isin(tier, ("emergency", "urgent"))
    top = None
    for em in [round(x, 3) for x in np.arange(0.2, 0.91, 0.025)]:
        th = {**best, "emergency": em}
        right = np.mean([((tiers(view, p, ph, words, th)[crisis] == 3) == (tier[crisis] == "emergency")).mean()
                         for p, ph in runs])
        if top is None or right > top[0]:
            top = (right, em)
    best["emergency"] = top[1]
    return best, pooled(view, runs, words, rows, best)


# -- export --------------------------------------------------------------------------------------

def export(model, calibration, thresholds, meta) -> dict:
    (char, word, rule), heads = model
    kind = heads["kind"]
    names = [*BINARY_HEADS, *(f"kind:{k}" for k in KINDS)]
    kind_coef = np.zeros((len(KINDS), kind.coef_.shape[1]))
    kind_icpt = np.full(len(KINDS), -30.0)  # a kind never seen in training is never chosen
    kind_coef[kind.classes_] = kind.coef_
    kind_icpt[kind.classes_] = kind.intercept_
    coef = np.vstack([*(heads[h].coef_[0] for h in BINARY_HEADS), kind_coef])
    icpt = [*(float(heads[h].intercept_[0]) for h in BINARY_HEADS), *map(float, kind_icpt)]
    n_char = len(char.vocabulary_)
    n_word = len(word.vocabulary_)

    return {
        "format": FORMAT,
        **meta,
        "char_ngrams": list(CHAR_RANGE),
        "word_ngrams": list(WORD_RANGE),
        "kinds": list(KINDS),
        "min_words": int(thresholds["min_words"]),
        "thresholds": {k: float(v) for k, v in thresholds.items() if k != "min_words"},
        "intercepts": {n: float(f"{v:.8g}") for n, v in zip(names, icpt)},
        "calibration": {h: [float(f"{a:.6g}"), float(f"{c:.6g}")] for h, (a, c) in calibration.items()},
        "char": ngram_block(char, coef, 0),
        "word": ngram_block(word, coef, n_char),
        "rule": ngram_block(rule, coef, n_char + n_word),
    }


def check_against_engine(view, hits, p, pw, words, th, final, sample: int = 3000) -> None:
    """The vectorised tiers() must agree with the engine's own combine() (a guard on this script)."""
    windows = {(int(r), d): j for j, (r, d) in enumerate(zip(view.row, view.docs)) if view.local[j]}
    kinds_that_page = frozenset(k for k, on in zip(KINDS, PAGING_KINDS) if on)
    for i in range(0, len(words), max(1, len(words) // sample)):
        kind = KINDS[p["kind"][i]] if "kind" in p else None
        scores = Scores(p["escalate"][i], p["page"][i], p["emergency"][i], p["other"][i], kind, 0.0, int(words[i]))

        def local(window, i=i):
            j = windows[(i, " ".join(window))]
            return Scores(pw["escalate"][j], pw["page"][j], pw["emergency"][j], pw["other"][j], None, 0.0, len(window))
        got = combine(list(hits[i]), scores, th, th["min_words"], local, kinds_that_page=kinds_that_page)
        if rank(got.severity) != final[i]:
            raise AssertionError(f"tiers() and combine() disagree on row {i}: {rank(got.severity)} vs {final[i]}")


def rethreshold(dump: str, out: Path) -> int:
    """Choose the thresholds again from a run's out-of-fold scores and write them into its model."""
    import pickle
    import __main__
    __main__.Row, __main__.RuleView = Row, RuleView  # the dump was pickled from this module as __main__
    with open(dump, "rb") as fh:
        d = pickle.load(fh)
    global PAGING_KINDS
    PAGING_KINDS = paging_kinds(Triager(load(ROOT / "replies")))
    runs = [(with_kind(r["p"], r["oof"]), r["ph"]) for r in d["runs"]]
    th, m, how = thresholds_for(d["view"], runs, d["words"], d["rows"], None if RECHOOSE else previous_thresholds(out))
    print(f"thresholds ({how})={th}\nout-of-fold: {json.dumps({k: round(v, 4) for k, v in m.items()})}")
    data = json.loads(out.read_text(encoding="utf-8"))
    data["min_words"] = int(th["min_words"])
    data["thresholds"] = {k: float(v) for k, v in th.items() if k != "min_words"}
    data["trained_on"]["out_of_fold"] = {k: round(v, 4) for k, v in m.items()}
    data["trained_on"]["ceilings"] = ceilings()
    data["trained_on"]["fold_splits"] = len(runs)
    data["trained_on"]["files_sha256"] = digest(training_files())
    write(out, data)
    return 0


def main(argv: list[str] | None = None) -> int:
    global SEED, TOL, LEARN_RETIRED, LEARN_EVERYDAY, PLAIN_SAMPLE, RECHOOSE, SURE, PAGING_KINDS, KEEP, LEARN_ROUND3
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--data", default=str(DATA_DIR), help="folder with the real texts (../shared/data)")
    ap.add_argument("--dry-run", action="store_true", help="cross-validate and report; write nothing")
    ap.add_argument("--ceiling", action="append", default=[], metavar="GROUP:WHAT=RATE",
                    help="override a false-alarm ceiling, e.g. written:escalated=0.05 (see CEILINGS)")
    ap.add_argument("--dump", help="write the out-of-fold scores to this pickle (for studying the trade-offs)")
    ap.add_argument("--thresholds-from", metavar="DUMP",
                    help="only choose the thresholds again, from a --dump of the run that wrote --out (when "
                         "only the way scores combine changed), and update them in --out")
    ap.add_argument("--tol", type=float, default=TOL,
                    help=f"the solver's tolerance (see TOL; {CONVERGED_TOL:g} fits each head to its optimum)")
    ap.add_argument("--c", type=float, action="append", metavar="C",
                    help="only this regularisation setting (repeatable) instead of the grid's")
    ap.add_argument("--real-weight", type=float, metavar="W",
                    help="weight of each real text (forum, SMS, plain comments) in the fit, instead of HYPER's")
    ap.add_argument("--repeats", type=int, default=REPEATS, metavar="N",
                    help="cross-validate on N fold splits (seeds SEED, SEED+1, ...) and choose the thresholds on "
                         "their figures averaged (see choose_thresholds)")
    ap.add_argument("--retired", action="store_true",
                    help="learn from the spent blind sets too (RETIRED), without counting them in the figures")
    ap.add_argument("--everyday", action="store_true",
                    help="learn from the everyday personal texts written blind (EVERYDAY), uncounted in the figures")
    ap.add_argument("--plain", type=int, default=None, metavar="N",
                    help="learn from N plain forum comments instead of PLAIN_SAMPLE (more than exist: all of them)")
    ap.add_argument("--rechoose", action="store_true",
                    help="choose the thresholds anew even where the previous model's still hold (see thresholds_for)")
    ap.add_argument("--keep-thresholds", action="store_true",
                    help="keep the previous model's thresholds even where they break a ceiling (see thresholds_for)")
    ap.add_argument("--round3", action="store_true",
                    help="learn from the third forum round too (ROUND3), without counting it in the figures")
    ap.add_argument("--forum-weight", type=float, metavar="F",
                    help="each labelled forum comment weighs F times the real-text weight (HYPER's sixth field, "
                         "1 when absent; tried in README \"Measured\" (42))")
    ap.add_argument("--sure", action="store_true",
                    help="also choose a threshold at which the escalate head alone pages (see choose_sure)")
    ap.add_argument("--jobs", type=int, default=2, help="fit this many folds at once (the result is the same)")
    ap.add_argument("--seed", type=int, default=20261128,
                    help="another split into folds and plain sample: the shipped model uses the default; a "
                         "different seed shows how far a retrain moves the figures by chance")
    args = ap.parse_args(argv)
    SEED, TOL, LEARN_RETIRED, RECHOOSE, SURE = args.seed, args.tol, args.retired, args.rechoose, args.sure
    LEARN_EVERYDAY, KEEP, LEARN_ROUND3 = args.everyday, args.keep_thresholds, args.round3
    if args.plain is not None:
        PLAIN_SAMPLE = args.plain
    previous = None if RECHOOSE else previous_thresholds(Path(args.out))  # read before it is overwritten
    started = time.time()
    for spec in args.ceiling:
        key, rate = spec.split("=")
        group, what = key.split(":")
        CEILINGS[(group, what)] = float(rate)
    hypers = [(c, *HYPER[0][1:]) for c in args.c] if args.c else HYPER  # the grid differs only in C
    if args.real_weight is not None:
        hypers = [(*h[:4], args.real_weight, *h[5:]) for h in hypers]
    if args.forum_weight is not None:
        hypers = [(*h[:5], args.forum_weight) for h in hypers]
    if args.thresholds_from:
        return rethreshold(args.thresholds_from, Path(args.out))
    content = load(ROOT / "replies")
    triager = Triager(content)
    triager.model = None
    PAGING_KINDS = paging_kinds(triager)
    rows, counts = training_rows(triager, Path(args.data))
    print(f"training texts: {len(rows)} {counts}", flush=True)
    view, hits = rule_view(triager, rows)
    words = np.array([len(r.doc.split()) for r in rows])
    ys = {h: np.array([r.y[h] if r.y[h] is not None else -1 for r in rows]) for h in BINARY_HEADS}

    best = None
    for hyper in hypers:
        folds = [out_of_fold(rows, hyper, view, SEED + r, args.jobs) for r in range(args.repeats)]
        # One calibration for all splits (the final model has one): Platt on their pooled scores.
        cal = {h: platt(np.concatenate([oof[h][ys[h] >= 0] for oof, _ in folds]),
                        np.tile(ys[h][ys[h] >= 0], len(folds))) for h in BINARY_HEADS}
        runs = []
        for oof, oof_w in folds:
            p = with_kind({h: sigmoid(cal[h][0] * oof[h] + cal[h][1]) for h in BINARY_HEADS}, oof)
            pw = {h: sigmoid(cal[h][0] * oof_w[h] + cal[h][1]) for h in BINARY_HEADS}
            runs.append({"p": p, "pw": pw, "ph": hit_scores(view, p, pw), "oof": oof})
        try:
            th, m, how = thresholds_for(view, [(r["p"], r["ph"]) for r in runs], words, rows, previous)
        except SystemExit as exc:
            print(f"  C={hyper[0]} real_weight={hyper[4]}: {exc}", flush=True)
            continue
        score = m["crisis_paged"] + m["crisis_escalated"]
        print(f"  C={hyper[0]} real_weight={hyper[4]}: {json.dumps({k: round(v, 4) for k, v in m.items()})}", flush=True)
        if best is None or score > best[0]:
            best = (score, hyper, cal, th, m, runs, how)
    if best is None:
        raise SystemExit("no configuration met the false-alarm ceilings")
    _, hyper, cal, th, m, runs, how = best
    p, pw, ph, oof = (runs[0][k] for k in ("p", "pw", "ph", "oof"))
    if args.dump:
        import pickle
        with open(args.dump, "wb") as fh:
            pickle.dump({"rows": rows, "view": view, "words": words, "th": th, "runs": runs}, fh)
    final = tiers(view, p, ph, words, th)
    check_against_engine(view, hits, p, pw, words, th, final)
    kind_rows = [i for i, r in enumerate(rows) if r.tier != "routine" and r.kind in KINDS]
    kind_acc = float(np.mean([KINDS[int(np.argmax(oof["kind"][i]))] == rows[i].kind for i in kind_rows]))
    print(f"chosen: C={hyper[0]} real_weight={hyper[4]} thresholds ({how})={th}")
    print(f"out-of-fold: {json.dumps({k: round(v, 4) for k, v in m.items()})}, kind accuracy {kind_acc:.3f}")
    if args.dry_run:
        return 0
    model = fit(rows, *hyper)
    meta = {
        "version": time.strftime("%Y-%m-%d"),
        "trained_on": {"texts": len(rows), "by_source": counts, "files_sha256": digest(training_files()), "tol": TOL,
                       "ceilings": ceilings(), "fold_splits": args.repeats,
                       "hyper": {"C": hyper[0], "char_max": hyper[2], "word_max": hyper[3], "real_weight": hyper[4],
                                 **({"forum_weight": hyper[5]} if len(hyper) > 5 else {})},
                       "out_of_fold": {k: round(v, 4) for k, v in m.items()}, "kind_accuracy": round(kind_acc, 4)},
    }
    data = export(model, cal, th, meta)
    write(args.out, data)
    print(f"wrote {args.out} ({len(data['char']['grams']) + len(data['word']['grams'])} features) in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
