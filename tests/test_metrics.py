"""Eval metrics on plain data: the numbers are worked out by hand in the comments."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from args_local.evaluation.embedder import mean_pool_normalized
from args_local.evaluation.metrics import (TIE_EPSILON, cosine_rows, diversity, mean_ci95, repetition_rate,
                                           win_tie_loss, words)


def test_repetition_rate_counts_repeated_ngrams():
    # bigrams of a b a b: ab, ba, ab -> 2 unique of 3
    assert repetition_rate("a b a b".split(), 2) == pytest.approx(1 / 3)
    assert repetition_rate("a b a b".split(), 3) == 0.0  # aba, bab
    assert repetition_rate(["a"], 2) == 0.0  # no bigrams at all: nothing repeats


def test_diversity_is_the_product_over_n_2_to_4():
    assert diversity("a b a b".split()) == pytest.approx(2 / 3)
    # a a a a a: bigrams 1/4 unique, trigrams 1/3, 4-grams 1/2
    assert diversity(["a"] * 5) == pytest.approx(1 / 4 * 1 / 3 * 1 / 2)
    assert diversity(words("the cat sat on the mat")) == 1.0


@given(st.lists(st.integers(0, 5), max_size=40))
def test_diversity_is_between_0_and_1(units):
    assert 0.0 < diversity(units) <= 1.0


@given(st.lists(st.integers(), unique=True, max_size=40))
def test_diversity_of_distinct_units_is_1(units):
    assert diversity(units) == 1.0


def test_mean_ci95_uses_student_t():
    mean, half = mean_ci95([1.0, 2.0, 3.0])  # std 1, n 3, t(2 df) = 4.303
    assert mean == 2.0
    assert half == pytest.approx(4.303 / math.sqrt(3))
    big = np.arange(100, dtype=float)
    assert mean_ci95(big)[1] == pytest.approx(1.96 * big.std(ddof=1) / 10)


def test_mean_ci95_has_no_interval_for_one_value():
    assert mean_ci95([5.0]) == (5.0, None)
    mean, half = mean_ci95([])
    assert math.isnan(mean) and half is None


def test_win_tie_loss_with_epsilon():
    result = win_tie_loss([1.0, 0.0, 0.5, 2.0], [0.0, 1.0, 0.5 + TIE_EPSILON / 2, 1.0])
    assert result == {"win": 0.5, "tie": 0.25, "loss": 0.25}
    assert win_tie_loss([1.0], [1.0 + 2 * TIE_EPSILON])["loss"] == 1.0
    with pytest.raises(ValueError):
        win_tie_loss([1.0], [1.0, 2.0])


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [0.0, 1.0, -1.0])


def test_mean_pooling_ignores_padding_and_normalises():
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])  # last token is padding
    pooled = mean_pool_normalized(hidden, np.array([[1, 1, 0]]))
    np.testing.assert_allclose(pooled, [[1.0, 0.0]])
