"""`args-local export`: real (tiny) Hugging Face reward models of both kinds, exported, validated, decoded with."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from args_local.engine import Engine
from args_local.errors import UserError
from args_local.export.common import staged_output
from args_local.reward import load_reward_model
from args_local.settings import DecodingSettings

from .conftest import ROOT, THREADS, assert_user_error, run_cli


def save_tiny(model_cls, config, directory, tokenizer_json):
    import torch

    torch.manual_seed(0)
    model_cls(config).eval().save_pretrained(directory)
    shutil.copy(tokenizer_json, directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, encoder_dir):
    from transformers import BertConfig, BertForSequenceClassification

    # initializer_range 0.2, not BERT's 0.02: with that its score hardly moved with a reply's last word, and even
    # fp16 reordered a quarter of the candidates at an ARGS step (which the precision check ranks)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, initializer_range=0.2,
                        architectures=["BertForSequenceClassification"])
    return save_tiny(BertForSequenceClassification, config, tmp_path_factory.mktemp("tiny-bert"),
                     encoder_dir / "tokenizer.json")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, guide_dir):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0,
                         architectures=["LlamaForSequenceClassification"])
    return save_tiny(LlamaForSequenceClassification, config, tmp_path_factory.mktemp("tiny-llama"),
                     guide_dir / "tokenizer.json")


def export(src, out, *extra):
    return run_cli("export", "reward", str(src), "--out", str(out), *extra)


def decode_with(policy_path, rm_dir):
    engine = Engine.load(policy_path, rm_dir, threads=THREADS)
    return engine.generate("How do I make a good cup of coffee?", DecodingSettings(max_new_tokens=6))


def test_encoder_export_is_validated_and_decodes(tiny_bert, policy_path, tmp_path):
    out = tmp_path / "rm"
    proc = export(tiny_bert, out, "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "encoder"
    assert manifest["validation"]["max_abs_diff"] < 1e-3
    assert manifest["normalization"]["std"] > 0
    result = decode_with(policy_path, out)
    assert len(result.rewards) == 6 and all(np.isfinite(result.rewards))


def test_decoder_export_matches_the_source_model_and_decodes(tiny_llama, policy_path, tmp_path):
    out = tmp_path / "rm"
    proc = export(tiny_llama, out)  # --kind auto: a llama config is a decoder
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "decoder"
    v = manifest["validation"]
    assert v["max_abs_diff_source_model"] < 1e-3 and v["max_abs_diff_candidates"] < 1e-3
    result = decode_with(policy_path, out)
    assert len(result.rewards) == 6 and all(np.isfinite(result.rewards))


def test_the_summary_says_what_was_validated_and_how_to_use_it(tiny_llama, encoder_dir, policy_path, tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    out = tmp_path / "rm"
    proc = export(tiny_llama, out, "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr
    # it printed the validation as one raw JSON object, and no word on how to use the model
    assert "the source model's own forward included" in proc.stdout and "int8 (" in proc.stdout
    assert f"generate --reward {out} " in proc.stdout and "{" not in proc.stdout
    # a decoder RM of another vocabulary than the policy's: the summary names its vocabulary, and generate
    # names the way out (export it as an encoder, with its own tokenizer)
    config = LlamaConfig(vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0,
                         architectures=["LlamaForSequenceClassification"])
    src = save_tiny(LlamaForSequenceClassification, config, tmp_path / "bert-vocab-llama", encoder_dir / "tokenizer.json")
    proc = export(src, tmp_path / "other")
    assert proc.returncode == 0 and "a policy of its tokenizer (30522 tokens)" in proc.stdout, proc.stderr
    proc = run_cli("generate", "hi", "--max-new-tokens", "4", "--reward", str(tmp_path / "other"))
    assert_user_error(proc, "does not share the tokenizer", "export reward SRC --kind encoder", one_line=True)
    assert export(src, tmp_path / "enc", "--kind", "encoder").returncode == 0
    result = decode_with(policy_path, tmp_path / "enc")
    assert len(result.rewards) == 6 and all(np.isfinite(result.rewards))


def test_a_decoder_reads_no_more_tokens_than_it_has_positions(guide_dir, tmp_path):
    """As encoders do: past its positions a decoder RM scored text it was never trained to read, silently."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0,
                         max_position_embeddings=64, architectures=["LlamaForSequenceClassification"])
    src = save_tiny(LlamaForSequenceClassification, config, tmp_path / "src", guide_dir / "tokenizer.json")
    assert_user_error(export(src, tmp_path / "long", "--max-length", "128"), "--max-length 128 is more", "64 positions")
    assert export(src, tmp_path / "rm").returncode == 0
    assert json.loads((tmp_path / "rm" / "manifest.json").read_text())["max_length"] == 64


