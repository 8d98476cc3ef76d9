"""Export a Llama-family backbone (+ linear head) as an args-local decoder reward model."""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..formats import InputFormat
from ..reward.base import LinearHead
from ..reward.decoder import DecoderRewardModel
from .common import Progress, export_versions, staged_output
from .decoder_graph import SUPPORTED_ARCHITECTURES, CandidateScoringGraph, export_graph
from .precision import convert_checked, fp16, int8_dynamic_per_channel, int8_weights
from .samples import SAMPLE_CONVERSATIONS
from .smoothing import ALPHA, smooth

PROBE_TEXT = "Hello, world! Ünïcødé 日本語 🙂 <|im_start|>user\n  tabs\tand\nnewlines"


def load_gguf_backbone(gguf: Path, progress: Progress):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"loading {gguf.name} into torch (dequantised to fp32)")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model.eval(), tokenizer


def hidden_state_reference(model, head: LinearHead, n_layers: int):
    """The head over Hugging Face's own hidden states after n_layers (normed when it is the last)."""
    backbone = backbone_of(model)

    def score(ids: list[int], reply_len: int) -> float:
        hidden = backbone(torch.tensor([ids]), output_hidden_states=True).hidden_states[n_layers][0].numpy()
        reply = hidden[-reply_len:]
        return float(head(reply[-1], reply.mean(axis=0)))

    return score


def backbone_of(model):
    check_decoder_architecture((model.config.architectures or [type(model).__name__])[0], type(model).__name__)
    return model.model if hasattr(model, "model") else model


def check_decoder_architecture(*names: str) -> None:
    if not any(name in SUPPORTED_ARCHITECTURES for name in names):
        raise UserError(f"architecture {names[0]} is not supported for decoder reward models; supported: "
                        f"{', '.join(SUPPORTED_ARCHITECTURES)}. --kind encoder exports any *ForSequenceClassification "
                        "model to read text with its own tokenizer.")


def export_decoder(model, tokenizer, head: LinearHead, n_layers: int, out: Path, *, name: str, source: dict,
                   input_format: InputFormat, max_length: int, opset: int, force: bool,
                   progress: Progress, normalization: dict | None = None, extra: dict | None = None,
                   reference=None, precision: str | None = None, objectives: dict | None = None,
                   default_objectives: dict | None = None, gates: dict | None = None) -> dict:
    """Write OUT with graph, tokenizer, head and manifest; validate against torch first.

    objectives: {name: (LinearHead, spec)}: one head per objective instead of `head` (which is then
    the one validated; the others read the same validated features); spec: the manifest's head entry
    but its file (normalization, warmup_tokens, delay_tokens; reward/heads.py). gates: {name: the
    manifest's gate entry, its file a path to copy} (reward/gates.py)."""
    backbone = backbone_of(model)
    total = backbone.config.num_hidden_layers
    if not 1 <= n_layers <= total:
        raise UserError(f"the head reads layer {n_layers} but the backbone has {total} layers")
    hidden = backbone.config.hidden_size
    if head.w_last.shape != (hidden,):
        raise UserError(f"the head expects hidden size {head.w_last.shape[0]} but the backbone has {hidden}")
    graph = CandidateScoringGraph(backbone, n_layers, final_norm=(n_layers == total)).eval()
    probe_ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    manifest = {
        "kind": "decoder", "name": name, "model": "model.onnx", "tokenizer": "tokenizer.json",
        "head": "head.npz", "input_format": input_format.to_dict(), "max_length": max_length,
        "normalization": normalization or {"mean": 0.0, "std": 1.0},
        "graph": {"n_layers": n_layers, "kv_heads": graph.n_kv_heads, "head_dim": graph.head_dim,
                  "hidden_size": hidden, "total_layers": total},
        "vocab": {"size": int(backbone.config.vocab_size), "probe_text": PROBE_TEXT, "probe_ids": probe_ids},
        "source": source, "versions": export_versions(), **(extra or {}),
    }
    weight_only_layers = []
    if precision == "int8":
        progress("smoothing activation outliers into the weights for int8 (SmoothQuant)")
        weight_only_layers = smooth(graph, calibration_ids(tokenizer, input_format))
    with staged_output(out, force) as stage:
        t = time.time()
        progress(f"exporting {n_layers} of {total} layers to ONNX (opset {opset})")
        export_graph(graph, stage / "model.onnx", opset)
        tokenizer.backend_tokenizer.save(str(stage / "tokenizer.json"))
        head.save(stage / "head.npz")
        from ..reward.manifest import write_manifest

        write_manifest(stage, manifest)
        progress("validating: onnxruntime against torch")
        manifest["validation"] = validate_decoder(graph, head, stage, manifest, reference)
        if normalization is None:
            raw = np.concatenate([DecoderRewardModel(stage, manifest, 2, False).score_replies(c, r)
                                  for c, r in SAMPLE_CONVERSATIONS])
            manifest["normalization"] = {"mean": float(raw.mean()), "std": float(raw.std()) or 1.0}
        if precision:
            weight_only = down_matmuls(stage / "model.onnx", weight_only_layers)
            ways = {"int8": {"dynamic": partial(int8_dynamic_per_channel, weight_only=weight_only),
                             "weight-only": int8_weights},
                    "fp16": {"fp16": fp16}}[precision]
            manifest["validation"][precision] = convert_checked(
                stage, manifest, precision, ways,
                lambda m: candidate_rewards(DecoderRewardModel(stage, m, threads=2, use_gpu=False)), progress)
            if precision == "int8":
                manifest["validation"]["int8"]["smoothing"] = {"alpha": ALPHA, "weight_only_down_layers": weight_only_layers}
        if objectives:
            write_heads(stage, manifest, objectives, default_objectives, gates or {})
        else:  # the head file says what it reads and how it is normalised, as a trained head file does
            save_head(head, stage / "head.npz", n_layers, manifest["normalization"])
        manifest["export_seconds"] = round(time.time() - t, 1)
        write_manifest(stage, manifest)
    return manifest


