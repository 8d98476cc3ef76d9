"""Export a Hugging Face sequence-classification model (BERT, RoBERTa, DeBERTa, …) with optimum."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import InputFormat
from ..paths import input_dir
from ..reward.encoder import EncoderCandidateScorer, EncoderRewardModel
from ..reward.manifest import write_manifest
from .common import Progress, export_versions, staged_output
from .precision import convert_checked, fp16, int8_dynamic, int8_weights
from .samples import SAMPLE_CONVERSATIONS

# The model types the KV-cached decoder graph runs (decoder_graph.py); others, GPT-2, Gemma or Phi-3
# classifiers included, read text as encoders do (each step re-reads the reply, with their own tokenizer).
DECODER_MODEL_TYPES = ("llama", "mistral", "qwen2")


# Weight-only int8 keeps activations in fp32: where one activation scale per tensor blurs what the head
# reads, it may pass where dynamic int8 does not (a fine-tuned MiniLM: 96% of step pairs against 80%).
ENCODER_WAYS = {"int8": {"dynamic": int8_dynamic, "weight-only": int8_weights}, "fp16": {"fp16": fp16}}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def read_config(src: Path) -> dict:
    """config.json of a local Hugging Face model directory, once the directory is known to hold weights."""
    src = input_dir(src, "source model directory", ". Give a local Hugging Face model directory (config.json, "
                    "weights, tokenizer.json); model ids need the hub, which is not reachable offline.")
    path = src / "config.json"
    if not path.is_file():
        raise UserError(f"{src} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); save the model again with save_pretrained()") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a model config (expected a JSON object)")
    if not any((src / name).is_file() for name in WEIGHT_FILES):
        raise UserError(f"{src} has no weights ({' or '.join(WEIGHT_FILES[::2])}); save the model with "
                        "save_pretrained() so the weights are in the directory")
    for weights in sorted(src.glob("*.safetensors")):
        if not whole_safetensors(weights):
            raise UserError(f"{weights} is cut off or damaged; copy or save the model again (save_pretrained())")
    return config


def whole_safetensors(path: Path) -> bool:
    """Whether a .safetensors file is whole: an 8-byte header length, a JSON header, and every tensor's bytes
    within the file (transformers would otherwise stop with a SafetensorError traceback, minutes in)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if size < 8 or length > size - 8:
            return False
        try:
            header = json.loads(f.read(length))
            ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return False
    return all(isinstance(end, int) for end in ends) and max(ends, default=0) <= size - 8 - length


def detect_kind(config: dict) -> str:
    return "decoder" if config.get("model_type") in DECODER_MODEL_TYPES else "encoder"


def check_reward_architecture(config: dict, label_index: int | None) -> int:
    """The label index to read as the reward; refuses models that are not reward/classifiers."""
    archs = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise UserError(f"{archs or config.get('model_type')} is not a reward model: args-local exports "
                        "*ForSequenceClassification models (BertFor…, RobertaFor…, DebertaV2For…, DistilBertFor…, "
                        "LlamaFor…, Qwen2For…, MistralFor…) with one output, the reward.")
    # save_pretrained() leaves out id2label when it is transformers' default, two labels: no id2label is two
    n_labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    if n_labels > 1 and label_index is None:
        names = list((config.get("id2label") or {}).values())
        raise UserError(f"the model has {n_labels} output labels{f' {names}' if names else ''}; "
                        "say which one is the reward with --label-index N")
    index = label_index or 0
    if not 0 <= index < max(n_labels, 1):
        raise UserError(f"--label-index {index} is out of range for {n_labels} labels")
    return index


def check_tokenizer(src: Path, config: dict) -> None:
    """SRC's tokenizer.json is there and gives no token id past the model's embeddings: another model's
    tokenizer (a copied file, a base model's with tokens added) failed in onnxruntime, a traceback."""
    from tokenizers import Tokenizer

    path = src / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{src} has no tokenizer.json (the fast tokenizer file); save the tokenizer with "
                        "tokenizer.save_pretrained() in transformers first")
    try:
        largest = max(Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True).values())
    except Exception as e:  # tokenizers raises a bare Exception for a file it cannot read
        raise UserError(f"{path} cannot be read as a tokenizer ({e}); save the tokenizer again") from None
    embeddings = config.get("vocab_size")
    if isinstance(embeddings, int) and largest >= embeddings:
        raise UserError(f"{path} gives token ids up to {largest}, but the model has embeddings for {embeddings}: "
                        "it is another model's tokenizer. Save this model's own with tokenizer.save_pretrained()")


def readable_length(config: dict, max_length: int | None) -> int:
    """Tokens the model is given at most: max_length (default 512, or fewer where the model has fewer
    positions); longer than its position table, every long input failed while decoding."""
    positions = config.get("max_position_embeddings") or config.get("n_positions")
    if not isinstance(positions, int):
        return max_length or 512
    if max_length and max_length > positions:
        raise UserError(f"--max-length {max_length} is more than the model reads: its config.json gives "
                        f"{positions} positions")
    return max_length or min(512, positions)


