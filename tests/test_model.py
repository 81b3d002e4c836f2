"""The learned crisis model: exact features, fresh training, and how it combines with the rules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bot.config import DEFAULT_REPLIES_DIR
from bot.core.model import CharGrams, TriageModel, model_text, pack_block, unpack_block, word_grams
from bot.core.states import CrisisKind, Tier
from bot.core.triage import Hit, combine

REPO = Path(__file__).resolve().parents[1]
MODEL = DEFAULT_REPLIES_DIR / "crisis" / "model.json"
TH = {"escalate": 0.5, "page": 0.7, "emergency": 0.6, "overrule": 0.2}


def scores(escalate=0.0, page=0.0, emergency=0.0, other=0.0, kind=None, words=5):
    from bot.core.model import Scores
    return Scores(escalate, page, emergency, other, kind, 1.0, words)


def hit(rule="r.x", tier=Tier.EMERGENCY, kind=CrisisKind.OVERDOSE, weak=False, lowered_by=None, order=0):
    return Hit(rule, tier, tier, 0, 1, lowered_by, False, order, kind, weak)


# --- combining rules and model (pure function, table-driven) ------------------------------------------

def test_a_floor_rule_stands_whatever_the_model_says():
    v = combine([hit()], scores(escalate=0.0), TH, 1)
    assert v.severity == Tier.EMERGENCY and v.rule == "r.x" and not v.overruled


def test_the_model_drops_a_weak_hit_only_when_confident_it_is_routine():
    assert combine([hit(weak=True)], scores(escalate=0.1), TH, 1).severity is None
    assert combine([hit(weak=True)], scores(escalate=0.1), TH, 1).overruled[0].rule == "r.x"
    # Not confident: the weak hit loses its page but a human still reads it.
    assert combine([hit(weak=True)], scores(escalate=0.3, page=0.1), TH, 1).severity == Tier.REVIEW
    # The model supports a page: the weak hit keeps its tier.
    assert combine([hit(weak=True)], scores(escalate=0.9, page=0.9), TH, 1).severity == Tier.EMERGENCY


def test_a_negated_weak_hit_is_never_dropped_below_review():
    v = combine([hit(weak=True, tier=Tier.REVIEW, lowered_by="negation")], scores(escalate=0.0), TH, 1)
    assert v.severity == Tier.REVIEW


def test_the_model_raises_a_text_the_rules_missed_with_its_kind():
    v = combine([], scores(escalate=0.9, page=0.8, emergency=0.1, kind="suicide"), TH, 1)
    assert (v.severity, v.kind, v.rule) == (Tier.URGENT, "suicide", "model.triage")
    v = combine([], scores(escalate=0.9, page=0.8, emergency=0.7, kind="medical"), TH, 1)
    assert v.severity == Tier.EMERGENCY
    assert combine([], scores(escalate=0.6, page=0.1), TH, 1).severity == Tier.REVIEW


def test_a_model_escalation_of_a_kind_that_pages_pages():
    """crisis/floor.toml's ``model_kinds_that_page``: the model alone at review, its kind one of them, pages
    (urgent); not another kind, not where a rule hit is kept (a denial stays review), not one or two words."""
    kinds = frozenset({"violence", "medical"})
    review = scores(escalate=0.6, page=0.1, emergency=0.9, kind="violence")
    assert combine([], review, TH, 1).severity == Tier.REVIEW
    v = combine([], review, TH, 1, kinds_that_page=kinds)
    assert (v.severity, v.kind, v.rule) == (Tier.URGENT, "violence", "model.kind")
    assert combine([], scores(escalate=0.6, page=0.1, kind="suicide"), TH, 1, kinds_that_page=kinds).severity == Tier.REVIEW
    assert combine([], scores(escalate=0.4, kind="violence"), TH, 1, kinds_that_page=kinds).severity is None
    denial = hit(tier=Tier.REVIEW, kind=CrisisKind.VIOLENCE, lowered_by="negation")
    assert combine([denial], review, TH, 1, kinds_that_page=kinds).severity == Tier.REVIEW
    assert combine([], scores(escalate=0.6, page=0.1, kind="medical", words=2), TH, 1,
                   kinds_that_page=kinds).severity == Tier.REVIEW
    # Scores without a kind (the engine's cheap pass): the full scores are asked for, once.
    asked = []
    lazy = scores(escalate=0.6, page=0.1)
    v = combine([], lazy, TH, 1, detail=lambda: asked.append(1) or review, kinds_that_page=kinds)
    assert v.severity == Tier.URGENT and asked == [1]


def test_a_floor_rules_weak_hit_never_keeps_a_kind_that_pages_from_paging():
    """A floor rule only raises. A weak hit (a typo-corrected match) the model lowers to review is a kept rule hit,
    which keeps a model escalation of a kind that pages at review; from a floor rule it must not (blind R lost a
    page so before README "Measured" (26) shipped), from any other rule it still does."""
    from dataclasses import replace
    kinds = frozenset({"self_harm"})
    review = scores(escalate=0.65, page=0.1, kind="self_harm")
    weak = hit("f.x", Tier.URGENT, CrisisKind.SELF_HARM, weak=True)
    assert combine([weak], review, TH, 1, kinds_that_page=kinds).severity == Tier.REVIEW
    v = combine([replace(weak, floor=True)], review, TH, 1, kinds_that_page=kinds)
    assert (v.severity, v.rule) == (Tier.URGENT, "model.kind")
    # A floor hit that raises keeps its own verdict.
    v = combine([replace(hit("f.y", Tier.EMERGENCY, CrisisKind.OVERDOSE), floor=True)], review, TH, 1, kinds_that_page=kinds)
    assert (v.severity, v.rule) == (Tier.EMERGENCY, "f.y")


def test_a_model_all_but_sure_a_human_is_needed_pages_even_when_its_page_head_is_unsure():
    """``sure``: the escalate head at or above it pages (urgent, or emergency by the emergency head) and
    keeps a weak rule hit's page; without ``sure`` in the thresholds (older model files) it never does."""
    sure = {**TH, "sure": 0.95}
    unsure_page = scores(escalate=0.97, page=0.3, emergency=0.1, kind="suicide")
    assert combine([], unsure_page, TH, 1).severity == Tier.REVIEW
    assert combine([], unsure_page, sure, 1).severity == Tier.URGENT
    assert combine([], scores(escalate=0.97, page=0.3, emergency=0.7), sure, 1).severity == Tier.EMERGENCY
    assert combine([], scores(escalate=0.94, page=0.3), sure, 1).severity == Tier.REVIEW
    assert combine([hit(weak=True)], scores(escalate=0.97, page=0.3), TH, 1).severity == Tier.REVIEW
    assert combine([hit(weak=True)], scores(escalate=0.97, page=0.3), sure, 1).severity == Tier.EMERGENCY
    # The page's minimum length holds for it as for the page head.
    from bot.core.triage import PAGE_MIN_WORDS
    short = scores(escalate=0.99, page=0.3, words=PAGE_MIN_WORDS - 1)
    assert combine([], short, sure, 1).severity == Tier.REVIEW


