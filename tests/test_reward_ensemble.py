"""Two separate reward models weighed together (--reward guide+encoder): the real guide and encoder."""

import json

import numpy as np
import pytest

from args_local import DecodingSettings, home
from args_local.engine import Engine, Finished, Step
from args_local.errors import UserError
from args_local.reward import load_reward_model
from args_local.reward.heads import warmup_factor

from . import conftest
from .conftest import THREADS, run_cli

CONVERSATION = [{"role": "user", "content": "Why can I see the moon during the day?"}]
REPLIES = ["The moon reflects sunlight and is bright enough to be seen in daylight.", "No.",
           "I'm sorry, I can't help with that."]


@pytest.fixture(scope="module")
def models(guide_dir, encoder_dir):
    guide = load_reward_model(guide_dir, THREADS, use_gpu=False)
    encoder = load_reward_model(encoder_dir, THREADS, use_gpu=False)
    return guide, encoder, load_reward_model("guide+encoder", THREADS, use_gpu=False)


def test_the_objectives_are_each_models_named_by_model(models):
    guide, encoder, both = models
    assert both.name == "guide+encoder"
    assert set(both.objectives) == {"guide.helpful", "guide.harmless", "encoder.harmless"}
    assert both.default_objectives == {**{f"guide.{n}": w for n, w in guide.default_objectives.items()},
                                       **{f"encoder.{n}": w for n, w in encoder.default_objectives.items()}}
    by = both.score_objectives(CONVERSATION, REPLIES)
    for model in (guide, encoder):
        for name, rewards in model.score_objectives(CONVERSATION, REPLIES).items():
            np.testing.assert_allclose(by[f"{model.name}.{name}"], rewards, atol=1e-5)
    weights = {"guide.helpful": 1.0, "encoder.harmless": 0.5}
    np.testing.assert_allclose(both.score_replies(CONVERSATION, REPLIES, weights),
                               by["guide.helpful"] + 0.5 * by["encoder.harmless"], atol=1e-5)


def test_the_guide_gate_still_scales_its_harmless_weight(models):
    guide, _, both = models
    gated = guide.prompt_weights(CONVERSATION, {"helpful": 1.0, "harmless": 2.0})
    weights = both.prompt_weights(CONVERSATION, {"guide.helpful": 1.0, "guide.harmless": 2.0, "encoder.harmless": 0.5})
    assert weights == {"guide.helpful": 1.0, "guide.harmless": gated["harmless"], "encoder.harmless": 0.5}
    assert gated["harmless"] < 1.0  # an ordinary question: the gate is mostly off


def steps_and_end(engine, settings) -> tuple[list[Step], Finished]:
    events = list(engine.stream(CONVERSATION[0]["content"], settings))
    return [e for e in events if isinstance(e, Step) and e.rewards], events[-1]


def test_each_step_is_the_weighted_sum_of_both_models(engine, models):
    both = Engine(engine.policy, models[2])
    settings = DecodingSettings(k=4, max_new_tokens=8, objectives={"guide.helpful": 1.0, "encoder.harmless": 0.5})
    steps, end = steps_and_end(both, settings)
    assert end.objective_weights == {"guide.helpful": 1.0, "guide.harmless": 0.0, "encoder.harmless": 0.5}
    assert set(end.objective_rewards) == set(models[2].objectives)
    guide = models[0]
    helpful = guide.objectives.index("helpful")
    for i, step in enumerate(steps):
        by = step.candidate_objective_rewards
        assert set(by) == set(models[2].objectives)
        ramp = warmup_factor(i + 1, guide.warmup, guide.delay)[helpful]  # the guide's own delay and warm-up, as alone
        np.testing.assert_allclose(step.rewards, ramp * np.array(by["guide.helpful"])
                                   + 0.5 * np.array(by["encoder.harmless"]), atol=1e-6)
    assert any(np.ptp(s.candidate_objective_rewards["encoder.harmless"]) > 0 for s in steps)


def test_the_guide_alone_in_an_ensemble_decodes_as_the_guide(engine, models):
    guide_weights = {"helpful": 1.0, "harmless": 2.0}
    alone_steps, alone = steps_and_end(engine, DecodingSettings(k=4, max_new_tokens=12, objectives=guide_weights))
    in_ensemble = DecodingSettings(k=4, max_new_tokens=12, objectives={f"guide.{n}": w for n, w in guide_weights.items()})
    steps, end = steps_and_end(Engine(engine.policy, models[2]), in_ensemble)
    assert end.text == alone.text
    np.testing.assert_allclose([s.rewards for s in steps], [s.rewards for s in alone_steps], atol=1e-6)
    assert "encoder.harmless" not in steps[0].candidate_objective_rewards  # weight 0: the encoder never ran


def test_ensemble_bad_input_is_one_clear_error(models):
    with pytest.raises(UserError, match="has no objective 'helpful'; its objectives: guide.harmless"):
        models[2].start(CONVERSATION, {"helpful": 1.0})
    with pytest.raises(UserError, match="combined once"):
        load_reward_model("guide+guide", THREADS, use_gpu=False)


def test_a_join_with_a_side_missing_names_no_option_to_python():
    # load(reward="guide+") was told about --reward, which a Python caller never wrote
    with pytest.raises(UserError, match=r"^'guide\+': name a reward model on each side of '\+'"):
        home.reward_model_dirs("guide+")


@pytest.mark.parametrize("reward, objective, words", [
    ("guide+", None, "name a reward model on each side of '+'"),
    ("guide+/no/such/model", None, "/no/such/model"),
    ("guide+judge", None, "is a judge model: it cannot guide decoding"),
    ("guide+encoder", "helpful=1", "has no objective 'helpful'; its objectives: guide.harmless, guide.helpful, encoder.harmless"),
])
def test_generate_with_a_bad_ensemble_exits_2_with_one_line(reward, objective, words):
    flags = ["--reward", reward] + (["--objective", objective] if objective else [])
    proc = run_cli("generate", "Hi", "--max-new-tokens", "2", "--threads", str(THREADS), *flags)
    conftest.assert_user_error(proc, words, one_line="/no/such" not in reward)  # that one adds what to run


def test_generate_and_score_read_an_ensemble(encoder_dir, hh_pairs):
    proc = run_cli("generate", "Why can I see the moon during the day?", "--max-new-tokens", "4", "--k", "4",
                   "--threads", str(THREADS), "--reward", "guide+encoder", "--objective",
                   "guide.helpful=1,encoder.harmless=0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["objective_weights"]["encoder.harmless"] == 0.5
    assert out["reward"] == pytest.approx(out["objective_rewards"]["guide.helpful"]
                                          + 0.5 * out["objective_rewards"]["encoder.harmless"], abs=1e-6)
    scores = [json.loads(run_cli("score", "--reward", reward, "--pairs", str(hh_pairs), "--limit", "4",
                                 *flags, "--json").stdout)
              for reward, flags in (("guide+encoder", ["--objective", "encoder.harmless"]), (str(encoder_dir), []))]
    assert scores[0]["accuracy"] == scores[1]["accuracy"]
    assert scores[0]["chosen_mean_reward"] == pytest.approx(scores[1]["chosen_mean_reward"], abs=1e-5)
