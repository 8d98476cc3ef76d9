"""The decoding rules on plain numpy arrays: no model involved."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
import pytest

from args_local import search

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=32)
logit_vectors = arrays(np.float32, st.integers(2, 60), elements=finite)


@given(logit_vectors, st.integers(1, 10))
def test_top_k_returns_the_k_best_sorted(logits, k):
    ids, values = search.top_k(logits, k)
    k = min(k, len(logits))
    assert len(ids) == k
    assert np.all(np.diff(values) <= 0)
    assert values[0] == logits.max()
    assert np.sort(values)[0] >= np.sort(logits)[::-1][k - 1]


@given(logit_vectors, st.integers(1, 10), st.data())
def test_w_zero_args_greedy_equals_greedy(logits, k, data):
    ids, values = search.top_k(logits, k)
    rewards = data.draw(arrays(np.float64, len(ids), elements=finite))
    j = search.args_choose(ids, values, rewards, w=0.0)
    assert ids[j] == search.greedy_token(logits)


@given(logit_vectors, st.integers(2, 10), st.data())
def test_huge_w_picks_the_highest_reward(logits, k, data):
    ids, values = search.top_k(logits, k)
    # rewards at least 0.1 apart, so w * gap dwarfs any gap between logits
    rewards = data.draw(arrays(np.float64, len(ids), elements=st.integers(-500, 500).map(lambda x: x / 10),
                               unique=True))
    j = search.args_choose(ids, values, rewards, w=1e6)
    assert rewards[j] == rewards.max()


@given(st.integers(2, 12), st.data())
def test_result_does_not_depend_on_candidate_order(k, data):
    ids = np.array(data.draw(st.lists(st.integers(0, 1000), min_size=k, max_size=k, unique=True)))
    logits = data.draw(arrays(np.float64, k, elements=finite))
    rewards = data.draw(arrays(np.float64, k, elements=finite))
    perm = np.array(data.draw(st.permutations(range(k))))
    w = data.draw(st.floats(0, 5))
    assert ids[search.args_choose(ids, logits, rewards, w)] == \
        ids[perm][search.args_choose(ids[perm], logits[perm], rewards[perm], w)]
    seed = data.draw(st.integers(0, 2**32 - 1))
    a = ids[search.args_choose(ids, logits, rewards, w, 1.0, np.random.default_rng(seed))]
    b = ids[perm][search.args_choose(ids[perm], logits[perm], rewards[perm], w, 1.0, np.random.default_rng(seed))]
    assert a == b


@settings(max_examples=50)
@given(logit_vectors, st.integers(0, 2**32 - 1), st.floats(0.1, 3))
def test_stochastic_is_reproducible_per_seed(logits, seed, temperature):
    ids, values = search.top_k(logits, 8)
    rewards = np.linspace(0, 1, len(ids))
    picks = [search.args_choose(ids, values, rewards, 1.5, temperature, np.random.default_rng(seed)) for _ in range(2)]
    assert picks[0] == picks[1]


def test_stochastic_follows_softmax_of_scores():
    ids = np.array([3, 7])
    logits, rewards = np.array([1.0, 0.0]), np.array([0.0, 1.0])  # scores 1 and 1 + w*1 → with w=1: equal
    rng = np.random.default_rng(0)
    picks = [search.args_choose(ids, logits, rewards, 1.0, 1.0, rng) for _ in range(4000)]
    assert 0.45 < np.mean(picks) < 0.55
    picks = [search.args_choose(ids, logits, rewards, 3.0, 1.0, rng) for _ in range(4000)]
    assert np.mean(picks) > 0.85  # scores 1 vs 3: p = 1/(1+e^-2) = 0.88


def test_temperature_zero_is_argmax():
    ids, logits, rewards = np.array([5, 9]), np.array([0.0, 1.0]), np.zeros(2)
    assert search.args_choose(ids, logits, rewards, 1.0, 0.0, np.random.default_rng(1)) == 1


def test_ties_go_to_the_lower_token_id():
    ids = np.array([9, 4, 6])
    assert search.args_choose(ids, np.zeros(3), np.zeros(3), 1.0) == 1


def test_nucleus_keeps_only_the_head_of_the_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    seen = {search.sample_nucleus(logits, 0.75, 1.0, rng) for _ in range(500)}
    assert seen == {0, 1}


def test_nucleus_of_top_p_0_is_the_most_likely_token_alone():
    logits = np.log(np.array([0.2, 0.5, 0.3]))  # top_p 0, as OpenAI clients send it: no sampling left
    rng = np.random.default_rng(0)
    assert {search.sample_nucleus(logits, 0.0, 1.5, rng) for _ in range(50)} == {search.greedy_token(logits)}


def test_top_k_sampling_never_leaves_the_top_k():
    logits = np.arange(100, dtype=np.float32)
    rng = np.random.default_rng(0)
    assert {search.sample_top_k(logits, 3, 5.0, rng) for _ in range(300)} == {97, 98, 99}


def test_best_of_n_takes_the_best_reward():
    assert search.best_of_n(np.array([0.1, 2.0, -1.0])) == 1


def test_top_k_breaks_ties_at_the_boundary_towards_lower_ids():
    logits = np.zeros(50, np.float32)
    logits[[40, 7, 30]] = 1.0
    ids, _ = search.top_k(logits, 2)
    assert ids.tolist() == [7, 30]
    ids, _ = search.top_k(np.zeros(20, np.float32), 3)
    assert ids.tolist() == [0, 1, 2]


def test_top_probability_and_the_adaptive_threshold():
    logits = np.array([np.log(0.7), np.log(0.2), np.log(0.1), -np.inf])  # a banned token adds nothing
    assert search.top_probability(logits) == pytest.approx(0.7)
    assert search.policy_is_sure(logits, 0.6) and not search.policy_is_sure(logits, 0.8)
    assert not search.policy_is_sure(np.array([50.0, 0.0]), 0.0)  # 0 = adaptive mode off


def test_plausible_keeps_candidates_within_min_p_of_the_top():
    ids, logits = np.array([5, 9, 2, 7]), np.log(np.array([0.5, 0.2, 0.1, 0.04]))
    kept_ids, kept_logits = search.plausible(ids, logits, 0.3)  # floor: 0.3 * 0.5 = 0.15
    assert kept_ids.tolist() == [5, 9] and kept_logits.tolist() == logits[:2].tolist()
    assert search.plausible(ids, logits, 0.0)[0].tolist() == ids.tolist()  # 0 = off
    assert search.plausible(ids, logits, 0.9)[0].tolist() == [5]  # the top token always stays
