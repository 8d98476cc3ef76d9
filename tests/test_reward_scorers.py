"""Candidate scorers on the real reward models: skipping tokens (adaptive ARGS) must not change later scores."""

import json

import numpy as np
import pytest

from args_local.policy import LlamaPolicy
from args_local.reward import load_reward_model
from args_local.reward.base import finished_reply

from .conftest import THREADS

CONVERSATION = [{"role": "user", "content": "How do I make a good cup of coffee?"}]
REPLY = "Start with fresh beans and grind them just before you brew."


@pytest.fixture(scope="module")
def policy(policy_path):
    return LlamaPolicy(policy_path, n_ctx=512, n_threads=THREADS)


@pytest.mark.parametrize("which", ["guide_dir", "encoder_dir"])
def test_skipped_tokens_score_like_accepted_ones(which, policy, request):
    rm = load_reward_model(request.getfixturevalue(which), THREADS, use_gpu=False)
    tokens = policy.tokenize(REPLY)
    candidates = np.array(policy.tokenize(" It is")[:1] + policy.tokenize(" Use")[:1] + policy.tokenize(" Never")[:1])
    pieces = [policy.token_bytes(int(t)) for t in candidates]

    accepted, skipped = rm.start(CONVERSATION), rm.start(CONVERSATION)
    for i, token in enumerate(tokens):
        piece = policy.token_bytes(token)
        accepted.score(np.array([token]), [piece])
        accepted.accept(0)
        if i % 3 == 0:  # mix scored and skipped steps, as adaptive mode does
            skipped.score(np.array([token]), [piece])
            skipped.accept(0)
        else:
            skipped.skip(token, piece)
    expected = accepted.score(candidates, pieces)
    np.testing.assert_allclose(skipped.score(candidates, pieces), expected, atol=batch_noise(rm))
    assert np.ptp(expected) > 0  # the candidates really differ in reward


def test_an_encoder_reads_no_half_character_where_the_policy_splits_one_across_tokens(encoder_dir, policy, tmp_path):
    """SmolLM2 writes an emoji as three tokens, none UTF-8 alone. A candidate ending inside one was read with a
    U+FFFD for the half, which a tokenizer that keeps it (RoBERTa's, DeBERTa's; here MiniLM's with clean_text
    off) makes another word: the encoder must read the reply as the user sees it, without the half."""
    copy = tmp_path / "encoder"
    copy.mkdir()
    for f in encoder_dir.iterdir():
        if f.name != "tokenizer.json":
            (copy / f.name).symlink_to(f)
    tokenizer = json.loads((encoder_dir / "tokenizer.json").read_text())
    tokenizer["normalizer"]["clean_text"] = False  # BERT's cleaning drops U+FFFD; others' tokenizers keep it
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))
    rm = load_reward_model(copy, THREADS, use_gpu=False)
    tokens = policy.tokenize("Pizza 🍕 is great")
    pieces = [policy.token_bytes(t) for t in tokens]
    emoji = next(i for i, p in enumerate(pieces) if p.startswith(b" \xf0"))  # then b"\x8d", b"\x95"
    context = rm.format.context_text(CONVERSATION)
    so_far, with_emoji = rm.raw_scores(context, ["Pizza", "Pizza 🍕"])
    scorer = rm.start(CONVERSATION)  # the encoder's one objective, weight 1, no warm-up
    for token, piece in zip(tokens[:emoji], pieces[:emoji]):
        scorer.skip(token, piece)
    for token, piece in zip(tokens[emoji:emoji + 2], pieces[emoji:emoji + 2]):
        assert scorer.score(np.array([token]), [piece])[0] == pytest.approx(so_far, abs=1e-5)
        scorer.accept(0)
    assert scorer.score(np.array([tokens[emoji + 2]]), [pieces[emoji + 2]])[0] == pytest.approx(with_emoji, abs=1e-5)
    assert so_far != pytest.approx(rm.raw_scores(context, ["Pizza \ufffd"])[0], abs=1e-3)  # the half would count


def batch_noise(rm) -> float:
    """How far a reward may move with the other rows of its pass: 0 up to float error, except in a
    graph with dynamic int8 activations, whose one activation scale per tensor spans every row
    (skipped tokens ride in the pass ahead of the candidates). Measured: up to 0.04 (z units)."""
    int8 = (rm.manifest.get("validation") or {}).get("int8") or {}
    return 0.1 if int8.get("way") == "dynamic" else 1e-4


def test_dynamic_int8_reward_models_keep_to_the_cpu_where_a_gpu_would_be_slower():
    """onnxruntime's CUDA provider has no DynamicQuantizeLinear: the int8 guide was twice as slow there."""
    from args_local.reward.onnx_session import worth_a_gpu

    assert not worth_a_gpu({"validation": {"int8": {"way": "dynamic"}}})
    assert worth_a_gpu({"validation": {"int8": {"way": "weight-only"}}})
    assert worth_a_gpu({"validation": {"max_abs_diff": 0.0}}) and worth_a_gpu({})


@pytest.mark.parametrize("cores, spins", [(1, False), (2, False), (8, False), (12, False), (16, True), (64, True)])
def test_reward_model_threads_spin_only_where_cores_are_plenty(monkeypatch, cores, spins):
    from args_local import cpu

    monkeypatch.setattr(cpu.os, "cpu_count", lambda: cores)
    assert cpu.rm_threads_may_spin(cpu.default_rm_threads()) is spins


def test_a_reply_longer_than_the_model_reads_keeps_its_beginning_and_its_end_of_turn(guide_dir):
    """The guide reads at most max_reply tokens of a finished reply: its start (what ARGS read while
    writing it) and the end of turn, so that a long reply is still scored as finished."""
    rm = load_reward_model(guide_dir, THREADS, use_gpu=False)
    long_reply = " ".join(f"Step {i}: stir the coffee gently." for i in range(400))
    ids = finished_reply(rm.encode, rm.format, long_reply, rm.max_reply)
    end = rm.encode(rm.format.reply_suffix)
    assert len(ids) == rm.max_reply and ids[-len(end):] == end
    assert ids[:20] == rm.encode(long_reply)[:20]
    short = finished_reply(rm.encode, rm.format, REPLY, rm.max_reply)
    assert short == rm.encode(REPLY + rm.format.reply_suffix)
    assert all(np.isfinite(r).all() for r in rm.score_objectives(CONVERSATION, [long_reply, REPLY]).values())
