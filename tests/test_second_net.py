"""The second net: a char n-gram model that only adds same-day reviews where the rules found nothing."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from bot.config import DEFAULT_REPLIES_DIR
from bot.core.content import load
from bot.core.corpus import read
from bot.core.second_net import SecondNet, char_wb_ngrams, model_words
from bot.core.triage import SECOND_NET, Triager

MODEL = Path(DEFAULT_REPLIES_DIR) / "crisis" / "second_net.json"
CORPUS = Path(__file__).parent / "corpus"
TRAINING = [ex for kind in ("dev", "heldout", "dev2") for path in sorted((CORPUS / kind).glob("*.txt"))
            for ex in read(path)]

SAMPLES = [
    "what are your hours", "do you take blue cross", "", "a", "I", "ok", "hi!!", "💊💊", "😭 help",
    "I'd die for a night's sleep", "took 30 valiumm", "i w4nt to k1ll myself", "10mg diazepam 3x a day",
    "ya no aguanto más, quiero desaparecer", "¿Cuánto cuesta el detox?", "Ñandú   MAYÚSCULAS\ttab\nline",
    "supercalifragilisticexpialidocious x y z", "my brother took all his pills and won't wake up",
    "i have been saving up my pills for a while and tonight feels like the right time",
]


@pytest.fixture(scope="module")
def net(bot):
    assert bot.triager.second_net is not None, "replies/crisis/second_net.json did not load"
    return bot.triager.second_net


def test_the_model_file_loads_with_its_metadata(net):
    data = json.loads(MODEL.read_text(encoding="utf-8"))
    for key in ("version", "threshold", "intercept", "ngram_range", "weights", "trained_on", "cv"):
        assert key in data
    assert 0 < net.threshold < 1 and len(net) == len(data["weights"]) <= 20_000
    assert not any("blind" in source for source in data["trained_on"])
    assert {"precision", "recall", "fpr"} <= data["cv"].keys() and data["cv"]["fpr"] <= 0.03


def test_a_missing_model_file_means_rules_only(tmp_path):
    assert SecondNet.load(tmp_path / "second_net.json") is None
    content = dataclasses.replace(load(DEFAULT_REPLIES_DIR), root=tmp_path)
    triager = Triager(content)
    assert triager.second_net is None
    assert triager.triage("what are your hours").severity is None
    assert triager.triage("took 30 valium").severity == "emergency"


def test_scores_are_probabilities(net):
    for text in SAMPLES + [ex.text for ex in TRAINING[:200]]:
        p = net.score(text)
        assert 0.0 <= p <= 1.0 and not math.isnan(p)


@pytest.mark.parametrize("text", ["what are your hours", "do you take blue cross",
                                  "is parking free at the clinic", "hi", "no", "ok thank you so much"])
def test_clearly_routine_texts_stay_routine_end_to_end(bot, text):
    verdict = bot.triage(text)
    assert verdict.severity is None and not verdict.escalate


def rules_only(bot, monkeypatch, text):
    with monkeypatch.context() as m:
        m.setattr(bot.triager, "second_net", None)
        return bot.triager.triage(text)


def test_crisis_wording_the_rules_miss_escalates_at_review(bot, net, monkeypatch):
    crafted = ["i have been saving up my pills for a while and tonight feels like the right time",
               "i keep thinking about driving my car off the bridge",
               "im standing on the roof and i dont want to come down"]
    missed = [ex.text for ex in TRAINING if ex.label != "routine"
              and not rules_only(bot, monkeypatch, ex.text).escalate]
    caught = [t for t in [*crafted, *missed] if net.flags(net.tokens(t))]
    assert caught, "the second net catches nothing the rules miss"
    for text in caught:
        if rules_only(bot, monkeypatch, text).escalate:
            continue  # the rules learnt it since; they speak for it now
        verdict = bot.triager.triage(text)
        assert (verdict.severity, verdict.rule, verdict.rules) == ("review", SECOND_NET, (SECOND_NET,))
        assert verdict.escalate and not verdict.pages
        hit = verdict.hits[0]
        assert (hit.rule, hit.base, hit.severity, hit.start, hit.end) == (SECOND_NET, "review", "review", 0, 0)


def test_the_model_never_lowers_or_replaces_a_rule_verdict(bot, net, monkeypatch):
    content = load(DEFAULT_REPLIES_DIR)
    texts = [ex for r in content.rules for ex in r.examples] + ["I'm not suicidal", "took 30 valium"]
    before = {t: rules_only(bot, monkeypatch, t) for t in texts}
    monkeypatch.setattr(net, "threshold", 0.0)  # the model now wants to flag everything
    monkeypatch.setattr(net, "min_words", 0)
    for text, verdict in before.items():
        assert bot.triager.triage(text) == verdict


def test_short_texts_never_flag(net, monkeypatch):
    monkeypatch.setattr(net, "threshold", 0.0)
    assert not net.flags(net.tokens("hi there"))
    assert net.flags(net.tokens("hi there friend")) == (net.min_words <= 3)


def test_explain_names_ngrams_present_in_the_text(net):
    text = "i have been saving up my pills for a while and tonight feels like the right time"
    padded = " " + " ".join(model_words(net.tokens(text))) + " "
    parts = net.explain(text, k=5)
    assert 0 < len(parts) <= 5
    assert all(gram in padded for gram, _ in parts)
    assert [c for _, c in parts] == sorted((c for _, c in parts), reverse=True)
    assert net.explain("") == []


def test_char_wb_ngrams_keeps_sklearns_short_word_rule():
    assert char_wb_ngrams("a", 2, 5) == [" a", "a ", " a "]
    assert char_wb_ngrams("ab", 2, 5) == [" a", "ab", "b ", " ab", "ab ", " ab "]


def test_a_thousand_messages_score(net):
    texts = [ex.text for ex in TRAINING] + SAMPLES
    texts = (texts * (1000 // len(texts) + 1))[:1000]
    scores = [net.score(t) for t in texts]
    assert len(scores) == 1000


def test_features_and_probabilities_match_sklearn(net):
    sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
    np = pytest.importorskip("numpy")
    data = json.loads(MODEL.read_text(encoding="utf-8"))
    lo, hi = data["ngram_range"]
    vec = sklearn_text.CountVectorizer(analyzer="char_wb", ngram_range=(lo, hi), lowercase=False, binary=True,
                                       vocabulary={g: i for i, g in enumerate(net.ngrams)})
    texts = SAMPLES + [ex.text for ex in TRAINING]
    docs = [" ".join(model_words(net.tokens(t))) for t in texts]
    x = vec.transform(docs).tocsr()
    weights = np.array([data["weights"][g] for g in net.ngrams])
    idf = np.array([data["idf"][g] for g in net.ngrams]) if data.get("idf") else np.ones(len(net.ngrams))
    for row, text in enumerate(texts):
        ours = net.features(net.tokens(text))
        assert set(x[row].indices.tolist()) == ours, text
        values = idf[x[row].indices]
        z = data["intercept"] + (float(values @ weights[x[row].indices]) / float(np.sqrt(values @ values))
                                 if len(values) else 0.0)
        assert net.score(text) == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-9), text
