"""tools/bench_reference.py with the real models at a tiny size: output structure only, no timing thresholds."""

import json
import subprocess
import sys

import pytest

from args_local import home

from .conftest import ROOT, load_tool

TOOL = ROOT / "tools" / "bench_reference.py"

pytestmark = pytest.mark.skipif(not home.default_policy().is_file() or not (home.default_reward() / "manifest.json").is_file(),
                                reason="needs the built policy and guide RM")



def test_reference_args_and_plain_measured_in_one_run():
    pytest.importorskip("torch")
    child = subprocess.run([sys.executable, str(TOOL), "--tokens", "4", "--reps", "1", "--json"],
                           capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    for name in ("reference", "args_greedy", "plain_greedy"):
        run = result[name]
        assert run["tokens_per_s"] > 0 and run["ms_policy_per_step"] > 0, name
        assert run["tokens_per_s_min"] <= run["tokens_per_s"] <= run["tokens_per_s_max"]
        assert run["tokens_per_rep"] == 4  # end of turn ignored on both sides
    assert result["reference"]["k"] == result["args_greedy"]["k"] == 10
    assert result["reference"]["ms_reward_per_step"] > 0 and result["args_greedy"]["ms_reward_per_step"] > 0
    assert result["plain_greedy"]["ms_reward_per_step"] == 0
    assert result["args_over_reference"] == pytest.approx(
        result["args_greedy"]["tokens_per_s"] / result["reference"]["tokens_per_s"])
    assert result["args_over_plain"] == pytest.approx(
        result["args_greedy"]["tokens_per_s"] / result["plain_greedy"]["tokens_per_s"])
    [agreement] = result["agreement"]
    assert 0 <= agreement["agree_tokens"] <= agreement["of"] == 4
    machine = result["machine"]
    assert machine["torch_threads"] >= 1 and len(machine["load_average_start"]) == 3
    assert "system_info" in result["llama_build"]

    table = load_tool("bench_reference").table(result)
    assert "| reference (HF torch fp32) | 10 |" in table and "| args-local plain greedy | — |" in table
    assert "ARGS / reference:" in table and "load average at start" in table


@pytest.mark.parametrize("argv, words", [
    (["--tokens", "0"], "--tokens"), (["--tokens", "5000"], "--tokens"),  # 5000 named --max-new-tokens and --n-ctx
    # these were refused once the models had loaded: a minute for the repeat penalty (after the torch copies)
    (["--repeat-penalty", "0"], "repeat-penalty must be"), (["--k", "2000"], "k must be"),
    (["--threads", "100000"], "--threads must be between 1"),
    (["--reward", "encoder"], "needs one decoder reward model (got encoder)"),
    (["--reward", "guide+encoder"], "needs one decoder reward model (got decoder + encoder)"),
    (["--policy", "{text}"], "the reference needs the RM's own backbone")])
def test_bad_values_are_one_line_errors_before_the_loads(capsys, tmp_path, argv, words):
    (tmp_path / "notes.txt").write_text("just some notes\n")
    argv = [a.replace("{text}", str(tmp_path / "notes.txt")) for a in argv]
    assert load_tool("bench_reference").main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, words", [
    (["--tokens", "0"], "--tokens"), (["--reps", "0"], "--reps"), (["--k", "0"], "k must"),
    (["--threads", "0"], "--threads"), (["--rm-threads", "0"], "--rm-threads"),
    (["--tokens", "5000"], "--tokens 5000 leaves no room"),
    # bench's model options, told before the models load (the policy here is not even a GGUF)
    (["--policy", "{text}", "--objective", "foo=1"], "has no objective 'foo'"),
    (["--policy", "{text}", "--reward", "guide+guide"], "combined once"),
    (["--policy", "{text}", "--reward", "judge"], "judge is a judge model"),
    (["--policy", "{text}"], "not a GGUF file")])
def test_bench_serve_bad_sizes_are_one_line_errors(capsys, tmp_path, argv, words):
    """--tokens 0 was a UserError traceback, --reps 0 a division by zero once both sides had loaded."""
    (tmp_path / "notes.txt").write_text("just some notes\n")
    assert load_tool("bench_serve").main([a.replace("{text}", str(tmp_path / "notes.txt")) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1


def test_bench_serve_takes_bench_model_options_on_both_sides(capsys):
    """It had --threads alone: the reward model's threads, the models and the objectives were the defaults."""
    argv = ["--tokens", "4", "--reps", "1", "--threads", "1", "--rm-threads", "1", "--reward", "guide+encoder",
            "--objective", "guide.helpful=1,encoder.harmless=0.5", "--json"]
    assert load_tool("bench_serve").main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["machine"]["rm_threads"] == 1 and result["machine"]["reward"] == "guide+encoder"
    assert result["settings"]["objectives"] == {"guide.helpful": 1.0, "encoder.harmless": 0.5}
    for side in ("in_process", "server"):
        assert result[side]["tokens_per_s_min"] <= result[side]["tokens_per_s"] <= result[side]["tokens_per_s_max"]
    assert result["same_replies"]  # the server decoded with the settings and models of the in-process side
    assert result["server_over_in_process"] == pytest.approx(
        result["server"]["tokens_per_s"] / result["in_process"]["tokens_per_s"])