def export_encoder(src: Path, out: Path, *, input_format: InputFormat, max_length: int | None, opset: int,
                   label_index: int | None, precision: str | None, force: bool, progress: Progress,
                   name: str | None = None, normalization: dict | None = None) -> dict:
    """max_length None: 512, or the model's positions where fewer. normalization: reward mean/std to use;
    default: measured on the built-in sample replies."""
    config = read_config(src)
    index = check_reward_architecture(config, label_index)
    max_length = readable_length(config, max_length)
    check_tokenizer(src, config)
    pad_id = config.get("pad_token_id")
    if "pad_token_id" not in config:  # an older config.json: the architecture's own default (BERT's is 0)
        from transformers import AutoConfig

        pad_id = AutoConfig.from_pretrained(str(src)).pad_token_id
    if not isinstance(pad_id, int):  # decoder classifiers (GPT-2, Llama, …) often have none
        raise UserError(f"{src / 'config.json'} names no pad_token_id, which scoring several replies in one batch "
                        "needs: set it to the id the model was trained to pad with (trainers such as TRL use the "
                        "eos token's) and save the model again")
    from optimum.exporters.onnx import main_export

    with staged_output(out, force) as stage:
        t = time.time()
        progress(f"exporting {name or src.name} with optimum (task text-classification, opset {opset})")
        with warnings.catch_warnings():  # torch's TracerWarnings: our own validation below is what counts
            warnings.filterwarnings("ignore", message=".*registered as constants in the trace")
            main_export(str(src), output=str(stage / "optimum"), task="text-classification", opset=opset,
                        do_validation=False, device="cpu")
        shutil.move(stage / "optimum" / "model.onnx", stage / "model.onnx")
        shutil.copy(src / "tokenizer.json", stage / "tokenizer.json")
        shutil.rmtree(stage / "optimum")
        manifest = {"kind": "encoder", "name": name or out.name, "model": "model.onnx", "tokenizer": "tokenizer.json",
                    "input_format": input_format.to_dict(), "max_length": max_length, "output_index": index,
                    "pad_id": pad_id,
                    "source": {"directory": str(src), "architecture": config.get("architectures", [None])[0]},
                    "versions": export_versions()}
        write_manifest(stage, manifest)
        progress("validating: onnxruntime against torch")
        manifest["validation"], raw = validate_encoder(src, stage, manifest)
        manifest["normalization"] = normalization or {"mean": float(raw.mean()), "std": float(raw.std()) or 1.0}
        if precision:
            manifest["validation"][precision] = convert_checked(
                stage, manifest, precision, ENCODER_WAYS[precision],
                lambda m: candidate_scores(EncoderRewardModel(stage, m, threads=2, use_gpu=False)), progress)
        manifest["export_seconds"] = round(time.time() - t, 1)
        write_manifest(stage, manifest)
    return manifest


def candidate_scores(rm: EncoderRewardModel, k: int = 10) -> tuple[list[np.ndarray], float]:
    """Scores of k candidate words at each of the first steps of the sample replies (what ARGS ranks, as the
    decoder's check does), and the median milliseconds of one such step. Whole replies were too easy to keep in
    order: a fine-tuned MiniLM's int8 kept all of them and reordered 20% of the candidates one word apart."""
    words = sorted({word for _, replies in SAMPLE_CONVERSATIONS for reply in replies for word in reply.split()})
    rows, seconds = [], []
    for conversation, replies in SAMPLE_CONVERSATIONS:
        scorer = EncoderCandidateScorer(rm, rm.format.context_text(conversation))
        for step, word in enumerate(replies[0].split()[:12]):
            others = (words[(i * 7 + step * 31) % len(words)] for i in range(len(words)))
            candidates = list(dict.fromkeys([word, *others]))[:k]
            pieces = [((" " if step else "") + w).encode() for w in candidates]
            start = time.perf_counter()
            rows.append(scorer.score(np.arange(len(pieces)), pieces)[:, 0])
            seconds.append(time.perf_counter() - start)
            scorer.accept(0)
    return rows, float(np.median(seconds) * 1000)


def sample_inputs(rm: EncoderRewardModel):
    for conversation, replies in SAMPLE_CONVERSATIONS:
        yield rm.format.context_text(conversation), [r + rm.format.reply_suffix for r in replies]


def validate_encoder(src: Path, stage: Path, manifest: dict, tolerance: float = 1e-3):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    rm = EncoderRewardModel(stage, manifest, threads=2, use_gpu=False)
    diffs, raw = [], []
    samples = list(sample_inputs(rm))
    longest = ("Tell me more. " * rm.max_length, ["Here is more. " * rm.max_length])  # cut to max_length tokens
    for i, (context, replies) in enumerate([*samples, longest]):
        try:
            onnx_scores = rm.raw_scores(context, replies)  # one padded batch, as while decoding
            with torch.no_grad():  # each reply alone, unpadded: padding must not change a score
                logits = np.array([model(**{k: torch.tensor(v) for k, v in rm._inputs(context, [r]).items()}).logits
                                   [0, rm.output_index].item() for r in replies])
        except Exception as e:  # onnxruntime's Fail, torch's IndexError or RuntimeError: no common type
            if i < len(samples):
                raise
            raise UserError(f"the model cannot read {rm.max_length} tokens ({type(e).__name__}): export it with a "
                            "smaller --max-length") from None
        diffs.append(np.abs(onnx_scores - logits).max())
        raw.extend(onnx_scores[:len(replies) if i < len(samples) else 0])
    diff = float(max(diffs))
    if diff > tolerance:
        raise UserError(f"validation failed: onnxruntime and torch scores differ by {diff:.2e} (> {tolerance}); "
                        "nothing was written")
    return {"max_abs_diff": diff, "tolerance": tolerance, "samples": len(raw)}, np.array(raw)
