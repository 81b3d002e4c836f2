"""Read labelled text: the project's corpora, blind-written sets, and labels of real texts.

Three formats:

- ``label | message`` lines (``tests/corpus/{dev,dev2,heldout,blind}/*.txt``): a tier only.
- JSON lines (``tests/corpus/written``, ``blind-a``, ``blind-b``, ``topics-blind``): ``tier``,
  ``kind``, ``about``, ``topic``, ``lang`` and ``text``, as written by people who never saw the rules.
- ``tests/labels/real.tsv``: labels by id for real texts that stay in ``../shared/data`` (the texts
  never enter the repository); :func:`real_texts` reads them from there when present.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LABELS = ("emergency", "urgent", "review", "routine")
# Strata of the second labelling round (tests/labels/real-round2.tsv): unlabelled forum texts picked
# by the shipped triage's own scores (its likeliest crises, everything its rules escalated, a sample of
# middling scores). Picked for looking risky to the model, so their false-alarm rate says nothing
# about forum text at large; they measure how real crises fare against the hardest look-alikes.
PICKED = ("model-top", "rule-escalated", "model-mid")
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    label: str  # tier, or "routine"
    text: str
    source: str
    line: int
    kind: str | None = None
    about: str | None = None
    topic: str | None = None
    lang: str | None = None
    id: str | None = None  # real texts: their id in ../shared/data
    fold: str | None = None  # real texts: "train" or "test"
    stratum: str | None = None  # real texts: how the text was drawn for labelling (see PICKED)

    @property
    def crisis(self) -> bool:
        """Emergency or urgent: a text that must page."""
        return self.label in ("emergency", "urgent")


def read(path: Path | str) -> list[Example]:
    """Parse a ``label | message`` corpus file; '#' lines and blank lines are skipped."""
    path = Path(path)
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        label, sep, text = raw.partition(" | ")
        label = label.strip().lower()
        if not sep or label not in LABELS:
            raise ValueError(f"{path}:{n}: expected 'label | message', got {raw!r}")
        out.append(Example(label, text, path.name, n))
    return out


def read_jsonl(path: Path | str) -> list[Example]:
    """Parse a JSON-lines corpus written blind (tier, kind, about, topic, lang, text)."""
    path = Path(path)
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        row = json.loads(raw)
        tier = row.get("tier", "routine")
        if tier not in LABELS:
            raise ValueError(f"{path}:{n}: tier {tier!r}")
        topic = row.get("topic")
        out.append(Example(tier, row["text"], path.name, n, kind=row.get("kind"), about=row.get("about"),
                           topic=None if topic in (None, "-", "") else topic, lang=row.get("lang")))
    return out


def read_dir(folder: Path | str) -> list[Example]:
    """Every ``*.jsonl`` and ``*.txt`` corpus file in a folder, in name order."""
    out: list[Example] = []
    for path in sorted(Path(folder).glob("*")):
        if path.suffix == ".jsonl":
            out += read_jsonl(path)
        elif path.suffix == ".txt":
            out += read(path)
    return out


def read_real_labels(path: Path | str) -> list[dict[str, str]]:
    """The rows of ``tests/labels/real.tsv``, or of any labels file in its shape (header line, then
    tab-separated fields; a blind set's ``second-labeller.tsv`` too)."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if header is None:
            header = fields
            continue
        rows.append(dict(zip(header, fields)))
    return rows


def real_texts(data_dir: Path | str = DATA_DIR) -> dict[str, str]:
    """Real texts by id: ``sms-N`` (1-based line of sms-chatter.txt) and the forum files' ids.

    Empty when the folder is absent (a clone outside this workplace): callers skip then.
    """
    data = Path(data_dir)
    texts: dict[str, str] = {}
    sms = data / "sms-chatter.txt"
    if sms.exists():
        with sms.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                texts[f"sms-{n}"] = line.rstrip("\n")
    for name in ("drug-forum-comments.jsonl", "drug-forum-titles.jsonl"):
        path = data / name
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    texts[row["id"]] = row["text"]
    return texts


def real_examples(labels_path: Path | str, data_dir: Path | str = DATA_DIR) -> list[Example]:
    """Labelled real texts joined with their words (empty when ../shared/data is absent)."""
    texts = real_texts(data_dir)
    if not texts:
        return []
    out = []
    for n, row in enumerate(read_real_labels(labels_path), 1):
        if row["id"] not in texts or row["tier"] not in LABELS:
            continue
        out.append(Example(row["tier"], texts[row["id"]], row["source"], n, kind=row["kind"], about=row["about"],
                           id=row["id"], fold=row["fold"], stratum=row["stratum"]))
    return out


def tally(triage, examples: list[Example]) -> Counter:
    """How a triage function (``Triager.triage``) reads labelled texts: per group (crisis =
    emergency + urgent lines, review, routine) how many there are, escalated and paged; and of the
    overdose crises, how many escalated."""
    n: Counter = Counter()
    for ex in examples:
        v = triage(ex.text)
        group = "crisis" if ex.crisis else ex.label
        n[group] += 1
        n[f"{group}_escalated"] += v.escalate
        n[f"{group}_paged"] += v.pages
        if ex.crisis and ex.kind == "overdose":
            n["overdose"] += 1
            n["overdose_escalated"] += v.escalate
    return n
