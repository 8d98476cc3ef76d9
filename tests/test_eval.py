"""args-local eval end to end with the real policy and guide RM (3 HH-RLHF prompts, 12 tokens)."""

import gzip
import json
import math
from pathlib import Path

import pytest

from args_local import home
from args_local.cli import main
from args_local.conversations import record_prompt
from args_local.errors import UserError
from args_local.evaluation.prompts import load_prompts

from .conftest import assert_user_error, run_cli

HH = Path(__file__).resolve().parents[1].parent / "shared/data/hh-rlhf/harmless-base-pairs.jsonl.gz"
pytestmark = pytest.mark.skipif(not home.default_policy().is_file() or not HH.is_file(),
                                reason="needs the built policy + guide RM and the HH-RLHF data")
TINY = ["--methods", "greedy,args-greedy", "--max-new-tokens", "12", "--threads", "1"]


def hh_lines(n: int) -> list[str]:
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


def eval_json(capsys, *argv) -> dict:
    assert main(["eval", "--json", *TINY, *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_reports_every_metric_as_a_finite_number(tmp_path, capsys):
    # The guide RM stands in as the judge so the win/tie/loss path runs with real scores.
    out = tmp_path / "run"
    result = eval_json(capsys, "--prompts", str(HH), "--n", "3", "--out", str(out), "--judge", "guide")
    assert result["prompts"] == 3
    rows = {m["method"]: m for m in result["methods"]}
    assert set(rows) == {"greedy", "args-greedy"}
    for row in rows.values():
        assert row["replies"] == 3
        for key in ("avg_reward", "avg_reward_ci95", "avg_judge_reward", "diversity", "mean_length",
                    "tokens_per_s", "reward_calls"):
            assert math.isfinite(row[key]), key
        assert 0 < row["diversity"] <= 1 and 0 < row["mean_length"] <= 12
    args = rows["args-greedy"]
    assert args["judge_win"] + args["judge_tie"] + args["judge_loss"] == pytest.approx(1)
    assert args["judge_win_tie_vs_greedy"] == pytest.approx(args["judge_win"] + args["judge_tie"])
    assert args["reward_calls"] > rows["greedy"]["reward_calls"]  # one RM call per ARGS step
    from args_local.reward import load_reward_model
    guide = load_reward_model("guide", threads=1)
    assert result["models"]["judge_objectives"] == list(guide.objectives)
    for row in rows.values():  # every judge objective on its own, refusals, how replies stopped
        assert set(row["judges"]) == set(guide.objectives) and set(row["guide_rewards"]) == set(guide.objectives)
        assert 0 <= row["refusal_rate"] <= 1 and sum(row["stop_reasons"].values()) == pytest.approx(1)
        assert set(row["stop_reasons"]) <= {"end_of_turn", "max_new_tokens", "stop_string", "context_full"}
    harmless = "harmless" if "harmless" in guide.objectives else guide.objectives[0]
    assert args["judge_win_tie_vs_greedy"] == args["judges"][harmless]["win_tie_vs_greedy"]
    for entry in args["judges"].values():
        assert entry["win"] + entry["tie"] + entry["loss"] == pytest.approx(1) and math.isfinite(entry["avg"])
    lengths = args["length_baselines"]
    assert lengths["longer_wins"] + lengths["shorter_wins"] >= 1  # both count equal lengths
    assert rows["greedy"]["length_baselines"] == {"longer_wins": None, "shorter_wins": None}
    paired = args["paired_vs_greedy"]  # the same prompts' replies, compared one by one
    assert 0 <= paired["refusals_only_here"] <= 3 and 0 <= paired["refusals_only_greedy"] <= 3
    if (home.default_sentence_embedder() / "manifest.json").is_file():
        assert all(-1 <= r["coherence"] <= 1 for r in rows.values())
        assert paired["coherence_difference"] == pytest.approx(args["coherence"] - rows["greedy"]["coherence"])
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["replies"]) == 6 and all(isinstance(r["text"], str) for r in saved["replies"])
    assert len((out / "replies.jsonl").read_text().splitlines()) == 6


def test_eval_table_marks_a_missing_judge_na_with_a_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(home, "default_judge", lambda: tmp_path / "no-judge")
    assert main(["eval", *TINY, "--prompts", str(HH), "--n", "2"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| method | RM reward (95% CI)")
    assert "| greedy |" in table and "| args-greedy w=1.5 |" in table
    assert "--only judge" in table and "n/a" in table


def test_eval_resumes_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "run"
    eval_json(capsys, "--prompts", str(HH), "--n", "2", "--out", str(out))
    first = (out / "replies.jsonl").read_text().splitlines()
    assert len(first) == 4
    result = eval_json(capsys, "--prompts", str(HH), "--n", "3", "--out", str(out))
    lines = (out / "replies.jsonl").read_text().splitlines()
    assert lines[:4] == first and len(lines) == 6  # only prompt 3's two replies were generated
    assert {json.loads(line)["prompt_index"] for line in lines[4:]} == {2}
    assert result["prompts"] == 3 and all(m["replies"] == 3 for m in result["methods"])


@pytest.mark.skipif(not (home.default_judge() / "manifest.json").is_file(), reason="needs the built-in judge")
def test_a_resumed_run_with_another_judge_scores_its_replies_with_that_judge(tmp_path, capsys):
    # the judge and the guide have the same objectives: the old judge's scores once stayed, under the new name
    out, one = tmp_path / "run", ["--prompts", str(HH), "--n", "1", "--methods", "greedy"]
    first = eval_json(capsys, *one, "--out", str(out), "--judge", "judge")
    resumed = eval_json(capsys, *one, "--out", str(out), "--judge", "guide")
    fresh = eval_json(capsys, *one, "--judge", "guide")
    assert resumed["models"]["judge"] == fresh["models"]["judge"] != first["models"]["judge"]
    assert resumed["methods"][0]["judges"] == fresh["methods"][0]["judges"] != first["methods"][0]["judges"]
    lines = (out / "replies.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["judge_rewards"] != json.loads(lines[0])["judge_rewards"]
    eval_json(capsys, *one, "--out", str(out), "--judge", "guide")  # saved: nothing to score again
    assert (out / "replies.jsonl").read_text().splitlines() == lines


def test_eval_refuses_to_resume_with_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    eval_json(capsys, "--prompts", str(HH), "--n", "1", "--out", str(out))
    assert main(["eval", *TINY, "--prompts", str(HH), "--n", "1", "--out", str(out), "--k", "5"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "k: 10 -> 5" in err


def test_a_resumed_run_whose_prompt_file_changed_is_refused(tmp_path, capsys):
    # replies are stored by prompt position: a line put in front once had the old first prompt's reply
    # reported as the answer to the new one ("How do I pick a lock?" -> "The fruit I mentioned is the Banana")
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "run"
    prompts.write_text('{"prompt": "Name a fruit."}\n')
    argv = ["--methods", "greedy", "--max-new-tokens", "4", "--prompts", str(prompts), "--out", str(out)]
    eval_json(capsys, *argv)
    saved = (out / "replies.jsonl").read_text()
    prompts.write_text('{"prompt": "How do I pick a lock?"}\n{"prompt": "Name a fruit."}\n')
    assert main(["eval", *TINY, *argv]) == 2
    assert "the prompt file changed since" in capsys.readouterr().err
    assert (out / "replies.jsonl").read_text() == saved


def test_a_resumed_run_knows_its_reward_model_by_name_folder_or_relative_path(tmp_path, capsys, monkeypatch):
    # run.json kept --reward as typed: 'guide' was refused as another model than the default guide's folder,
    # and ./rm typed in another folder, where it names another model, was taken as the same
    out = tmp_path / "run"
    argv = ["--methods", "greedy", "--max-new-tokens", "4", "--prompts", str(HH), "--n", "1", "--out", str(out)]
    eval_json(capsys, *argv, "--reward", "guide")
    eval_json(capsys, *argv)
    for name, model in (("a", home.default_reward()), ("b", home.default_encoder_reward())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rm").symlink_to(model)
    monkeypatch.chdir(tmp_path / "a")
    eval_json(capsys, *argv, "--reward", "rm")
    monkeypatch.chdir(tmp_path / "b")
    assert main(["eval", *TINY, *argv, "--reward", "rm"]) == 2
    assert "holds an eval run with other settings (reward:" in capsys.readouterr().err


def test_a_run_recorded_with_model_names_by_an_older_version_resumes(tmp_path, capsys, monkeypatch):
    """Older versions kept --policy and --reward as typed; since records hold resolved paths, a run made with
    --reward guide could not be resumed at all. A name and its path are one model; another model is still refused."""
    out = tmp_path / "run"
    argv = ["--methods", "greedy", "--max-new-tokens", "4", "--prompts", str(HH), "--n", "1", "--out", str(out)]
    eval_json(capsys, *argv, "--reward", "guide")
    saved = (out / "replies.jsonl").read_text()
    run_file = out / "run.json"
    old = {**json.loads(run_file.read_text()), "reward": "guide", "policy": str(home.default_policy())}
    run_file.write_text(json.dumps(old))
    eval_json(capsys, *argv, "--reward", "guide")
    assert (out / "replies.jsonl").read_text() == saved  # resumed: nothing left to generate
    assert json.loads(run_file.read_text())["reward"] == str(home.default_reward().resolve())  # recorded anew

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "rm").symlink_to(home.default_reward())
    monkeypatch.chdir(tmp_path / "mine")  # an older run made here with --reward rm: that folder is the guide
    run_file.write_text(json.dumps({**old, "reward": "rm"}))
    eval_json(capsys, *argv)
    run_file.write_text(json.dumps({**old, "reward": "encoder"}))  # the models really differ
    assert main(["eval", *TINY, *argv]) == 2
    assert "holds an eval run with other settings (reward:" in capsys.readouterr().err
    assert (out / "replies.jsonl").read_text() == saved


def test_malformed_line_exits_2_naming_the_line(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(hh_lines(1)[0] + "{not json\n")
    assert main(["eval", *TINY, "--prompts", str(prompts)]) == 2
    assert f"{prompts}:2:" in capsys.readouterr().err


def test_sweep_w_without_an_args_method_exits_2(capsys):
    # it once ran the other methods and wrote neither a sweep nor its plot, without a word
    assert main(["eval", "--prompts", str(HH), "--methods", "greedy,top-k", "--sweep-w", "0,1"]) == 2
    assert "--sweep-w" in capsys.readouterr().err


def test_an_n_beyond_the_file_uses_all_its_prompts_and_says_so(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a fruit."}\n{"prompt": "Name a colour."}\n')
    assert main(["eval", "--json", *TINY, "--methods", "greedy", "--max-new-tokens", "4", "--prompts", str(prompts),
                 "--n", "5"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["prompts"] == 2
    assert f"args-local: note: {prompts} has 2 prompts, fewer than --n 5: all 2 are used\n" in err


@pytest.mark.parametrize("methods", ["greedy", "greedy,best-of-n"])
def test_all_objective_weights_0_are_refused_in_eval_s_own_terms(capsys, methods):
    # the message once named args-greedy, a method nobody had asked for
    assert main(["eval", "--prompts", str(HH), "--methods", methods, "--objective", "helpful=0"]) == 2
    err = capsys.readouterr().err
    assert "all objective weights are 0: eval scores every method's replies" in err and "args-greedy" not in err


def test_unknown_method_exits_2(capsys):
    assert main(["eval", "--prompts", str(HH), "--methods", "greedy,beam"]) == 2
    err = capsys.readouterr().err
    assert "'beam'" in err and "args-greedy" in err


@pytest.mark.parametrize("content, message", [(None, "prompt file not found"), ("", "no usable prompts"),
                                              ('{"other": 1}\n', "expected a 'chosen'")])
def test_bad_prompt_files_exit_2(tmp_path, capsys, content, message):
    prompts = tmp_path / "prompts.jsonl"
    if content is not None:
        prompts.write_text(content)
    assert main(["eval", *TINY, "--prompts", str(prompts)]) == 2
    assert message in capsys.readouterr().err


def test_unwritable_out_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["eval", *TINY, "--prompts", str(HH), "--n", "1", "--out", str(blocker / "run")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_a_run_that_failed_before_its_first_reply_can_be_rerun_with_other_settings(tmp_path, capsys):
    """A typo in --reward stops eval after it wrote run.json: the corrected command continues in the same --out."""
    out = tmp_path / "run"
    argv = ["eval", *TINY, "--methods", "greedy", "--prompts", str(HH), "--n", "1", "--out", str(out)]
    assert main([*argv, "--reward", str(tmp_path / "gide")]) == 2
    assert "reward model directory not found" in capsys.readouterr().err
    assert main(argv) == 0
    assert json.loads((out / "run.json").read_text())["reward"] == str(home.default_reward())
    assert main([*argv, "--reward", str(tmp_path / "gide")]) == 2  # now it has a reply: other settings are refused
    assert "holds an eval run with other settings" in capsys.readouterr().err


def test_an_out_that_is_not_an_eval_run_is_refused_and_kept(tmp_path, capsys):
    argv = ["eval", *TINY, "--prompts", str(HH), "--n", "1", "--out"]
    a_file, theirs, listed = tmp_path / "notes.txt", tmp_path / "theirs", tmp_path / "listed"
    a_file.write_text("mine")
    theirs.mkdir()
    (theirs / "results.json").write_text('{"accuracy": 0.93}')
    listed.mkdir()
    (listed / "run.json").write_text("[1, 2]")
    for out, words in ((a_file, "is a file"), (theirs, "another program's files"), (listed, "run.json is damaged")):
        assert main([*argv, str(out)]) == 2
        assert words in capsys.readouterr().err
    assert a_file.read_text() == "mine" and [p.name for p in theirs.iterdir()] == ["results.json"]
    assert (listed / "run.json").read_text() == "[1, 2]"


def test_prompt_formats():
    hh = json.loads(hh_lines(1)[0])
    conversation = record_prompt(hh)
    assert conversation[-1]["role"] == "user" and hh["chosen"].startswith("\n\nHuman: " + conversation[0]["content"][:10])
    assert record_prompt({"prompt": "Hi"}) == [{"role": "user", "content": "Hi"}]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "reference reply"}]
    assert record_prompt({"messages": messages}) == messages[:2]  # the reference reply is not the prompt
    with pytest.raises(ValueError):
        record_prompt({"messages": [{"role": "assistant", "content": "only me"}]})


def test_skip_bad_lines_keeps_the_good_ones(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n[1, 2]\n\n{"prompt": "two"}\n')
    warnings = []
    loaded = load_prompts(prompts, on_bad_line="skip", warn=warnings.append)
    assert [(p.index, p.line) for p in loaded] == [(0, 1), (1, 4)]
    assert len(warnings) == 1 and ":2:" in warnings[0]
    with pytest.raises(UserError, match=":2:"):
        load_prompts(prompts)


def test_reply_store_redoes_a_reply_torn_by_an_interruption(tmp_path):
    from args_local.evaluation.runner import REPLIES_FILE, ReplyStore

    ReplyStore(tmp_path, {"k": 10}).add({"key": "0|greedy|", "text": "done"})
    with open(tmp_path / REPLIES_FILE, "a") as f:
        f.write('{"key": "1|greedy|", "te')  # killed mid-write
    store = ReplyStore(tmp_path, {"k": 10})
    assert "0|greedy|" in store and "1|greedy|" not in store
    store.add({"key": "1|greedy|", "text": "redone"})
    assert ReplyStore(tmp_path, {"k": 10}).records["1|greedy|"]["text"] == "redone"


def test_sweep_w_writes_the_reward_vs_w_plot(tmp_path, capsys):
    out = tmp_path / "run"
    result = eval_json(capsys, "--prompts", str(HH), "--n", "1", "--methods", "args-greedy", "--max-new-tokens", "6",
                       "--sweep-w", "0,1.5,3", "--out", str(out))
    assert [m["w"] for m in result["sweep"]] == [0.0, 3.0]  # w=1.5 is the main run, not run twice
    assert all(math.isfinite(m["avg_reward"]) for m in result["sweep"])
    assert (out / "reward_vs_w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


ALPACA = HH.parents[1] / "alpaca-eval" / "helpful-pairs.jsonl.gz"


@pytest.mark.skipif(not (home.default_judge() / "manifest.json").is_file(), reason="needs the built-in judge")
def test_eval_on_instructions_reports_each_judge_objective_and_refusals(tmp_path, capsys):
    # dev instructions of the AlpacaEval pairs, one prompt per instruction, judged by the built-in judge by name
    argv = ["--prompts", str(ALPACA), "--split", "dev", "--n", "2", "--judge", "judge", "--out", str(tmp_path / "run")]
    result = eval_json(capsys, *argv)
    from args_local.reward import load_reward_model
    judge = load_reward_model("judge", threads=1)
    assert result["prompts"] == 2 and result["models"]["judge_objectives"] == list(judge.objectives)
    rows = {m["method"]: m for m in result["methods"]}
    args = rows["args-greedy"]
    assert set(args["judges"]) == set(judge.objectives) and "helpful" in args["judges"]
    assert all(0 <= args["judges"][n]["win_tie_vs_greedy"] <= 1 for n in judge.objectives)
    assert args["judge_win_tie_vs_greedy"] == args["judges"]["harmless"]["win_tie_vs_greedy"]
    assert all(0 <= m["refusal_rate"] <= 1 for m in rows.values())
    assert main(["eval", *TINY, *argv]) == 0  # resumed: nothing to generate, the table from the saved replies
    table = capsys.readouterr().out
    assert "judge helpful: avg" in table and "judge harmless: avg" in table and "| refusals (only here / only greedy) | coherence vs greedy (95% CI) | ended |" in table


def test_an_embedder_of_another_kind_is_refused_in_one_line():
    # the guide's graph wants position_ids: coherence scoring ended in a KeyError traceback
    proc = run_cli("eval", *TINY, "--methods", "greedy", "--max-new-tokens", "4", "--prompts", str(HH), "--n", "1",
                   "--embedder", str(home.default_reward()))
    assert_user_error(proc, "holds a decoder model, not a sentence embedder", one_line=True)


def test_a_chosen_judge_without_a_helpful_head_is_not_sent_to_rebuild_the_built_in_one(capsys):
    # the note told a user who gave --judge encoder to rebuild the built-in judge, which changes nothing for them
    result = eval_json(capsys, "--methods", "greedy", "--max-new-tokens", "4", "--prompts", str(HH), "--n", "1",
                       "--judge", "encoder")
    assert "helpfulness judge: encoder has no 'helpful' head (objectives: harmless)" in result["unavailable"]
