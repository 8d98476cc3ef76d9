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


def test_bad_sizes_are_one_line_errors(capsys):
    for tokens in ("0", "5000"):  # 5000 was refused after the loads, naming --max-new-tokens and --n-ctx
        assert load_tool("bench_reference").main(["--tokens", tokens]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "--tokens" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, words", [(["--tokens", "0"], "max_new_tokens"), (["--reps", "0"], "--reps"),
                                         (["--k", "0"], "k must"), (["--threads", "0"], "--threads")])
def test_bench_serve_bad_sizes_are_one_line_errors(capsys, argv, words):
    """--tokens 0 was a UserError traceback, --reps 0 a division by zero once both sides had loaded."""
    assert load_tool("bench_serve").main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1