def test_a_sliding_window_decoder_is_exported_as_an_encoder(guide_dir, tmp_path):
    """Validation failed with 'onnxruntime and torch differ by 4.70e-02', and no word on why or what to do."""
    from transformers import MistralConfig, MistralForSequenceClassification

    config = MistralConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0,
                           sliding_window=16, architectures=["MistralForSequenceClassification"])
    src = save_tiny(MistralForSequenceClassification, config, tmp_path / "src", guide_dir / "tokenizer.json")
    assert_user_error(export(src, tmp_path / "rm"), "sliding window of 16 tokens", "--kind encoder", one_line=True)
    assert export(src, tmp_path / "rm", "--kind", "encoder").returncode == 0


def test_int8_decoder_export_reports_what_it_changed(tiny_llama, tmp_path):
    out = tmp_path / "rm"
    proc = export(tiny_llama, out, "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr
    validation = json.loads((out / "manifest.json").read_text())["validation"]
    report = validation["int8"]
    assert report["ranking_agreement"] >= report["bound"] and -1 <= report["correlation"] <= 1
    # smoothing for int8 left the fp32 graph computing what the source model computes
    assert validation["max_abs_diff_source_model"] < 1e-3 and report["smoothing"]["alpha"] > 0
    # both ways were tried; the fastest that ranks like fp32 was kept, and it is the graph on disk
    assert set(report["tried"]) == {"dynamic", "weight-only"}
    passing = [way for way, r in report["tried"].items() if r["ranking_agreement"] >= report["bound"]]
    assert report["way"] == min(passing, key=lambda way: report["tried"][way]["ms_per_step"])
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx"), load_external_data=False).graph.node}
    assert ("MatMulInteger" in ops) == (report["way"] == "dynamic")
    assert ("MatMulNBits" in ops) == (report["way"] == "weight-only" or bool(report["smoothing"]["weight_only_down_layers"]))
    assert sorted(p.name for p in out.glob("model*.onnx")) == ["model.onnx"]


def test_smoothing_keeps_the_function_and_names_the_outliers_it_cannot_flatten(tiny_llama, guide_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    from args_local.export.decoder_graph import CandidateScoringGraph
    from args_local.export.smoothing import smooth

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_llama), dtype=torch.float32).eval()
    with torch.no_grad():  # one channel of layer 1's down-projection input 1000x the others
        model.model.layers[1].mlp.up_proj.weight[7] *= 1000
    source_norm = model.model.layers[0].input_layernorm.weight.clone()
    graph = CandidateScoringGraph(model.model, 2, final_norm=True).eval()
    ids = [[5, 900, 31, 77, 4000, 12], [8, 8, 2001, 45]]
    with torch.no_grad():
        before = graph.run_sequence(ids[0])
        norm_before = graph.input_norm[0].weight.clone()
        assert smooth(graph, ids) == [1]
        after = graph.run_sequence(ids[0])
    assert not torch.equal(graph.input_norm[0].weight, norm_before)  # it did rescale
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the source model's own modules are untouched
    assert torch.equal(model.model.layers[0].input_layernorm.weight, source_norm)


def test_missing_source(tmp_path):
    assert_user_error(export(tmp_path / "nope", tmp_path / "out"), "source model directory not found")


def test_hub_model_id_offline(tmp_path):
    assert_user_error(export("OpenAssistant/reward-model-deberta-v3-large", tmp_path / "out"), "offline")


def test_a_gguf_given_as_source_names_from_gguf(policy_path, tmp_path):
    # it said the file was no directory, and that model ids need the hub
    assert_user_error(export(policy_path, tmp_path / "o"), f"--from-gguf {policy_path} --head", one_line=True)


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "src").mkdir()
    assert_user_error(export(tmp_path / "src", tmp_path / "out"), "no config.json")
    (tmp_path / "src" / "manifest.json").write_text('{"name": "a web app"}')  # not an export to export again
    assert_user_error(export(tmp_path / "src", tmp_path / "out"), "no config.json", one_line=True)