def calibration_ids(tokenizer, input_format: InputFormat) -> list[list[int]]:
    """Token ids of each sample conversation with each of its replies: what smoothing measures."""
    return [tokenizer(input_format.context_text(c) + input_format.reply_prefix + r + input_format.reply_suffix,
                      add_special_tokens=False)["input_ids"] for c, replies in SAMPLE_CONVERSATIONS for r in replies]


def down_matmuls(path: Path, layers: list[int]) -> list[str]:
    """Names of the ONNX MatMul nodes of these layers' MLP down projections (CandidateScoringGraph.down)."""
    import onnx

    if not layers:
        return []
    names = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "MatMul"]
    found = [[name for name in names if name.startswith(f"/down.{layer}/")] for layer in layers]
    if any(len(f) != 1 for f in found):
        raise RuntimeError(f"expected one MatMul per /down.<layer>/ of {layers} in {path}, found {found}")
    return [f[0] for f in found]


def write_heads(directory: Path, manifest: dict, objectives: dict, default_objectives: dict | None,
                gates: dict) -> None:
    """Replace the manifest's single head by one head file per objective (manifest `heads`), and add
    the gates; a head without normalisation gets it measured on the sample replies."""
    from ..reward.gates import load_gates
    from ..reward.heads import check_weights

    rm = DecoderRewardModel(directory, manifest, threads=2, use_gpu=False)
    features = None
    heads = {}
    for name, (head, spec) in objectives.items():
        norm = spec.get("normalization")
        if norm is None:
            if features is None:
                features = np.concatenate([rm.features(c, r) for c, r in SAMPLE_CONVERSATIONS])
            d = features.shape[1] // 2
            raw = head(features[:, :d], features[:, d:])
            norm = {"mean": float(raw.mean()), "std": float(raw.std()) or 1.0}
        heads[name] = {"file": f"head-{name}.npz", **spec, "normalization": norm}
        save_head(head, directory / heads[name]["file"], manifest["graph"]["n_layers"], norm)
    (directory / manifest.pop("head")).unlink()
    manifest.pop("normalization", None)
    manifest["heads"] = heads
    manifest["default_objectives"] = check_weights(default_objectives or {n: 1.0 for n in heads}, tuple(heads),
                                                   "default_objectives")
    if gates:
        for spec in gates.values():
            shutil.copyfile(spec["file"], directory / Path(spec["file"]).name)
        manifest["gates"] = {name: {**spec, "file": Path(spec["file"]).name} for name, spec in gates.items()}
        load_gates(directory, manifest, tuple(heads), manifest["graph"]["hidden_size"])  # as loading will


def save_head(head: LinearHead, path: Path, n_layers: int, normalization: dict) -> None:
    """A head file that says which layer it reads and its normalisation: copied out of the export and given
    to --head, it is exported again as it is here (a head file without them needed --layers)."""
    head.save(path, n_layers=np.int64(n_layers), norm_mean=np.float64(normalization["mean"]),
              norm_std=np.float64(normalization["std"]))


def candidate_rewards(rm: DecoderRewardModel, k: int = 10) -> tuple[list[np.ndarray], float]:
    """Rewards of k candidates at each step of the sample replies (what ARGS ranks), and the median
    milliseconds of one such step."""
    rows, seconds = [], []
    for conversation, replies in SAMPLE_CONVERSATIONS:
        scorer = rm.start(conversation)
        for t in rm.encode(replies[0])[:12]:
            ids = np.unique(np.concatenate([[t], (np.arange(k - 1) * 997 + t * 31) % rm.vocab["size"]]))[:k]
            start = time.perf_counter()
            rows.append(scorer.score(ids))
            seconds.append(time.perf_counter() - start)
            scorer.accept(int(np.flatnonzero(ids == t)[0]))
    return rows, float(np.median(seconds) * 1000)


