"""`args-local` as a user runs it: JSON output, and one clear message (exit 2) for each bad input."""

import json
import shutil

import pytest

from args_local.llama_build import VERSION as LLAMA_VERSION

from .conftest import THREADS, assert_user_error, guide_copy, run_cli

Q = "How do I make a good cup of coffee?"


def generate(*extra):
    return run_cli("generate", Q, "--max-new-tokens", "8", "--threads", str(THREADS), *extra)


def test_generate_json_has_the_documented_fields():
    proc = generate("--json", "--mode", "args-greedy", "--k", "5")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("text", "tokens", "rewards", "tokens_per_s", "ms_policy_per_step", "ms_reward_per_step"):
        assert key in out
    assert len(out["tokens"]) == 8 and len(out["rewards"]) == 8
    assert out["tokens_per_s"] > 0 and out["ms_reward_per_step"] > 0


def test_generate_takes_openais_penalties():
    plain = json.loads(generate("--json", "--mode", "greedy", "--repeat-penalty", "1", "--max-new-tokens", "32").stdout)
    proc = generate("--json", "--mode", "greedy", "--repeat-penalty", "1", "--max-new-tokens", "32",
                    "--presence-penalty", "2", "--frequency-penalty", "0.5")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["settings"]["presence_penalty"], out["settings"]["frequency_penalty"]) == (2.0, 0.5)
    assert out["text"] != plain["text"]


def test_generate_with_the_encoder_reward_model_whose_tokenizer_differs(encoder_dir):
    proc = generate("--json", "--reward", str(encoder_dir))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["text"] and len(out["rewards"]) == len(out["tokens"])


def test_generate_takes_the_guide_by_its_built_in_name():
    by_name, default = generate("--json", "--reward", "guide"), generate("--json")
    assert by_name.returncode == 0, by_name.stderr  # was "reward model directory not found: guide"
    assert json.loads(by_name.stdout)["tokens"] == json.loads(default.stdout)["tokens"]