def test_an_output_that_overlaps_the_source_is_refused_and_the_source_kept(tiny_bert, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_bert, src)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    for out in (src, src / "onnx", tmp_path):  # the source itself, inside it, around it
        assert_user_error(export(src, out, "--force"), "overlaps the source")
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_force_replaces_an_earlier_export_and_nothing_else(tiny_bert, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert_user_error(export(tiny_bert, mine, "--force"), "not an args-local model")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    earlier = tmp_path / "rm"
    earlier.mkdir()
    (earlier / "manifest.json").write_text(json.dumps({"kind": "encoder", "name": "old"}))
    proc = export(tiny_bert, earlier, "--force")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((earlier / "manifest.json").read_text())["name"] == "rm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "rm"]  # no staging folders left


def test_a_built_in_model_folder_is_no_out(tiny_bert, tmp_path):
    """With --force, an export replaced the built-in guide, and setup rebuilt the guide over it (its files had
    changed): the user's model was gone, and ARGS had decoded with it in between. (A home of its own here.)"""
    env = {"ARGS_LOCAL_HOME": str(tmp_path)}
    for name in ("guide", "minilm-embedder"):
        built = tmp_path / "models" / name
        built.mkdir(parents=True)
        (built / "manifest.json").write_text(json.dumps({"kind": "decoder"}))
        proc = run_cli("export", "reward", str(tiny_bert), "--out", str(built), "--force", env_extra=env)
        assert_user_error(proc, "is a built-in model's folder", "choose another --out", one_line=True)
        assert [p.name for p in built.iterdir()] == ["manifest.json"]


def test_architecture_that_is_not_a_reward_model(tiny_bert, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_bert, src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    assert_user_error(export(src, tmp_path / "out"), "is not a reward model", "DebertaV2For", "LlamaFor")


def test_decoder_kind_for_an_architecture_it_cannot_run_is_one_line_before_loading(tiny_bert, tmp_path):
    proc = export(tiny_bert, tmp_path / "out", "--kind", "decoder")
    assert_user_error(proc, "BertForSequenceClassification is not supported for decoder", "--kind encoder")
    assert "loading" not in proc.stderr and not (tmp_path / "out").exists()


def test_multi_label_model_asks_which_label(tiny_bert, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_bert, src)
    config = json.loads((src / "config.json").read_text())
    labels = {"0": "bad", "1": "ok", "2": "good"}
    (src / "config.json").write_text(json.dumps({**config, "id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}))
    assert_user_error(export(src, tmp_path / "out"), "3 output labels", "--label-index")


def test_two_label_model_saved_without_labels_is_two_labels(encoder_dir, tmp_path):
    """num_labels=2 is transformers' default, so save_pretrained() writes no id2label: still two outputs."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, architectures=["BertForSequenceClassification"])
    src = save_tiny(BertForSequenceClassification, config, tmp_path / "src", encoder_dir / "tokenizer.json")
    assert "id2label" not in json.loads((src / "config.json").read_text())
    assert_user_error(export(src, tmp_path / "asks"), "2 output labels", "--label-index")
    out = tmp_path / "rm"
    proc = export(src, out, "--label-index", "1")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["output_index"] == 1
    from args_local.reward.encoder import EncoderRewardModel

    rm = EncoderRewardModel(out, {**manifest, "normalization": {"mean": 0, "std": 1}}, threads=1, use_gpu=False)
    feeds = rm._inputs("hi", ["hello there"])
    model = BertForSequenceClassification.from_pretrained(str(src)).eval()
    with torch.no_grad():
        logits = model(**{k: torch.tensor(v) for k, v in feeds.items()}).logits[0].numpy()
    assert rm.raw_scores("hi", ["hello there"])[0] == pytest.approx(logits[1], abs=1e-5)  # the second label


def test_text_in_decoder_classifier_is_padded_with_its_own_pad_token(guide_dir, tiny_bert, tmp_path):
    """GPT-2 & co. score their last token that is not the pad id: a batch padded with another id
    scored every shorter reply at a pad token; and one with no pad token is refused in one line."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from args_local.reward.encoder import EncoderRewardModel

    def tiny_gpt2(name, **pad):
        config = GPT2Config(vocab_size=49152, n_embd=32, n_layer=2, n_head=2, num_labels=1,
                            architectures=["GPT2ForSequenceClassification"], **pad)
        return save_tiny(GPT2ForSequenceClassification, config, tmp_path / name, guide_dir / "tokenizer.json")

    assert_user_error(export(tiny_gpt2("nopad"), tmp_path / "o", "--kind", "encoder"), "no pad_token_id", one_line=True)
    bert = tmp_path / "bert-old-config"  # a config.json that predates pad_token_id: BERT's own default, 0
    shutil.copytree(tiny_bert, bert)
    config = json.loads((bert / "config.json").read_text())
    del config["pad_token_id"]
    (bert / "config.json").write_text(json.dumps(config))
    assert export(bert, tmp_path / "bert-rm").returncode == 0
    assert json.loads((tmp_path / "bert-rm" / "manifest.json").read_text())["pad_id"] == 0
    out = tmp_path / "rm"
    proc = export(tiny_gpt2("pad5", pad_token_id=5), out)  # auto: no KV-cached graph for GPT-2, so text-in
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr  # torch's note on the pooling's indexing: the validation is what counts
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "encoder" and manifest["pad_id"] == 5
    rm = EncoderRewardModel(out, manifest, threads=1, use_gpu=False)
    replies = ["Grind fresh beans just before brewing, with water just off the boil.", "Sure.", "No."]
    alone = [rm.raw_scores("How do I make coffee?", [r])[0] for r in replies]
    np.testing.assert_allclose(rm.raw_scores("How do I make coffee?", replies), alone, atol=1e-4)


def test_an_encoder_reads_no_more_tokens_than_it_has_positions(encoder_dir, tmp_path):
    """Past its position table a model fails on every long input: that was a traceback while decoding."""
    from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

    from args_local.reward.encoder import EncoderRewardModel

    small = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 num_labels=1, max_position_embeddings=64)
    bert = save_tiny(BertForSequenceClassification, BertConfig(**small, architectures=["BertForSequenceClassification"]),
                     tmp_path / "bert", encoder_dir / "tokenizer.json")
    assert_user_error(export(bert, tmp_path / "o", "--max-length", "100"), "64 positions", one_line=True)
    out = tmp_path / "rm"
    proc = export(bert, out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["max_length"] == 64
    rm = EncoderRewardModel(out, manifest, threads=1, use_gpu=False)
    assert np.isfinite(rm.raw_scores("Tell me more. " * 100, ["Here is more. " * 100])).all()
    # RoBERTa's positions start after its pad id: 66 positions read 64 tokens, which only trying shows
    roberta = save_tiny(RobertaForSequenceClassification, RobertaConfig(**{**small, "max_position_embeddings": 66},
                        architectures=["RobertaForSequenceClassification"]), tmp_path / "roberta", encoder_dir / "tokenizer.json")
    assert_user_error(export(roberta, tmp_path / "o"), "cannot read 66 tokens", "--max-length")
    assert export(roberta, tmp_path / "o", "--max-length", "64").returncode == 0


def test_missing_tokenizer(tiny_bert, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_bert, src)
    (src / "tokenizer.json").unlink()
    assert_user_error(export(src, tmp_path / "out"), "no tokenizer.json")


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_another_models_tokenizer_is_refused_before_the_export(kind, encoder_dir, guide_dir, tmp_path):
    """Token ids past the model's embeddings: onnxruntime's Gather failed with a traceback, while validating."""
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

    if kind == "encoder":
        model, tokenizer = BertForSequenceClassification, encoder_dir / "tokenizer.json"
        config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_labels=1, architectures=["BertForSequenceClassification"])
    else:
        model, tokenizer = LlamaForSequenceClassification, guide_dir / "tokenizer.json"
        config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0,
                             architectures=["LlamaForSequenceClassification"])
    src = save_tiny(model, config, tmp_path / "src", tokenizer)
    assert_user_error(export(src, tmp_path / "out"), "another model's tokenizer", "embeddings for 1000", one_line=True)
    (src / "tokenizer.json").write_text('{"nope": 1}')
    assert_user_error(export(src, tmp_path / "out"), "cannot be read as a tokenizer", one_line=True)
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(tiny_bert, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_user_error(export(tiny_bert, out), "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_head_of_another_hidden_size(policy_path, tmp_path):
    head = tmp_path / "head.npz"
    np.savez(head, w_last=np.zeros(10, np.float32), w_mean=np.zeros(10, np.float32), bias=np.float32(0))
    proc = run_cli("export", "reward", "--from-gguf", str(policy_path), "--head", str(head), "--out", str(tmp_path / "o"))
    assert_user_error(proc, "expects hidden size 10", "has 576")


def test_a_gguf_backbone_that_cannot_serve_is_refused_before_it_loads(policy_path, tmp_path):
    from args_local.home import default_judge_gguf

    export = ("export", "reward", "--out", str(tmp_path / "o"), "--from-gguf")
    # one_line: no "loading ... into torch" first; it said "the head reads layer 99" (there was no head)
    assert_user_error(run_cli(*export, str(policy_path), "--layers", "99"), "--layers 99 is more than the 30 layers",
                      one_line=True)
    head = tmp_path / "head.npz"
    np.savez(head, w_last=np.zeros(576, np.float32), w_mean=np.zeros(576, np.float32), bias=np.float32(0), n_layers=40)
    assert_user_error(run_cli(*export, str(policy_path), "--head", str(head)), "n_layers 40 is more than", one_line=True)
    assert_user_error(run_cli(*export, str(default_judge_gguf())), "is a gemma3 model", "llama", one_line=True)
    assert not (tmp_path / "o").exists()


def test_a_head_that_does_not_say_its_layer_needs_layers(policy_path, tmp_path):
    """A head file with no n_layers (as an export's own were: they kept it in its manifest) was put on all 30
    layers, a model that validated and scored with the wrong features."""
    head = tmp_path / "head.npz"
    np.savez(head, w_last=np.ones(576, np.float32), w_mean=np.ones(576, np.float32), bias=np.float32(0))
    proc = run_cli("export", "reward", "--from-gguf", str(policy_path), "--out", str(tmp_path / "o"),
                   f"--head=helpful={head}")
    assert_user_error(proc, "do not say which layer", "--layers N", one_line=True)
    assert not (tmp_path / "o").exists()


def test_layers_other_than_the_heads_own_are_refused(policy_path, tmp_path):
    """--layers overrode the layer a head file says it reads: a model that validated and scored other features."""
    head = tmp_path / "head.npz"
    np.savez(head, w_last=np.ones(576, np.float32), w_mean=np.ones(576, np.float32), bias=np.float32(0), n_layers=20)
    proc = run_cli("export", "reward", "--from-gguf", str(policy_path), "--out", str(tmp_path / "o"),
                   "--head", str(head), "--layers", "10")
    assert_user_error(proc, "read layer 20, but --layers 10", one_line=True)


def test_a_misspelt_objective_is_refused_before_anything_loads(policy_path, guide_dir, tmp_path):
    """It was refused after the whole export (a minute), as the manifest's 'default_objectives'."""
    proc = run_cli("export", "reward", "--from-gguf", str(policy_path), "--out", str(tmp_path / "o"),
                   f"--head=helpful={guide_dir / 'head-helpful.npz'}", "--objective", "helpfull=1")
    assert_user_error(proc, "--objective helpfull: no --head has that name; the heads: helpful", one_line=True)
    proc = run_cli("export", "reward", "--from-gguf", str(policy_path), "--out", str(tmp_path / "o"),
                   f"--head=helpful={guide_dir / 'head-helpful.npz'}", "--objective", "helpful=-1")
    assert_user_error(proc, "'helpful' must be a finite number >= 0", one_line=True)
    assert not (tmp_path / "o").exists()


def test_an_earlier_export_is_exported_again_with_everything_it_had(policy_path, guide_dir, tmp_path):
    """The guide's layer, gate and warm-ups live in its manifest: given as head files, a re-export needed
    --layers and lost the gate and warm-ups. Given the export itself, it keeps them all, and the head
    files it writes say their layer and normalisation, as trained head files do."""
    from args_local.export.from_gguf import read_head
    from tests.conftest import guide_copy

    def edit(manifest):
        manifest["heads"]["helpful"]["warmup_tokens"] = 32  # not the defaults of any code path
        manifest["default_objectives"] = {"helpful": 1.5, "harmless": 0.5}
        manifest["made_by"] = "a tool of the user's"

    src = guide_copy(guide_dir, tmp_path / "src", edit)
    before = json.loads((src / "manifest.json").read_text())
    proc = export(src, tmp_path / "again")
    assert proc.returncode == 0, proc.stderr
    assert "harmless weight gated" in proc.stdout and "ramps in over the reply's first tokens: harmless 64, helpful 32" \
        in proc.stdout  # the summary says what it kept
    after = json.loads((tmp_path / "again" / "manifest.json").read_text())
    for key in ("default_objectives", "input_format", "max_length", "made_by"):
        assert after[key] == before[key], key
    assert after["graph"]["n_layers"] == before["graph"]["n_layers"] == 20
    assert {n: {**h, "file": None} for n, h in after["heads"].items()} == {
        n: {**h, "file": None} for n, h in before["heads"].items()}  # normalisation, warm-ups, delays
    assert after["gates"] == before["gates"]
    rm = load_reward_model(tmp_path / "again", threads=THREADS)
    assert list(rm.gates) == ["harmless"] and rm.gates["harmless"].threshold == 0.5
    assert dict(zip(rm.objectives, rm.warmup)) == {"harmless": 64, "helpful": 32}
    for name, spec in after["heads"].items():
        _, n_layers, norm = read_head(tmp_path / "again" / spec["file"])
        assert n_layers == 20 and norm == pytest.approx(spec["normalization"])


def test_a_head_file_whose_export_gives_it_a_gate_or_warm_up_names_that_export(policy_path, guide_dir, tmp_path):
    """Given as --head files, the guide's heads were exported without the gate and warm-ups its manifest gives
    them, silently."""
    proc = run_cli("export", "reward", "--from-gguf", str(policy_path), "--out", str(tmp_path / "o"),
                   *(f"--head={name}={guide_dir / f'head-{name}.npz'}" for name in ("helpful", "harmless")))
    assert_user_error(proc, "is a head of the export", f"args-local export reward {guide_dir} --out OUT",
                      one_line=True)
    assert not (tmp_path / "o").exists()


def test_an_earlier_export_that_cannot_be_exported_again_is_one_line_saying_why(policy_path, guide_dir, encoder_dir,
                                                                                tmp_path):
    from args_local.home import default_judge, default_judge_gguf

    assert_user_error(export(guide_dir, tmp_path / "o", "--layers", "4"), "--layers cannot be used when SRC is an "
                      "earlier export", one_line=True)
    assert_user_error(export(guide_dir, tmp_path / "o", "--from-gguf", str(default_judge_gguf())),
                      "is not the GGUF", policy_path.name, one_line=True)
    assert_user_error(export(guide_dir, tmp_path / "o", "--from-gguf", str(tmp_path / "none.gguf")), "not found",
                      one_line=True)
    copy = tmp_path / policy_path.name  # the same name, another file
    copy.write_bytes(policy_path.read_bytes()[:1 << 20])
    assert_user_error(export(guide_dir, tmp_path / "o", "--from-gguf", str(copy)), "is not the GGUF", one_line=True)
    assert_user_error(export(encoder_dir, tmp_path / "o"), "is fp32 already", "--quantize int8 or --fp16",
                      one_line=True)
    named = run_cli("export", "reward", "encoder", "--out", str(tmp_path / "o"), cwd=tmp_path)  # as --reward takes it
    assert_user_error(named, f"{encoder_dir} is fp32 already", one_line=True)
    assert_user_error(export(encoder_dir, tmp_path / "o", "--from-gguf", str(policy_path), "--fp16"),
                      "--from-gguf cannot be used", one_line=True)
    assert_user_error(export(encoder_dir, tmp_path / "o", "--opset", "17", "--fp16"), "--opset cannot be used",
                      one_line=True)
    assert_user_error(export(default_judge(), tmp_path / "o"), "nothing to export", one_line=True)
    damaged = tmp_path / "damaged"  # named as itself, not as the folder the export was building
    damaged.mkdir()
    for f in encoder_dir.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes()[:1000]) if f.name == "model.onnx" else (damaged / f.name).symlink_to(f)
    assert_user_error(export(damaged, tmp_path / "o", "--fp16"), f"could not load ONNX model {damaged / 'model.onnx'}",
                      one_line=True)
    assert not (tmp_path / "o").exists()


def test_an_encoder_whose_source_is_gone_is_converted_from_its_fp32_graph(encoder_dir, tmp_path):
    """Setup exports the built-in encoder from a temporary folder, gone since: the encoder is converted to
    fp16 from its own fp32 graph, its objective, normalisation, format and length kept."""
    before = json.loads((encoder_dir / "manifest.json").read_text())
    proc = export(encoder_dir, tmp_path / "half", "--fp16")
    assert proc.returncode == 0, proc.stderr
    after = json.loads((tmp_path / "half" / "manifest.json").read_text())
    assert {k: v for k, v in after.items() if k not in ("name", "validation")} == {
        k: v for k, v in before.items() if k not in ("name", "validation")}
    assert after["validation"]["fp16"]["ranking_agreement"] >= after["validation"]["fp16"]["bound"]
    rm = load_reward_model(tmp_path / "half", threads=THREADS)
    assert rm.objectives == ("harmless",)
    assert_user_error(export(tmp_path / "half", tmp_path / "quarter", "--quantize", "int8"), "is fp16 already",
                      "its fp32 export", one_line=True)


def test_int8_that_reorders_the_encoder_says_to_keep_its_fp32_export_or_try_fp16(encoder_dir, tmp_path):
    """The built-in encoder's int8 reorders about half its candidate pairs, whatever is quantized (its head reads
    MiniLM's layer-2 pooler, which moves between replies by a fiftieth of an int8 step): the check refuses it. It
    said 'Export without it', which for an export given again is refused as 'fp32 already'."""
    proc = export(encoder_dir, tmp_path / "o", "--quantize", "int8")
    assert_user_error(proc, "int8 changes the order of")
    assert proc.stderr.strip().splitlines()[-1].endswith(
        f"nothing was written. Keep {encoder_dir}, its fp32 export, or try --fp16 (checked the same way)."), proc.stderr
    assert not (tmp_path / "o").exists()


def test_models_lists_the_models_exported_into_its_folder(tiny_bert, tmp_path):
    """`models` listed the built-in models only: a model the user exported into the models folder was not
    there, nor its precision and validation."""
    from args_local import home

    models = tmp_path / "models"
    models.mkdir()
    for d in home.models_dir().iterdir():  # the built-in models, linked: nothing of theirs is written
        (models / d.name).symlink_to(d)
    env = {"ARGS_LOCAL_HOME": str(tmp_path)}
    proc = run_cli("export", "reward", str(tiny_bert), "--out", str(models / "mine"), "--fp16", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    (models / "broken").mkdir()
    (models / "broken" / "manifest.json").write_text("{cut off")
    listed = run_cli("models", "--json", env_extra=env)
    assert listed.returncode == 0, listed.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(listed.stdout)["models"] if r.get("exported")}
    assert {"mine", "broken"} <= set(rows)  # beside any the user exported into the real folder, linked too
    mine = rows["mine"]
    assert mine["kind"] == "encoder" and mine["precision"] == "fp16" and mine["objectives"] == {"reward": 1.0}
    assert mine["validation"]["fp16"]["ranking_agreement"] >= mine["validation"]["fp16"]["bound"]
    assert "is not valid JSON" in rows["broken"]["problem"]
    shown = run_cli("models", env_extra=env).stdout
    assert "exported RM          encoder, fp16" in shown and "validated: onnxruntime matches torch within" in shown
    assert "damaged — export it again" in shown and "guide RM (default)   decoder, int8" in shown
    # and --reward takes it by the name models lists it under, as it takes the built-in ones
    reply = run_cli("generate", "Hi", "--reward", "mine", "--max-new-tokens", "2", "--json", env_extra=env)
    assert reply.returncode == 0, reply.stderr
    assert json.loads(reply.stdout)["objective_rewards"].keys() == {"reward"}


def test_an_interrupted_export_leaves_nothing_that_loads(tmp_path):
    out = tmp_path / "rm"
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out, force=False) as stage:
            (stage / "manifest.json").write_text("{}")
            raise KeyboardInterrupt
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(UserError, match="out of disk space"):
        with staged_output(out, force=False) as stage:
            raise OSError(28, "No space left on device")
    assert not list(tmp_path.iterdir())


def test_a_second_export_to_the_same_out_waits_its_turn_and_the_first_lands(tiny_bert, tmp_path):
    """The second export took the first's build folder for one a killed export left and removed it: the first
    failed with 'No such file or directory'. Now the second is refused, and the first goes on to write OUT."""
    out = tmp_path / "rm"
    code = ("import sys; from args_local.export.common import staged_output\n"
            f"with staged_output({str(out)!r}, force=False) as stage:\n"
            "    (stage / 'manifest.json').write_text('{}'); print('building', flush=True); sys.stdin.readline()")
    first = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "building\n"
        assert_user_error(export(tiny_bert, out), f"another args-local export is writing {out} now", one_line=True)
        first.stdin.write("\n")
        first.stdin.close()
        assert first.wait(timeout=60) == 0
    finally:
        first.kill()
    assert (out / "manifest.json").read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["rm"]


def test_fp16_encoder_export_reports_what_it_changed(tiny_bert, policy_path, tmp_path):
    out = tmp_path / "rm"
    proc = export(tiny_bert, out, "--fp16")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "manifest.json").read_text())["validation"]["fp16"]
    assert report["ranking_agreement"] >= report["bound"] and report["correlation"] > 0.99
    assert len(decode_with(policy_path, out).rewards) == 6


def test_int8_encoder_export_prints_only_its_own_lines(tiny_bert, tmp_path):
    proc = export(tiny_bert, tmp_path / "rm", "--quantize", "int8")  # kept or refused: the ranking check decides
    lines = proc.stderr.strip().splitlines()
    assert "converting to int8" in proc.stderr and all(line.startswith("[") for line in lines[:-1]), proc.stderr
    # weight-only int8 is tried beside dynamic, as for decoders: a fine-tuned MiniLM passed only that way
    assert "converting to int8 (dynamic)" in proc.stderr and "converting to int8 (weight-only)" in proc.stderr


def test_an_encoders_precision_is_checked_on_args_steps(encoder_dir):
    """The check ranked four whole replies per sample conversation, easy to keep in order: a fine-tuned MiniLM's
    int8 kept all of them and reordered 20% of the candidates one word apart that ARGS ranks. It ranks k = 10
    candidate words at each of a sample reply's first 12 steps now, as a decoder's check does."""
    from args_local.export.encoder import candidate_scores

    rows, ms = candidate_scores(load_reward_model(encoder_dir, threads=THREADS))
    assert len(rows) == 12 * 4 and all(len(row) == 10 and len(set(row)) > 1 for row in rows) and ms > 0


def with_chat_template(src: Path, out: Path, template: str, **tokens) -> Path:
    shutil.copytree(src, out)
    (out / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, **tokens}))
    return out