def torch_features(graph: CandidateScoringGraph, ids: list[int], reply_len: int):
    with torch.no_grad():
        h = graph.run_sequence(ids)[0].numpy()
    reply = h[len(ids) - reply_len:]
    return reply[-1], reply.mean(axis=0)


def validate_decoder(graph, head: LinearHead, directory: Path, manifest: dict, reference=None,
                     tolerance: float = 1e-3) -> dict:
    """Max |score difference| of onnxruntime vs torch, for finished replies and for k candidates.

    `reference(ids, reply_len) -> score`, when given, is the source model's own forward (Hugging
    Face's implementation): the export must agree with it too, not only with our graph.
    Features are compared as well, so a zero head (features-only export) is still validated.
    """
    rm = DecoderRewardModel(directory, {**manifest, "normalization": {"mean": 0, "std": 1}}, threads=2, use_gpu=False)
    diff_full = diff_candidates = diff_features = diff_reference = 0.0
    for conversation, replies in SAMPLE_CONVERSATIONS[:2]:
        reply = replies[0]
        onnx_score = rm.score_replies(conversation, [reply])[0]
        onnx_features = rm.features(conversation, [reply])[0]
        prefix = rm._prefix_ids(conversation, 0)
        reply_ids = rm.encode(reply + rm.format.reply_suffix)
        last, mean = torch_features(graph, prefix + reply_ids, len(reply_ids))
        diff_full = max(diff_full, abs(onnx_score - float(head(last, mean))))
        scale = max(1.0, float(np.abs(last).max()))
        diff_features = max(diff_features, float(np.abs(onnx_features - np.concatenate([last, mean])).max()) / scale)
        if reference is not None:
            with torch.no_grad():
                diff_reference = max(diff_reference, abs(onnx_score - reference(prefix + reply_ids, len(reply_ids))))
        # k candidates after a cached prefix vs recomputing each candidate's full sequence
        scorer = rm.start(conversation)
        for t in reply_ids[:3]:
            scorer.score(np.array([t]))
            scorer.accept(0)
        cands = np.array(sorted(set(reply_ids[3:8])) or [reply_ids[-1]])
        got = scorer.score(cands)
        for c, g in zip(cands, got):
            seq = prefix + reply_ids[:3] + [int(c)]
            last, mean = torch_features(graph, seq, 4)
            diff_candidates = max(diff_candidates, abs(g - float(head(last, mean))))
    result = {"max_abs_diff_full": diff_full, "max_abs_diff_candidates": diff_candidates,
              "max_rel_diff_features": diff_features, "tolerance": tolerance}
    if reference is not None:
        result["max_abs_diff_source_model"] = diff_reference
    worst = max(diff_full, diff_candidates, diff_features, diff_reference)
    if worst > tolerance:
        raise UserError(f"validation failed: onnxruntime and torch differ by {worst:.2e} (> {tolerance}); "
                        "the model was not written")
    return result


def export_hf_decoder(src: Path, out: Path, *, input_format: InputFormat, max_length: int | None, opset: int,
                      label_index: int | None, force: bool, progress: Progress, precision: str | None = None) -> dict:
    """LlamaForSequenceClassification & co.: all layers + final norm; the score row becomes w_last."""
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

    from .encoder import check_reward_architecture, check_tokenizer, read_config, readable_length

    config = read_config(src)
    index = check_reward_architecture(config, label_index)
    check_decoder_architecture(config["architectures"][0])  # before the model loads
    check_tokenizer(src, config)
    max_length = readable_length(config, max_length)
    window = config.get("sliding_window")
    if (isinstance(window, int) and window < max_length and config.get("use_sliding_window") is not False
            and "sliding_attention" in (config.get("layer_types") or ["sliding_attention"])):
        raise UserError(f"the model attends over a sliding window of {window} tokens, which args-local's decoder "
                        "graph does not (it attends to every token); export it with --kind encoder")
    progress(f"loading {src.name} into torch")
    model = AutoModelForSequenceClassification.from_pretrained(str(src), dtype=torch.float32).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json"))
    score = model.score.weight.detach().numpy()[index].astype(np.float32)
    bias = float(model.score.bias.detach()[index]) if getattr(model.score, "bias", None) is not None else 0.0
    head = LinearHead(score, np.zeros_like(score), bias)
    return export_decoder(model, tokenizer, head, model.config.num_hidden_layers, out, name=out.name,
                          source={"directory": str(src), "architecture": config["architectures"][0]},
                          input_format=input_format, max_length=max_length, opset=opset, force=force,
                          progress=progress, extra={"output_index": index},
                          reference=lambda ids, reply_len: float(model(torch.tensor([ids])).logits[0, index]),
                          precision=precision)