def test_the_model_never_judges_a_text_shorter_than_its_minimum():
    assert combine([], scores(escalate=0.99, page=0.99, words=1), TH, 2).severity is None
    assert combine([hit(weak=True)], scores(escalate=0.0, words=1), TH, 2).severity == Tier.EMERGENCY


def test_the_most_severe_tier_wins_and_on_a_tie_the_most_immediate_kind():
    hits = [hit("s.a", Tier.URGENT, CrisisKind.SUICIDE, order=0), hit("o.b", Tier.EMERGENCY, CrisisKind.OVERDOSE, order=5)]
    assert combine(hits, None, {}, 0).kind == "overdose"
    tie = [hit("s.a", Tier.URGENT, CrisisKind.SUICIDE, order=0), hit("m.b", Tier.URGENT, CrisisKind.MEDICAL, order=9)]
    assert combine(tie, None, {}, 0).kind == "medical"


# --- the shipped model -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> TriageModel:
    loaded = TriageModel.load(MODEL)
    assert loaded is not None, "replies/crisis/model.json is missing: run make model"
    return loaded


def test_a_text_no_rule_fires_on_gets_the_verdict_of_its_full_scores(bot):
    """triage_tokens() skips the full scores of a text no rule fires on when neither head that can raise
    it alone (escalate, page: Scores.tier, the trainer's tiers()) reaches its threshold; the shortcut
    must never change a verdict. Over the written held-out text, each such text gets combine()'s tier
    from its full scores; among them are texts whose page head pages while their escalate head stays
    under its threshold (the shortcut once asked the escalate head alone and left them routine)."""
    from bot.core.corpus import read_dir
    from bot.core.triage import MARKS
    triager = bot.triager
    model, th = triager.model, triager.model.thresholds
    checked = page_alone = 0
    for name in ("written-heldout", "written-heldout-3"):
        for ex in read_dir(REPO / "tests" / "corpus" / name):
            tokens = triager.index.tokens(ex.text)
            hits, extra = triager.read(tokens)
            words = [t for t in tokens if t not in MARKS]
            if hits or len(words) < model.min_words:
                continue
            full = model.scores(words, extra)
            want = combine([], full, th, model.min_words, kinds_that_page=triager.kinds_that_page)
            assert triager.triage_tokens(tokens).severity == want.severity, ex.text
            checked += 1
            page_alone += full.escalate < th["escalate"] and full.page >= th["page"] and want.pages
    assert checked > 1000 and page_alone >= 3, (checked, page_alone)
    v = triager.triage("gonna do it now. bye")  # written-heldout: escalate 0.46, page 0.70
    assert v.pages and v.rule == "model.triage" and v.kind == "suicide"