def test_a_decoder_rm_reads_a_conversation_as_its_own_chat_template_writes_it(tiny_llama, tmp_path):
    """Scored in chatml, a model trained on its own template sees text it never saw, and validation
    against torch cannot tell: both read the same wrong ids. Now the template's layout, BOS included,
    is exported, and the ids equal what transformers' apply_chat_template gives."""
    from transformers import AutoTokenizer

    from .test_chat_template import GEMMA_LIKE

    src = with_chat_template(tiny_llama, tmp_path / "src", GEMMA_LIKE, bos_token={  # as older transformers saved it
        "__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": False, "rstrip": False,
        "single_word": False})
    proc = export(src, tmp_path / "rm")
    assert proc.returncode == 0, proc.stderr
    rm = load_reward_model(tmp_path / "rm", threads=THREADS)
    conversation = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Why is the sky blue?\n"}]  # the template strips the newline
    ours = rm.encode(rm.format.context_text(conversation) + rm.format.reply_prefix)
    theirs = AutoTokenizer.from_pretrained(src).apply_chat_template(conversation, add_generation_prompt=True)
    assert ours == list(theirs) and ours[0] == 0  # <|endoftext|>, the template's BOS, is token 0 here
    # a finished reply is scored as the template writes it too: stripped, with its end of turn
    finished = rm.encode(rm.format.context_text(conversation) + rm.format.reply_prefix)
    reply = conversation + [{"role": "assistant", "content": " Rayleigh scattering.\n"}]
    assert finished + rm.encode(rm.format.reply_content(" Rayleigh scattering.\n") + rm.format.reply_suffix) == list(
        AutoTokenizer.from_pretrained(src).apply_chat_template(reply))
    assert rm.score_replies(conversation, [" Rayleigh scattering.\n"]) == pytest.approx(
        rm.score_replies(conversation, ["Rayleigh scattering."]))


