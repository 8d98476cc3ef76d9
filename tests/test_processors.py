"""Logits processors on plain numpy arrays (no model), and their effect on a real decode."""

import numpy as np
import pytest

from args_local.errors import UserError
from args_local.processors import NoRepeatNGram, RepetitionPenalty, apply_all, processors_for
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
    for bad in ({"repeat_penalty": 0.0}, {"repeat_penalty": float("nan")}, {"no_repeat_ngram": 1},
                {"no_repeat_ngram": -2}):
        with pytest.raises(UserError):
            DecodingSettings(**bad).validated()
