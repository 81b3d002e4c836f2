"""The README's triage table per corpus and language: escalated / paged / false alarms.

    .venv/bin/python tools/triage_report.py

Reads the labelled corpora in ``tests/corpus`` and the real texts labelled in
``tests/labels/real.tsv`` (their words stay in ``../shared/data``; without it those rows are
skipped) and triages each text with the shipped content, as ``helpline triage`` does. Crisis =
emergency + urgent lines; "paged" = tier emergency or urgent. The blind sets are opened for
totals only: every run of this is a look at them, so it is not a tuning tool.
"""

from __future__ import annotations

from pathlib import Path

from bot.config import DEFAULT_REPLIES_DIR
from bot.core.corpus import Example, read_dir, real_examples, tally
from bot.core.engine import get_bot

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _share(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.1f}%)" if n else ""


def row(name: str, lang: str, n) -> str:
    """One markdown row from :func:`bot.core.corpus.tally`'s counts."""
    return (f"| {name} | {lang} | {n['crisis'] + n['review'] + n['routine']} | "
            f"{_share(n['crisis_escalated'], n['crisis'])} | {_share(n['crisis_paged'], n['crisis'])} | "
            f"{_share(n['routine_escalated'], n['routine'])} | {_share(n['routine_paged'], n['routine'])} |")


def corpora() -> list[tuple[str, list[Example]]]:
    real = real_examples(TESTS / "labels" / "real.tsv")
    names = ("blind-a", "blind-b", "blind-c", "blind-d", "blind-e", "blind-f", "blind-g", "blind-h", "blind-i",
             "written-heldout", "written-heldout-2", "written-heldout-3")
    out = [(name, read_dir(TESTS / "corpus" / name)) for name in names]
    if real:
        out.append(("everyday SMS, all", [Example("routine", ex.text, "sms", ex.line, lang="en")
                                          for ex in real if ex.source == "sms"]))
        out.append(("drug-forum texts, held-out fold", [ex for ex in real if ex.source != "sms" and ex.fold == "test"]))
        out.append(("drug-forum texts, second round (picked by the model)",
                    real_examples(TESTS / "labels" / "real-round2.tsv")))
    return out


def main() -> None:
    bot = get_bot(str(DEFAULT_REPLIES_DIR))
    print("| text | language | lines | crisis escalated | crisis paged | routine escalated | routine paged |")
    print("|---|---|---|---|---|---|---|")
    for name, examples in corpora():
        langs = sorted({ex.lang or "en" for ex in examples})
        for lang in langs:
            print(row(name, lang, tally(bot.triager.triage, [ex for ex in examples if (ex.lang or "en") == lang])))
        if len(langs) > 1:
            print(row(name, "all", tally(bot.triager.triage, examples)))


if __name__ == "__main__":
    main()
