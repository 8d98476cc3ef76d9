"""args-local bench with the real policy and guide RM, at tiny sizes (no timing thresholds)."""

import json
import re

import pytest

from args_local import home
from args_local.cli import main

from .conftest import assert_user_error, run_cli

pytestmark = pytest.mark.skipif(not home.default_policy().is_file() or not (home.default_reward() / "manifest.json").is_file(),
                                reason="needs the built policy and guide RM")


def test_bench_quick_json_reports_plain_and_args_speeds(capsys):
    argv = ["bench", "--quick", "--json", "--tokens", "6", "--reps", "2", "--k-values", "5,10", "--threads", "1",
            "--rm-threads", "1"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["plain_greedy_tokens_per_s"] > 0
    decoder_runs = [r for r in result["runs"] if r["reward_kind"] == "decoder"]
    assert [r["k"] for r in decoder_runs] == [5, 10]
    for r in result["runs"]:
        assert r["tokens_per_s"] > 0 and r["ratio_to_plain"] > 0
        assert r["tokens_per_s_min"] <= r["tokens_per_s"] <= r["tokens_per_s_max"]
        assert r["ms_policy_per_step"] > 0 and r["ms_reward_per_step"] > 0
        assert r["tokens_per_rep"] == 6  # end-of-turn ignored: every run decodes the same count
    assert result["plain_greedy"]["ms_reward_per_step"] == 0  # the floor runs no reward model
    machine = result["machine"]
    assert machine["policy_threads"] == 1 and machine["rm_threads"] == 1
    assert "CPUExecutionProvider" in machine["onnxruntime_providers"]
    assert isinstance(machine["llama_cpp_gpu_offload"], bool)
    # the weights the runs decoded with: the guide's harmless gate is off for these ordinary requests
    # (the ungated default, harmless 2, was reported once)
    from args_local.bench import BENCH_PROMPTS
    from args_local.reward import load_reward_model
    guide = load_reward_model("guide", threads=1)
    gated = guide.prompt_weights([{"role": "user", "content": BENCH_PROMPTS[0]}])
    assert decoder_runs[0]["objectives"] == gated != dict(zip(guide.objectives, guide.weight_vector(None).tolist()))


def test_bench_table_and_bad_k_values(capsys):
    assert main(["bench", "--quick", "--tokens", "4", "--reps", "1", "--k-values", "5", "--adaptive", "0.5",
                 "--min-p", "0.2"]) == 0
    table = capsys.readouterr().out
    assert "| plain greedy |" in table and "| ARGS-greedy | decoder (CPU) | 5 |" in table
    assert "| ARGS-greedy adaptive 0.5 | decoder (CPU) | 5 |" in table
    assert "| ARGS-greedy min-p 0.2 | decoder (CPU) | 5 |" in table
    assert "end-of-turn is ignored" in table
    assert main(["bench", "--k-values", "0,x"]) == 2
    assert "--k-values" in capsys.readouterr().err
    # past the context: refused after the policy had loaded, naming --max-new-tokens and --n-ctx bench has not
    assert main(["bench", "--tokens", "5000"]) == 2
    err = capsys.readouterr().err
    assert "--tokens must be at most 896" in err and "--n-ctx" not in err


@pytest.mark.skipif(not (home.default_encoder_reward() / "manifest.json").is_file(), reason="needs the built encoder RM")
def test_bench_measures_two_reward_models_weighed_together(capsys):
    argv = ["bench", "--quick", "--json", "--tokens", "4", "--reps", "1", "--k-values", "5", "--reward", "guide+encoder",
            "--objective", "guide.helpful=1,encoder.harmless=0.5"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    (ensemble,) = [r for r in result["runs"] if r["reward_kind"] == "ensemble"]
    assert ensemble["reward_name"] == "guide+encoder" and ensemble["tokens_per_rep"] == 4
    assert ensemble["objectives"]["encoder.harmless"] == 0.5 and ensemble["objectives"]["guide.harmless"] == 0
    assert ensemble["ms_reward_per_step"] > 0
    # the separate encoder row has no guide.* objective: reported, not measured
    assert any("encoder RM: has no objective" in why for why in result["unavailable"])


@pytest.mark.skipif(not (home.default_encoder_reward() / "manifest.json").is_file(), reason="needs the built encoder RM")
def test_a_reward_model_of_the_wrong_kind_is_refused_before_the_policy_loads():
    """README: a user error comes before any model loads where the input shows it. `bench --reward encoder`
    was refused only once the policy had loaded, and as 'encoder is encoder'."""
    for option, name, words in (("--reward", "encoder", "measure it with --encoder"),
                                ("--encoder", "guide", "takes one encoder reward model")):
        proc = run_cli("bench", option, name, timeout=120)
        assert_user_error(proc, words, one_line=True)


def linked_home(tmp_path, *dirs):
    """A scratch home: the policy and the named built-in model folders, their files linked; the llama.cpp record copied."""
    import shutil

    models = tmp_path / "models"
    for directory in (home.default_policy().parent, *dirs):
        (models / directory.name).mkdir(parents=True)
        for f in directory.iterdir():
            (models / directory.name / f.name).symlink_to(f.resolve())
    record = home.home() / "llama-build.json"
    if record.is_file():
        shutil.copy(record, tmp_path / record.name)
    return models


@pytest.mark.skipif(not (home.default_encoder_reward() / "manifest.json").is_file(), reason="needs the built encoder RM")
def test_a_damaged_default_encoder_is_reported_not_the_end_of_the_run(tmp_path):
    """The default encoder is measured when built and reported n/a when not; one with its model.onnx gone
    ended the whole bench after the policy had loaded, nothing measured."""
    models = linked_home(tmp_path, home.default_reward(), home.default_encoder_reward())
    (models / home.default_encoder_reward().name / "model.onnx").unlink()
    proc = run_cli("bench", "--quick", "--json", "--tokens", "2", "--reps", "1", "--k-values", "5",
                   env_extra={"ARGS_LOCAL_HOME": str(tmp_path)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["reward_kind"] for r in result["runs"]] == ["decoder"]
    [why] = result["unavailable"]
    assert why.startswith("encoder RM: damaged") and "model.onnx" in why
    # one given by the user is not skipped: it was asked for
    assert_user_error(run_cli("bench", "--encoder", str(models / "encoder"), env_extra={"ARGS_LOCAL_HOME": str(tmp_path)},
                              timeout=120), "model.onnx")


def test_models_lists_a_damaged_head_as_loading_then_finds_it(tmp_path):
    """`models` read the manifest only: a guide whose head file was not an .npz was listed as a working
    decoder RM, and every load then refused it."""
    models = linked_home(tmp_path, home.default_reward())
    head = models / home.default_reward().name / "head-helpful.npz"
    head.unlink()
    head.write_bytes(b"cut off")
    env = {"ARGS_LOCAL_HOME": str(tmp_path)}
    listed = run_cli("models", "--json", env_extra=env)
    assert listed.returncode == 0, listed.stderr
    row = {r["role"]: r for r in json.loads(listed.stdout)["models"]}["guide RM (default)"]
    assert "head-helpful.npz is not a reward head" in row["problem"] and "rebuilds it" in row["problem"]
    assert "guide RM (default)   damaged" in run_cli("models", env_extra=env).stdout
    loaded = run_cli("generate", "hi", "--max-new-tokens", "1", env_extra=env, timeout=120)
    assert_user_error(loaded, "head-helpful.npz is not a reward head")


def test_the_table_gives_the_process_peak_memory_once_not_as_a_column_per_row(capsys):
    """Every model loads before any timing, so the process peak was the same in each row, read as a per-setting
    figure; it is one figure on the memory line."""
    assert main(["bench", "--quick", "--reps", "1", "--tokens", "4", "--k-values", "5", "--encoder", "encoder"]) == 0
    out = capsys.readouterr().out
    assert "peak RSS MB" not in out.splitlines()[0]
    assert re.search(r"peak RSS of the process \d+ MB with every model loaded", out)