def test_a_model_file_is_parsed_once_per_content_and_again_when_it_changes(model, tmp_path):
    from bot.core.topics import TopicModel
    copy = tmp_path / "model.json"
    copy.write_bytes(MODEL.read_bytes())
    assert TriageModel.load(copy) is model  # same bytes elsewhere: the built model is shared
    data = json.loads(MODEL.read_text(encoding="utf-8"))
    data["thresholds"]["page"] = 0.123
    copy.write_text(json.dumps(data), encoding="utf-8")
    changed = TriageModel.load(copy)
    assert changed is not model and changed.thresholds["page"] == 0.123
    assert TriageModel.load(tmp_path / "absent.json") is None
    # The same bytes read as another kind of model are that kind's own (here: malformed for it).
    with pytest.raises(ValueError):
        TopicModel.load(copy)


def test_a_feature_block_packs_and_unpacks_exactly():
    rows = {"ab": [1.5, -0.25, 3e-05], " a": [2.0, 0.1, -7.0], "zz z": [0.3, 0.0, 1e300]}
    grams, values, width = unpack_block(json.loads(json.dumps(pack_block(rows))))
    assert grams == sorted(rows) and width == 3
    assert {g: list(values[i * 3:(i + 1) * 3]) for i, g in enumerate(grams)} == rows
    with pytest.raises(ValueError):
        pack_block({"a": [1.0, 2.0], "b": [1.0]})
    broken = pack_block(rows)
    broken["grams"] = broken["grams"][:2]
    with pytest.raises(ValueError):
        unpack_block(broken)


def test_the_model_predicts_every_kind_and_has_every_threshold(model):
    assert set(model.kinds) == {k.value for k in CrisisKind}
    assert {"escalate", "page", "emergency", "overrule"} <= set(model.thresholds)
    assert 0 < model.thresholds["escalate"] < 1 and 0 < model.thresholds["page"] < 1


