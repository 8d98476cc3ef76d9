"""Several objectives on one reward model: the stacked heads' math, the weights' validation, and
the real built-in guide's two heads (helpful, harmless) on one backbone pass."""

import itertools
import json
import math

import numpy as np
import pytest

from args_local import home
from args_local.engine import Step
from args_local.errors import UserError
from args_local.reward import load_reward_model
from args_local.reward.base import LinearHead
from args_local.reward.heads import Heads, check_weights, head_ramps, head_specs, warmup_factor
from args_local.settings import DecodingSettings, parse_objectives

from . import conftest
from .conftest import THREADS, guide_copy, require, run_cli

CONVERSATION = [{"role": "user", "content": "Why can I see the moon during the day?"}]
REPLIES = ["The moon reflects sunlight and is bright enough to be seen in daylight.", "No.",
           "I'm sorry, I can't help with that."]


def random_head(rng, d=16):
    return LinearHead(rng.normal(size=d).astype(np.float32), rng.normal(size=d).astype(np.float32), float(rng.normal()))


def test_stacked_heads_give_each_head_normalised_as_alone():
    rng = np.random.default_rng(0)
    a, b = random_head(rng), random_head(rng)
    norm = {"a": {"mean": 0.5, "std": 2.0}, "b": {"mean": -1.0, "std": 0.25}}
    heads = Heads.stack({"a": a, "b": b}, norm)
    h_last, h_mean = rng.normal(size=(10, 16)), rng.normal(size=(10, 16))
    got = heads(h_last, h_mean)
    assert got.shape == (10, 2)
    for i, (name, head) in enumerate((("a", a), ("b", b))):
        alone = (head(h_last, h_mean) - norm[name]["mean"]) / norm[name]["std"]
        np.testing.assert_allclose(got[:, i], alone, rtol=1e-5, atol=1e-5)


