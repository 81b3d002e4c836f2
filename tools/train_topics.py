"""Train the topic model (which guide topic answers a question) and choose its thresholds: ``make model``.

Writes ``replies/topics_model.json`` (read by :class:`bot.core.topics.TopicModel`). Needs the
``train`` extra (scikit-learn). Deterministic.

Data: the questions in the blind-written corpora (``tests/corpus/written/*.jsonl``, routine texts
with a topic; ``tests/corpus/questions/*.jsonl``, questions only, written blind to the subject list)
and every topic keyword and menu word of ``replies/topics.*.toml`` as a short example
of its topic; routine texts with no topic (statements, chatter, and ``tests/corpus/offtopic``:
questions the guide does not answer, written blind) teach the question head. Never ``tests/corpus/topics-blind*`` (the
held-out questions that measure it).

Features are the triage engine's reading of the text, char_wb 2-5-grams and word 1-2-grams, as
for the crisis model. Two logistic regressions: which topic (multinomial, on the questions) and
whether the text asks something the guide answers at all (questions against statements). The
thresholds come from 5-fold cross-validation: a text of two words or more that does not read as a
question (``asks``) gets no topic; otherwise the model's topic when its probability reaches
``confident``, else the keywords' topic, else the model's when it reaches ``fallback``; a single
word goes to the keywords.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
from bot.core.corpus import read_dir  # noqa: E402
from bot.core.model import FORMAT, model_text  # noqa: E402
from bot.core.topics import MODEL_MIN_WORDS, NONE, TopicMatcher  # noqa: E402

OUT = ROOT / "replies" / "topics_model.json"
CORPUS = ROOT / "tests" / "corpus"
SEED = 20261128
# What giving a topic to a statement ("who won the game last night") costs, against a question
# answered right: a stray guide excerpt is noise, and it hides the question from the unmatched list.
STATEMENT_COST = float(__import__("os").environ.get("TOPIC_STATEMENT_COST", "0.5"))


def examples(content, matcher: TopicMatcher):
    """(text, language, topic or NONE, is_question) for every training example."""
    out = []
    for ex in [*read_dir(CORPUS / "written"), *read_dir(CORPUS / "questions"), *read_dir(CORPUS / "offtopic")]:
        if ex.label != "routine":
            continue
        out.append((ex.text, ex.lang or "en", ex.topic or NONE, ex.topic is not None))
    for lang, topics in content.topics.items():
        for t in topics:
            for kw in (t.menu_word, *t.keywords):
                out.append((kw, lang, t.id, False))
    return out


def vectorizers():
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=False, binary=True, use_idf=True,
                           smooth_idf=True, norm="l2", min_df=2, max_features=20_000, dtype=np.float64)
    word = TfidfVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=(1, 2), lowercase=False, binary=True,
                           use_idf=True, smooth_idf=True, norm="l2", min_df=1, max_features=20_000,
                           dtype=np.float64)
    return char, word


def fit(docs, y, c, topical):
    """Vectorisers on every text; a topic head on the questions (``topical``), a question head on all."""
    char, word = vectorizers()
    x = hstack([char.fit_transform(docs), word.fit_transform(docs)]).tocsr()
    topics = LogisticRegression(C=c, max_iter=5000)
    topics.fit(x[topical], y[topical])
    # Is it a question the guide could answer at all? Statements outnumber questions: balance them.
    asks = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    asks.fit(x, (y >= 0).astype(int))
    return char, word, topics, asks


def predict(model, docs):
    """(topic probabilities, probability that the text asks something the guide answers)."""
    char, word, topics, asks = model
    x = hstack([char.transform(docs), word.transform(docs)]).tocsr()
    return topics.predict_proba(x), asks.predict_proba(x)[:, 1]


def decide(p_topic, p, keyword, confident, fallback, words=MODEL_MIN_WORDS, asks=1.0, ask_min=0.0):
    """The topic the engine picks (see bot.core.topics.TopicMatcher.match)."""
    if words < MODEL_MIN_WORDS:
        return keyword if keyword is not None else NONE
    if asks < ask_min:
        return NONE
    if p >= confident:
        return p_topic
    if keyword is not None:
        return keyword
    return p_topic if p >= fallback else NONE


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    started = time.time()
    content = load(ROOT / "replies")
    matcher = TopicMatcher(content, model=None)
    from bot.core.triage import Triager
    index = Triager(content).index
    rows = examples(content, matcher)
    docs = [model_text(index.tokens(t)) for t, _, _, _ in rows]
    labels = [topic for _, _, topic, _ in rows]
    classes = sorted(set(labels) - {NONE})
    statements = [i for i, t in enumerate(labels) if t == NONE]
    y = np.array([classes.index(t) if t != NONE else -1 for t in labels])
    question = np.array([q for *_, q in rows])
    keyword = [matcher.keyword_match(text, lang) for text, lang, _, _ in rows]
    words = [len(d.split()) for d in docs]
    strata = [f"{t}:{int(q)}" for t, q in zip(labels, question)]
    best = None
    for c in (16.0, 64.0, 256.0):
        oof = np.zeros((len(rows), len(classes)))
        asks = np.zeros(len(rows))
        for train, test in StratifiedKFold(5, shuffle=True, random_state=SEED).split(docs, strata):
            model = fit([docs[i] for i in train], y[train], c, y[train] >= 0)
            oof[test], asks[test] = predict(model, [docs[i] for i in test])
        top = oof.argmax(1)
        p = oof.max(1)
        for ask_min in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            for confident in (0.2, 0.3, 0.4, 0.5, 0.6):
                for fallback in (0.1, 0.2, 0.3):
                    if fallback > confident:
                        continue
                    got = [decide(classes[top[i]], p[i], keyword[i], confident, fallback, words[i], asks[i], ask_min)
                           for i in range(len(rows))]
                    q_acc = np.mean([g == labels[i] for i, g in enumerate(got) if question[i]])
                    n_wrong = np.mean([got[i] != NONE for i in statements])
                    score = q_acc - STATEMENT_COST * n_wrong
                    if best is None or score > best[0]:
                        best = (score, c, ask_min, confident, fallback, q_acc, n_wrong)
        print(f"C={c}: best so far {best}", flush=True)
    _, c, ask_min, confident, fallback, q_acc, n_wrong = best
    print(f"chosen C={c} ask_min={ask_min} confident={confident} fallback={fallback}: question accuracy {q_acc:.3f} "
          f"(out of fold), statements given a topic {n_wrong:.3f}")
    if args.dry_run:
        return 0
    char, word, topics, asks = fit(docs, y, c, y >= 0)
    n_char = len(char.vocabulary_)
    coef = np.vstack([topics.coef_, asks.coef_])  # the last row is the question head

    data = {
        "format": FORMAT, "version": time.strftime("%Y-%m-%d"), "classes": classes,
        "char_ngrams": [2, 5], "word_ngrams": [1, 2],
        "intercepts": {**{k: float(f"{b:.8g}") for k, b in zip(classes, topics.intercept_)},
                       "asks": float(f"{asks.intercept_[0]:.8g}")},
        "thresholds": {"asks": ask_min, "confident": confident, "fallback": fallback},
        "trained_on": {"questions": int(question.sum()), "keywords": int((y >= 0).sum() - question.sum()),
                       "statements": len(statements), "C": c,
                       "question_accuracy_out_of_fold": round(float(q_acc), 4),
                       "statements_given_a_topic_out_of_fold": round(float(n_wrong), 4)},
        "char": ngram_block(char, coef, 0), "word": ngram_block(word, coef, n_char),
    }
    write(args.out, data)
    print(f"wrote {args.out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