def test_the_model_was_trained_on_the_files_in_this_repository(model):
    """Change a corpus, a label or the lexicon without retraining (make model), and this fails."""
    sys.path.insert(0, str(REPO / "tools"))
    pytest.importorskip("sklearn")
    import train_triage
    assert model.trained_on["files_sha256"] == train_triage.digest(train_triage.training_files())


def test_training_at_the_converged_tolerance_fits_each_head_to_its_optimum():
    """``train_triage.py --tol 1e-6`` lands within 0.02 of the optimum on every text (a much tighter fit).

    At scikit-learn's default tolerance (the shipped model's) the solver stops with logits up to 1.7
    away from it, so a retraining's model depends on the machine, not only on the files.
    """
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(REPO / "tools"))
    import train_triage
    from bot.core.content import load
    from bot.core.corpus import read_dir
    from bot.core.triage import Triager

    triager = Triager(load(DEFAULT_REPLIES_DIR))
    triager.model = None
    rows = [train_triage.row_of(triager, ex, "written") for ex in read_dir(train_triage.CORPUS / "written")[:3000]]
    x = train_triage.matrix(train_triage.vectorizers(30_000, 20_000), rows, fit=True)
    y = np.array([r.y["escalate"] for r in rows])
    converged = train_triage.classifier(8.0, None, tol=train_triage.CONVERGED_TOL).fit(x, y)
    tight = train_triage.classifier(8.0, None, tol=1e-10).fit(x, y)
    assert converged.n_iter_[0] < converged.max_iter
    assert np.abs(converged.decision_function(x) - tight.decision_function(x)).max() < 0.02