def test_an_encoder_rm_whose_template_strips_replies_scores_a_reply_being_written_stripped(tiny_llama, tmp_path):
    """Decoding, the reply so far is text to an encoder RM: where its template trims a reply, a leading
    space the policy wrote (" Rayleigh") is not what the RM was trained on, so it is dropped, as the
    finished reply's is."""
    from args_local.reward.encoder import EncoderCandidateScorer

    from .test_chat_template import GEMMA_LIKE

    src = with_chat_template(tiny_llama, tmp_path / "src", GEMMA_LIKE)
    proc = export(src, tmp_path / "rm", "--kind", "encoder")
    assert proc.returncode == 0, proc.stderr
    rm = load_reward_model(tmp_path / "rm", threads=THREADS)
    assert rm.kind == "encoder" and "assistant" in rm.format.stripped_roles
    conversation = [{"role": "user", "content": "Why is the sky blue?"}]
    scorer = EncoderCandidateScorer(rm, rm.format.context_text(conversation))
    spaced, bare, other = scorer.score(np.zeros(3, np.int64), [b" Rayleigh", b"Rayleigh", b"Blue"])[:, 0]
    assert spaced == pytest.approx(bare) and bare != pytest.approx(other)


def test_a_chat_template_args_local_cannot_follow_is_one_line_naming_format(tiny_llama, tmp_path):
    from .test_chat_template import POSITIONAL

    src = with_chat_template(tiny_llama, tmp_path / "src", POSITIONAL)
    assert_user_error(export(src, tmp_path / "rm"), "--format", one_line=True)
    assert not (tmp_path / "rm").exists()


def test_a_chat_template_that_fails_on_a_plain_conversation_is_one_line_naming_format(tiny_llama, tmp_path):
    """Templates that insist on a system turn, or index into content parts, fail on ours: say what to do."""
    strict = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message must come first') }}{% endif %}"
    parts = "{% for m in messages %}{{ m['content'][0]['text'] }}{% endfor %}"
    for i, template in enumerate((strict, parts)):
        src = with_chat_template(tiny_llama, tmp_path / f"src{i}", template)
        assert_user_error(export(src, tmp_path / f"rm{i}"), "chat template", "--format", one_line=True)


def test_an_out_that_cannot_be_made_is_one_line(tiny_bert, tmp_path):
    in_the_way = tmp_path / "notes.txt"  # a file where --out needs a folder: a FileExistsError traceback
    in_the_way.write_text("mine")
    proc = export(tiny_bert, in_the_way / "rm")
    assert_user_error(proc, f"cannot write {in_the_way / 'rm'}: a file is in the way", one_line=True)
    assert in_the_way.read_text() == "mine"
