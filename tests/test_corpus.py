"""Labelled corpora: the development set must be exact; independent sets measure generalisation.

- tests/corpus/dev and dev2: written with the rules (dev2: indirect, euphemistic and
  method-in-combination phrasing); every crisis pages (emergency/urgent), every review line
  escalates, no routine line escalates. Add a line, run `make test`.
- tests/corpus/heldout: written independently of the rules; its misses were studied once to
  generalise the rules, so it now guards against regressions.
- tests/corpus/blind: written independently and never read line by line; only the aggregate
  figures printed here are looked at. Its floor is what the README reports.
"""

from pathlib import Path

import pytest

from bot.core.corpus import read

CORPUS = Path(__file__).parent / "corpus"


def verdicts(bot, kind):
    rows = []
    for lang in ("en", "es"):
        path = CORPUS / kind / f"{lang}.txt"
        if path.exists():
            rows += [(ex, bot.triager.triage(ex.text)) for ex in read(path)]
    return rows


def score(rows):
    crisis = [v for ex, v in rows if ex.label in ("emergency", "urgent")]
    review = [v for ex, v in rows if ex.label == "review"]
    routine = [v for ex, v in rows if ex.label == "routine"]
    return {
        "crisis_escalated": sum(v.escalate for v in crisis) / len(crisis),
        "crisis_paged": sum(v.pages for v in crisis) / len(crisis),
        "review_escalated": sum(v.escalate for v in review) / len(review),
        "routine_quiet": sum(not v.escalate for v in routine) / len(routine),
        "n": len(rows),
    }


DEV = [(f"{kind}/{ex.source}", ex.line, ex.label, ex.text) for kind in ("dev", "dev2") for lang in ("en", "es")
       for ex in read(CORPUS / kind / f"{lang}.txt")]


@pytest.mark.parametrize("source, line, label, text", DEV, ids=[f"{s}:{n}" for s, n, _, _ in DEV])
def test_dev_corpus_line(bot, source, line, label, text):
    verdict = bot.triager.triage(text)
    if label == "routine":
        assert not verdict.escalate, f"routine text escalated via {verdict.rule}"
    elif label == "review":
        assert verdict.escalate
    else:
        assert verdict.pages, f"{label} text got {verdict.severity}"


def test_dev_corpus_is_big_enough_in_both_languages():
    for lang, minimum in (("en", 250), ("es", 150)):
        assert len(read(CORPUS / "dev" / f"{lang}.txt")) >= minimum


def test_heldout_corpus_keeps_its_recall(bot):
    s = score(verdicts(bot, "heldout"))
    print("heldout", s)
    assert s["crisis_paged"] >= 0.97 and s["crisis_escalated"] == 1.0 and s["routine_quiet"] >= 0.97


def test_blind_corpus_recall(bot):
    rows = verdicts(bot, "blind")
    if not rows:
        pytest.skip("no blind corpus")
    s = score(rows)
    print("blind", s)
    for key, floor in BLIND_FLOOR.items():
        assert s[key] >= floor, (key, s[key])


# Just under what the README reports (124/125 escalated, 112/125 paged, 168/173 quiet).
BLIND_FLOOR = {"crisis_escalated": 0.97, "crisis_paged": 0.85, "routine_quiet": 0.95}
