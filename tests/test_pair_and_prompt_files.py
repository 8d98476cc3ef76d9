"""One reader for pair and prompt files: HH-RLHF dialogues and instruction-style JSONL, their splits,
and one clear line (exit 2) for every kind of bad file, in both `score --pairs` and `eval --prompts`."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from args_local import home
from args_local.cli import main
from args_local.conversations import read_preference_pairs
from args_local.errors import UserError
from args_local.evaluation.prompts import load_prompts
from args_local.reward import load_reward_model

HH_LINE = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_hh_and_instruction_pairs_read_alike(tmp_path):
    rows = [HH_LINE, {"instruction": "Name a colour.", "chosen": "Blue.", "rejected": "No.", "split": "dev"},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "instruction_index": 9}]
    hh, named, indexed = read_preference_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    assert hh.conversation == [{"role": "user", "content": "Hi?"}] and (hh.chosen, hh.rejected) == ("Hello.", "Go away.")
    assert named.conversation == [{"role": "user", "content": "Name a colour."}] and named.chosen == "Blue."
    assert (hh.split, named.split, indexed.split) == ("train", "dev", "dev")  # position 0; field; 9 % 5 == 4


def test_real_files_split_by_their_own_rule(hh_pairs, alpaca_pairs):
    alpaca = read_preference_pairs(alpaca_pairs)
    assert len(alpaca) == 16080 and sum(p.split == "dev" for p in alpaca) == 3216  # the README's counts
    assert sum(p.split == "dev" for p in read_preference_pairs(hh_pairs)) == 385
    # eval: one prompt per instruction (670 instructions, 134 of them dev); HH: one per pair
    dev, train = (load_prompts(alpaca_pairs, split=s) for s in ("dev", "train"))
    assert (len(dev), len(train)) == (134, 536)
    assert not {p.messages[0]["content"] for p in dev} & {p.messages[0]["content"] for p in train}
    assert len(load_prompts(hh_pairs, split="dev")) == 385
    assert [p.index for p in load_prompts(alpaca_pairs, 3, split="dev")] == [0, 1, 2]


def test_prompt_lines_of_every_style(tmp_path):
    rows = [{"instruction": "One?"}, {"prompt": "Two?"}, {"instruction": "One?", "chosen": "a", "rejected": "b"},
            HH_LINE, {"messages": [{"role": "user", "content": "Three?"}]}]
    prompts = load_prompts(write_jsonl(tmp_path / "p.jsonl", rows))
    assert [p.messages[-1]["content"] for p in prompts] == ["One?", "Two?", "Hi?", "Three?"]  # "One?" once
    assert [p.line for p in prompts] == [1, 2, 4, 5]


def gz_that_is_not_gzip(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "bad.jsonl.gz", [HH_LINE])


def truncated_gzip(tmp_path: Path) -> Path:
    data = gzip.compress(("\n".join(json.dumps(HH_LINE) for _ in range(200)) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def latin1(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    return path


BAD_FILES = {  # each class of bad file, and the words its one line must hold
    "not gzip": (gz_that_is_not_gzip, "not gzip-compressed"),
    "truncated gzip": (truncated_gzip, "cannot read it"),
    "not UTF-8": (latin1, "cannot read it"),
    "non-string chosen": (lambda t: write_jsonl(t / "p.jsonl", [{**HH_LINE, "chosen": 3}]), "'chosen' must be a string (got int)"),
    "non-string instruction": (lambda t: write_jsonl(t / "p.jsonl", [{"instruction": ["a"], "chosen": "x", "rejected": "y"}]),
                               "'instruction' must be a string (got list)"),
    "invalid JSON": (lambda t: write_jsonl(t / "p.jsonl", [HH_LINE, "{oops"]), ":2: not valid JSON"),
    "neither format": (lambda t: write_jsonl(t / "p.jsonl", [{"question": "?", "answer": "!"}]), "neither an HH-RLHF pair"),
    "a directory": (lambda t: t, "is a directory"),
}


@pytest.mark.parametrize("command", ["score", "eval"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_get_one_line_and_exit_2(tmp_path, capsys, command, case):
    make, words = BAD_FILES[case]
    path = make(tmp_path)
    argv = ["score", "--pairs", str(path)] if command == "score" else ["eval", "--prompts", str(path), "--n", "500"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_a_pair_file_of_prompts_is_refused_with_its_line(tmp_path):
    with pytest.raises(UserError, match=r"p.jsonl:1: not a preference pair"):
        read_preference_pairs(write_jsonl(tmp_path / "p.jsonl", [{"instruction": "Only a prompt"}]))


def test_built_in_names_resolve_to_the_built_in_models(tmp_path, monkeypatch, encoder_dir):
    assert home.reward_model_dir("guide") == home.default_reward()
    assert home.reward_model_dir("judge") == home.default_judge()
    assert home.reward_model_dir("./encoder") == Path("encoder")  # a path, even if it looks like a name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "encoder").mkdir()  # a folder named like a built-in does not shadow it
    rm = load_reward_model("encoder", threads=1, use_gpu=False)
    assert rm.kind == "encoder" and float(rm.score_replies([{"role": "user", "content": "Hi"}], ["Hello!"])[0]) == \
        pytest.approx(float(load_reward_model(encoder_dir, 1, use_gpu=False).score_replies(
            [{"role": "user", "content": "Hi"}], ["Hello!"])[0]))


def test_length_report_sets_accuracy_beside_the_longer_wins_baseline():
    from args_local.conversations import PreferencePair
    from args_local.scoring import length_report

    conv = [{"role": "user", "content": "?"}]
    pairs = [PreferencePair(0, conv, "a" * 100, "b" * 10), PreferencePair(1, conv, "a" * 110, "b" * 100),
             PreferencePair(2, conv, "a" * 100, "b" * 120)]
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # right, wrong, right
    report = length_report(pairs, scores)
    assert report["longer_wins"] == pytest.approx(2 / 3)
    matched = report["length_matched"]  # pairs 1 and 2 are within 1.25x
    assert matched["pairs"] == 2 and matched["accuracy"] == 0.5 and matched["longer_wins"] == 0.5


def test_score_reads_instruction_pairs_by_built_in_name(capsys, guide_dir, alpaca_pairs):
    assert main(["score", "--reward", "guide", "--pairs", str(alpaca_pairs), "--split", "dev", "--limit", "6",
                 "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 6 and 0 <= out["accuracy"] <= 1 and out["split"] == "dev"
    assert 0 <= out["longer_wins"] <= 1 and out["length_matched"]["within"] == 1.25


def test_score_weighs_the_guide_s_objectives_as_decoding_does(capsys, guide_dir, alpaca_pairs):
    # the guide's harmless weight is gated off on ordinary requests; score weighed it 2 on them all
    # (AlpacaEval dev, first 40 pairs: .750 where the helpfulness the guide decodes with ranks .950)
    argv = ["score", "--reward", "guide", "--pairs", str(alpaca_pairs), "--split", "dev", "--limit", "12", "--threads", "1",
            "--json"]
    results = []
    for extra in ([], ["--objective", "helpful"]):
        assert main([*argv, *extra]) == 0
        results.append(json.loads(capsys.readouterr().out))
    default, helpful = results
    assert default["objectives"] == helpful["objectives"] == {"harmless": 0.0, "helpful": 1.0}  # gate off: all 12
    assert default["correct"] == helpful["correct"] and default["accuracy"] == helpful["accuracy"]


def test_a_perfect_score_on_few_pairs_has_an_interval_that_says_how_few(capsys, guide_dir, alpaca_pairs):
    # the normal approximation printed "1.000 ± 0.000 on 3 pairs" (and intervals past 1 on 5 matched pairs)
    argv = ["score", "--reward", "guide", "--pairs", str(alpaca_pairs), "--split", "dev", "--limit", "3", "--threads", "1"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == 1.0 and out["ci95"] == 0.0  # kept as it was for the tools that read it
    assert out["ci95_low"] == pytest.approx(0.4385, abs=1e-4) and out["ci95_high"] == 1.0  # Wilson: 3 of 3
    assert main(argv) == 0
    assert "pairwise accuracy 1.000 (95% CI 0.438-1.000) on 3 pairs" in capsys.readouterr().out


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_file_saved_with_a_utf8_byte_order_mark_is_read(tmp_path, capsys, gzipped, guide_dir):
    # Notepad and Windows PowerShell start UTF-8 files so: its first line was "not valid JSON (Unexpected UTF-8 BOM)"
    text = "\ufeff" + json.dumps(HH_LINE) + "\n" + json.dumps(HH_LINE) + "\n"
    pairs = tmp_path / ("pairs.jsonl.gz" if gzipped else "pairs.jsonl")
    pairs.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    assert main(["score", "--pairs", str(pairs), "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 2
    assert main(["eval", "--prompts", str(pairs), "--n", "1", "--methods", "greedy", "--max-new-tokens", "2",
                 "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompts"] == 1