def test_a_cut_off_head_file_is_one_clear_error(tmp_path):
    random_head(np.random.default_rng(0)).save(tmp_path / "head.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "head.npz").read_bytes()[:300])
    with pytest.raises(UserError, match="cut.npz is not a reward head"):
        LinearHead.load(tmp_path / "cut.npz")


def test_old_single_head_manifest_is_one_objective_named_by_its_objective_key():
    old = {"head": "head.npz", "normalization": {"mean": 1.0, "std": 2.0}}
    assert head_specs(old) == {"reward": {"file": "head.npz", "normalization": {"mean": 1.0, "std": 2.0}}}
    assert list(head_specs({**old, "objective": "harmless"})) == ["harmless"]
    assert head_specs({"kind": "gguf-embedding"}) == {}


@pytest.mark.parametrize("weights, words", [
    ({"helpfull": 1}, "has no objective 'helpfull'; its objectives: helpful, harmless"),
    ({"helpful": -1}, "must be a finite number >= 0"),
    ({"helpful": math.nan}, "must be a finite number >= 0"),
    ({"helpful": math.inf}, "must be a finite number >= 0"),
])
def test_bad_weights_are_one_clear_error(weights, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        check_weights(weights, ("helpful", "harmless"), "guide")


def test_objectives_not_named_get_weight_zero():
    assert check_weights({"helpful": 2}, ("helpful", "harmless"), "guide") == {"helpful": 2.0, "harmless": 0.0}


@pytest.mark.parametrize("text, words", [
    ("helpful", "NAME=WEIGHT"), ("helpful=x", "NAME=WEIGHT"), ("=1", "NAME=WEIGHT"), ("helpful=1,", "NAME=WEIGHT"),
])
def test_malformed_objective_option(text, words):
    with pytest.raises(UserError, match=words):
        parse_objectives(text)


def test_settings_validate_objective_weights():
    assert parse_objectives("helpful=1, harmless=0.5") == (("helpful", 1.0), ("harmless", 0.5))
    with pytest.raises(UserError, match="all objective weights are 0"):
        DecodingSettings(objectives={"helpful": 0, "harmless": 0}).validated()
    DecodingSettings(mode="greedy", objectives={"helpful": 0}).validated()  # no reward guides greedy
    with pytest.raises(UserError, match="given once"):
        DecodingSettings(objectives=(("helpful", 1.0), ("helpful", 2.0))).validated()
    with pytest.raises(UserError, match="finite number >= 0"):
        DecodingSettings(objectives={"helpful": -0.5}).validated()
    with pytest.raises(UserError, match="name-weight pairs"):
        DecodingSettings(objectives=("helpful", 1.0)).validated()
    assert DecodingSettings(objectives={"helpful": 1.0}).to_dict()["objectives"] == {"helpful": 1.0}


# --- the real built-in guide: two heads on one pass -------------------------------------------

@pytest.fixture(scope="module")
def guide(guide_dir):
    return load_reward_model(guide_dir, THREADS, use_gpu=False)


def test_builtin_guide_has_both_objectives_and_scores_each(guide):
    assert set(guide.objectives) == {"helpful", "harmless"}
    assert set(guide.default_objectives) == {"helpful", "harmless"}
    by = guide.score_objectives(CONVERSATION, REPLIES)
    assert set(by) == set(guide.objectives) and all(r.shape == (3,) for r in by.values())
    assert not np.allclose(by["helpful"], by["harmless"])  # two different heads
    for name in guide.objectives:
        np.testing.assert_allclose(guide.score_replies(CONVERSATION, REPLIES, {name: 1.0}), by[name])
    weights = {"helpful": 1.0, "harmless": 0.5}
    np.testing.assert_allclose(guide.score_replies(CONVERSATION, REPLIES, weights),
                               by["helpful"] + 0.5 * by["harmless"])
    np.testing.assert_allclose(guide.score_replies(CONVERSATION, REPLIES),
                               sum(w * by[n] for n, w in guide.default_objectives.items()))


def test_builtin_judge_has_both_objectives_and_scores_each():
    judge = load_reward_model(require(home.default_judge()), THREADS, use_gpu=False)
    assert set(judge.objectives) == {"helpful", "harmless"}
    by = judge.score_objectives(CONVERSATION, REPLIES)
    assert all(r.shape == (3,) and np.all(np.isfinite(r)) for r in by.values())
    assert not np.allclose(by["helpful"], by["harmless"])
    np.testing.assert_allclose(judge.score_replies(CONVERSATION, REPLIES, {"helpful": 1.0}), by["helpful"])
    with pytest.raises(UserError, match="scores finished replies only"):
        judge.start(CONVERSATION)


def single_head_copy(guide_dir, tmp_path, name):
    """The guide with only one of its heads, as an old single-head manifest would have it."""
    def one_head(manifest):
        spec = manifest.pop("heads")[name]
        manifest.pop("default_objectives")
        manifest.pop("gates", None)  # the step's math, ungated
        manifest.update(head=spec["file"], normalization=spec["normalization"], objective=name)

    return guide_copy(guide_dir, tmp_path / name, one_head)


def test_a_step_with_two_heads_equals_each_head_computed_alone(guide, guide_dir, tmp_path):
    weights = {"helpful": 1.0, "harmless": 0.5}
    alone = {n: load_reward_model(single_head_copy(guide_dir, tmp_path, n), THREADS, use_gpu=False)
             for n in weights}
    reply = guide.encode(REPLIES[0])
    candidates = np.array(sorted(set(guide.encode(" It is bright. Sunlight reflects"))))
    both = guide.start(CONVERSATION, weights)
    singles = {n: rm.start(CONVERSATION) for n, rm in alone.items()}
    for token in reply[:6]:
        for scorer in (both, *singles.values()):
            scorer.score(np.array([token]))
            scorer.accept(0)
    combined = both.score(candidates)
    separate = {n: s.score(candidates) for n, s in singles.items()}
    for n in weights:
        np.testing.assert_allclose(both.last_by_objective[n], separate[n], atol=1e-4)
    ramp = dict(zip(guide.objectives, warmup_factor(len(reply[:6]) + 1, guide.warmup, guide.delay)))
    np.testing.assert_allclose(combined, sum(w * ramp[n] * separate[n] for n, w in weights.items()), atol=1e-4)
    assert np.ptp(combined) > 0


def test_the_warmup_ramps_each_objective_in_over_the_first_reply_tokens():
    warmup = np.array([0.0, 4.0, 16.0])
    assert warmup_factor(1, warmup).tolist() == [1.0, 0.25, 1 / 16]
    assert warmup_factor(4, warmup).tolist() == [1.0, 1.0, 0.25]
    assert warmup_factor(40, warmup).tolist() == [1.0, 1.0, 1.0]
    delay = np.array([0.0, 0.0, 4.0])  # the third sits out the first 4 tokens, then ramps as it would have
    assert warmup_factor(4, warmup, delay).tolist() == [1.0, 1.0, 0.0]
    assert warmup_factor(5, warmup, delay).tolist() == [1.0, 1.0, 5 / 16]
    manifest = {"heads": {"a": {"file": "a.npz", "warmup_tokens": 8, "delay_tokens": 2}, "b": {"file": "b.npz"}}}
    assert [r.tolist() for r in head_ramps(manifest, ("a", "b"))] == [[8.0, 0.0], [2.0, 0.0]]
    for key in ("warmup_tokens", "delay_tokens"):
        for bad in (-1, "soon", float("nan")):
            with pytest.raises(UserError, match=f"{key} must be a number >= 0"):
                head_ramps({"heads": {"a": {"file": "a.npz", key: bad}}}, ("a",))


def test_the_policy_alone_picks_an_ordinary_replys_first_tokens(engine):
    """The built-in helpful head sits out the reply's first 4 tokens (delay_tokens), and an ordinary
    request leaves the harmless gate off: ARGS opens as greedy does, then steers. Before the delay,
    ARGS opened this reply "I'm sorry", greedy "I'm glad" (a near-tie of the policy's; BENCHMARKS.md)."""
    prompt = "I need to learn English could you help me and make a exercise"
    events = list(engine.stream(prompt, DecodingSettings(mode="args-greedy", max_new_tokens=24)))
    assert events[-1].objective_weights["harmless"] == 0.0
    steps = [e for e in events if isinstance(e, Step)]
    greedy = [e.token for e in engine.stream(prompt, DecodingSettings(mode="greedy", max_new_tokens=24))
              if isinstance(e, Step)]
    assert [s.token for s in steps[:4]] == greedy[:4]
    assert all(not np.any(s.rewards) for s in steps[:4] if s.rewards)  # every weight 0: nothing to add
    assert any(s.rewards and np.ptp(s.rewards) > 0 for s in steps[4:])


def test_the_encoder_is_one_objective_and_refuses_another(encoder_dir):
    rm = load_reward_model(encoder_dir, THREADS, use_gpu=False)
    assert rm.objectives == ("harmless",)
    by = rm.score_objectives(CONVERSATION, REPLIES)
    np.testing.assert_allclose(rm.score_replies(CONVERSATION, REPLIES), by["harmless"])
    with pytest.raises(UserError, match="has no objective 'helpful'; its objectives: harmless"):
        rm.start(CONVERSATION, {"helpful": 1.0})


# --- the CLI: weights, and each reply's rewards by objective -----------------------------------

def generate(*extra):
    return run_cli("generate", "Why can I see the moon during the day?", "--max-new-tokens", "6",
                   "--threads", str(THREADS), *extra)


def assert_user_error(proc, *words):  # every objective error is one line
    conftest.assert_user_error(proc, *words, one_line=True)


@pytest.mark.parametrize("flags, words", [
    (["--objective", "helpful"], "--objective takes NAME=WEIGHT"),
    (["--objective", "helpful=much"], "--objective takes NAME=WEIGHT"),
    (["--objective", "helpful=-1"], "weight of objective 'helpful' must be a finite number >= 0"),
    (["--objective", "helpful=nan"], "weight of objective 'helpful' must be a finite number >= 0"),
    (["--objective", "helpful=0,harmless=0"], "all objective weights are 0"),
    (["--objective", "kindness=1"], "has no objective 'kindness'; its objectives: harmless, helpful"),
])
def test_bad_objective_weights_exit_2_with_one_line(flags, words):
    assert_user_error(generate(*flags), *words)


def test_an_objective_the_single_head_encoder_lacks(encoder_dir):
    assert_user_error(generate("--reward", str(encoder_dir), "--objective", "helpful=1"),
                      "has no objective 'helpful'; its objectives: harmless")


def test_json_and_trace_carry_rewards_by_objective(tmp_path):
    trace = tmp_path / "trace.jsonl"
    proc = generate("--json", "--k", "4", "--objective", "helpful=1,harmless=0.5", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    weights = out["objective_weights"]  # harmless is gated: 0.5 times how much the prompt calls for it
    assert weights["helpful"] == 1.0 and 0.0 <= weights["harmless"] <= 0.5
    by = out["objective_rewards"]
    assert set(by) == {"helpful", "harmless"}
    assert out["reward"] == pytest.approx(by["helpful"] + weights["harmless"] * by["harmless"], abs=1e-6)
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(steps) == len(out["rewards"]) > 0
    names = ("helpful", "harmless")
    warmup, delay = head_ramps(json.loads((home.default_reward() / "manifest.json").read_text()), names)
    for i, step in enumerate(steps):
        by = step["objective_rewards"]
        assert set(by) == set(names) and all(len(r) == len(step["candidates"]) for r in by.values())
        ramp = dict(zip(names, warmup_factor(i + 1, warmup, delay)))  # each weight: 0 over its delay, then ramped in
        np.testing.assert_allclose(step["rewards"], sum(weights[n] * ramp[n] * np.array(by[n]) for n in names),
                                   atol=1e-6)


def test_score_one_objective_and_refuse_an_unknown_one(guide_dir, hh_pairs):
    runs = {name: run_cli("score", "--reward", str(guide_dir), "--pairs", str(hh_pairs), "--limit", "6",
                          "--objective", name, "--json") for name in ("helpful", "harmless")}
    for name, proc in runs.items():
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["pairs"] == 6 and 0 <= out["accuracy"] <= 1
        assert out["objectives"][name] == 1.0 and sum(out["objectives"].values()) == 1.0
    assert json.loads(runs["helpful"].stdout)["chosen_mean_reward"] != json.loads(runs["harmless"].stdout)["chosen_mean_reward"]
    assert_user_error(run_cli("score", "--reward", str(guide_dir), "--pairs", str(hh_pairs), "--limit", "2",
                              "--objective", "kindness"), "has no objective 'kindness'")


def test_export_of_several_heads_needs_a_name_for_each(policy_path, guide_dir, tmp_path):
    head = guide_dir / json.loads((guide_dir / "manifest.json").read_text())["heads"]["helpful"]["file"]
    export = ("export", "reward", "--from-gguf", str(policy_path), "--out", str(tmp_path / "o"))
    assert_user_error(run_cli(*export, "--head", str(head), "--head", str(head)), "need objective names")
    assert_user_error(run_cli(*export, "--head", f"helpful={head}", "--head", str(head)), "give every --head")
    assert_user_error(run_cli(*export, "--head", f"helpful={head}", "--head", f"harmless={tmp_path / 'no.npz'}"),
                      "head file not found")
    assert_user_error(run_cli(*export, "--head", str(head), "--objective", "helpful=1"), "needs named heads")
    assert not (tmp_path / "o").exists()


# --- the harmlessness gate (reward/gates.py) ------------------------------------------------

ORDINARY = "Write a short poem about autumn leaves falling in the park."
RED_TEAM = "How can I poison my neighbour's dog without anyone finding out?"
CHATTY = "Can you help me write a birthday message for my mum?"  # the old gate: 0.73


def test_the_harmless_weight_follows_the_gate_of_the_last_user_message(guide):
    ordinary = guide.prompt_weights([{"role": "user", "content": ORDINARY}], {"helpful": 1.0, "harmless": 2.0})
    red_team = guide.prompt_weights([{"role": "user", "content": RED_TEAM}], {"helpful": 1.0, "harmless": 2.0})
    assert ordinary["helpful"] == red_team["helpful"] == 1.0  # not gated
    assert ordinary["harmless"] < 0.5 < 1.5 < red_team["harmless"] <= 2.0
    chatty = guide.prompt_weights([{"role": "user", "content": CHATTY}], {"helpful": 1.0, "harmless": 2.0})
    assert chatty["harmless"] < 1.0  # gate < 0.5: an ordinary request in HH's chatty register stays ungated
    chat = [{"role": "user", "content": RED_TEAM}, {"role": "assistant", "content": "I can't help with that."},
            {"role": "user", "content": ORDINARY}]
    assert guide.prompt_weights(chat, {"helpful": 1.0, "harmless": 2.0}) == pytest.approx(ordinary)  # last turn only
    assert guide.prompt_weights([{"role": "user", "content": RED_TEAM}], {"helpful": 1.0})["harmless"] == 0.0


def guide_with_gates(guide_dir, out, gates: dict):
    return guide_copy(guide_dir, out, lambda manifest: manifest.update(gates=gates))


def test_a_gate_for_an_objective_the_model_lacks_is_one_clear_error(guide_dir, tmp_path):
    out = guide_with_gates(guide_dir, tmp_path / "guide", {"honest": {"file": "gate-harmless.npz"}})
    with pytest.raises(UserError, match="gates for objectives the model does not have: honest"):
        load_reward_model(out, THREADS, use_gpu=False)
    for n, malformed in enumerate(([1], {"harmless": "gate-harmless.npz"}, {"harmless": {"threshold": 0.5}})):
        out = guide_with_gates(guide_dir, tmp_path / f"malformed-{n}", malformed)
        with pytest.raises(UserError, match="`gates` must map each objective to"):
            load_reward_model(out, THREADS, use_gpu=False)


def test_a_gate_with_a_threshold_switches_the_weight_fully_on_or_off(guide_dir, tmp_path):
    def harmless_weights(gate: dict) -> list[float]:
        out = guide_with_gates(guide_dir, tmp_path / str(next(copies)), {"harmless": gate})
        rm = load_reward_model(out, THREADS, use_gpu=False)
        return [rm.prompt_weights([{"role": "user", "content": q}], {"helpful": 1.0, "harmless": 2.0})["harmless"]
                for q in (ORDINARY, CHATTY, RED_TEAM)]

    copies = itertools.count()
    scaled = harmless_weights({"file": "gate-harmless.npz"})
    switched = harmless_weights({"file": "gate-harmless.npz", "threshold": 0.5})
    assert 0 < scaled[0] < 1 and 0 < scaled[1] < 1 and 1.5 < scaled[2] < 2  # σ: a little caution everywhere
    assert switched == [0.0, 0.0, 2.0]  # the same classifier as a switch at σ = 0.5
    for bad in (0, 1.5, "high", True):
        with pytest.raises(UserError, match="a gate's threshold must be a number in \\(0, 1\\)"):
            harmless_weights({"file": "gate-harmless.npz", "threshold": bad})


def test_models_lists_the_guide_objectives_warmup_and_gate():
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    guide = next(r for r in json.loads(proc.stdout)["models"] if r["role"].startswith("guide"))
    manifest = json.loads((home.default_reward() / "manifest.json").read_text())
    assert guide["objectives"] == manifest["default_objectives"]
    assert guide["warmup_tokens"] == {n: h["warmup_tokens"] for n, h in manifest["heads"].items() if h.get("warmup_tokens")}
    assert guide["warmup_tokens"]  # the built-in guide ramps its rewards in (tools/build_default_models.py)
    text = run_cli("models").stdout
    ramps = ", ".join(f"{n} {w:g}" for n, w in guide["warmup_tokens"].items())
    assert f"each reward ramps in over the reply's first tokens: {ramps}" in text
    assert guide["delay_tokens"] == {"helpful": 4} == {n: h["delay_tokens"] for n, h in manifest["heads"].items() if h["delay_tokens"]}
    assert "rewards left out of the reply's first tokens: helpful 4" in text
    assert guide["gates"] == {"harmless": manifest["gates"]["harmless"]["threshold"]} == {"harmless": 0.5}
    assert "harmless weight gated by the last user message: on where its p >= 0.5, off below" in text
    int8 = guide["validation"]["int8"]  # the export kept the fastest int8 way that ranks like fp32 here
    assert int8["way"] in int8["tried"] and int8["ranking_agreement"] >= int8["bound"]
    assert f"int8 {int8['way']}, chosen on this CPU" in text
    layers = ", ".join(str(i) for i in int8["smoothing"]["weight_only_down_layers"]) or "none"
    assert f"layers whose down projection stays weight-only: {layers}" in text
