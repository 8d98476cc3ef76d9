"""Logits processors on plain numpy arrays (no model), and their effect on a real decode."""

import json

import numpy as np
import pytest

from args_local.errors import UserError
from args_local.processors import (FrequencyPenalty, LogitBias, NoRepeatNGram, PresencePenalty, RepetitionPenalty,
                                   apply_all, processors_for)
from args_local.settings import DecodingSettings


def test_repetition_penalty_shrinks_seen_logits_towards_lower_scores_only():
    logits = np.array([2.0, -1.0, 3.0, 0.5])
    out = RepetitionPenalty(2.0)([0, 1, 1], logits.copy())
    # seen: token 0 (positive, halved) and token 1 (negative, doubled); others untouched
    np.testing.assert_allclose(out, [1.0, -2.0, 3.0, 0.5])


def test_repetition_penalty_only_looks_at_its_window():
    out = RepetitionPenalty(2.0, window=2)([0, 1, 2], np.array([4.0, 4.0, 4.0, 4.0]))
    np.testing.assert_allclose(out, [4.0, 2.0, 2.0, 4.0])


def test_no_repeat_ngram_bans_exactly_the_tokens_that_would_repeat_a_trigram():
    reply = [5, 6, 7, 5, 6, 9, 5, 6]  # "5 6" was followed by 7 and by 9
    out = NoRepeatNGram(3)(reply, np.zeros(10))
    assert sorted(np.flatnonzero(np.isinf(out))) == [7, 9]
    assert NoRepeatNGram(3).banned([5, 6]) == []  # nothing to repeat yet


def test_presence_penalty_lowers_each_seen_token_once_whatever_its_count():
    out = PresencePenalty(0.5)([1, 1, 1, 3], np.array([2.0, 2.0, -1.0, 0.0]))
    np.testing.assert_allclose(out, [2.0, 1.5, -1.0, -0.5])
    np.testing.assert_allclose(PresencePenalty(0.5)([], np.ones(3)), np.ones(3))  # nothing said yet


def test_frequency_penalty_lowers_a_token_by_its_count_and_a_negative_one_raises_it():
    out = FrequencyPenalty(0.5)([1, 1, 1, 3], np.array([2.0, 2.0, -1.0, 0.0]))
    np.testing.assert_allclose(out, [2.0, 0.5, -1.0, -0.5])
    np.testing.assert_allclose(FrequencyPenalty(-1.0)([0, 0], np.zeros(2)), [2.0, 0.0])


def test_openais_formula_is_the_two_penalties_in_a_chain():
    """logit -= presence * [count > 0] + frequency * count, over the reply's own tokens."""
    rng = np.random.default_rng(1)
    logits, reply = rng.normal(size=50).astype(np.float32), list(rng.integers(0, 50, size=30))
    counts = np.bincount(reply, minlength=50)
    expected = logits - 0.3 * (counts > 0) - 0.7 * counts
    out = apply_all(processors_for(DecodingSettings(repeat_penalty=1.0, presence_penalty=0.3, frequency_penalty=0.7)),
                    reply, logits.copy())
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_logit_bias_adds_to_its_tokens_alone_and_100_makes_greedy_take_a_token():
    logits = np.array([5.0, 1.0, -3.0, 0.0])
    out = LogitBias(((2, 100.0), (0, -100.0)))([0, 0], logits.copy())  # the reply does not matter
    np.testing.assert_allclose(out, [-95.0, 1.0, 97.0, 0.0])
    assert int(np.argmax(out)) == 2


def test_greedy_over_processed_logits_never_repeats_an_ngram():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(8, 8))  # a toy "policy": next-token logits depend on the last token
    chain = [NoRepeatNGram(2)]
    reply = [0]
    for _ in range(20):
        logits = apply_all(chain, reply, table[reply[-1]].copy())
        if np.isinf(logits).all():
            break
        reply.append(int(np.argmax(logits)))
    bigrams = list(zip(reply, reply[1:]))
    assert len(bigrams) == len(set(bigrams)) and len(reply) > 5


def test_settings_build_the_chain_and_reject_bad_values():
    assert processors_for(DecodingSettings(repeat_penalty=1.0)) == []
    chain = processors_for(DecodingSettings(repeat_penalty=1.3, no_repeat_ngram=4))
    assert [type(p) for p in chain] == [RepetitionPenalty, NoRepeatNGram]
    chain = processors_for(DecodingSettings(presence_penalty=-1, frequency_penalty=2, logit_bias={"7": -100},
                                            no_repeat_ngram=2))
    assert [type(p) for p in chain] == [RepetitionPenalty, PresencePenalty, FrequencyPenalty, LogitBias, NoRepeatNGram]
    for bad in ({"repeat_penalty": 0.0}, {"repeat_penalty": float("nan")}, {"no_repeat_ngram": 1},
                {"no_repeat_ngram": -2}):
        with pytest.raises(UserError):
            DecodingSettings(**bad).validated()


@pytest.mark.parametrize("changes, words", [
    ({"presence_penalty": 2.5}, r"presence_penalty must be a number from -2 to 2, 0 for off \(got 2.5\)"),
    ({"frequency_penalty": -3}, r"frequency_penalty must be a number from -2 to 2"),
    ({"frequency_penalty": float("nan")}, r"frequency_penalty must be a number from -2 to 2"),
    ({"presence_penalty": None}, "presence_penalty must be a number"),
    ({"logit_bias": {"49152": 1}}, r"logit_bias names token id 49152, which is not in the vocabulary \(its ids are "
                                   r"integers from 0 to 49151\)"),
    ({"logit_bias": {"-1": 1}}, "logit_bias names token id '-1'"),
    ({"logit_bias": {"x": 1}}, "logit_bias names token id 'x'"),
    ({"logit_bias": {"5": 101}}, r"the logit_bias of token 5 must be a number from -100 to 100 \(got 101.0\)"),
    ({"logit_bias": {"5": True}}, "the logit_bias of token 5 must be a number"),
    ({"logit_bias": [[5, 1], [5, 2]]}, "logit_bias may give each token id once"),
    ({"logit_bias": "5=1"}, "logit_bias must map token ids to biases"),
])
def test_penalties_and_logit_bias_out_of_range_name_the_field(changes, words):
    with pytest.raises(UserError, match=words):
        DecodingSettings(**changes).validated(vocab_size=49152)


def test_logit_bias_takes_openais_json_and_python_and_reports_openais_json():
    """OpenAI's JSON writes token ids as strings; Python may use ints (numpy's too)."""
    from_json = DecodingSettings(logit_bias={"5": -100, "17": 2.5}).validated(49152)
    assert from_json == DecodingSettings(logit_bias={np.int64(5): -100.0, 17: np.float32(2.5)})
    assert from_json.logit_bias == ((5, -100.0), (17, 2.5))
    assert json.loads(json.dumps(from_json.to_dict()))["logit_bias"] == {"5": -100.0, "17": 2.5}
    assert DecodingSettings(**from_json.to_dict()) == from_json  # what a reply reports reads back the same
