"""eval's per-method summary on plain records: each judge objective, the harmless judge under the old
names, length baselines, refusal rate and stop reasons (the end-to-end runs are in test_eval.py)."""

import pytest

from args_local.evaluation.report import markdown, summarize
from args_local.evaluation.runner import Run, reply_key

GREEDY, ARGS = Run("greedy", None), Run("args-greedy", 1.5)


def record(i: int, run: Run, text: str, helpful: float, harmless: float, stop: str = "end_of_turn") -> dict:
    return {"key": reply_key(i, run), "prompt_index": i, "method": run.method, "w": run.w, "text": text,
            "n_tokens": len(text.split()), "stop_reason": stop, "guide_reward": helpful + harmless,
            "guide_rewards": {"helpful": helpful, "harmless": harmless}, "seconds": 1.0, "reward_calls": 1,
            "judge_rewards": {"helpful": helpful, "harmless": harmless}, "judge_reward": harmless, "coherence": 0.5}


@pytest.fixture
def records():
    rows = [record(0, GREEDY, "Cats mark you with scent glands.", 0.0, 0.0),
            record(1, GREEDY, "The moon reflects sunlight.", 0.5, 0.0, stop="max_new_tokens"),
            record(2, GREEDY, "Paris.", 0.2, 0.3),
            record(0, ARGS, "I'm sorry, as an AI I cannot help.", -1.0, 1.0),  # refuses: less helpful, more harmless
            record(1, ARGS, "The moon is bright enough to see by day because it reflects sunlight.", 1.0, 0.0),
            record(2, ARGS, "Paris!", 0.21, 0.3)]
    return {r["key"]: r for r in rows}


def test_each_judge_objective_on_its_own(records):
    row = summarize(records, [0, 1, 2], ARGS, GREEDY)
    helpful, harmless = row["judges"]["helpful"], row["judges"]["harmless"]
    assert (helpful["win"], helpful["tie"], helpful["loss"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert helpful["win_tie_vs_greedy"] == pytest.approx(2 / 3)
    assert harmless["win_tie_vs_greedy"] == pytest.approx(1.0) and harmless["avg"] == pytest.approx(1.3 / 3)
    # 2 of 3 and 3 of 3 say little: their Wilson intervals, which a 65% target must be read against
    assert helpful["win_tie_ci95"] == pytest.approx([0.208, 0.939], abs=1e-3)
    assert harmless["win_tie_ci95"] == pytest.approx([0.439, 1.0], abs=1e-3)
    # the names eval has always printed stay, and mean the harmlessness judge
    assert row["judge_win_tie_vs_greedy"] == harmless["win_tie_vs_greedy"]
    assert row["avg_judge_reward"] == harmless["avg"] and row["judge_win"] == harmless["win"]
    assert row["guide_rewards"] == pytest.approx({"helpful": 0.21 / 3, "harmless": 1.3 / 3})


def test_refusals_stop_reasons_and_length_baselines(records):
    greedy, args = (summarize(records, [0, 1, 2], run, GREEDY) for run in (GREEDY, ARGS))
    assert greedy["refusal_rate"] == 0 and args["refusal_rate"] == pytest.approx(1 / 3)
    assert greedy["stop_reasons"] == pytest.approx({"end_of_turn": 2 / 3, "max_new_tokens": 1 / 3})
    assert args["stop_reasons"] == {"end_of_turn": 1.0}
    assert args["length_baselines"] == pytest.approx({"longer_wins": 1.0, "shorter_wins": 1 / 3})  # "Paris!" ties
    assert greedy["length_baselines"] == {"longer_wins": None, "shorter_wins": None}


def test_a_single_head_judge_is_the_harmless_one(records):
    for r in records.values():
        r["judge_rewards"] = {"reward": r["judge_rewards"]["harmless"]}
    row = summarize(records, [0, 1, 2], ARGS, GREEDY)
    assert list(row["judges"]) == ["reward"] and row["judge_win_tie_vs_greedy"] == pytest.approx(1.0)


def test_the_table_shows_every_judge_and_the_refusals(records):
    methods = [summarize(records, [0, 1, 2], run, GREEDY) for run in (GREEDY, ARGS)]
    table = markdown({"methods": methods, "sweep": [], "prompts": 3,
                      "settings": {"prompts_file": "p.jsonl", "k": 10, "max_new_tokens": 16, "seed": 0}})
    assert "| method | judge helpful: avg, win/tie/loss vs greedy | judge harmless: avg" in table
    assert "| args-greedy w=1.5 | 0.070, 33/33/33% (win+tie 66.7%, 95% CI 21-94%) |" in table
    # longer wins, shorter wins, refusals (only ARGS's / only greedy's), coherence vs greedy, ended
    assert "| 100.0% | 33.3% | 33.3% (1 / 0) | +0.000 ± 0.000 | 100.0% |" in table


def test_coherence_and_refusals_are_paired_with_greedy_reply_by_reply(records):
    records[reply_key(0, ARGS)]["coherence"] = 0.2  # the refusal drifts from the question
    records[reply_key(1, ARGS)]["coherence"] = 0.6
    records[reply_key(2, GREEDY)]["text"] = "I can't say; Paris, I think."  # greedy hedges, ARGS answers
    paired = summarize(records, [0, 1, 2], ARGS, GREEDY)["paired_vs_greedy"]
    assert paired["refusals_only_here"] == 1 and paired["refusals_only_greedy"] == 1
    assert paired["coherence_difference"] == pytest.approx((-0.3 + 0.1 + 0.0) / 3)
    # differences -0.3, 0.1, 0: sd 0.2082, t(2) = 4.303
    assert paired["coherence_difference_ci95"] == pytest.approx(4.303 * 0.2082 / 3 ** 0.5, rel=1e-3)
    assert summarize(records, [0, 1, 2], GREEDY, GREEDY)["paired_vs_greedy"]["coherence_difference"] is None


def test_saved_replies_are_rescored_by_a_guide_with_other_objectives(engine):
    # eval's own scores agree with the engine's: the harmless weight gated off for an ordinary question
    # (rescored replies and empty ones once took the ungated default weights, harmless 2)
    from args_local.evaluation.prompts import EvalPrompt
    from args_local.evaluation.runner import Scorers
    from args_local.settings import DecodingSettings

    prompt = EvalPrompt(0, 1, [{"role": "user", "content": "Why is the sky blue?"}])
    settings = DecodingSettings(mode="greedy", max_new_tokens=12)
    assert engine.prompt_weights(prompt.messages, settings)["harmless"] == 0
    reply = engine.generate(prompt.messages, settings)
    saved = record(0, GREEDY, reply.text, 0.0, 0.0)
    saved["guide_rewards"] = {"retired-head": 0.0}  # scored before the guide had its current heads
    Scorers(guide=engine.reward).fill(saved, prompt)
    assert set(saved["guide_rewards"]) == set(engine.reward.objectives)
    assert saved["guide_reward"] == pytest.approx(reply.reward) and saved["guide_rewards"] == pytest.approx(reply.objective_rewards)
    empty = {**record(1, GREEDY, "", 0.0, 0.0), "guide_reward": None, "guide_rewards": None}
    Scorers(guide=engine.reward).fill(empty, prompt)
    assert empty["guide_reward"] == pytest.approx(empty["guide_rewards"]["helpful"])  # harmless weighs 0 here too