def test_pure_python_features_and_scores_match_scikit_learn(model):
    """Rebuild the vectorisers from the shipped vocabulary and idf and compare every head's logit."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    from bot.core.engine import get_bot
    data = json.loads(MODEL.read_text(encoding="utf-8"))
    triager = get_bot(str(DEFAULT_REPLIES_DIR)).triager
    for block in ("char", "word", "rule"):  # each block as {n-gram: [idf, weight per head...]}
        grams, values, width = unpack_block(data[block])
        data[block] = {g: list(values[i * width:(i + 1) * width]) for i, g in enumerate(grams)}

    def vectorizer(block, **kw):
        vocab = {g: i for i, g in enumerate(sorted(data[block]))}
        vec = TfidfVectorizer(vocabulary=vocab, binary=True, lowercase=False, use_idf=True, norm="l2", **kw)
        vec.fit(["x"])  # sets up the analyzer; idf comes from the model
        vec.idf_ = np.array([data[block][g][0] for g in sorted(data[block])])
        return vec

    char = vectorizer("char", analyzer="char_wb", ngram_range=tuple(data["char_ngrams"]))
    word = vectorizer("word", analyzer="word", token_pattern=r"\S+", ngram_range=tuple(data["word_ngrams"]))
    rule = vectorizer("rule", analyzer="word", token_pattern=r"\S+", ngram_range=(1, 1))
    weights = np.array([[*row[1:]] for block in ("char", "word", "rule") for _, row in sorted(data[block].items())])
    heads = model.heads
    texts = ["i took 30 of my valium and a bottle of wine", "what are your hours", "me quiero morir ya",
             "kms lol this exam", "my brother isnt breathing!!", "😭😭 cant do this", "x", ""]
    for text in texts:
        tokens = triager.index.tokens(text)
        extra = triager.read(tokens)[1]
        doc = model_text(tokens)
        x = hstack([char.transform([doc]), word.transform([doc]), rule.transform([" ".join(extra)])]).toarray()[0]
        want = x @ weights + np.array([data["intercepts"][h] for h in heads])
        got = model._logits(doc.split(), extra, len(heads))
        assert np.allclose(got, want, atol=1e-6), text


def test_char_and_word_ngrams_follow_scikit_learn_conventions():
    chars = [" a", "ab", "b ", " ab", "ab ", " ab "]
    index = {g: i for i, g in enumerate([*chars, "abc", " ab c"])}
    assert CharGrams(index, (2, 5)).of_word("ab") == frozenset(range(len(chars)))
    words = {g: i for i, g in enumerate(["a", "b", "c", "a b", "b c", "a c", "a b c"])}
    assert word_grams(words, ["a", "b", "c"], (1, 2)) == {0, 1, 2, 3, 4}


def test_explain_names_the_words_that_pushed_toward_a_crisis(bot):
    out = bot.explain("i want to die tonight")
    assert out["model"] is not None and 0 <= out["model"]["escalate"] <= 1
    words = [w for w, _ in out["model"]["for"]]
    assert words and all(isinstance(v, float) for _, v in out["model"]["for"])
    assert any(w in ("die", "want", "tonight", "c:DIE") or w.startswith(("r:", "c:")) for w in words)
    assert {h["rule"] for h in out["rules"]}


def test_the_triage_report_compares_a_candidate_folder_with_the_shipped_one(tmp_path):  # --compare
    import shutil
    sys.path.insert(0, str(REPO / "tools"))
    import triage_report
    from bot.core.corpus import Example
    rules_only = tmp_path / "replies"
    shutil.copytree(DEFAULT_REPLIES_DIR, rules_only)
    (rules_only / "crisis" / "model.json").unlink()  # the rules alone: no rule reads this goodbye
    text = "said goodbye to my dog today, he's going to the neighbors"
    lines = triage_report.compare([str(DEFAULT_REPLIES_DIR), str(rules_only)],
                                  [("t", [Example("urgent", text, "t", 1, lang="en")])])
    assert lines[2] == f"| t | {DEFAULT_REPLIES_DIR} | 1 | 1/1 (100.0%) | 1/1 (100.0%) |  |  |"
    assert lines[3] == f"| t | {rules_only} | 1 | 0/1 (0.0%) | 0/1 (0.0%) |  |  |"
    assert not any(name.startswith("blind") for name, _ in triage_report.corpora(blind=False))


def test_the_triage_report_lists_what_a_candidate_reads_differently(tmp_path):  # --changes
    import shutil
    sys.path.insert(0, str(REPO / "tools"))
    import triage_report
    from bot.core.corpus import Example
    rules_only = tmp_path / "replies"
    shutil.copytree(DEFAULT_REPLIES_DIR, rules_only)
    (rules_only / "crisis" / "model.json").unlink()
    goodbye = "said goodbye to my dog today, he's going to the neighbors"  # the model's alone
    took = "i took 30 of my valium and now i cant stay awake"  # a rule's: read alike
    sets = [("t", [Example("urgent", goodbye, "t", 1, lang="en"), Example("emergency", took, "t", 2, lang="en"),
                   Example("routine", "what are your hours on saturday", "t", 3, lang="en")])]
    lines, moves = triage_report.changes(str(DEFAULT_REPLIES_DIR), str(rules_only), sets)
    assert lines == [f"t | crisis | paged -> routine | line 1: {goodbye}"]
    assert moves == {"escalation lost": 1, "page lost": 1}
    assert triage_report.changes(str(DEFAULT_REPLIES_DIR), str(DEFAULT_REPLIES_DIR), sets) == ([], {})


def test_the_triage_report_reads_one_set_only(capsys):  # --only: a blind set's look, its totals alone
    sys.path.insert(0, str(REPO / "tools"))
    import triage_report
    triage_report.main(["--only", "written-heldout-3"])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split(" | ")[:2] for r in rows] == [["| written-heldout-3", "en"], ["| written-heldout-3", "es"],
                                                  ["| written-heldout-3", "all"]]
    assert rows[-1].split(" | ")[2] == "1246"


def test_the_whole_triage_table_leaves_an_unread_blind_set_unopened():
    """Every blind set is either read into the table (its looks counted) or waits unread for a first look."""
    sys.path.insert(0, str(REPO / "tools"))
    import triage_report
    on_disk = {p.name for p in (REPO / "tests" / "corpus").glob("blind-*")}
    assert on_disk == set(triage_report.BLIND) | set(triage_report.UNREAD)
    assert not set(triage_report.BLIND) & set(triage_report.UNREAD)


def test_the_triage_report_counts_each_group_and_formats_a_row():  # tools/triage_report.py
    sys.path.insert(0, str(REPO / "tools"))
    import triage_report
    from bot.core.corpus import Example
    from bot.core.engine import get_bot
    examples = [Example("emergency", "i took 30 of my valium and now i cant stay awake", "t", 1, lang="en"),
                Example("review", "some days i wonder whats the point", "t", 2, lang="en"),
                Example("routine", "what are your hours on saturday", "t", 3, lang="en")]
    from bot.core.corpus import tally
    n = tally(get_bot(str(DEFAULT_REPLIES_DIR)).triager.triage, examples)
    assert (n["crisis"], n["crisis_escalated"], n["crisis_paged"]) == (1, 1, 1)
    assert (n["routine"], n["routine_escalated"], n["routine_paged"]) == (1, 0, 0)
    assert n["review"] == 1
    assert triage_report.row("x", "en", n) == "| x | en | 3 | 1/1 (100.0%) | 1/1 (100.0%) | 0/1 (0.0%) | 0/1 (0.0%) |"


def test_thresholds_are_chosen_on_figures_averaged_over_fold_splits_and_folds_fit_alike_in_parallel(monkeypatch):
    """``train_triage.py --repeats N --jobs J``: a grid point is judged by its figures over N splits.

    On one split a hard false-alarm ceiling is decided by the few texts nearest it, so the choice
    moved a grid step or two with the fold seed alone; over N splits each of those texts counts 1/N.
    """
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    pytest.importorskip("joblib")
    sys.path.insert(0, str(REPO / "tools"))
    from dataclasses import replace

    import train_triage as tt
    from bot.core.content import load
    from bot.core.corpus import read_dir
    from bot.core.triage import Triager

    triager = Triager(load(DEFAULT_REPLIES_DIR))
    triager.model = None
    rows = [tt.row_of(triager, ex, "written") for ex in read_dir(tt.CORPUS / "written")[:900]]
    # Every false-alarm ceiling needs routine texts of its group: lend some written ones to forum and SMS.
    routine = [i for i, r in enumerate(rows) if r.tier == "routine"]
    for n, i in enumerate(routine):
        rows[i] = replace(rows[i], group=("forum", "sms", "written")[n % 3])
    view, hits = tt.rule_view(triager, rows)
    words = np.array([len(r.doc.split()) for r in rows])
    hyper = (8.0, None, 3000, 2000, 3.0)
    # 900 texts cannot meet the real ceilings; looser ones still bind.
    monkeypatch.setattr(tt, "CEILINGS", {key: 0.15 for key in tt.CEILINGS})
    serial = tt.out_of_fold(rows, hyper, view, seed=1, jobs=1)
    parallel = tt.out_of_fold(rows, hyper, view, seed=1, jobs=2)
    for h in tt.BINARY_HEADS:
        assert np.allclose(serial[0][h], parallel[0][h]) and np.allclose(serial[1][h], parallel[1][h])
    other = tt.out_of_fold(rows, hyper, view, seed=2, jobs=2)
    assert not np.allclose(serial[0]["escalate"], other[0]["escalate"])  # another split, other scores

    runs, windows = [], []
    for oof, oof_w in (serial, other):
        p = {h: tt.sigmoid(oof[h]) for h in tt.BINARY_HEADS}
        pw = {h: tt.sigmoid(oof_w[h]) for h in tt.BINARY_HEADS}
        runs.append((p, tt.hit_scores(view, p, pw)))
        windows.append(pw)
    single, figures = tt.choose_thresholds(view, runs[:1], words, rows)
    assert figures == tt.measure(tt.tiers(view, *runs[0], words, single), rows)
    th, figures = tt.choose_thresholds(view, runs, words, rows)
    each = [tt.measure(tt.tiers(view, p, ph, words, th), rows) for p, ph in runs]
    for key in figures:
        assert figures[key] == pytest.approx((each[0][key] + each[1][key]) / 2)
    assert tt.feasible(figures)

    # Sticky: a previous model's thresholds stay while every ceiling holds to within one text...
    assert tt.thresholds_for(view, runs, words, rows, th) == (th, figures, "kept")
    # ...and give way to the best feasible point when one is missed by more (or there are none).
    loose = {**th, "escalate": 0.05, "page": 0.06, "overrule": 0.05}
    assert not tt.within_a_text(tt.pooled(view, runs, words, rows, loose), rows)
    assert tt.thresholds_for(view, runs, words, rows, loose) == (th, figures, "chosen")
    assert tt.thresholds_for(view, runs, words, rows, None) == (th, figures, "chosen")
    # --keep-thresholds (README "Measured" (38)): the previous thresholds stay even when they miss a ceiling.
    monkeypatch.setattr(tt, "KEEP", True)
    assert tt.thresholds_for(view, runs, words, rows, loose) == (
        loose, tt.pooled(view, runs, words, rows, loose), "kept (--keep-thresholds)")
    assert tt.thresholds_for(view, runs, words, rows, None) == (th, figures, "chosen")  # nothing to keep
    monkeypatch.setattr(tt, "KEEP", False)

    # The grid's best point is then refined in FINE steps within one grid step either side: never worse.
    assert tt._around(0.68, tt.GRID["page"]) == [0.66, 0.665, 0.67, 0.675, 0.68, 0.685, 0.69, 0.695, 0.7]
    monkeypatch.setattr(tt, "_around", lambda value, grid: [value])
    coarse, on_grid = tt.choose_thresholds(view, runs, words, rows)
    assert coarse["page"] in tt.GRID["page"] and coarse["escalate"] in tt.GRID["escalate"]
    assert abs(th["page"] - coarse["page"]) <= 0.02 and abs(th["escalate"] - coarse["escalate"]) <= 0.025
    assert (figures["crisis_paged"] + figures["crisis_escalated"]
            >= on_grid["crisis_paged"] + on_grid["crisis_escalated"])

    # --sure: a "sure" threshold chosen with the page threshold on the same figures: never fewer crises
    # paged and escalated, every ceiling still held; off (the shipped training), the thresholds stay.
    monkeypatch.undo()
    monkeypatch.setattr(tt, "CEILINGS", {key: 0.15 for key in tt.CEILINGS})
    assert tt.thresholds_for(view, runs, words, rows, th)[0] == th
    monkeypatch.setattr(tt, "SURE", True)
    sure, with_sure, how = tt.thresholds_for(view, runs, words, rows, th)
    assert how in ("kept", "kept, sure chosen") and ("sure" in sure) == (how == "kept, sure chosen")
    assert tt.feasible(with_sure) and with_sure == tt.pooled(view, runs, words, rows, sure)
    assert (with_sure["crisis_paged"] + with_sure["crisis_escalated"]
            >= figures["crisis_paged"] + figures["crisis_escalated"])
    # The vectorised tiers() reads "sure" as combine() does, row by row.
    p, ph = runs[0]
    forced = {**th, "sure": 0.9}
    final = tt.tiers(view, p, ph, words, forced)
    assert (final != tt.tiers(view, p, ph, words, th)).any()
    tt.check_against_engine(view, hits, p, windows[0], words, forced, final)
    # floor.toml's model_kinds_that_page: tiers() reads each row's kind as combine() does.
    monkeypatch.setattr(tt, "PAGING_KINDS", tt.paging_kinds(triager))
    assert tt.PAGING_KINDS.any()
    pk = tt.with_kind(p, serial[0])
    low = {**th, "escalate": 0.1}  # many texts at review on the model alone: some of a kind that pages
    final = tt.tiers(view, pk, ph, words, low)
    assert (final != tt.tiers(view, p, ph, words, low)).any()
    tt.check_against_engine(view, hits, pk, windows[0], words, low, final)


def test_measure_reads_each_list_of_rows_as_it_is():
    """train_triage.measure keeps the last list's labels (the chooser measures one list ~50,000 times):
    another list, even one measured before, is read afresh."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(REPO / "tools"))
    import train_triage as tt

    def rows(*tiers):
        return [tt.Row("", "", "", t, None, None, "written") for t in tiers]

    final = np.array([2, 0])
    a, b = rows("urgent", "routine"), rows("routine", "urgent")
    for _ in range(2):
        assert tt.measure(final, a)["crisis_paged"] == 1.0 and tt.measure(final, a)["written_routine_paged"] == 0.0
        assert tt.measure(final, b)["crisis_paged"] == 0.0 and tt.measure(final, b)["written_routine_paged"] == 1.0