def test_generate_reads_a_piped_prompt_as_if_it_were_the_argument(tmp_path):
    piped = tmp_path / "question.txt"
    piped.write_text(Q + "\n")  # what `echo` pipes in
    by_argument = generate("--json", "--mode", "greedy")
    for prompt in ("-", None):  # `generate -` and plain `generate`
        with open(piped, "rb") as stdin:
            args = [a for a in ("generate", prompt) if a]
            proc = run_cli(*args, "--max-new-tokens", "8", "--threads", str(THREADS), "--json", "--mode", "greedy",
                           stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["tokens"] == json.loads(by_argument.stdout)["tokens"]
        assert json.loads(proc.stdout)["prompt_tokens"] == json.loads(by_argument.stdout)["prompt_tokens"]


def test_a_piped_prompt_that_is_not_utf8_is_refused(tmp_path):
    piped = tmp_path / "latin1.txt"
    piped.write_bytes("caf\u00e9?".encode("latin-1"))
    with open(piped, "rb") as stdin:
        assert_user_error(run_cli("generate", "-", stdin=stdin), "the prompt on standard input is not valid UTF-8",
                          one_line=True)


def test_version_names_args_local_and_both_runtimes():
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("args-local 0.") and f"llama-cpp-python {LLAMA_VERSION}" in line and "onnxruntime 1." in line


def test_every_option_of_every_command_says_what_it_does_in_its_help():
    # score --threads (which threads? onnxruntime's), export's --opset and models --json showed no text
    import argparse

    from args_local.cli import build_parser

    def silent(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from silent(sub, f"{path} {name}")
            elif action.help is None:
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"

    assert not list(silent(build_parser(), "args-local"))


def test_missing_policy_file():
    assert_user_error(generate("--policy", "/nonexistent/model.gguf"), "policy model not found", "tools/setup.sh")


def test_policy_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely a zip")
    assert_user_error(generate("--policy", str(fake)), "not a GGUF file")


def test_truncated_gguf(policy_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(policy_path.read_bytes()[:5_000_000])
    assert_user_error(generate("--policy", str(cut)), "could not load policy model", "cut off or damaged; fetch it again.")


def test_missing_reward_directory():
    assert_user_error(generate("--reward", "/nonexistent/rm"), "reward model directory not found")


def test_reward_directory_without_manifest(tmp_path):
    assert_user_error(generate("--reward", str(tmp_path)), "has no manifest.json")


def test_manifest_of_unknown_kind(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "telepathic", "model": "x"}))
    assert_user_error(generate("--reward", str(tmp_path)), "unknown reward model kind 'telepathic'")


def test_onnx_file_that_is_garbage(encoder_dir, tmp_path):
    rm = tmp_path / "rm"
    shutil.copytree(encoder_dir, rm)
    (rm / "model.onnx").write_bytes(b"\x00garbage" * 100)
    assert_user_error(generate("--reward", str(rm)), "could not load ONNX model", "re-export")


def test_a_run_that_fails_before_generating_keeps_the_last_trace(tmp_path):
    """--trace emptied the file before the models loaded: a typo in --reward lost the previous run's trace."""
    trace = tmp_path / "steps.jsonl"
    trace.write_text('{"step": 0}\n')
    assert_user_error(generate("--reward", str(tmp_path / "no-such-rm"), "--trace", str(trace)), "not found")
    assert trace.read_text() == '{"step": 0}\n'
    proc = generate("--trace", str(trace))  # a run that decodes replaces it
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    assert steps and steps[0]["step"] == 0 and "candidates" in steps[0]


def test_head_file_that_is_garbage(guide_dir, tmp_path):
    """numpy reads a file that is no .npz as a pickle, and its error said to load it unsafely if trusted."""
    rm = guide_copy(guide_dir, tmp_path / "rm", lambda manifest: None)
    (rm / "head-helpful.npz").unlink()
    (rm / "head-helpful.npz").write_text("garbage\n")
    proc = generate("--reward", str(rm))
    assert_user_error(proc, f"{rm / 'head-helpful.npz'} is not a reward head", "not an .npz file", one_line=True)
    assert "pickle" not in proc.stderr


def test_onnx_file_that_is_not_a_reward_model(guide_dir, encoder_dir, tmp_path):
    rm = tmp_path / "rm"
    shutil.copytree(encoder_dir, rm)
    shutil.copy(guide_dir / "model.onnx", rm / "model.onnx")  # a decoder graph where a classifier should be
    assert_user_error(generate("--reward", str(rm)), "not a text classification model")


@pytest.mark.parametrize("flags, words", [
    (["--k", "0"], "k must be at least 1"),
    (["--k", "60000"], "at most 1024"),
    (["--temperature", "-1"], "temperature must be a finite number >= 0"),
    (["--w", "nan"], "w must be a finite number"),
    (["--w", "inf"], "w must be a finite number"),
    (["--mode", "beam"], "unknown mode 'beam'"),
    (["--adaptive", "1"], "adaptive must be a probability in [0, 1)"),
    (["--min-p", "1"], "min-p must be in [0, 1)"),
    (["--repeat-penalty", "0"], "repeat-penalty must be a positive number"),
    (["--no-repeat-ngram", "1"], "no-repeat-ngram must be 0 (off) or at least 2"),
    (["--presence-penalty", "3"], "--presence-penalty must be a number from -2 to 2, 0 for off (got 3.0)"),
    (["--frequency-penalty", "nan"], "--frequency-penalty must be a number from -2 to 2"),
])
def test_invalid_settings(flags, words):
    assert_user_error(generate(*flags), words)


def test_prompt_longer_than_the_context():
    proc = run_cli("generate", "lorem ipsum " * 300, "--n-ctx", "256", "--max-new-tokens", "8",
                   "--threads", str(THREADS))
    assert_user_error(proc, "does not fit the 256-token context", "lower --max-new-tokens or raise --n-ctx")


def test_decoder_rm_with_another_vocabulary_is_refused_naming_both(guide_dir):
    """A decoder RM reads the policy's token ids: Gemma's 262k vocabulary cannot feed SmolLM2's RM."""
    import llama_cpp

    from args_local import home
    from args_local.errors import UserError
    from args_local.reward import load_reward_model

    gemma = next(home.models_dir().glob("gemma-3-270m/*.gguf"), None)
    if gemma is None:
        pytest.fail("the judge's Gemma GGUF is missing: run tools/setup.sh")
    vocab = llama_cpp.Llama(str(gemma), vocab_only=True, verbose=False)
    rm = load_reward_model(guide_dir, threads=THREADS)
    probe = vocab.tokenize(rm.vocab["probe_text"].encode(), add_bos=False, special=True)
    with pytest.raises(UserError, match=r"guide \(vocabulary of 49152 tokens\) does not share the tokenizer of the policy gemma.*262144 tokens"):
        rm.check_policy_vocabulary(gemma.name, vocab.n_vocab(), probe)


def test_onnx_file_named_in_the_manifest_is_missing(encoder_dir, tmp_path):
    rm = tmp_path / "rm"
    shutil.copytree(encoder_dir, rm)
    (rm / "model.onnx").unlink()
    assert_user_error(generate("--reward", str(rm)), "is missing", "re-export")


def test_chat_in_a_real_terminal_starts_and_quits_with_code_0(tmp_path):
    """The other side of `chat needs a terminal`: in a pseudo-terminal it runs (no model needed:
    the load fails inside the app) and Ctrl+Q quits it cleanly."""
    import os
    import select
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "ARGS_LOCAL_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "args_local.cli", "chat", "--policy", str(tmp_path / "none.gguf")],
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    screen, deadline = b"", time.time() + 60
    while b"not found" not in screen.replace(b"\x1b", b"") and time.time() < deadline:  # the app shows why
        if select.select([master], [], [], 0.5)[0]:
            screen += os.read(master, 65536)
    os.write(master, b"\x11")  # Ctrl+Q
    deadline = time.time() + 30
    while proc.poll() is None and time.time() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            try:
                os.read(master, 65536)
            except OSError:
                break
    os.close(master)
    assert proc.wait(timeout=30) == 0
    assert b"needs a terminal" not in screen and len(screen) > 500
