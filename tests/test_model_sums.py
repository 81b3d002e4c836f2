"""The triage model's numpy sums are bit-identical to Python's sequential sums over the feature set.

bot/core/model.py (_Block.sums) gathers the rows of the features present and reduces them along
axis 0 in one numpy call for every head. That gives the very doubles a Python ``sum`` over the set
gives only because numpy adds such a matrix row after row (it sums pairwise only along the
contiguous axis of a reduction, e.g. a 1-D sum). These tests hold numpy to that, so that an
upgrade that changed it would fail here rather than move scores by a last bit.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bot.core.content import load
from bot.core.model import TriageModel, model_words
from bot.core.triage import Triager

REPO = Path(__file__).resolve().parents[1]


def sequential(values) -> float:
    total = 0
    for v in values:
        total = total + v
    return total


@pytest.mark.parametrize("columns", [2, 11, 24])
def test_numpy_reduces_the_rows_of_a_matrix_one_after_another(columns):
    rng = np.random.default_rng(7)
    for n in [*range(1, 140), 500, 3000]:
        # Magnitudes spread over 26 orders: any other order of additions would show in the last bits.
        rows = rng.standard_normal((n, columns)) * np.exp(rng.uniform(-30, 30, (n, columns)))
        got = np.add.reduce(rows.take(np.arange(n), axis=0), axis=0).tolist()
        assert got == [sequential(rows[:, c].tolist()) for c in range(columns)], n


def test_the_test_can_tell_a_pairwise_sum():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1000) * np.exp(rng.uniform(-30, 30, 1000))
    assert float(np.add.reduce(x)) != sequential(x.tolist())


@pytest.fixture(scope="module")
def triager() -> Triager:
    return Triager(load(REPO / "replies"))


def test_block_sums_are_the_python_sums_over_the_feature_set(triager):
    model: TriageModel = triager.model
    heads = len(model.heads)
    texts = [json.loads(line)["text"] for line in
             (REPO / "tests" / "corpus" / "written" / "w1-teens-en.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()][:80]
    texts += ["i took 30 of my valium and a bottle of wine", "me quiero morir ya", "x"]
    checked = 0
    for text in texts:
        tokens = triager.index.tokens(text)
        extra = triager.read(tokens)[1]
        for block, feats in zip((model.char, model.word, model.rule), model.read(model_words(tokens), extra)):
            if not feats:
                continue
            # What the pure-Python model summed: the packed escalate head and norm, then each head.
            first = sequential(block.first[i] for i in feats)
            want = [first.real, *(sequential(block.rows[i, 1 + h] for i in feats) for h in range(1, heads))]
            norm, got = block.sums(feats, heads)
            assert norm == math.sqrt(first.imag) and got == want, text
            # The gate's two heads (escalate, page): the same doubles as the first two of all of them.
            assert block.sums(feats, 2) == (norm, want[:2]), text
            checked += 1
    assert checked > 100


def test_indices_are_the_sets_ints_in_its_own_order():
    """model.indices packs a feature set for take(); the rows must come in the set's iteration order
    (the order the sums add them in), as np.fromiter gives them."""
    from bot.core.model import _PACKED_MAX, indices
    rng = np.random.default_rng(11)
    for n in [1, 2, 3, 7, 116, 1000, _PACKED_MAX + 5]:
        for _ in range(3):
            feats = set(rng.integers(0, 200_000, n).tolist())
            got = indices(feats)
            assert got.dtype == np.intp and got.tolist() == list(feats)
            assert np.array_equal(got, np.fromiter(feats, dtype=np.intp, count=len(feats)))
    assert indices(frozenset({5, 3, 2**40})).tolist() == list(frozenset({5, 3, 2**40}))