def test_retired_sets_are_learned_from_but_never_counted_in_the_figures_thresholds_are_chosen_on(monkeypatch):
    """``train_triage.py --retired``: the spent blind sets join the training rows, not the ceilings."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(REPO / "tools"))
    import train_triage as tt

    def row(tier, group):
        return tt.Row("", "", "", tier, None, None, group)

    rows = [row("urgent", "written"), row("review", "written"), row("routine", "written"), row("routine", "sms"),
            row("routine", "forum")]
    final = np.array([2, 1, 0, 0, 0])
    before = tt.measure(final, rows)
    # A retired crisis missed and a retired look-alike paged change nothing.
    after = tt.measure(np.array([2, 1, 0, 0, 0, 0, 2]), rows + [row("urgent", "retired"), row("routine", "retired")])
    assert after == before and before["crisis_paged"] == 1.0 and before["written_routine_paged"] == 0.0
    assert not tt.LEARN_RETIRED
    shipped = tt.training_files()
    assert not any(p.parent.name in tt.RETIRED for p in shipped)
    monkeypatch.setattr(tt, "LEARN_RETIRED", True)
    assert {p.parent.name for p in tt.training_files()} >= set(tt.RETIRED)


def test_a_ceiling_missed_by_less_than_one_text_of_its_group_still_holds(monkeypatch):
    """train_triage.within_a_text: the tolerance that keeps a previous model's thresholds is one text."""
    pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(REPO / "tools"))
    import train_triage as tt

    rows = [tt.Row("", "", "", "routine", None, None, g) for g in ["written"] * 80 + ["corpus"] * 20 + ["sms"] * 200]
    monkeypatch.setattr(tt, "CEILINGS", {("written", "escalated"): 0.05, ("sms", "paged"): 0.01})
    met = {"written_routine_escalated": 0.05, "sms_routine_paged": 0.01}
    assert tt.within_a_text(met, rows)
    assert tt.within_a_text({**met, "written_routine_escalated": 0.05 + 0.9 / 100}, rows)  # corpus counts as written
    assert not tt.within_a_text({**met, "written_routine_escalated": 0.05 + 1.1 / 100}, rows)
    assert not tt.within_a_text({**met, "sms_routine_paged": 0.01 + 1.1 / 200}, rows)


def test_a_training_starts_from_the_thresholds_of_the_model_it_replaces(tmp_path, model):
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(REPO / "tools"))
    import train_triage as tt
    shipped = tt.previous_thresholds(DEFAULT_REPLIES_DIR / "crisis" / "model.json")
    assert shipped == {**model.thresholds, "min_words": model.min_words}
    assert tt.previous_thresholds(tmp_path / "none.json") is None
